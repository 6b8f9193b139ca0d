"""File permissions shared by every writer of results, adapters and checkpoints."""

from __future__ import annotations

import os


def new_file_mode() -> int:
    """The permissions a plain new file gets under the process's umask (0666 & ~umask): the
    writers whose library creates files 0600 (mkstemp, safetensors) set these instead, so that
    results stay readable by the rest of a shared group."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
