"""``task=custom``: a text-classification or regression task from your own files, as
``run_glue.py --train_file --validation_file [--test_file]`` takes them.

Files: CSV (``.csv``), TSV (``.tsv``) with a header row, or JSON lines (``.json``/``.jsonl``, one
object per line). The label column is ``task.label_column`` (``label``); the text columns are
``task.text_columns``, or as run_glue picks them: ``sentence1`` and ``sentence2`` when both
exist, else the first two other columns, else the only one. Regression when ``task.regression``
says so, or (null) when every training label is a number and not all are whole ones (run_glue's
float dtype); otherwise the classes are the training file's labels, sorted. Every file is checked
like the GLUE files (columns present, labels known and, for regression, finite numbers, at
least one example); a breach is a ``DataFormatError`` naming the file and the line.

The task's :class:`TaskSpec` depends on the files, so the runner registers it for the run
(:func:`use_task_config`); its key holds the files' examples
(:func:`dcft.data.fingerprint.custom_fingerprint`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcft.data.errors import DataFormatError, DataUnavailableError, read_utf8
from dcft.data.provenance import cached_sha256
from dcft.data.tasks import TaskSpec, TestSplit, TsvLayout, register_task

if TYPE_CHECKING:  # reading a split loads datasets: a dry run's fingerprints come from the cache
    import datasets

CUSTOM = "custom"
SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
# The splits and the task-config keys naming their files.
FILE_KEYS = {"train": "train_file", "validation": "validation_file", "test": "test_file"}
# The test split's predictions (run_glue's predict_results file, as a TSV).
TEST_PREDICTIONS = "predictions.tsv"

Row = tuple[int, dict[str, Any]]


def read_rows(path: Path) -> tuple[list[str], list[Row]]:
    """The columns and the (line, values) rows of a CSV, TSV or JSON-lines file."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataFormatError(
            path, None, f"unknown file type {suffix!r}; valid: {', '.join(SUFFIXES)}"
        )
    text = read_utf8(path)
    rows = _json_rows(path, text) if suffix in (".json", ".jsonl") else _table_rows(path, text)
    if not rows:
        raise DataFormatError(path, None, "no examples: the file has no data rows")
    return list(rows[0][1]), rows


def _json_rows(path: Path, text: str) -> list[Row]:
    rows = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            values = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, line, f"invalid JSON: {err.msg}") from None
        if not isinstance(values, dict):
            raise DataFormatError(path, line, "not a JSON object (JSON lines: one per line)")
        rows.append((line, values))
    return rows


def _table_rows(path: Path, text: str) -> list[Row]:
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter="\t" if path.suffix == ".tsv" else ","
    )
    header = next(reader, None)
    if header is None:
        raise DataFormatError(path, None, "no examples: the file is empty (not even a header row)")
    rows = []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise DataFormatError(
                path, reader.line_num, f"expected {len(header)} fields, got {len(row)}"
            )
        rows.append((reader.line_num, dict(zip(header, row, strict=True))))
    return rows


def infer_text_columns(columns: list[str], label_column: str) -> list[str]:
    """run_glue's rule: sentence1 and sentence2 if both exist, else the first two columns that
    are not the label, else the only one."""
    others = [c for c in columns if c != label_column]
    if "sentence1" in others and "sentence2" in others:
        return ["sentence1", "sentence2"]
    return others[:2]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _whole(value: Any) -> bool:
    """A whole number as written (``3``, not ``3.0``): what makes run_glue's dtype integer."""
    return isinstance(value, int) or (
        isinstance(value, str) and value.strip().lstrip("+-").isdigit()
    )


