"""dcft.data.metrics against independent computations and hand-worked SQuAD scores."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from dcft.data import TASKS
from dcft.data.metrics import (
    GLUE_METRICS,
    glue_metrics,
    main_metric,
    normalize_answer,
    squad_metrics,
    squad_v1_scores,
    squad_v2_scores,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.mark.parametrize(
    ("task", "metric"),
    [
        ("cola", "matthews_correlation"),
        ("stsb", "pearson"),
        ("sst2", "accuracy"),
        ("mrpc", "accuracy"),
        ("qqp", "accuracy"),
        ("mnli", "accuracy"),
        ("qnli", "accuracy"),
        ("rte", "accuracy"),
        ("squad_v1", "f1"),
        ("squad_v2", "f1"),
    ],
)
def test_main_metric(task: str, metric: str) -> None:
    assert main_metric(task) == metric


def test_main_metric_unknown_task_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"'wnli'.*cola.*squad_v2"):
        main_metric("wnli")


def test_cola_matthews_from_logits(rng: np.random.Generator) -> None:
    logits = rng.normal(size=(200, 2))
    labels = rng.integers(0, 2, size=200)
    scores = glue_metrics("cola", logits, labels)
    assert scores == {
        "matthews_correlation": pytest.approx(matthews_corrcoef(labels, logits.argmax(-1)))
    }


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_accuracy_and_f1_from_class_ids(task: str, rng: np.random.Generator) -> None:
    preds = rng.integers(0, 2, size=300)
    labels = rng.integers(0, 2, size=300)
    scores = glue_metrics(task, preds, labels)
    assert scores == {
        "accuracy": pytest.approx(accuracy_score(labels, preds)),
        "f1": pytest.approx(f1_score(labels, preds)),
    }


@pytest.mark.parametrize(("task", "classes"), [("sst2", 2), ("qnli", 2), ("rte", 2), ("mnli", 3)])
def test_accuracy_only_tasks(task: str, classes: int, rng: np.random.Generator) -> None:
    logits = rng.normal(size=(150, classes))
    labels = rng.integers(0, classes, size=150)
    scores = glue_metrics(task, logits.tolist(), labels.tolist())
    assert scores == {"accuracy": pytest.approx(accuracy_score(labels, logits.argmax(-1)))}


def test_accuracy_by_hand() -> None:
    assert glue_metrics("rte", [0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 0.75}


@pytest.mark.parametrize("shape", [(120, 1), (120,)])
def test_stsb_pearson_spearman(shape: tuple[int, ...], rng: np.random.Generator) -> None:
    labels = rng.uniform(0, 5, size=120)
    preds = (labels + rng.normal(scale=1.0, size=120)).reshape(shape)
    scores = glue_metrics("stsb", preds, labels)
    assert scores == {
        "pearson": pytest.approx(pearsonr(preds.reshape(-1), labels)[0]),
        "spearman": pytest.approx(spearmanr(preds.reshape(-1), labels)[0]),
    }
    assert all(isinstance(v, float) for v in scores.values())


@pytest.mark.parametrize("task", [n for n, spec in TASKS.items() if spec.kind == "glue"])
def test_glue_metrics_are_the_specs(task: str, rng: np.random.Generator) -> None:
    """A GLUE task reports exactly its TaskSpec's metrics, the headline one first."""
    spec = TASKS[task]
    if spec.is_regression:
        preds, labels = rng.uniform(0, 5, size=40), rng.uniform(0, 5, size=40)
    else:
        preds, labels = rng.integers(0, spec.num_labels, size=(2, 40))
    assert list(glue_metrics(task, preds, labels)) == list(spec.metrics)
    assert main_metric(task) == spec.metrics[0]
    assert set(spec.metrics) <= set(GLUE_METRICS)


def test_glue_metrics_unknown_metric_names_the_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TASKS, "sst2", dataclasses.replace(TASKS["sst2"], metrics=("auc",)))
    with pytest.raises(ValueError, match=r"sst2: unknown metrics \['auc'\]; known: \['accuracy'"):
        glue_metrics("sst2", [0, 1], [0, 1])


