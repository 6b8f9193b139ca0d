"""Resume checkpoints that are either complete or ignored, and saved when time or SLURM says so.

A checkpoint folder is complete once ``manifest.json`` lists every file in it with its size and
sha256; the manifest is written last (atomically), after the Trainer's own files. On resume the
newest checkpoint whose files still match their manifest is used; damaged ones (a truncated
weight or optimiser file, an emptied trainer_state.json, a deleted rng_state.pth) are named and
passed over. Old checkpoints are deleted only after the new one's manifest exists.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from dcft.data.provenance import file_sha256
from dcft.run.records import write_json

MANIFEST = "manifest.json"
# SLURM's warning signal (sbatch --signal=USR1@120) and the scheduler's / user's TERM.
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

logger = logging.getLogger(__name__)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path) -> Path:
    """Seal a checkpoint: every file's size and sha256, written last."""
    entries = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in _files(folder)
    }
    return write_json(folder / MANIFEST, {"files": entries})


def damage(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from, or None if it is complete and intact."""
    try:
        listed = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {MANIFEST} (the save did not finish)"
    for name, entry in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {entry['bytes']} were written"
        if file_sha256(path) != entry["sha256"]:
            return f"{name} does not match the sha256 written with it"
    return None


def checkpoint_step(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None


def _numbered(folder: Path) -> list[Path]:
    """``checkpoint-<step>`` folders, newest first."""
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if path.is_dir() and path.name.rsplit("-", 1)[1].isdigit()
    ]
    return sorted(found, key=checkpoint_step, reverse=True)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest intact checkpoint in ``folder``; damaged ones are named in the log and kept
    for inspection (the Trainer overwrites one when it reaches that step again)."""
    for checkpoint in _numbered(folder):
        problem = damage(checkpoint)
        if problem is None:
            return checkpoint
        logger.warning("passing over checkpoint %s: %s", checkpoint, problem)
    return None


def keep_newest(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete checkpoints (incomplete newer ones are
    left for ``last_complete_checkpoint`` to pass over)."""
    complete = [c for c in _numbered(folder) if (c / MANIFEST).is_file()]
    for old in complete[keep:]:
        shutil.rmtree(old, ignore_errors=True)


class PreemptedError(RuntimeError):
    """A preemption signal arrived; a checkpoint was saved and the run stopped to be resumed."""

    def __init__(self, signum: int, step: int, previous_handler: Any) -> None:
        super().__init__(
            f"{signal.Signals(signum).name} received: checkpoint saved at step {step}; "
            "the run resumes from it when started again"
        )
        self.signum = signum
        self.previous_handler = previous_handler


class CheckpointClock(TrainerCallback):
    """Saves a checkpoint every ``every_s`` seconds of training (besides the step schedule), and
    right away when SIGTERM or SIGUSR1 arrives, after which it stops the run with
    ``PreemptedError`` (the runner then hands the signal on, e.g. to submitit's requeue)."""

    def __init__(self, every_s: float | None) -> None:
        self.every_s = every_s
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._last_save = time.monotonic()

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_save = time.monotonic()
        for signum in PREEMPTION_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                return

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()

    def restore(self) -> None:
        """The signal handlers from before the run (also when training raises: the trainer
        then never calls ``on_train_end``, and the flag-setting handler of a finished run would
        swallow the process's next SIGTERM)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_step_end(self, args, state, control, **kwargs):
        overdue = self.every_s and time.monotonic() - self._last_save >= self.every_s
        if self.signum is not None or overdue:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        self._last_save = time.monotonic()
        if self.signum is not None:
            previous = self._previous.get(self.signum)
            self.restore()
            raise PreemptedError(self.signum, state.global_step, previous)
