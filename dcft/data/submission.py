"""Predictions in the files their official scorers take.

- GLUE test sets: the benchmark server's files (``CoLA.tsv`` ... ``MNLI-m.tsv``, ``MNLI-mm.tsv``;
  ``TestSplit.submission``), a header ``index<TAB>prediction`` then one row per test example
  (its ``index``), the label as the server reads it: the word for MNLI, QNLI and RTE (whose
  TSVs spell labels as words), the class id (0/1) for CoLA, SST-2, MRPC and QQP, and for STS-B
  the score clipped to [0, 5] with three decimals. A custom task's test file gets the same
  format (``predictions.tsv``; its labels as written in its training file, scores unclipped).
- GLUE dev sets: ``{idx: label}`` (the same labels, STS-B unclipped), what ``python -m
  dcft.score TASK FILE`` scores.
- SQuAD dev sets: ``run_qa``'s ``predictions.json`` (``{id: answer}``), ``nbest_predictions.json``
  and, for v2.0, ``null_odds.json`` (``{id: null score - best span score}``, the official v2.0
  script's ``--na-prob-file``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dcft.data.tasks import TaskSpec

# The score range the GLUE server takes, per regression task.
SERVER_RANGES = {"stsb": (0.0, 5.0)}


def glue_labels(spec: TaskSpec, predictions: Any, *, clip: bool = False) -> list[Any]:
    """Class ids or scores (or logits, arg-maxed) -> the labels the GLUE server and
    ``dcft.score`` read; ``clip`` keeps STS-B scores in the server's [0, 5]."""
    values = np.asarray(predictions)
    if spec.is_regression:
        scores = values.reshape(-1).astype(np.float64)
        limits = SERVER_RANGES.get(spec.name) if clip else None
        return (np.clip(scores, *limits) if limits else scores).tolist()
    ids = values.argmax(axis=-1) if values.ndim == 2 else values
    if spec.tsv is not None and spec.tsv.word_labels:
        return [spec.label_names[int(i)] for i in ids]
    return [int(i) for i in ids]


def glue_dev_predictions(spec: TaskSpec, idx: Sequence[int], predictions: Any) -> dict[str, Any]:
    """``{idx: label}`` of one dev split, as ``python -m dcft.score`` takes it."""
    labels = glue_labels(spec, predictions)
    return {str(int(i)): label for i, label in zip(idx, labels, strict=True)}


def glue_submission_tsv(spec: TaskSpec, idx: Sequence[int], logits: Any) -> str:
    """One GLUE server file: ``index<TAB>prediction`` and a row per test example."""
    labels = glue_labels(spec, logits, clip=True)
    rows = [
        f"{int(i)}\t{f'{label:.3f}' if spec.is_regression else label}"
        for i, label in zip(idx, labels, strict=True)
    ]
    return "\n".join(["index\tprediction", *rows]) + "\n"


def squad_prediction_files(
    spec: TaskSpec,
    texts: Mapping[str, str],
    nbest: Mapping[str, Any],
    null_score_diffs: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """``run_qa``'s files of one SQuAD dev split, by file name."""
    files = {"predictions.json": dict(texts), "nbest_predictions.json": dict(nbest)}
    if spec.squad_version == "v2.0":
        files["null_odds.json"] = dict(null_score_diffs)
    return files
