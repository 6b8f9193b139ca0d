"""GLUE and SQuAD metrics, computed locally (the ``evaluate`` package fetches scripts from the Hub).

GLUE scores are on a 0-1 scale (as scikit-learn / scipy return them). SQuAD follows the official
``evaluate-v1.1.py`` and ``evaluate-v2.0.py`` scripts rule for rule (they differ: an empty
prediction against a gold answer that normalises to nothing scores F1 0 in v1.1, 1 in v2.0) and
is on their 0-100 scale.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from dcft.data.tasks import get_task

_PUNCTUATION = frozenset(string.punctuation)


# The metrics a GLUE TaskSpec can list, each a function of (gold, predictions). The correlations
# get the predictions first, the order earlier records were computed in (bit-identical floats).
GLUE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy_score,
    "f1": f1_score,
    "matthews_correlation": matthews_corrcoef,
    "pearson": lambda gold, preds: pearsonr(preds, gold)[0],
    "spearman": lambda gold, preds: spearmanr(preds, gold)[0],
}


def main_metric(task: str) -> str:
    """Name of the metric the paper reports for ``task`` (a key of the metric dict)."""
    return get_task(task).metric


def check_labels_visible(task: str, labels: Any, split: str | None = None) -> None:
    """Refuse labels of -1: the GLUE test splits (Hub / parquet copies) carry -1 for every label,
    and scoring them would produce meaningless numbers instead of an error. A regression task's
    -1 is a score (a custom task's) unless every label is -1."""
    hidden = int(np.count_nonzero(np.asarray(labels) == -1))
    spec = get_task(task)
    if spec.is_regression and hidden < np.asarray(labels).size:
        return
    if hidden:
        where = task if split is None else f"{task} ({split})"
        raise ValueError(
            f"{where}: {hidden} of {np.asarray(labels).size} labels are -1, i.e. hidden, as in "
            "the GLUE test splits; score a train or validation split instead"
        )


def glue_metrics(
    task: str, predictions: Any, labels: Any, split: str | None = None
) -> dict[str, float]:
    """The task's ``TaskSpec.metrics`` on one GLUE eval split (``split`` only names it in errors).

    ``predictions`` are logits of shape (n, num_labels) (arg-maxed; (n, 1) or (n,) for STS-B) or
    class ids of shape (n,). Labels of -1 (hidden test labels) raise ``ValueError``.
    """
    spec = get_task(task)
    if spec.kind != "glue":
        raise ValueError(f"glue_metrics needs a GLUE task, got {task!r}; use squad_metrics")
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    check_labels_visible(spec.name, gold, split)
    if spec.is_regression:
        preds = preds.reshape(-1) if preds.ndim == 2 and preds.shape[1] == 1 else preds
    elif preds.ndim == 2:
        preds = preds.argmax(axis=-1)
    if preds.ndim != 1 or preds.shape != gold.shape:
        raise ValueError(
            f"{task}: predictions of shape {np.asarray(predictions).shape} do not match "
            f"labels of shape {gold.shape}"
        )
    unknown = [name for name in spec.metrics if name not in GLUE_METRICS]
    if unknown:
        raise ValueError(f"{task}: unknown metrics {unknown}; known: {sorted(GLUE_METRICS)}")
    return {name: float(GLUE_METRICS[name](gold, preds)) for name in spec.metrics}


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _exact(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(pred_tokens)
    recall = common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _f1_v1(prediction: str, gold: str) -> float:
    """evaluate-v1.1.py: no common token scores 0, also when both sides normalise to nothing."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _f1_v2(prediction: str, gold: str) -> float:
    """evaluate-v2.0.py: an empty side (a no-answer) scores 1 if the other is empty too, else 0."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return _token_f1(pred_tokens, gold_tokens)


def squad_v1_scores(
    predictions: Mapping[str, str], references: Iterable[Mapping[str, Any]]
) -> dict[str, float]:
    """What the official ``evaluate-v1.1.py`` prints: ``exact_match`` and ``f1`` (0-100).

    ``references`` are examples in the Hub layout (``id``, ``answers.text``). Each question scores
    the max over its gold answers; one without a prediction scores 0; extra predictions are
    ignored.
    """
    exact = f1 = 0.0
    total = 0
    for ref in references:
        total += 1
        prediction = predictions.get(ref["id"])
        if prediction is None:
            continue
        golds = list(ref["answers"]["text"])
        if not golds:
            raise ValueError(
                f"question {ref['id']!r} has no gold answer: SQuAD v1.1 scoring needs one "
                "(score SQuAD v2 data as squad_v2)"
            )
        exact += max(_exact(prediction, g) for g in golds)
        f1 += max(_f1_v1(prediction, g) for g in golds)
    if total == 0:
        raise ValueError("SQuAD scoring got no reference examples")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def squad_v2_scores(
    predictions: Mapping[str, str],
    references: Iterable[Mapping[str, Any]],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """What the official ``evaluate-v2.0.py`` prints (scores 0-100, totals as ints).

    ``exact``, ``f1``, ``total``, then ``HasAns_*`` / ``NoAns_*`` for each non-empty group. A
    question whose ``na_probs`` value exceeds ``na_prob_thresh`` counts as answered "no answer".
    Without ``na_probs`` every question gets 0 (as the script without ``--na-prob-file``);
    with them the dict also has ``best_exact``, ``best_exact_thresh``, ``best_f1`` and
    ``best_f1_thresh``. Every question needs a prediction (the official script fails without
    one) and, when given, an ``na_probs`` value.
    """
    has_ans: dict[str, bool] = {}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    for ref in references:
        qid = ref["id"]
        has_ans[qid] = bool(ref["answers"]["text"])
        golds = [g for g in ref["answers"]["text"] if normalize_answer(g)] or [""]
        if qid in predictions:
            exact_raw[qid] = max(_exact(predictions[qid], g) for g in golds)
            f1_raw[qid] = max(_f1_v2(predictions[qid], g) for g in golds)
    if not has_ans:
        raise ValueError("SQuAD scoring got no reference examples")
    _require_ids(has_ans, predictions, "predictions")
    probs = {qid: 0.0 for qid in predictions} if na_probs is None else na_probs
    _require_ids(has_ans, probs, "na_probs")

    def no_answer_applied(raw: dict[str, float]) -> dict[str, float]:
        return {
            qid: float(not has_ans[qid]) if probs[qid] > na_prob_thresh else s
            for qid, s in raw.items()
        }

    exact, f1 = no_answer_applied(exact_raw), no_answer_applied(f1_raw)
    scores = _eval_dict(exact, f1, list(has_ans))
    for group, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid, answerable in has_ans.items() if answerable == wanted]
        if qids:
            scores.update({f"{group}_{k}": v for k, v in _eval_dict(exact, f1, qids).items()})
    if na_probs is not None:
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, thresh = _best_thresh(predictions, raw, na_probs, has_ans)
            scores[f"best_{name}"] = best
            scores[f"best_{name}_thresh"] = thresh
    return scores


def _require_ids(questions: Mapping[str, bool], given: Mapping[str, Any], what: str) -> None:
    missing = [qid for qid in questions if qid not in given]
    if missing:
        raise ValueError(
            f"{what} lack {len(missing)} of {len(questions)} question ids "
            f"(first: {missing[:3]}); the official SQuAD v2 script needs all of them"
        )


def _eval_dict(exact: dict[str, float], f1: dict[str, float], qids: list[str]) -> dict[str, float]:
    total = len(qids)
    return {
        "exact": 100.0 * sum(exact[q] for q in qids) / total,
        "f1": 100.0 * sum(f1[q] for q in qids) / total,
        "total": total,
    }


def _best_thresh(
    predictions: Mapping[str, str],
    raw: dict[str, float],
    na_probs: Mapping[str, float],
    has_ans: dict[str, bool],
) -> tuple[float, float]:
    """evaluate-v2.0.py's ``find_best_thresh``: sweep the threshold up through the sorted
    ``na_probs``; questions below it keep their prediction, the others answer "no answer"."""
    score = best = sum(not answerable for answerable in has_ans.values())
    best_thresh = 0.0
    for qid in sorted(na_probs, key=na_probs.__getitem__):
        if qid not in raw:
            continue
        if has_ans[qid]:
            score += raw[qid]
        elif predictions[qid]:
            score -= 1
        if score > best:
            best, best_thresh = score, na_probs[qid]
    return 100.0 * best / len(raw), best_thresh


def squad_metrics(
    predictions: Mapping[str, str],
    references: Iterable[Mapping[str, Any]],
    version_2: bool = False,
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """The runner's SQuAD metrics: :func:`squad_v1_scores` or :func:`squad_v2_scores`, with v2's
    ``exact`` named ``exact_match`` so that every SQuAD record has the same headline keys."""
    if not version_2:
        if na_probs is not None:
            raise ValueError("na_probs only apply to SQuAD v2")
        return squad_v1_scores(predictions, references)
    scores = squad_v2_scores(predictions, references, na_probs, na_prob_thresh)
    return {("exact_match" if k == "exact" else k): v for k, v in scores.items()}