def test_glue_metrics_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        glue_metrics("sst2", [0, 1, 1], [0, 1])


def test_glue_metrics_rejects_squad() -> None:
    with pytest.raises(ValueError, match="squad_metrics"):
        glue_metrics("squad_v1", [0], [0])


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The Denver Broncos!", "denver broncos"),
        ("An apple, a pear and THE plum.", "apple pear and plum"),
        ("theory of anthems", "theory of anthems"),
        ("  spaced\tout\n text ", "spaced out text"),
        ("$1,000.5", "10005"),
    ],
)
def test_normalize_answer(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def _ref(qid: str, *golds: str) -> dict:
    return {"id": qid, "answers": {"text": list(golds), "answer_start": [0] * len(golds)}}


def test_squad_v1_hand_worked() -> None:
    references = [
        _ref("q1", "Denver Broncos"),
        _ref("q2", "Denver Broncos"),
        _ref("q3", "Denver Broncos"),
        _ref("q4", "Panthers", "Carolina Panthers"),
    ]
    predictions = {
        "q1": "the Denver Broncos",  # article dropped: exact
        "q2": "denver broncos!",  # case and punctuation: exact
        "q3": "Broncos of Denver",  # 2 of 3 predicted tokens right: P 2/3, R 1, F1 0.8
        "q4": "Carolina",  # best gold "Carolina Panthers": P 1, R 1/2, F1 2/3
    }
    scores = squad_metrics(predictions, references)
    assert scores == {
        "exact_match": pytest.approx(100 * 2 / 4),
        "f1": pytest.approx(100 * (1 + 1 + 0.8 + 2 / 3) / 4),
    }


def test_squad_missing_prediction_scores_zero() -> None:
    references = [_ref("q1", "Paris"), _ref("q2", "Rome")]
    scores = squad_metrics({"q1": "Paris", "extra": "ignored"}, references)
    assert scores == {"exact_match": 50.0, "f1": 50.0}


def test_squad_v2_no_answer_breakdown() -> None:
    references = [
        _ref("has1", "the Eiffel Tower"),
        _ref("has2", "1889"),
        _ref("no1"),
        _ref("no2"),
    ]
    predictions = {
        "has1": "Eiffel Tower",  # exact after article removal
        "has2": "",  # abstained on an answerable question: 0
        "no1": "",  # correct abstention: 1
        "no2": "in 1889",  # answered an unanswerable question: 0
    }
    scores = squad_metrics(predictions, references, version_2=True)
    assert scores == {
        "exact_match": 50.0,
        "f1": 50.0,
        "total": 4.0,
        "HasAns_exact": 50.0,
        "HasAns_f1": 50.0,
        "HasAns_total": 2.0,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2.0,
    }


def test_squad_v2_partial_f1_and_empty_group() -> None:
    references = [_ref("q1", "in the year 1889", "1889")]
    # vs "in year 1889": P 1/2, R 1/3 -> F1 0.4; vs "1889": P 1/2, R 1 -> F1 2/3 (the max)
    scores = squad_metrics({"q1": "1889 exactly"}, references, version_2=True)
    assert scores["f1"] == pytest.approx(100 * 2 / 3)
    assert scores["exact_match"] == 0.0
    assert not any(key.startswith("NoAns") for key in scores)  # as the official script


def test_squad_empty_prediction_against_punctuation_gold() -> None:
    """Gold "." normalises to nothing: v1.1 scores an empty prediction EM 1 but F1 0 (no common
    token), v2.0 scores it 1 and 1 (its no-answer rule)."""
    references = [_ref("q1", ".")]
    assert squad_v1_scores({"q1": ""}, references) == {"exact_match": 100.0, "f1": 0.0}
    v2 = squad_v2_scores({"q1": ""}, references)
    assert (v2["exact"], v2["f1"], v2["HasAns_total"]) == (100.0, 100.0, 1)


def test_squad_v2_scores_official_keys() -> None:
    scores = squad_v2_scores({"a": "x", "b": ""}, [_ref("a", "x"), _ref("b")])
    assert list(scores) == [
        "exact",
        "f1",
        "total",
        "HasAns_exact",
        "HasAns_f1",
        "HasAns_total",
        "NoAns_exact",
        "NoAns_f1",
        "NoAns_total",
    ]
    assert isinstance(scores["total"], int)


# Best thresholds by hand: the sweep starts from "everything no-answer" (2 of 4 right), then
# lets each question answer in na_prob order: has1 +1 (3, the best, at 0.1), no2 abstains anyway
# (3), has2 is wrong (3), no1 answers an unanswerable question (2).
_BEST_REFS = [_ref("has1", "Paris"), _ref("has2", "Rome"), _ref("no1"), _ref("no2")]
_BEST_PREDS = {"has1": "Paris", "has2": "Milan", "no1": "London", "no2": ""}
_BEST_NA = {"has1": 0.1, "has2": 0.6, "no1": 0.8, "no2": 0.3}


def test_squad_v2_best_thresholds_by_hand() -> None:
    scores = squad_v2_scores(_BEST_PREDS, _BEST_REFS, _BEST_NA)
    assert (scores["exact"], scores["f1"]) == (50.0, 50.0)  # no na_prob above the default 1.0
    assert {k: v for k, v in scores.items() if k.startswith("best")} == {
        "best_exact": 75.0,
        "best_exact_thresh": 0.1,
        "best_f1": 75.0,
        "best_f1_thresh": 0.1,
    }


def test_squad_v2_na_prob_threshold_turns_answers_into_abstentions() -> None:
    # above 0.5: has2 (wrong either way) and no1 (now right) answer "no answer"
    scores = squad_v2_scores(_BEST_PREDS, _BEST_REFS, _BEST_NA, na_prob_thresh=0.5)
    assert (scores["exact"], scores["HasAns_exact"], scores["NoAns_exact"]) == (75.0, 50.0, 100.0)


def test_squad_metrics_names_v2_exact_exact_match() -> None:
    runner = squad_metrics(_BEST_PREDS, _BEST_REFS, version_2=True, na_probs=_BEST_NA)
    official = squad_v2_scores(_BEST_PREDS, _BEST_REFS, _BEST_NA)
    official["exact_match"] = official.pop("exact")
    assert runner == official


def test_squad_v2_needs_every_prediction_and_na_prob() -> None:
    with pytest.raises(ValueError, match=r"predictions lack 1 of 4 question ids.*'no2'"):
        squad_v2_scores({k: v for k, v in _BEST_PREDS.items() if k != "no2"}, _BEST_REFS)
    with pytest.raises(ValueError, match=r"na_probs lack 1 of 4"):
        squad_v2_scores(_BEST_PREDS, _BEST_REFS, {"has1": 0.0, "has2": 0.0, "no1": 0.0})


def test_squad_v1_refuses_unanswerable_questions_and_na_probs() -> None:
    with pytest.raises(ValueError, match="'q2' has no gold answer"):
        squad_v1_scores({"q1": "x", "q2": ""}, [_ref("q1", "x"), _ref("q2")])
    with pytest.raises(ValueError, match="na_probs only apply to SQuAD v2"):
        squad_metrics({"q1": "x"}, [_ref("q1", "x")], na_probs={"q1": 0.0})


@pytest.mark.parametrize(("task", "hidden"), [("sst2", [-1, -1, -1]), ("stsb", [-1.0] * 3)])
def test_glue_metrics_refuses_hidden_test_labels(task: str, hidden: list) -> None:
    with pytest.raises(ValueError, match=rf"{task} \(test\): 3 of 3 labels are -1.*hidden"):
        glue_metrics(task, [0, 1, 1], hidden, split="test")


def test_squad_metrics_accepts_dataset() -> None:
    import datasets

    ds = datasets.Dataset.from_list([_ref("a", "x y"), _ref("b", "z")])
    assert squad_metrics({"a": "x y", "b": "w"}, ds) == {"exact_match": 50.0, "f1": 50.0}


def test_squad_metrics_needs_references() -> None:
    with pytest.raises(ValueError, match="no reference"):
        squad_metrics({}, [])
