"""Where a run stands, from its record and its lock: finished, failed (with the reason),
running (who holds it, for how long), to do, or a record that cannot be trusted (corrupt,
foreign)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dcft.run.identity import RunIdentity
from dcft.run.records import CorruptRecordError, ForeignRecordError, lock_path, read_record
from dcft.run.run_lock import lock_holder

STATUSES = ("finished", "failed", "running", "to do", "corrupt", "foreign")


@dataclass(frozen=True)
class RunStatus:
    status: str  # one of STATUSES
    detail: str = ""  # the failure reason, the lock's holder and age, why a record is refused


def _age(since: str, now: float) -> str:
    """``1 h 05 min`` since a lock's local ``%Y-%m-%d %H:%M:%S`` time."""
    try:
        seconds = max(0, int(now - time.mktime(time.strptime(since, "%Y-%m-%d %H:%M:%S"))))
    except ValueError:
        return "for an unknown time"
    hours, minutes = divmod(seconds // 60, 60)
    if hours:
        return f"for {hours} h {minutes:02d} min"
    return f"for {minutes} min" if minutes else f"for {seconds} s"


def run_status(record: Path, identity: RunIdentity, now: float | None = None) -> RunStatus:
    """The state of the run ``identity`` whose record belongs at ``record``."""
    try:
        found = read_record(record, identity)
    except ForeignRecordError as err:
        return RunStatus("foreign", str(err))
    except CorruptRecordError as err:
        return RunStatus("corrupt", str(err))
    if found is not None:
        return RunStatus(found["status"], str(found.get("failure_reason") or ""))
    held = lock_holder(lock_path(record))
    if held is None:
        return RunStatus("to do")
    owner, stale = held
    if stale:
        return RunStatus("to do", f"stale lock of {owner.describe()}: the next launch takes it")
    age = _age(owner.since, time.time() if now is None else now)
    return RunStatus("running", f"host {owner.host}, pid {owner.pid}, {age}")