def _label_token(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _check_columns(path: Path, columns: list[str], wanted: list[str], line: int) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataFormatError(path, line, f"lacks columns {missing}; found {columns}")


def custom_spec(task: Mapping[str, Any]) -> TaskSpec:
    """The task's spec from its config (``conf/task/custom.yaml``) and its training file."""
    files = {split: task.get(key) for split, key in FILE_KEYS.items() if task.get(key)}
    for split, path in files.items():
        if not Path(path).is_file():
            raise DataUnavailableError(f"task.{FILE_KEYS[split]}: no such file {path}")
    train = Path(task["train_file"])
    columns, rows = read_rows(train)
    label_column = str(task["label_column"])
    texts = list(task.get("text_columns") or infer_text_columns(columns, label_column))
    for name in texts:
        if name in ("label", "idx"):
            raise ValueError(f"task.text_columns: a text column may not be named {name!r}")
    _check_columns(train, columns, [*texts, label_column], rows[0][0])
    for line, values in rows:
        if values.get(label_column) in (None, ""):
            raise DataFormatError(train, line, f"no label in column {label_column!r}")
    labels = [values[label_column] for _, values in rows]
    regression = task.get("regression")
    if regression is None:
        regression = all(map(_is_number, labels)) and not all(map(_whole, labels))
    names: tuple[str, ...] = ()
    if not regression:
        tokens = {_label_token(v) for v in labels}
        numeric = all(map(_is_number, tokens))
        names = tuple(sorted(tokens, key=(lambda t: (float(t), t)) if numeric else None))
    return TaskSpec(
        name=CUSTOM,
        label="custom",
        kind="glue",
        hub_id="",
        hub_config=None,
        text_fields=tuple(texts),
        num_labels=max(len(names), 1),
        label_names=names,
        metrics=("pearson", "spearman")
        if regression
        else ("accuracy", *(("f1",) if len(names) == 2 else ())),
        eval_splits=("validation",),
        max_length=int(task["max_length"]),
        tsv=TsvLayout("", (*((t, t) for t in texts), ("label", label_column)), word_labels=True),
        test_splits=(TestSplit("test", str(files["test"]), TEST_PREDICTIONS),)
        if "test" in files
        else (),
        test_columns=(*((t, t) for t in texts), ("idx", "")),
        files=tuple((split, str(path)) for split, path in files.items()),
    )


def use_task_config(task: Mapping[str, Any]) -> None:
    """Register ``task=custom``'s spec for this process (a no-op for the built-in tasks)."""
    if task["name"] == CUSTOM:
        register_task(custom_spec(task))


def custom_files(spec: TaskSpec) -> dict[str, Path]:
    return {split: Path(path) for split, path in spec.files}


def read_custom_split(spec: TaskSpec, split: str) -> datasets.Dataset:
    """One split as a GLUE split: the text fields, ``label`` (a class id or a score; -1 in the
    test split, whose labels are not read) and ``idx`` (the 0-based data row)."""
    import datasets

    from dcft.data.glue import glue_features

    path = custom_files(spec)[split]
    columns, rows = read_rows(path)
    label_column = dict(spec.tsv.columns)["label"] if spec.tsv else "label"
    test = split == "test"
    _check_columns(
        path, columns, [*spec.text_fields, *([] if test else [label_column])], rows[0][0]
    )
    out: dict[str, list] = {name: [] for name in (*spec.text_fields, "label", "idx")}
    for row, (line, values) in enumerate(rows):
        for field in spec.text_fields:
            if values.get(field) is None:
                raise DataFormatError(path, line, f"no text in column {field!r}")
            out[field].append(str(values[field]))
        out["label"].append(-1 if test else _label(spec, values.get(label_column), path, line))
        out["idx"].append(row)
    return datasets.Dataset.from_dict(out, features=glue_features(spec))


def _label(spec: TaskSpec, value: Any, path: Path, line: int) -> int | float:
    if spec.is_regression:
        number = float(value) if _is_number(value) else math.nan
        if not math.isfinite(number):
            raise DataFormatError(path, line, f"label {value!r} is not a finite number")
        return number
    token = None if value in (None, "") else _label_token(value)
    if token not in spec.label_names:
        raise DataFormatError(
            path,
            line,
            f"label {value!r} is not one of {list(spec.label_names)} (the training file's labels)",
        )
    return spec.label_names.index(token)


def custom_provenance(spec: TaskSpec, splits: list[str]) -> dict[str, Any]:
    """The record's ``data`` section: each file's path, size and sha256, and what was inferred
    from the training file (text columns, labels or regression)."""
    files = custom_files(spec)
    return {
        "source": "local",
        "dir": None,
        "files": {
            split: [
                {
                    "path": str(files[split].resolve()),
                    "bytes": files[split].stat().st_size,
                    "sha256": cached_sha256(files[split]),
                }
            ]
            for split in splits
        },
        "task": {
            "text_columns": list(spec.text_fields),
            "labels": list(spec.label_names),
            "regression": spec.is_regression,
        },
        "warnings": [],
    }
