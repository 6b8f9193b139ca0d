"""Upgrade run records of schema ``dcft-run/1`` to ``dcft-run/2`` in place, so that they keep
matching the runs that today's code computes keys for:

    python -m dcft.tools.migrate_records [--data-dir DIR] [--launched-in DIR] [--dry-run] PATH...

PATH: record files or folders of them. Schema 2 changed two things in a run's key (its
``hparams_hash``, which digests the resolved config):
- ``trainer.optimizer`` exists (default ``adamw_authors``); a record without it was trained with
  torch's AdamW before the key existed, so it gets ``adamw_torch``;
- ``data.fingerprint`` names the examples, not the files' bytes (dcft.data.fingerprint). The
  new one is computed from the data folder the record names (``config.data.dir``; elsewhere:
  ``--data-dir``), after checking that the folder's files are the very files the record was
  keyed with (the old fingerprint, their sha256, must come out the same).

The hash is then computed as a run computes it (``RunIdentity.from_config`` of the upgraded
config) and every field derived from it follows: ``identity.hparams_hash``, the file name
``seed<N>-<hash8>.json``, and the run folder paths that embed ``seed<N>-<hash8>``
(``config.run_dir``, ``run_dir``, ``adapter.path``, ``predictions_path``): a rerun or resume of
the run uses the new folder, so the record names it. A run folder that still exists under the
old name (relative to ``--launched-in``, default: here) is renamed to match. What changed is
listed in the record's ``migrated`` entry. Records already at schema 2 are left alone, so the
command can be run again; records it cannot upgrade are named with the reason (exit code 1).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dcft.data import DATA_DIR_ENV, data_fingerprint, get_task
from dcft.data.errors import DataUnavailableError
from dcft.data.location import local_split_files
from dcft.data.provenance import cached_sha256
from dcft.run.identity import RunIdentity, record_stem
from dcft.run.records import SCHEMA, CorruptRecordError, read_record, write_json

FROM_SCHEMA = "dcft-run/1"
# What every schema-1 record trained with: torch's AdamW was the only optimiser then.
OPTIMIZER_BEFORE = "adamw_torch"
# Fields holding a path inside the run folder, which is named seed<N>-<hash8>.
_RUN_PATHS = (("config", "run_dir"), ("run_dir",), ("adapter", "path"), ("predictions_path",))


class MigrationError(ValueError):
    """A record that cannot be upgraded; the message names it and says why."""


def file_fingerprint(task: str, root: Path) -> str:
    """Schema 1's ``data.fingerprint``: the sha256 of every local file of ``task`` under
    ``root``, with its split and relative path."""
    spec = get_task(task)
    digest = hashlib.sha256()
    for split in spec.splits:
        try:
            files = local_split_files(spec, root, split)
        except DataUnavailableError:
            continue
        for path in files:
            digest.update(f"{split}:{path.relative_to(root)}:{cached_sha256(path)}\n".encode())
    return digest.hexdigest()[:16]


def _data_dir(path: Path, config: dict[str, Any], given: Path | None) -> Path:
    chosen = given or config["data"].get("dir") or os.environ.get(DATA_DIR_ENV)
    if not chosen or not Path(chosen).is_dir():
        raise MigrationError(
            f"{path}: its data folder {chosen!r} is not here; pass --data-dir with a folder "
            "holding the files it was trained on"
        )
    return Path(chosen)


def _new_fingerprint(path: Path, config: dict[str, Any], data_dir: Path | None) -> str:
    """The examples' fingerprint, from a folder whose files are those the record was keyed with."""
    task, old = config["task"]["name"], config["data"]["fingerprint"]
    if ":" in old:  # hub:<id>/<config> or absent:<dir>: the key named no file content
        raise MigrationError(
            f"{path}: its data key {old!r} names no files, so the examples it used cannot be "
            "checked; run it again instead"
        )
    root = _data_dir(path, config, data_dir)
    found = file_fingerprint(task, root)
    if found != old:
        raise MigrationError(
            f"{path}: the {task} files in {root} are not those the record was keyed with (file "
            f"fingerprint {found}, record {old}); pass --data-dir with the folder it trained on"
        )
    return data_fingerprint(task, root)


