"""The data part of a run's key (``data.fingerprint``): what the examples ARE, not which bytes
hold them.

The fingerprint digests every split's examples as the readers return them (each example's text
fields and label, SQuAD's answers, in order), so the same GLUE release read from the TSVs, the
parquet copy or the Hub's cache gives the same key, and a copy whose examples differ (one label,
one sentence, the order) gets another. What a run never sees is left out: GLUE's ``idx`` (MRPC's
TSV and Hub numberings differ), SQuAD's ids and titles, columns the readers skip, the files'
encoding and layout. The record's ``data`` section still lists the files' sha256 (provenance).

Reading a task to digest it takes seconds (SST-2's 67k training sentences), so a fingerprint is
computed once per version of the files: kept for the process, and on disk in
``$DCFT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/dcft``, else ``~/.cache/dcft``) keyed by each
file's path, size and modification time; a rewritten file is read again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcft.data.custom import custom_files, custom_spec, read_custom_split
from dcft.data.errors import DataUnavailableError
from dcft.data.location import local_split_files, resolve_data_dir
from dcft.data.tasks import TaskSpec, get_task

if TYPE_CHECKING:  # the readers load datasets: only when a fingerprint is computed
    import datasets

# Names the digest's layout; a change of layout must change it (every key changes with it).
FORMAT = "dcft-examples/1"
CACHE_DIR_ENV = "DCFT_CACHE_DIR"
# The fingerprint of a task none of whose splits can be found: its runs cannot train here (the
# run stops with the data layer's error when it loads), but a dry run still lists them.
UNAVAILABLE = "unavailable"

_computed: dict[str, str] = {}


def data_fingerprint(task: str, data_dir: str | Path | None) -> str:
    """16 hex digits naming the examples of every split of ``task`` found in ``data_dir`` (or
    ``$DCFT_DATA_DIR``; neither: the Hub's copy); splits absent there (a training set the
    folder lacks) are left out, as they are from what the run can use."""
    spec = get_task(task)
    try:
        root = resolve_data_dir(data_dir)
    except DataUnavailableError:
        return f"absent:{data_dir}"  # the run itself stops with the clear error when loading
    if root is None:
        return _hub_fingerprint(spec)
    files = {}
    for split in spec.splits:
        try:
            files[split] = local_split_files(spec, root, split)
        except DataUnavailableError:
            continue
    if not files:
        return UNAVAILABLE
    return _cached(
        spec.name,
        [path for paths in files.values() for path in paths],
        lambda: _local_examples(spec, root, files),
    )


def _local_examples(spec: TaskSpec, root: Path, files: Mapping[str, Any]) -> str:
    from dcft.data.sources import load_local_split

    return examples_fingerprint(
        spec, {split: load_local_split(spec, root, split) for split in files}
    )


def custom_fingerprint(task: Mapping[str, Any]) -> str:
    """``task=custom``'s fingerprint from its config: the examples of its training and
    validation files as the run reads them (the same examples in another folder, file type or
    column order keep the key). The cache entry also names what was chosen or inferred from the
    files (text columns, label column, labels), which decides what an example is."""
    try:
        spec = custom_spec(task)
    except DataUnavailableError:
        return f"absent:{task.get('train_file')}"  # the run stops with the clear error first
    files = custom_files(spec)
    splits = [split for split in spec.splits if split in files]
    choices = [spec.text_fields, dict(spec.tsv.columns)["label"], spec.label_names]
    return _cached(
        f"{spec.name}:{json.dumps(choices)}",
        [files[split] for split in splits],
        lambda: examples_fingerprint(spec, {s: read_custom_split(spec, s) for s in splits}),
    )


def examples_fingerprint(spec: TaskSpec, splits: Mapping[str, datasets.Dataset]) -> str:
    """The digest of each split's examples in order: per split its name and, per column of
    ``spec.example_columns``, the JSON list of the column's values."""
    digest = hashlib.sha256(FORMAT.encode())
    for split in (s for s in spec.splits if s in splits):
        table = splits[split].with_format("arrow")[:]
        columns = {name: table.column(name).to_pylist() for name in spec.example_columns}
        digest.update(
            b"\0" + json.dumps([split, columns], ensure_ascii=False, sort_keys=True).encode()
        )
    return digest.hexdigest()[:16]


def _hub_fingerprint(spec: TaskSpec) -> str:
    """The Hub's copy (its local cache when offline), loaded once per process and cache folder."""
    import datasets

    from dcft.data.hub import load_hub_splits

    memo = f"hub:{spec.name}:{datasets.config.HF_DATASETS_CACHE}"
    if memo not in _computed:
        try:
            loaded = load_hub_splits(spec, spec.splits)
        except DataUnavailableError:
            _computed[memo] = UNAVAILABLE  # asked again per run: never wait for the Hub twice
            return UNAVAILABLE
        files = [Path(f["filename"]) for ds in loaded.values() for f in ds.cache_files]
        _computed[memo] = _cached(spec.name, files, lambda: examples_fingerprint(spec, loaded))
    return _computed[memo]


def _cached(task: str, files: list[Path], compute: Callable[[], str]) -> str:
    """``compute()``, remembered for the process and on disk under the task's name and the
    files' identity."""
    identity: dict[str, Any] = {
        "format": FORMAT,
        "task": task,
        "files": [_file_identity(path) for path in files],
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    if key in _computed:
        return _computed[key]
    stored = cache_dir() / "data-fingerprints" / f"{key}.json"
    fingerprint = _read_cached(stored, identity)
    if fingerprint is None:
        fingerprint = compute()
        _write_cached(stored, {**identity, "fingerprint": fingerprint})
    _computed[key] = fingerprint
    return fingerprint


def _file_identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def cache_dir() -> Path:
    """``$DCFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dcft``, else ``~/.cache/dcft``."""
    chosen = os.environ.get(CACHE_DIR_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcft"


def _read_cached(path: Path, identity: Mapping[str, Any]) -> str | None:
    """The stored fingerprint, if the entry is readable and for these files (else recomputed)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in identity.items()):
        return None
    fingerprint = entry.get("fingerprint")
    return fingerprint if isinstance(fingerprint, str) else None


def _write_cached(path: Path, entry: Mapping[str, Any]) -> None:
    """Best effort: a cache that cannot be written only costs the next process the reading.
    Concurrent writers of one entry write the same bytes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except OSError:
        pass
