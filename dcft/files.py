"""What every writer of results, adapters and checkpoints shares: the permissions new files get
(the umask's), and storage errors that name the path and the free space."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def new_file_mode() -> int:
    """The permissions a plain new file gets under the process's umask (0666 & ~umask): the
    writers whose library creates files 0600 (mkstemp, safetensors) set these instead, so that
    results stay readable by the rest of a shared group."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def follow_umask(folder: Path) -> None:
    """Give every file under ``folder`` the umask's permissions (a checkpoint written by
    libraries some of which create their files 0600)."""
    mode = new_file_mode()
    for path in folder.rglob("*"):
        if path.is_file() and path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)


def free_space(path: Path) -> str:
    """The free space on the filesystem that holds ``path`` (or its nearest existing folder)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown free space"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if free >= size:
            return f"{free / size:.1f} {unit} free"
    return f"{free} bytes free"


def storage_error(path: Path, err: BaseException, what: str | None = None) -> OSError:
    """An OSError for a failed write of ``path`` (``what``: e.g. "checkpoint"): where, why
    (``err``: "No space left on device", "File too large", ...) and the free space there."""
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    named = f"{what} {path}" if what else str(path)
    return OSError(f"cannot write {named}: {reason}; {free_space(path)} there")
