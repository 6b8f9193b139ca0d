"""Result records: one self-describing JSON file per run, at a path keyed by the run's identity.

``<results_dir>/<model>/<task>/<method-slug>/seed<seed>-<hash8>.json``: the slug names the
method and its notable options, ``hash8`` is the first 8 hex digits of the sha256 of every
resolved setting that can change the result apart from the seed (the config minus seed, logger,
paths and pure logging knobs), so the seeds of one configuration share it. The experiment is not
part of the path: a run that two tables need (Table 4's d = 8 is Table 1's DCFT) is trained once.
A record is written atomically, so a killed run leaves either the old record or none, never half
of one.

"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from dcft.files import new_file_mode, storage_error
from dcft.run.identity import RunIdentity

# 2: the key holds trainer.optimizer and the examples' fingerprint (dcft.tools.migrate_records
# upgrades records of schema 1).
SCHEMA = "dcft-run/2"
STATUSES = ("finished", "failed")

_PACKAGES = (
    "dcft",
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "safetensors",
    "hydra-core",
    "omegaconf",
    "wandb",
    "numpy",
    "scipy",
    "scikit-learn",
)


class CorruptRecordError(RuntimeError):
    """An existing record cannot be read; it is left untouched for a human to look at."""


class ForeignRecordError(CorruptRecordError):
    """A record at a run's path belongs to another run (copied, or written by other code)."""


def read_record(path: Path, identity: RunIdentity | None = None) -> dict[str, Any] | None:
    """The record at ``path``, or None if there is none; unreadable -> ``CorruptRecordError``.
    With ``identity``, a record whose identity differs is refused (``ForeignRecordError``):
    a record is trusted by what it says it is, not by where it lies."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptRecordError(
            f"result record {path} is corrupt ({err}); it was left untouched: inspect or delete it"
        ) from err
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        raise CorruptRecordError(
            f"result record {path} is not a dcft run record (status must be one of {STATUSES}); "
            "it was left untouched: inspect or delete it"
        )
    if identity is not None and (differing := identity.differences(record.get("identity"))):
        raise ForeignRecordError(
            f"result record {path} belongs to another run (identity differs in {differing}); "
            "it was left untouched: move or delete it"
        )
    return record


def lock_path(record_path: Path) -> Path:
    """The run's lock file, beside its record (so every host sharing results_dir sees it)."""
    return record_path.with_name(f".{record_path.stem}.lock")


def run_folder_lock(run_dir: Path) -> Path:
    """The lock of the run folder, where the training happens: launches that write their records
    to different results folders still share it."""
    return run_dir / ".run.lock"


def ensure_writable(*folders: Path) -> None:
    """Create ``folders`` and write a probe file in each, so that a read-only or full results
    folder fails before training instead of after it."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder) as probe:
                probe.write(b"probe")
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as err:
            raise OSError(
                f"cannot write to {folder} ({err.strerror or err}); fix it before training"
            ) from err


def remove_orphan_temporaries(folder: Path, older_than_s: float = 3600.0) -> None:
    """Delete ``.*.tmp`` files that a killed ``write_json`` left (older than an hour, so a
    concurrent writer's file is never touched)."""
    if not folder.is_dir():
        return
    cutoff = datetime.now(timezone.utc).timestamp() - older_than_s
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def write_json(path: Path, record: Any) -> Path:
    """Write ``record`` (a run record, predictions) as JSON atomically: a temp file in the same
    folder, then ``os.replace``; an interrupted write leaves the previous file (or none). The
    file gets the umask's permissions (mkstemp's 0600 would hide it from a shared group); a
    storage error names the path and the free space."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise storage_error(path, err) from err
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, sort_keys=False, allow_nan=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise storage_error(path, err) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def summarize(
    evaluations: Sequence[Mapping[str, Any]], split: str, metric: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(best, last) evaluation; best = highest ``metric`` on ``split`` (the earliest on ties).
    Every GLUE/SQuAD main metric is higher-is-better. A NaN score (e.g. STS-B's Pearson of a
    constant prediction) never wins: with only NaN scores there is no best."""
    scored = [
        e
        for e in evaluations
        if isinstance(value := e["metrics"].get(split, {}).get(metric), (int, float))
        and math.isfinite(value)
    ]
    if not scored:
        return None, (dict(evaluations[-1]) if evaluations else None)
    best = max(scored, key=lambda e: (e["metrics"][split][metric], -e["step"]))
    return dict(best), dict(evaluations[-1])


def main_score(record: Mapping[str, Any], which: str = "best") -> float | None:
    """The task's headline metric in the record's ``which`` evaluation (``best`` or ``last``),
    as recorded; None when the record has no such evaluation."""
    evaluation, main = record.get(which), record.get("main_metric")
    if not evaluation or not main:
        return None
    return evaluation["metrics"].get(main["split"], {}).get(main["name"])


def git_sha(directory: Path | None = None) -> str | None:
    directory = directory or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _source_tree_version() -> str | None:
    """dcft's version from pyproject.toml when it runs from a source tree it was not installed
    from."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
    except OSError:
        return None
    return found.group(1) if found else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = _source_tree_version() if name == "dcft" else None
    return versions


def environment() -> dict[str, Any]:
    """Versions, git sha and device; of the environment variables only CUDA_VISIBLE_DEVICES (the
    others may hold secrets)."""
    cuda = torch.cuda.is_available()
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "device": "cuda" if cuda else "cpu",
        "gpu_name": torch.cuda.get_device_name(0) if cuda else None,
        "device_count": torch.cuda.device_count() if cuda else 0,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu_count": os.cpu_count(),
    }


def make_record(
    identity: RunIdentity,
    config: Mapping[str, Any],
    status: str,
    *,
    failure: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A record: schema, status, identity, config, environment, then the run's ``fields``
    (evaluations, best, last, parameters, timing, memory, adapter, ...)."""
    if status not in STATUSES:
        raise ValueError(f"unknown record status {status!r}; valid: {', '.join(STATUSES)}")
    return {
        "schema": SCHEMA,
        "harness_version": package_versions()["dcft"],
        "status": status,
        "failure_reason": failure,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "identity": identity.to_dict(),
        "config": dict(config),
        "environment": environment(),
        **fields,
    }
