"""Entry point for raw examples: pick local files or the Hub, then subsample deterministically,
and say where every example came from (the run record's ``data`` section)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from dcft.data.custom import custom_provenance, read_custom_split
from dcft.data.glue import read_glue_parquet, read_glue_test_tsv, read_glue_tsv
from dcft.data.hub import hub_offline, hub_provenance, load_hub_splits
from dcft.data.location import local_split_files, resolve_data_dir
from dcft.data.provenance import local_provenance
from dcft.data.squad import read_squad_json
from dcft.data.tasks import TaskSpec, get_task

logger = logging.getLogger(__name__)


@dataclass
class RawData:
    """Raw examples per split and their provenance: source (local folder or Hub id and
    revision), every file read with its sha256, example counts per split before and after
    subsetting, and warnings (e.g. a stand-in SQuAD v2.0 dev set)."""

    splits: dict[str, datasets.Dataset]
    provenance: dict[str, Any] = field(default_factory=dict)


def load_raw_splits(
    task: str,
    data_dir: str | Path | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
    splits: Sequence[str] | None = None,
    carve_train_from_eval: float | None = None,
    holdout_from_train: float | None = None,
) -> dict[str, datasets.Dataset]:
    """Raw examples of ``task`` keyed by split: :func:`load_task_data` without the provenance."""
    return load_task_data(
        task,
        data_dir,
        max_train_samples,
        max_eval_samples,
        seed,
        splits,
        carve_train_from_eval,
        holdout_from_train,
    ).splits


def load_task_data(
    task: str,
    data_dir: str | Path | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
    splits: Sequence[str] | None = None,
    carve_train_from_eval: float | None = None,
    holdout_from_train: float | None = None,
) -> RawData:
    """Raw examples of ``task`` keyed by split (``train`` and the task's eval splits), with
    their provenance.

    With a data directory (argument or ``$DCFT_DATA_DIR``) only local files are read and the
    Hugging Face libraries are held offline; otherwise the Hub is used (its local cache when
    offline or unreachable). ``splits`` restricts which splits are loaded (default: all). Subsets
    are ``shuffle(seed).select(range(n))``, so the same seed always gives the same examples, in
    shuffled order; ``max_eval_samples`` applies to each eval split.

    ``carve_train_from_eval=f`` is for machines without a training set (e.g. SQuAD here): the
    training split becomes a fixed fraction ``f`` of the first eval split and that eval split
    keeps the other examples, so the two never overlap. Scores from it are not comparable to
    published ones.

    ``holdout_from_train=f`` is for tuning without touching the reported dev set: a fixed
    fraction ``f`` of the training split becomes the (only) evaluation split, named like the
    task's first eval split, and training uses the rest.
    """
    spec = get_task(task)
    if carve_train_from_eval is not None and holdout_from_train is not None:
        raise ValueError(
            "data.carve_train_from_eval and data.holdout_from_train exclude each other"
        )
    if carve_train_from_eval is not None:
        return _carve(
            spec, data_dir, carve_train_from_eval, max_train_samples, max_eval_samples, seed
        )
    if holdout_from_train is not None:
        return _carve(
            spec,
            data_dir,
            holdout_from_train,
            max_train_samples,
            max_eval_samples,
            seed,
            into_eval=True,
        )
    wanted = _check_splits(spec, splits)
    loaded, provenance = _load(spec, data_dir, wanted, _read_files)
    subsets = _subsets(loaded, max_train_samples, max_eval_samples, seed)
    provenance["examples"] = _counts(loaded, subsets)
    return RawData(subsets, provenance)


def load_test_data(task: str, data_dir: str | Path | None = None) -> RawData:
    """Every test split of a GLUE task (labels hidden, all examples: the benchmark server needs
    each one), read like the other splits: the local TSV, else the parquet copy, else the Hub;
    with the same provenance. A task without test splits (SQuAD) gives none."""
    spec = get_task(task)
    wanted = [test.split for test in spec.test_splits]
    if not wanted:
        return RawData({}, {})
    return RawData(*_load(spec, data_dir, wanted, _read_test_files))


def _load(
    spec: TaskSpec,
    data_dir: str | Path | None,
    splits: list[str],
    read: Callable[[TaskSpec, list[Path]], datasets.Dataset],
) -> tuple[dict[str, datasets.Dataset], dict[str, Any]]:
    """``splits`` and their provenance: a custom task's own files, else the local folder's
    (each split's files through ``read``), else the Hub's."""
    if spec.files:
        loaded = {split: read_custom_split(spec, split) for split in splits}
        return loaded, custom_provenance(spec, splits)
    root = resolve_data_dir(data_dir)
    if root is None:
        loaded = load_hub_splits(spec, splits)
        return loaded, hub_provenance(spec, loaded)
    with hub_offline():
        files = {split: local_split_files(spec, root, split) for split in splits}
        loaded = {split: read(spec, paths) for split, paths in files.items()}
    return loaded, local_provenance(spec, root, files)


def _read_files(spec: TaskSpec, files: list[Path]) -> datasets.Dataset:
    logger.info("%s: reading %s", spec.name, ", ".join(map(str, files)))
    if spec.kind == "squad":
        return read_squad_json(files[0])
    if files[0].suffix == ".tsv":
        return read_glue_tsv(files[0], spec)
    return read_glue_parquet(files[0].parent, spec)


def _read_test_files(spec: TaskSpec, files: list[Path]) -> datasets.Dataset:
    if files[0].suffix == ".tsv":
        return read_glue_test_tsv(files[0], spec)
    return read_glue_parquet(files[0].parent, spec, test=True)


def load_local_split(spec: TaskSpec, data_dir: Path, split: str) -> datasets.Dataset:
    """One split from ``data_dir``; GLUE prefers the TSV over the parquet copy when both exist."""
    return _read_files(spec, local_split_files(spec, data_dir, split))


def _counts(
    full: dict[str, datasets.Dataset], used: dict[str, datasets.Dataset]
) -> dict[str, dict[str, int]]:
    return {split: {"available": len(full[split]), "used": len(used[split])} for split in used}


def _carve(
    spec: TaskSpec,
    data_dir: str | Path | None,
    fraction: float,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    seed: int,
    *,
    into_eval: bool = False,
) -> RawData:
    """Split a fixed fraction off one split: off the first eval split into ``train``, or with
    ``into_eval`` off ``train`` into the (only) eval split. The two parts never overlap."""
    setting = "holdout_from_train" if into_eval else "carve_train_from_eval"
    if not 0 < fraction < 1:
        raise ValueError(f"data.{setting} must be in (0, 1), got {fraction}")
    first = spec.eval_splits[0]
    source = load_task_data(
        spec.name, data_dir, seed=seed, splits=["train"] if into_eval else spec.eval_splits
    )
    parts = source.splits["train" if into_eval else first].train_test_split(
        train_size=fraction, seed=seed, shuffle=True
    )
    if into_eval:
        loaded = {"train": parts["test"], first: parts["train"]}
    else:
        loaded = {"train": parts["train"], **source.splits, first: parts["test"]}
    subsets = _subsets(loaded, max_train_samples, max_eval_samples, seed)
    provenance = {**source.provenance, setting: {"split": first, "fraction": fraction}}
    provenance["examples"] = _counts(loaded, subsets)
    return RawData(subsets, provenance)


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
        split: _subset(
            ds,
            max_train_samples if split == "train" else max_eval_samples,
            seed,
            "data.max_train_samples" if split == "train" else "data.max_eval_samples",
        )
        for split, ds in loaded.items()
    }


def _subset(ds: datasets.Dataset, limit: int | None, seed: int, setting: str) -> datasets.Dataset:
    if limit is not None and limit <= 0:
        raise ValueError(
            f"{setting}={limit} leaves no examples: it must be positive, or null for all examples"
        )
    if limit is None or limit >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(limit))
