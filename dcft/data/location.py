"""Where a task's data is: the data folder (``data.dir`` or ``$DCFT_DATA_DIR``) and the files of
each split in it. Standard library only, so that finding the files (e.g. to look a cached data
fingerprint up) does not load ``datasets``."""

from __future__ import annotations

import os
from pathlib import Path

from dcft.data.errors import FIX_HINT, DataUnavailableError, missing_split_error
from dcft.data.tasks import TaskSpec, TsvLayout

DATA_DIR_ENV = "DCFT_DATA_DIR"

_TSV_FILES = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}


_FILE_PREFIX = {"train": "train", "validation": "dev"}


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """``data_dir`` if given, else ``$DCFT_DATA_DIR``; ``None`` (or empty) means the Hub."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV, "")
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataUnavailableError(f"data directory {path} does not exist. {FIX_HINT}")
    return path


def local_split_files(spec: TaskSpec, data_dir: Path, split: str) -> list[Path]:
    """The files one split is read from: SQuAD's first JSON candidate that exists; for GLUE the
    TSV, else the parquet shards."""
    if spec.kind == "squad":
        candidates = squad_json_paths(data_dir, spec, split)
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise missing_split_error(spec.name, split, data_dir, candidates)
        return [found]
    tsv = tsv_path(data_dir, spec, split)
    if tsv.is_file():
        return [tsv]
    shards = sorted(parquet_dir(data_dir, spec, split).glob("*.parquet"))
    if shards:
        return shards
    raise missing_split_error(
        spec.name, split, data_dir, [tsv, parquet_dir(data_dir, spec, split) / "*.parquet"]
    )


def tsv_path(data_dir: Path, spec: TaskSpec, split: str) -> Path:
    """``glue/<folder>/<file>.tsv``: the folder is the task's (``TaskSpec.tsv``), the file names
    are GLUE's for every task (``dev.tsv``, MNLI's ``dev_matched.tsv``; test sets: the task's
    ``TestSplit.tsv``)."""
    tests = {test.split: test.tsv for test in spec.test_splits}
    return data_dir / "glue" / glue_layout(spec).folder / {**_TSV_FILES, **tests}[split]


def glue_layout(spec: TaskSpec) -> TsvLayout:
    if spec.tsv is None:
        raise ValueError(f"task {spec.name!r} has no GLUE TSV layout (kind {spec.kind!r})")
    return spec.tsv


def parquet_dir(data_dir: Path, spec: TaskSpec, split: str) -> Path:
    return data_dir / "glue_parquet" / str(spec.hub_config) / split


def squad_json_paths(data_dir: Path, spec: TaskSpec, split: str) -> list[Path]:
    """Candidate files for a split, best first, named by the task's ``squad_version``.

    ``squad/v1.1/`` for v1; for v2 ``squad/v2.0/`` first, then any other ``squad/v2.0*/`` folder
    in name order (e.g. ``v2.0-subset``).
    """
    version = spec.squad_version
    if version is None:
        raise ValueError(f"task {spec.name!r} has no SQuAD version (kind {spec.kind!r})")
    name = f"{_FILE_PREFIX[split]}-{version}.json"
    root = data_dir / "squad"
    folders = [root / version]
    if root.is_dir():
        folders += sorted(p for p in root.glob(f"{version}*") if p.is_dir() and p.name != version)
    return [folder / name for folder in folders]
