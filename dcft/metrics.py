"""GLUE and SQuAD metrics, computed locally (the ``evaluate`` package fetches scripts from the Hub).

GLUE scores are on a 0-1 scale (as scikit-learn / scipy return them); SQuAD scores are on a
0-100 scale, as the official evaluation scripts print them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from dcft.data.tasks import get_task

_F1_TASKS = frozenset({"mrpc", "qqp"})
_PUNCTUATION = frozenset(string.punctuation)


def main_metric(task: str) -> str:
    """Name of the metric the paper reports for ``task`` (a key of the metric dict)."""
    return get_task(task).metric


def glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """Metrics for one GLUE eval split.

    ``predictions`` are logits of shape (n, num_labels) (arg-maxed; (n, 1) or (n,) for STS-B) or
    class ids of shape (n,).
    """
    spec = get_task(task)
    if spec.kind != "glue":
        raise ValueError(f"glue_metrics needs a GLUE task, got {task!r}; use squad_metrics")
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if spec.is_regression:
        preds = preds.reshape(-1) if preds.ndim == 2 and preds.shape[1] == 1 else preds
    elif preds.ndim == 2:
        preds = preds.argmax(axis=-1)
    if preds.ndim != 1 or preds.shape != gold.shape:
        raise ValueError(
            f"{task}: predictions of shape {np.asarray(predictions).shape} do not match "
            f"labels of shape {gold.shape}"
        )
    if spec.is_regression:
        return {
            "pearson": float(pearsonr(preds, gold)[0]),
            "spearman": float(spearmanr(preds, gold)[0]),
        }
    if spec.name == "cola":
        return {"matthews_correlation": float(matthews_corrcoef(gold, preds))}
    scores = {"accuracy": float(accuracy_score(gold, preds))}
    if spec.name in _F1_TASKS:
        scores["f1"] = float(f1_score(gold, preds))
    return scores


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(
    predictions: Mapping[str, str],
    references: Iterable[Mapping[str, Any]],
    version_2: bool = False,
) -> dict[str, float]:
    """``exact_match`` and ``f1`` (0-100), each the max over gold answers, averaged over questions.

    ``references`` are examples in the Hub layout (``id``, ``answers.text``); a question without a
    prediction scores 0, as in the official v1.1 script. For v2 an unanswerable question's gold is
    ``[""]`` and the dict also has ``HasAns_*``/``NoAns_*`` breakdowns (``_exact``/``_f1`` only
    for a non-empty group; ``_total`` always).
    """
    exact: dict[str, list[float]] = {"HasAns": [], "NoAns": []}
    f1: dict[str, list[float]] = {"HasAns": [], "NoAns": []}
    for ref in references:
        golds = list(ref["answers"]["text"])
        if version_2:
            golds = [g for g in golds if normalize_answer(g)] or [""]
        group = "HasAns" if golds != [""] else "NoAns"
        prediction = predictions.get(ref["id"])
        exact[group].append(
            0.0 if prediction is None else max(_exact(prediction, g) for g in golds)
        )
        f1[group].append(0.0 if prediction is None else max(_f1(prediction, g) for g in golds))
    all_exact = exact["HasAns"] + exact["NoAns"]
    if not all_exact:
        raise ValueError("squad_metrics got no reference examples")
    all_f1 = f1["HasAns"] + f1["NoAns"]
    scores = {
        "exact_match": 100.0 * float(np.mean(all_exact)),
        "f1": 100.0 * float(np.mean(all_f1)),
    }
    if version_2:
        scores["total"] = float(len(all_exact))
        for group in ("HasAns", "NoAns"):
            scores[f"{group}_total"] = float(len(exact[group]))
            if exact[group]:
                scores[f"{group}_exact"] = 100.0 * float(np.mean(exact[group]))
                scores[f"{group}_f1"] = 100.0 * float(np.mean(f1[group]))
    return scores
