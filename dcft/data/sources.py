"""Entry point for raw examples: pick local files or the Hub, then subsample deterministically."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import datasets

from dcft.data.errors import FIX_HINT, DataUnavailableError, missing_split_error
from dcft.data.glue import parquet_dir, read_glue_parquet, read_glue_tsv, tsv_path
from dcft.data.hub import hub_offline, load_hub_splits
from dcft.data.squad import read_squad_json, squad_json_paths
from dcft.data.tasks import TaskSpec, get_task

DATA_DIR_ENV = "DCFT_DATA_DIR"

logger = logging.getLogger(__name__)


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """``data_dir`` if given, else ``$DCFT_DATA_DIR``; ``None`` (or empty) means the Hub."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV, "")
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataUnavailableError(f"data directory {path} does not exist. {FIX_HINT}")
    return path


def load_raw_splits(
    task: str,
    data_dir: str | Path | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
    splits: Sequence[str] | None = None,
) -> dict[str, datasets.Dataset]:
    """Raw examples of ``task`` keyed by split (``train`` and the task's eval splits).

    With a data directory (argument or ``$DCFT_DATA_DIR``) only local files are read and the
    Hugging Face libraries are held offline; otherwise the Hub is used. ``splits`` restricts
    which splits are loaded (default: all). Subsets are ``shuffle(seed).select(range(n))``, so
    the same seed always gives the same examples, in shuffled order; ``max_eval_samples``
    applies to each eval split.
    """
    spec = get_task(task)
    wanted = _check_splits(spec, splits)
    root = resolve_data_dir(data_dir)
    if root is None:
        loaded = load_hub_splits(spec, wanted)
    else:
        with hub_offline():
            loaded = {split: load_local_split(spec, root, split) for split in wanted}
    return {
        split: _subset(ds, max_train_samples if split == "train" else max_eval_samples, seed)
        for split, ds in loaded.items()
    }


def load_local_split(spec: TaskSpec, data_dir: Path, split: str) -> datasets.Dataset:
    """One split from ``data_dir``; GLUE prefers the TSV over the parquet copy when both exist."""
    if spec.kind == "squad":
        candidates = squad_json_paths(data_dir, spec, split)
        for path in candidates:
            if path.is_file():
                logger.info("%s/%s: reading %s", spec.name, split, path)
                return read_squad_json(path)
        raise missing_split_error(spec.name, split, data_dir, candidates)
    tsv = tsv_path(data_dir, spec, split)
    if tsv.is_file():
        logger.info("%s/%s: reading %s", spec.name, split, tsv)
        return read_glue_tsv(tsv, spec)
    shards = parquet_dir(data_dir, spec, split)
    if any(shards.glob("*.parquet")):
        logger.info("%s/%s: reading %s/*.parquet", spec.name, split, shards)
        return read_glue_parquet(shards, spec)
    raise missing_split_error(spec.name, split, data_dir, [tsv, shards / "*.parquet"])


def _check_splits(spec: TaskSpec, splits: Sequence[str] | None) -> list[str]:
    if splits is None:
        return list(spec.splits)
    unknown = [s for s in splits if s not in spec.splits]
    if unknown:
        raise ValueError(
            f"unknown split(s) {unknown} for task {spec.name!r}; valid choices: {list(spec.splits)}"
        )
    return list(splits)


def _subset(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    if limit is None or limit >= len(ds):
        return ds
    if limit < 0:
        raise ValueError(f"sample limit must be >= 0, got {limit}")
    return ds.shuffle(seed=seed).select(range(limit))
