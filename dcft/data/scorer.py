"""Predictions -> metrics for one eval split (GLUE metrics; SQuAD post-processing then EM/F1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig

from dcft.data import (
    get_task,
    postprocess_squad,
)
from dcft.data.features import TaskData
from dcft.data.metrics import glue_metrics, squad_metrics


class Scorer:
    """Metrics of one eval split from the Trainer's predictions; keeps the last predictions of
    every split (JSON-ready) so the record's numbers can be recomputed independently."""

    def __init__(self, task: DictConfig, data: TaskData) -> None:
        self.task = task
        self.spec = get_task(task.name)
        self.data = data
        self.predictions: dict[str, dict[str, Any]] = {}

    def __call__(self, split: str, predictions: Any, label_ids: Any) -> dict[str, float]:
        if self.spec.kind == "glue":
            return self._glue(split, np.asarray(predictions), np.asarray(label_ids))
        return self._squad(split, predictions)

    def _glue(self, split: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        # float64 so that the saved predictions reproduce the metrics exactly
        preds = (
            logits.reshape(-1).astype(np.float64)
            if self.spec.is_regression
            else logits.argmax(axis=-1)
        )
        self.predictions[split] = {"predictions": preds.tolist(), "labels": labels.tolist()}
        return glue_metrics(self.spec.name, preds, labels, split=split)

    def _squad(self, split: str, logits: Sequence[np.ndarray]) -> dict[str, float]:
        start, end = logits
        version_2 = self.spec.name == "squad_v2"
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
