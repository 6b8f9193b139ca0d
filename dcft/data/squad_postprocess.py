"""Start/end logits of SQuAD features -> one answer string per example (the ``run_qa`` rules).

transformers 5 no longer ships ``utils_qa.postprocess_qa_predictions``; this is the same
procedure: for every window of an example, pair the ``n_best_size`` highest start and end logits,
keep pairs that lie in the context, are ordered and are at most ``max_answer_length`` tokens, and
answer with the best-scoring span over all windows. The null (no-answer) score is the logit sum at
position 0 (the CLS token of BERT/RoBERTa/DeBERTa inputs), minimised over windows; null score minus
best span score is what the official SQuAD v2 script takes as its ``na_prob`` per question.
The n-best list per example is ``run_qa``'s ``nbest_predictions.json`` entry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np


class SquadAnswers(NamedTuple):
    """Per example id: the answer text, null score minus best span score (``inf`` when no
    valid span exists) and the n-best candidates (``text``, ``probability``, ``start_logit``,
    ``end_logit``; best first; v2 includes the no-answer ``""``)."""

    texts: dict[str, str]
    null_score_diffs: dict[str, float]
    nbest: dict[str, list[dict[str, Any]]]


def postprocess_squad(
    examples: Mapping[str, Sequence[Any]],
    features: Mapping[str, Sequence[Any]],
    start_logits: Sequence[Sequence[float]] | np.ndarray,
    end_logits: Sequence[Sequence[float]] | np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> SquadAnswers:
    """Answer text and null-score difference per example id.

    ``examples`` needs ``id`` and ``context``; ``features`` needs ``example_id`` and
    ``offset_mapping`` (from :func:`prepare_squad_eval_features`), a ``datasets.Dataset`` or a dict
    of columns. Logits are one row per feature (a padded 2-D array or ragged rows). With
    ``version_2`` the answer is ``""`` when the null score exceeds the best span score by more than
    ``null_score_diff_threshold`` (or no valid span exists).
    """
    example_ids = features["example_id"]
    if not len(start_logits) == len(end_logits) == len(example_ids):
        raise ValueError(
            f"need one row of start and end logits per feature: got {len(start_logits)} and "
            f"{len(end_logits)} rows for {len(example_ids)} features"
        )
    windows: dict[str, list[int]] = defaultdict(list)
    for i, example_id in enumerate(example_ids):
        windows[example_id].append(i)
    all_offsets = features["offset_mapping"]

    answers = SquadAnswers({}, {}, {})
    for example_id, context in zip(examples["id"], examples["context"], strict=True):
        spans: list[_Candidate] = []
        null = _Candidate(np.inf, 0.0, 0.0, "")
        for i in windows.get(example_id, []):
            starts = np.asarray(start_logits[i], dtype=np.float64)
            ends = np.asarray(end_logits[i], dtype=np.float64)
            if starts[0] + ends[0] < null.score:
                null = _Candidate(starts[0] + ends[0], starts[0], ends[0], "")
            offsets = all_offsets[i]
            for s, e in _candidate_spans(starts, ends, offsets, n_best_size, max_answer_length):
                text = context[offsets[s][0] : offsets[e][1]]
                spans.append(_Candidate(starts[s] + ends[e], starts[s], ends[e], text))
        best = max(spans, key=lambda c: c.score, default=_Candidate(-np.inf, 0.0, 0.0, ""))
        null_diff = float(null.score - best.score)
        answer_is_null = version_2 and null_diff > null_score_diff_threshold
        answers.texts[example_id] = "" if answer_is_null else best.text
        answers.null_score_diffs[example_id] = null_diff
        has_null = version_2 and np.isfinite(null.score)
        answers.nbest[example_id] = _nbest(spans, null if has_null else None, n_best_size)
    return answers


class _Candidate(NamedTuple):
    score: float
    start_logit: float
    end_logit: float
    text: str


def _nbest(
    spans: list[_Candidate], null: _Candidate | None, n_best_size: int
) -> list[dict[str, Any]]:
    """``run_qa``'s n-best list: the best ``n_best_size`` candidates (the no-answer one among
    them, or appended), with softmax probabilities over the list's scores."""
    ranked = sorted([*spans, *([null] if null else [])], key=lambda c: -c.score)[:n_best_size]
    if null is not None and null not in ranked:
        ranked.append(null)
    if not ranked:
        return []
    scores = np.array([c.score for c in ranked])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    return [
        {
            "text": c.text,
            "probability": float(p),
            "start_logit": float(c.start_logit),
            "end_logit": float(c.end_logit),
        }
        for c, p in zip(ranked, probabilities, strict=True)
    ]


def postprocess_squad_predictions(
    examples: Mapping[str, Sequence[Any]],
    features: Mapping[str, Sequence[Any]],
    start_logits: Sequence[Sequence[float]] | np.ndarray,
    end_logits: Sequence[Sequence[float]] | np.ndarray,
    **options: Any,
) -> dict[str, str]:
    """Answer text per example id: :func:`postprocess_squad` without the null-score differences."""
    return postprocess_squad(examples, features, start_logits, end_logits, **options).texts


def _candidate_spans(
    starts: np.ndarray,
    ends: np.ndarray,
    offsets: Sequence[Sequence[int] | None],
    n_best_size: int,
    max_answer_length: int,
) -> list[tuple[int, int]]:
    """Token spans among the top start x top end logits that are valid context answers."""
    top_starts = np.argsort(starts)[::-1][:n_best_size]
    top_ends = np.argsort(ends)[::-1][:n_best_size]
    return [
        (int(s), int(e))
        for s in top_starts
        for e in top_ends
        if s < len(offsets)
        and e < len(offsets)
        and offsets[s] is not None
        and offsets[e] is not None
        and s <= e < s + max_answer_length
    ]
