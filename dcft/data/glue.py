"""Read GLUE splits from local files: the GLUE distribution TSVs or the Hugging Face parquet layout.

Both readers return the columns of the Hub's ``nyu-mll/glue`` dataset (text fields, ``label``,
``idx``) with the same features, so the rest of the pipeline cannot tell the sources apart.
``idx`` of a TSV row is its 0-based data-row number; this equals the Hub's ``idx`` for every task
except MRPC, whose Hub ``idx`` counts rows of the original ``msr_paraphrase_train.txt``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from dcft.data.errors import DataFormatError
from dcft.data.tasks import TaskSpec


@dataclass(frozen=True)
class _TsvLayout:
    """Where one task's fields sit in its TSV: column names, or positions when there is no header."""

    folder: str
    columns: dict[str, str | int]
    header: bool = True


_TSV_LAYOUTS: dict[str, _TsvLayout] = {
    "cola": _TsvLayout("CoLA", {"sentence": 3, "label": 1}, header=False),
    "sst2": _TsvLayout("SST-2", {"sentence": "sentence", "label": "label"}),
    "mrpc": _TsvLayout(
        "MRPC", {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}
    ),
    "qqp": _TsvLayout(
        "QQP", {"question1": "question1", "question2": "question2", "label": "is_duplicate"}
    ),
    "stsb": _TsvLayout(
        "STS-B", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "score"}
    ),
    "mnli": _TsvLayout(
        "MNLI", {"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"}
    ),
    "qnli": _TsvLayout("QNLI", {"question": "question", "sentence": "sentence", "label": "label"}),
    "rte": _TsvLayout(
        "RTE", {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"}
    ),
}


def glue_folder(task: str) -> str:
    """The task's folder in the GLUE distribution layout (``glue/<folder>/*.tsv``)."""
    return _TSV_LAYOUTS[task].folder


_TSV_FILES = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}

# Tasks whose TSVs spell labels as words (in the Hub's ClassLabel order) rather than class ids.
_WORD_LABELS = frozenset({"mnli", "qnli", "rte"})


def glue_features(spec: TaskSpec) -> datasets.Features:
    """The features of the Hub's ``glue`` config for ``spec``."""
    label = (
        datasets.Value("float32")
        if spec.is_regression
        else datasets.ClassLabel(names=list(spec.label_names))
    )
    text = {field: datasets.Value("string") for field in spec.text_fields}
    return datasets.Features({**text, "label": label, "idx": datasets.Value("int32")})


def tsv_path(data_dir: Path, spec: TaskSpec, split: str) -> Path:
    return data_dir / "glue" / _TSV_LAYOUTS[spec.name].folder / _TSV_FILES[split]


def parquet_dir(data_dir: Path, spec: TaskSpec, split: str) -> Path:
    return data_dir / "glue_parquet" / str(spec.hub_config) / split


def read_glue_parquet(directory: Path, spec: TaskSpec) -> datasets.Dataset:
    """Read every ``*.parquet`` shard in ``directory`` (in name order) into memory."""
    shards = sorted(directory.glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no *.parquet files in {directory}")
    table = pa.concat_tables([pq.read_table(shard) for shard in shards])
    features = glue_features(spec)
    missing = [name for name in features if name not in table.column_names]
    if missing:
        raise DataFormatError(
            shards[0], None, f"missing columns {missing}; found {table.column_names}"
        )
    dataset = datasets.Dataset(table.select(list(features)))
    return dataset if dataset.features == features else dataset.cast(features)


def read_glue_tsv(path: Path, spec: TaskSpec) -> datasets.Dataset:
    """Parse one GLUE distribution TSV (quoting disabled: sentences contain quote characters)."""
    layout = _TSV_LAYOUTS[spec.name]
    parse_label = _label_parser(spec)
    columns: dict[str, list] = {name: [] for name in (*spec.text_fields, "label", "idx")}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        positions, width = _resolve_columns(reader, layout, path)
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise DataFormatError(
                    path, reader.line_num, f"expected {width} tab-separated fields, got {len(row)}"
                )
            for field in spec.text_fields:
                columns[field].append(row[positions[field]])
            try:
                columns["label"].append(parse_label(row[positions["label"]]))
            except ValueError as err:
                raise DataFormatError(path, reader.line_num, str(err)) from None
            columns["idx"].append(len(columns["idx"]))
    return datasets.Dataset.from_dict(columns, features=glue_features(spec))


def _resolve_columns(
    reader: Iterator[list[str]], layout: _TsvLayout, path: Path
) -> tuple[dict[str, int], int]:
    """Map each output field to a column position and give the row width.

    Consumes the header row when there is one; a headerless file (CoLA) is as wide as its last
    used column.
    """
    if not layout.header:
        positions = {field: int(col) for field, col in layout.columns.items()}
        return positions, max(positions.values()) + 1
    header = next(reader, None)
    if header is None:
        raise DataFormatError(path, 1, "empty file: expected a header row")
    missing = [col for col in layout.columns.values() if col not in header]
    if missing:
        raise DataFormatError(path, 1, f"header lacks columns {missing}; found {header}")
    return {field: header.index(col) for field, col in layout.columns.items()}, len(header)


def _label_parser(spec: TaskSpec) -> Callable[[str], int | float]:
    if spec.is_regression:
        return _parse_score
    if spec.name in _WORD_LABELS:
        words = {name: i for i, name in enumerate(spec.label_names)}

        def parse_word(value: str) -> int:
            if value not in words:
                raise ValueError(f"label {value!r} is not one of {sorted(words)}")
            return words[value]

        return parse_word
    ids = {str(i): i for i in range(spec.num_labels)}

    def parse_id(value: str) -> int:
        if value not in ids:
            raise ValueError(f"label {value!r} is not one of {sorted(ids)}")
        return ids[value]

    return parse_id


def _parse_score(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"score {value!r} is not a number") from None
