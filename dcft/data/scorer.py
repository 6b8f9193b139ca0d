"""Predictions -> metrics for one eval split (GLUE metrics; SQuAD post-processing then EM/F1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig

from dcft.data import (
    get_task,
    postprocess_squad,
)
from dcft.data.features import TaskData
from dcft.data.metrics import glue_metrics, squad_metrics
from dcft.data.tasks import TaskKind


class Scorer:
    """Metrics of one eval split from the Trainer's predictions; keeps the last predictions of
    every split (JSON-ready) so the record's numbers can be recomputed independently, and for
    SQuAD their n-best lists (``nbest``)."""

    def __init__(self, task: DictConfig, data: TaskData) -> None:
        self.task = task
        self.spec = get_task(task.name)
        self.data = data
        self.predictions: dict[str, dict[str, Any]] = {}
        self.nbest: dict[str, dict[str, Any]] = {}
        by_kind: dict[TaskKind, Callable[[str, Any, Any], dict[str, float]]] = {
            "glue": self._glue,
            "squad": self._squad,
        }
        self._score = by_kind[self.spec.kind]

    def __call__(self, split: str, predictions: Any, label_ids: Any) -> dict[str, float]:
        return self._score(split, predictions, label_ids)

    def _glue(self, split: str, predictions: Any, label_ids: Any) -> dict[str, float]:
        logits, labels = np.asarray(predictions), np.asarray(label_ids)
        # float64 so that the saved predictions reproduce the metrics exactly
        preds = (
            logits.reshape(-1).astype(np.float64)
            if self.spec.is_regression
            else logits.argmax(axis=-1)
        )
        self.predictions[split] = {"predictions": preds.tolist(), "labels": labels.tolist()}
        return glue_metrics(self.spec.name, preds, labels, split=split)

    def _squad(self, split: str, logits: Sequence[np.ndarray], _: Any) -> dict[str, float]:
        """``logits`` are (start, end); the gold answers come from the raw eval examples."""
        start, end = logits
        version_2 = self.spec.squad_version == "v2.0"
        examples = self.data.eval_examples[split]
        threshold = self.task.null_score_diff_threshold
        answers = postprocess_squad(
            examples,
            self.data.eval[split],
            start,
            end,
            n_best_size=self.task.n_best_size,
            max_answer_length=self.task.max_answer_length,
            version_2=version_2,
            null_score_diff_threshold=threshold,
        )
        self.nbest[split] = answers.nbest
        if not version_2:
            self.predictions[split] = {"predictions": answers.texts}
            return squad_metrics(answers.texts, examples)
        # The null-score differences are the official v2 script's na_probs: they give the best
        # thresholds, and at the threshold used for the answers they change no score.
        diffs = answers.null_score_diffs
        self.predictions[split] = {"predictions": answers.texts, "null_score_diffs": diffs}
        return squad_metrics(
            answers.texts, examples, version_2=True, na_probs=diffs, na_prob_thresh=threshold
        )
