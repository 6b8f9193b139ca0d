"""One trainer per run, across processes and hosts sharing a results folder (NFS, Lustre).

A lock is a file created exclusively (a complete draft hard-linked into place: atomic on every
POSIX filesystem, NFS v3+ included) holding who owns it: host, pid and the launch id that the
processes of one torchrun launch share. The runner holds two: one beside the run's record and
one in the run folder, where the training happens. The owner touches its locks every
``heartbeat_s`` seconds. A lock is stale when its owner is a dead process on this host, when
nobody touched it for ``stale_after_s`` (a dead host), or when it does not parse (empty,
garbage: dcft never writes a partial lock), which is named as malformed; a stale lock is taken
over under a guard file, and only if it still is the stale one, so two processes racing for it
cannot both win.

Why not filelock's ``SoftFileLease`` (filelock 4.3.1, read for this): it has the exclusive
marker, an owner record (host, pid, process start, claim token), a heartbeat thread, takeover of
a dead local owner and an atomic takeover; three of the guarantees above it does not give:

* a lock abandoned by a dead host is not stale at first sight: a contender must itself watch
  the marker stay unchanged for ``lease_duration`` on its own monotonic clock
  (``_marker_unchanged_for`` starts counting when it first sees the marker). The runner tries a
  lock once and skips a held run, so a relaunch would never take over a run whose host died;
  it would have to block 10 minutes per such run. Here the marker's age (its mtime, touched by
  the heartbeat) decides at once;
* no launch identity: the ranks of one torchrun launch, and a restarted rank 0 of the same
  launch, must recognise their launch's lock (``launch``); a lease's owner is one process;
* no public reader of the holder: ``dcft.sweep --dry-run`` and the status of a run name the
  holder's host, pid and age (``lock_holder``); filelock parses its marker in private modules.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dcft.run.distributed import is_main_process

logger = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
# How long the other ranks of a launch wait for rank 0 to take (or refuse) the lock.
RANK_WAIT_S = 120.0
# A takeover guard older than this was left by a process killed while taking a lock over.
GUARD_STALE_S = 60.0
# The launch of an Owner read from a lock that does not parse.
MALFORMED = "malformed"


class RunLockedError(RuntimeError):
    """Another live process holds the run; the message names its host and pid."""


def launch_id() -> str:
    """What every process of one launch shares: torchrun's run id and rendezvous, or this
    process alone."""
    if "TORCHELASTIC_RUN_ID" in os.environ or "MASTER_PORT" in os.environ:
        parts = ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")
        return "launch:" + "/".join(os.environ.get(p, "") for p in parts)
    return f"process:{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    launch: str
    since: str

    @classmethod
    def me(cls, launch: str) -> Owner:
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        return cls(socket.gethostname(), os.getpid(), launch, now)

    @classmethod
    def malformed(cls, text: str) -> Owner:
        """What a lock that no dcft process wrote as it is (empty, garbage) stands for."""
        return cls("?", -1, f"{MALFORMED}:{text[:80]!r}", "?")

    @property
    def is_malformed(self) -> bool:
        return self.launch.startswith(f"{MALFORMED}:")

    def describe(self) -> str:
        if self.is_malformed:
            return f"malformed lock, content {self.launch.removeprefix(MALFORMED + ':')}"
        return f"host {self.host}, pid {self.pid}, since {self.since}"


def _read_owner(path: Path) -> Owner | None:
    """The lock's owner; None when there is no lock. dcft writes a lock whole before linking it
    into place, so one that does not parse (empty, truncated, garbage) is held by nobody."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    try:
        fields = json.loads(text)
        owner = Owner(**fields)
    except (ValueError, TypeError):
        return Owner.malformed(text)
    types_ok = all(isinstance(getattr(owner, f), str) for f in ("host", "launch", "since"))
    return owner if types_ok and isinstance(owner.pid, int) else Owner.malformed(text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(path: Path, owner: Owner, stale_after_s: float) -> bool:
    if owner.is_malformed:
        return True
    if owner.host == socket.gethostname() and owner.pid > 0 and not _alive(owner.pid):
        return True
    try:
        return time.time() - path.stat().st_mtime > stale_after_s
    except FileNotFoundError:
        return True


def _create(path: Path, owner: Owner) -> bool:
    """Create the lock with its owner already in it: the owner is written to a private file
    first, then linked to the lock's name (exclusive and atomic, like O_EXCL), so that no other
    process ever reads an empty lock."""
    draft = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    draft.write_text(json.dumps(owner.__dict__))
    try:
        os.link(draft, path)
    except FileExistsError:
        return False
    finally:
        draft.unlink(missing_ok=True)
    return True


def _take_over(path: Path, stale: Owner, stale_after_s: float) -> None:
    """Remove a stale lock so that ``_create`` can be tried again. Takeovers are serialised by
    a guard file (O_EXCL), and under it the lock is removed only if it still is the stale
    owner's: two processes that judged it stale at once cannot remove each other's new lock."""
    guard = path.with_name(f"{path.name}.takeover")
    if not _create(guard, Owner.me("takeover")):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - guard.stat().st_mtime > GUARD_STALE_S:
                guard.unlink()  # left by a process killed mid-takeover
        time.sleep(0.1)
        return
    try:
        if _read_owner(path) == stale and _is_stale(path, stale, stale_after_s):
            aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
            os.rename(path, aside)
            aside.unlink(missing_ok=True)
            logger.warning("took over the stale lock %s (%s)", path, stale.describe())
    except FileNotFoundError:
        pass
    finally:
        guard.unlink(missing_ok=True)


def _heartbeat(path: Path, stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def run_lock(
    path: Path,
    *,
    heartbeat_s: float = HEARTBEAT_S,
    stale_after_s: float = STALE_AFTER_S,
    rank_wait_s: float = RANK_WAIT_S,
) -> Iterator[Owner]:
    """Hold ``path`` for the duration of the block, or raise ``RunLockedError`` at once naming
    the holder. In a multi-process launch rank 0 takes the lock and the other ranks only check
    that it is their launch's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    me = Owner.me(launch_id())
    if not is_main_process():
        yield _wait_for_rank0(path, me, rank_wait_s)
        return
    while not _create(path, me):
        holder = _read_owner(path)
        if holder is None:
            continue
        if holder.launch == me.launch:
            break  # restarted rank 0 of the same launch
        if not _is_stale(path, holder, stale_after_s):
            raise RunLockedError(
                f"run is held by another process ({holder.describe()}; lock {path}); "
                "it is skipped here. Delete the lock only if that process is gone."
            )
        _take_over(path, holder, stale_after_s)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop, heartbeat_s), daemon=True)
    beat.start()
    try:
        yield me
    finally:
        stop.set()
        beat.join()
        if (_read_owner(path) or me).launch == me.launch:
            path.unlink(missing_ok=True)


def _wait_for_rank0(path: Path, me: Owner, wait_s: float) -> Owner:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        holder = _read_owner(path)
        if holder is not None and holder.launch == me.launch:
            return holder
        if holder is not None and not _is_stale(path, holder, STALE_AFTER_S):
            raise RunLockedError(f"run is held by another process ({holder.describe()})")
        time.sleep(0.2)
    raise RunLockedError(f"rank 0 did not take the lock {path} within {wait_s:.0f} s")


def lock_holder(path: Path, stale_after_s: float = STALE_AFTER_S) -> tuple[Owner, bool] | None:
    """Who holds the lock at ``path`` and whether the lock is stale (its holder gone: the next
    launch takes it over); None when there is no lock."""
    owner = _read_owner(path)
    return None if owner is None else (owner, _is_stale(path, owner, stale_after_s))