def _set(record: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    for key in keys[:-1]:
        record = record[key]
    record[keys[-1]] = value


def _get(record: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def migrate(path: Path, record: dict[str, Any], data_dir: Path | None = None) -> dict[str, Any]:
    """The schema-2 form of a schema-1 ``record`` read from ``path``."""
    if record.get("schema") != FROM_SCHEMA:
        raise MigrationError(f"{path}: schema {record.get('schema')!r}, not {FROM_SCHEMA!r}")
    upgraded = copy.deepcopy(record)
    config = upgraded["config"]
    changes: dict[str, list[Any]] = {}
    if "optimizer" not in config["trainer"]:
        config["trainer"] = {"optimizer": OPTIMIZER_BEFORE, **config["trainer"]}
        changes["trainer.optimizer"] = [None, OPTIMIZER_BEFORE]
    fingerprint = _new_fingerprint(path, config, data_dir)
    changes["data.fingerprint"] = [config["data"]["fingerprint"], fingerprint]
    config["data"]["fingerprint"] = fingerprint

    identity = RunIdentity.from_config(OmegaConf.create(config))
    drift = [k for k in identity.differences(record["identity"]) if k != "hparams_hash"]
    if drift:
        raise MigrationError(
            f"{path}: today's code names this run differently beyond its hash ({drift}); "
            "it cannot be matched to a run"
        )
    old_hash, new_hash = record["identity"]["hparams_hash"], identity.hparams_hash
    changes["hparams_hash"] = [old_hash, new_hash]
    upgraded["identity"]["hparams_hash"] = new_hash
    old_name, new_name = record_stem(identity.seed, old_hash), record_stem(identity.seed, new_hash)
    for keys in _RUN_PATHS:
        value = _get(upgraded, keys)
        if isinstance(value, str) and old_name in value:
            _set(upgraded, keys, value.replace(old_name, new_name))
    upgraded["schema"] = SCHEMA
    upgraded["migrated"] = [
        *record.get("migrated", []),
        {"from": FROM_SCHEMA, "to": SCHEMA, "by": "dcft.tools.migrate_records", "changed": changes},
    ]
    return upgraded


def record_files(paths: Sequence[Path]) -> list[Path]:
    """The record files named, and those under the folders named (``seed*.json``)."""
    found = []
    for path in paths:
        found += sorted(path.rglob("seed*.json")) if path.is_dir() else [path]
    return found


def migrate_file(
    path: Path, data_dir: Path | None, launched_in: Path, dry_run: bool = False
) -> Path | None:
    """Upgrade the record at ``path`` in place (renamed to its new key); None if it is already
    at schema 2."""
    try:
        record = read_record(path)
    except CorruptRecordError as err:
        raise MigrationError(str(err)) from None
    if record is None:
        raise MigrationError(f"{path}: no such record")
    if record.get("schema") == SCHEMA:
        return None
    upgraded = migrate(path, record, data_dir)
    identity = upgraded["identity"]
    target = path.with_name(f"{record_stem(identity['seed'], identity['hparams_hash'])}.json")
    if target != path and target.exists() and read_record(target) != upgraded:
        raise MigrationError(f"{path}: its new name {target.name} is taken by another record")
    if dry_run:
        return target
    write_json(target, upgraded)
    if target != path:
        path.unlink()
    _rename_run_folder(record, upgraded, launched_in)
    return target


def _rename_run_folder(old: dict[str, Any], new: dict[str, Any], launched_in: Path) -> None:
    before, after = (launched_in / str(r["config"]["run_dir"]) for r in (old, new))
    if before != after and before.is_dir() and not after.exists():
        before.rename(after)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="record files or folders")
    parser.add_argument(
        "--data-dir", type=Path, help="the data folder the runs trained on (default: each record's)"
    )
    parser.add_argument(
        "--launched-in",
        type=Path,
        default=Path("."),
        help="the folder the runs were launched in, whose run folders follow (default: here)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would change, write nothing"
    )
    args = parser.parse_args(argv)
    upgraded, current, problems = 0, 0, []
    for path in record_files(args.paths):
        try:
            target = migrate_file(path, args.data_dir, args.launched_in, args.dry_run)
        except MigrationError as err:
            problems.append(str(err))
            continue
        if target is None:
            current += 1
        else:
            upgraded += 1
            print(f"{path} -> {target.name}")
    verb = "to upgrade" if args.dry_run else "upgraded"
    print(f"{upgraded} {verb}, {current} already at {SCHEMA}, {len(problems)} cannot be upgraded")
    for problem in problems:
        print(f"not upgraded: {problem}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
