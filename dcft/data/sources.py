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
    carve_train_from_eval: float | None = None,
) -> dict[str, datasets.Dataset]:
    """Raw examples of ``task`` keyed by split (``train`` and the task's eval splits).

    With a data directory (argument or ``$DCFT_DATA_DIR``) only local files are read and the
    Hugging Face libraries are held offline; otherwise the Hub is used. ``splits`` restricts
    which splits are loaded (default: all). Subsets are ``shuffle(seed).select(range(n))``, so
    the same seed always gives the same examples, in shuffled order; ``max_eval_samples``
    applies to each eval split.

    ``carve_train_from_eval=f`` is for machines without a training set (e.g. SQuAD here): the
    training split becomes a fixed fraction ``f`` of the first eval split and that eval split
    keeps the other examples, so the two never overlap. Scores from it are not comparable to
    published ones.
    """
    spec = get_task(task)
    if carve_train_from_eval is not None:
        return _carve(
            spec, data_dir, carve_train_from_eval, max_train_samples, max_eval_samples, seed
        )
    wanted = _check_splits(spec, splits)
    root = resolve_data_dir(data_dir)
    if root is None:
        loaded = load_hub_splits(spec, wanted)
    else:
        with hub_offline():
            loaded = {split: load_local_split(spec, root, split) for split in wanted}
    return _subsets(loaded, max_train_samples, max_eval_samples, seed)


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


def _carve(
    spec: TaskSpec,
    data_dir: str | Path | None,
    fraction: float,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    seed: int,
) -> dict[str, datasets.Dataset]:
    if not 0 < fraction < 1:
        raise ValueError(f"carve_train_from_eval must be in (0, 1), got {fraction}")
    loaded = load_raw_splits(spec.name, data_dir, seed=seed, splits=spec.eval_splits)
    first = spec.eval_splits[0]
    parts = loaded[first].train_test_split(train_size=fraction, seed=seed, shuffle=True)
    loaded = {"train": parts["train"], **loaded, first: parts["test"]}
    return _subsets(loaded, max_train_samples, max_eval_samples, seed)


def _check_splits(spec: TaskSpec, splits: Sequence[str] | None) -> list[str]:
    if splits is None:
        return list(spec.splits)
    unknown = [s for s in splits if s not in spec.splits]
    if unknown:
        raise ValueError(
            f"unknown split(s) {unknown} for task {spec.name!r}; valid choices: {list(spec.splits)}"
        )
    return list(splits)


def _subsets(
    loaded: dict[str, datasets.Dataset],
    max_train_samples: int | None,
    max_eval_samples: int | None,
    seed: int,
) -> dict[str, datasets.Dataset]:
    return {
        split: _subset(ds, max_train_samples if split == "train" else max_eval_samples, seed)
        for split, ds in loaded.items()
    }


def _subset(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    if limit is None or limit >= len(ds):
        return ds
    if limit < 0:
        raise ValueError(f"sample limit must be >= 0, got {limit}")
    return ds.shuffle(seed=seed).select(range(limit))
