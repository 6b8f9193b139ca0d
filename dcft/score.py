"""Score a predictions file against a task's dev set and print the metrics as one JSON object.

    python -m dcft.score squad_v1 predictions.json            # {id: answer text}
    python -m dcft.score squad_v2 predictions.json --na-prob na_prob.json
    python -m dcft.score rte predictions.json                 # {idx: label}

The dev set is the one a run would use (``$DCFT_DATA_DIR``, else the Hugging Face Hub) unless
``--data`` names a file: a SQuAD JSON, a GLUE TSV or a GLUE parquet file. SQuAD prints what the
official evaluate-v1.1.py / evaluate-v2.0.py print (same code as the runner's metrics); GLUE
prints :func:`dcft.data.metrics.glue_metrics`. GLUE labels are class ids or label names (STS-B:
scores); ``idx`` is the dataset's ``idx`` column (the row number of a TSV). Bad input exits with
status 2 and a message naming it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq

from dcft.cli import OneLineParser
from dcft.data import TASKS, TaskSpec, get_task, load_raw_splits
from dcft.data.glue import read_glue_tsv
from dcft.data.metrics import check_labels_visible, glue_metrics, squad_v1_scores, squad_v2_scores
from dcft.data.squad import read_squad_json


class ScoreInputError(ValueError):
    """A predictions, na-prob or data file that cannot be scored; the message says why."""


def score(
    task: str,
    predictions_file: Path,
    data: Path | None = None,
    split: str | None = None,
    na_prob_file: Path | None = None,
) -> dict[str, float]:
    """Metrics of ``predictions_file`` on ``task``'s ``split`` (default: its first eval split)."""
    spec = get_task(task)
    split = _check_split(spec, split)
    if na_prob_file is not None and spec.name != "squad_v2":
        raise ScoreInputError(f"--na-prob only applies to squad_v2, not {spec.name}")
    predictions = _read_json_object(predictions_file, "predictions")
    if spec.kind == "squad":
        return _score_squad(spec, split, predictions_file, predictions, data, na_prob_file)
    return _score_glue(spec, split, predictions_file, predictions, data)


def _score_squad(
    spec: TaskSpec,
    split: str,
    predictions_file: Path,
    predictions: dict[str, Any],
    data: Path | None,
    na_prob_file: Path | None,
) -> dict[str, float]:
    references = read_squad_json(data) if data else _dev_split(spec, split)
    dev_set = f"{spec.name} ({data or split})"
    _check_ids(references["id"], predictions, predictions_file, dev_set)
    _check_values(predictions, str, "answer text", predictions_file)
    if spec.name == "squad_v1":
        return squad_v1_scores(predictions, references)
    na_probs = None
    if na_prob_file is not None:
        na_probs = _read_json_object(na_prob_file, "na-prob")
        _check_ids(references["id"], na_probs, na_prob_file, dev_set)
        _check_values(na_probs, (int, float), "number", na_prob_file)
    return squad_v2_scores(predictions, references, na_probs)


def _score_glue(
    spec: TaskSpec,
    split: str,
    predictions_file: Path,
    predictions: dict[str, Any],
    data: Path | None,
) -> dict[str, float]:
    idx, labels = _glue_gold(spec, split, data)
    source = str(data or split)
    # first: a test file is refused for its hidden labels, not for its (different) ids
    check_labels_visible(spec.name, labels, source)
    by_idx = _int_keys(predictions, predictions_file)
    _check_ids(idx, by_idx, predictions_file, f"{spec.name} ({source})")
    preds = [_glue_label(spec, by_idx[i], predictions_file) for i in idx]
    return glue_metrics(spec.name, preds, labels, source)


def _check_split(spec: TaskSpec, split: str | None) -> str:
    if split is None:
        return spec.eval_splits[0]
    if split not in spec.eval_splits:
        raise ScoreInputError(
            f"unknown split {split!r} for {spec.name}; valid choices: {list(spec.eval_splits)}"
        )
    return split


def _dev_split(spec: TaskSpec, split: str) -> datasets.Dataset:
    return load_raw_splits(spec.name, splits=[split])[split]


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScoreInputError(f"cannot read {what} file {path}: {err}") from None
    if not isinstance(loaded, dict):
        raise ScoreInputError(
            f"{what} file {path} holds a JSON {type(loaded).__name__}; expected an object "
            "{id: value}"
        )
    return loaded


def _check_ids(expected: Sequence[Any], given: Mapping[Any, Any], path: Path, dev_set: str) -> None:
    """Every question/example of the dev set exactly once, and nothing else."""
    wanted = set(expected)
    missing = [i for i in expected if i not in given]
    unknown = [i for i in given if i not in wanted]
    if missing or unknown:
        raise ScoreInputError(
            f"{path} does not match the ids of {dev_set} ({len(wanted)} examples): "
            f"{len(missing)} missing (first: {missing[:3]}), "
            f"{len(unknown)} unknown (first: {unknown[:3]})"
        )


def _check_values(
    values: Mapping[str, Any], kind: type | tuple[type, ...], what: str, path: Path
) -> None:
    bad = [k for k, v in values.items() if not isinstance(v, kind) or isinstance(v, bool)]
    if bad:
        raise ScoreInputError(f"{path}: values for {bad[:3]} are not {what}s")


def _glue_gold(spec: TaskSpec, split: str, data: Path | None) -> tuple[list[int], list[Any]]:
    """``idx`` and ``label`` columns of the dev set, or of the ``--data`` TSV / parquet file."""
    if data is None:
        dataset = _dev_split(spec, split)
        return list(dataset["idx"]), list(dataset["label"])
    if data.suffix == ".tsv":
        dataset = read_glue_tsv(data, spec)
        return list(dataset["idx"]), list(dataset["label"])
    if data.suffix == ".parquet":
        columns = pq.read_table(data, columns=["idx", "label"]).to_pydict()
        return columns["idx"], columns["label"]
    raise ScoreInputError(f"--data {data}: a GLUE dev file must be a .tsv or a .parquet file")


def _int_keys(predictions: Mapping[str, Any], path: Path) -> dict[int, Any]:
    try:
        return {int(key): value for key, value in predictions.items()}
    except ValueError:
        raise ScoreInputError(f"{path}: GLUE predictions need integer idx keys") from None


def _glue_label(spec: TaskSpec, value: Any, path: Path) -> float | int:
    if spec.is_regression and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if value in spec.label_names:
        return spec.label_names.index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < spec.num_labels:
        return value
    expected = (
        "a number" if spec.is_regression else f"0-{spec.num_labels - 1} or {spec.label_names}"
    )
    raise ScoreInputError(
        f"{path}: label {value!r} is not valid for {spec.name}: expected {expected}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m dcft.score", description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=sorted(TASKS), metavar="TASK", help=", ".join(TASKS))
    parser.add_argument("predictions", type=Path, metavar="PREDICTIONS.json")
    parser.add_argument(
        "--data", type=Path, help="explicit dev file (SQuAD JSON, GLUE tsv/parquet)"
    )
    parser.add_argument("--split", help="eval split (default: the task's first, e.g. MNLI matched)")
    parser.add_argument("--na-prob", type=Path, help="SQuAD v2: {id: no-answer score} JSON")
    args = parser.parse_args(argv)
    try:
        scores = score(args.task, args.predictions, args.data, args.split, args.na_prob)
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(json.dumps(scores, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
