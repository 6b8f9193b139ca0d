"""Read GLUE splits from local files: the GLUE distribution TSVs or the Hugging Face parquet layout.

Both readers return the columns of the Hub's ``nyu-mll/glue`` dataset (text fields, ``label``,
``idx``) with the same features, so the rest of the pipeline cannot tell the sources apart.
``idx`` of a TSV row is its 0-based data-row number; this equals the Hub's ``idx`` for every task
except MRPC, whose Hub ``idx`` counts rows of the original ``msr_paraphrase_train.txt``.

Nothing malformed gets through: labels must be in the task's label set, STS-B scores in [0, 5]
(so no NaN or inf), files UTF-8 with at least one example; each breach is a ``DataFormatError``
naming the file and the line (TSV) or row (parquet).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dcft.data.errors import DataFormatError, read_utf8
from dcft.data.location import glue_layout
from dcft.data.tasks import TaskSpec, TsvLayout


def glue_features(spec: TaskSpec) -> datasets.Features:
    """The features of the Hub's ``glue`` config for ``spec``."""
    label = (
        datasets.Value("float32")
        if spec.is_regression
        else datasets.ClassLabel(names=list(spec.label_names))
    )
    text = {field: datasets.Value("string") for field in spec.text_fields}
    return datasets.Features({**text, "label": label, "idx": datasets.Value("int32")})


def read_glue_parquet(directory: Path, spec: TaskSpec, *, test: bool = False) -> datasets.Dataset:
    """Read every ``*.parquet`` shard in ``directory`` (in name order) into memory; a ``test``
    split's labels are hidden (-1) and not checked."""
    shards = sorted(directory.glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no *.parquet files in {directory}")
    features = glue_features(spec)
    tables = [_read_parquet_shard(shard, spec, features, test) for shard in shards]
    table = pa.concat_tables(tables)
    if table.num_rows == 0:
        raise DataFormatError(directory, None, "no examples: its *.parquet files have no rows")
    dataset = datasets.Dataset(table)
    return dataset if dataset.features == features else dataset.cast(features)


def _read_parquet_shard(
    shard: Path, spec: TaskSpec, features: datasets.Features, test: bool
) -> pa.Table:
    """One shard's columns of ``features``, its labels checked against the task's label set
    unless it is a test split."""
    table = pq.read_table(shard)
    missing = [name for name in features if name not in table.column_names]
    if missing:
        raise DataFormatError(shard, None, f"missing columns {missing}; found {table.column_names}")
    if not test:
        _check_parquet_labels(shard, table["label"], spec)
    return table.select(list(features))


def _check_parquet_labels(shard: Path, labels: pa.ChunkedArray, spec: TaskSpec) -> None:
    """Class ids must be in ``range(num_labels)``, STS-B scores in [0, 5]; nulls are errors."""
    if spec.is_regression:
        valid = pc.and_(pc.greater_equal(labels, 0.0), pc.less_equal(labels, 5.0))  # NaN: false
    else:
        valid = pc.is_in(labels, value_set=pa.array(range(spec.num_labels), type=labels.type))
    bad = pc.indices_nonzero(pc.invert(pc.fill_null(valid, False)))
    if len(bad) == 0:
        return
    row = bad[0].as_py()
    value = labels[row].as_py()
    problem = (
        _score_problem(value)
        if spec.is_regression
        else f"label {value!r} is not one of {list(range(spec.num_labels))}"
    )
    raise DataFormatError(shard, None, problem, record=f"row {row}")


def read_glue_tsv(path: Path, spec: TaskSpec) -> datasets.Dataset:
    """Parse one GLUE distribution TSV (quoting disabled: sentences contain quote characters)."""
    parse_label = _label_parser(spec)

    def label_and_idx(values: dict[str, str], row: int) -> tuple[int | float, int]:
        return parse_label(values["label"]), row

    return _read_tsv(path, spec, glue_layout(spec), label_and_idx)


def read_glue_test_tsv(path: Path, spec: TaskSpec) -> datasets.Dataset:
    """Parse a GLUE test TSV (no labels; ``TaskSpec.test_columns``): the text fields, ``idx``
    from its index column (what the benchmark server matches predictions by) and ``label`` -1."""

    def hidden_label(values: dict[str, str], row: int) -> tuple[int, int]:
        if not values["idx"].isdigit():
            raise ValueError(f"index {values['idx']!r} is not a whole number")
        return -1, int(values["idx"])

    layout = TsvLayout(glue_layout(spec).folder, spec.test_columns)
    return _read_tsv(path, spec, layout, hidden_label)


def _read_tsv(
    path: Path,
    spec: TaskSpec,
    layout: TsvLayout,
    label_and_idx: Callable[[dict[str, str], int], tuple[int | float, int]],
) -> datasets.Dataset:
    """The text fields of every row of ``layout``'s columns, with the label and idx that
    ``label_and_idx`` makes of the row's values and its 0-based number (its ValueError names
    the line)."""
    columns: dict[str, list] = {name: [] for name in (*spec.text_fields, "label", "idx")}
    rows = _numbered_rows(path)
    positions, width = _resolve_columns(rows, layout, path)
    for line, row in rows:
        if len(row) != width:
            raise DataFormatError(
                path, line, f"expected {width} tab-separated fields, got {len(row)}"
            )
        values = {field: row[position] for field, position in positions.items()}
        for field in spec.text_fields:
            columns[field].append(values[field])
        try:
            label, idx = label_and_idx(values, len(columns["idx"]))
        except ValueError as err:
            raise DataFormatError(path, line, str(err)) from None
        columns["label"].append(label)
        columns["idx"].append(idx)
    if not columns["idx"]:
        raise DataFormatError(path, None, "no examples: the file has no data rows")
    return datasets.Dataset.from_dict(columns, features=glue_features(spec))


def _numbered_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows of a TSV with their line numbers, streamed; the file must be UTF-8 and its
    fields within the csv module's size limit."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                if row:
                    yield reader.line_num, row
        except csv.Error as err:  # with quoting off, only "field larger than field limit"
            problem = f"field too large ({err}); is a tab or line break missing?"
            raise DataFormatError(path, reader.line_num, problem) from None
        except UnicodeDecodeError:
            read_utf8(path)  # the whole file again: raises DataFormatError at the first bad byte
            raise


def _resolve_columns(
    rows: Iterator[tuple[int, list[str]]], layout: TsvLayout, path: Path
) -> tuple[dict[str, int], int]:
    """Map each output field to a column position and give the row width.

    Consumes the header row when there is one; a headerless file (CoLA) is as wide as its last
    used column.
    """
    if not layout.header:
        positions = {field: int(col) for field, col in layout.columns}
        return positions, max(positions.values()) + 1
    first = next(rows, None)
    if first is None:
        raise DataFormatError(path, None, "no examples: the file is empty (not even a header row)")
    line, header = first
    missing = [col for _, col in layout.columns if col not in header]
    if missing:
        raise DataFormatError(path, line, f"header lacks columns {missing}; found {header}")
    return {field: header.index(col) for field, col in layout.columns}, len(header)


def _label_parser(spec: TaskSpec) -> Callable[[str], int | float]:
    if spec.is_regression:
        return _parse_score
    if glue_layout(spec).word_labels:
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
        score = float(value)
    except ValueError:
        score = math.nan
    if not 0.0 <= score <= 5.0:  # also false for NaN
        raise ValueError(_score_problem(value))
    return score


def _score_problem(value: object) -> str:
    return f"score {value!r} is not a number in [0, 5] (the STS-B similarity range)"
