"""SQuAD scores against transcriptions of the official evaluation scripts, on the real dev files;
the runner's SQuAD scorer; the ``python -m dcft.score`` CLI.

The ``official_*`` functions below transcribe evaluate-v1.1.py and evaluate-v2.0.py (the SQuAD
authors' scripts) statement by statement, reading the dev JSON themselves; they share no code
with dcft.
"""

from __future__ import annotations

import collections
import json
import random
import re
import string
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score

from dcft.data.metrics import squad_metrics, squad_v1_scores, squad_v2_scores
from dcft.data.scorer import Scorer
from dcft.data.squad import read_squad_json
from dcft.score import main
from tests.conftest import SHARED_DATA

V1_DEV = SHARED_DATA / "squad" / "v1.1" / "dev-v1.1.json"
V2_DEV = SHARED_DATA / "squad" / "v2.0-subset" / "dev-v2.0.json"
GLUE_PARQUET = SHARED_DATA / "glue_parquet"

needs_squad = pytest.mark.skipif(
    not (V1_DEV.is_file() and V2_DEV.is_file()), reason=f"no SQuAD dev files under {SHARED_DATA}"
)
needs_glue = pytest.mark.skipif(not GLUE_PARQUET.is_dir(), reason=f"{GLUE_PARQUET} is absent")


# ---------------------------------------------------------------- evaluate-v1.1.py, transcribed


def official_v1_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_v1_f1_score(prediction, ground_truth):
    prediction_tokens = official_v1_normalize_answer(prediction).split()
    ground_truth_tokens = official_v1_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def official_v1_exact_match_score(prediction, ground_truth):
    return official_v1_normalize_answer(prediction) == official_v1_normalize_answer(ground_truth)


def official_v1_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def official_v1_evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                ground_truths = list(map(lambda x: x["text"], qa["answers"]))
                prediction = predictions[qa["id"]]
                exact_match += official_v1_metric_max_over_ground_truths(
                    official_v1_exact_match_score, prediction, ground_truths
                )
                f1 += official_v1_metric_max_over_ground_truths(
                    official_v1_f1_score, prediction, ground_truths
                )
    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total
    return {"exact_match": exact_match, "f1": f1}


# ---------------------------------------------------------------- evaluate-v2.0.py, transcribed


def official_v2_make_qid_to_has_ans(dataset):
    qid_to_has_ans = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid_to_has_ans[qa["id"]] = bool(qa["answers"])
    return qid_to_has_ans


def official_v2_normalize_answer(s):
    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_v2_get_tokens(s):
    if not s:
        return []
    return official_v2_normalize_answer(s).split()


def official_v2_compute_exact(a_gold, a_pred):
    return int(official_v2_normalize_answer(a_gold) == official_v2_normalize_answer(a_pred))


def official_v2_compute_f1(a_gold, a_pred):
    gold_toks = official_v2_get_tokens(a_gold)
    pred_toks = official_v2_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def official_v2_get_raw_scores(dataset, preds):
    exact_scores = {}
    f1_scores = {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                gold_answers = [
                    a["text"] for a in qa["answers"] if official_v2_normalize_answer(a["text"])
                ]
                if not gold_answers:
                    # For unanswerable questions, only correct answer is empty string
                    gold_answers = [""]
                if qid not in preds:
                    continue
                a_pred = preds[qid]
                # Take max over all gold answers
                exact_scores[qid] = max(official_v2_compute_exact(a, a_pred) for a in gold_answers)
                f1_scores[qid] = max(official_v2_compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def official_v2_apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    new_scores = {}
    for qid, s in scores.items():
        pred_na = na_probs[qid] > na_prob_thresh
        if pred_na:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def official_v2_make_eval_dict(exact_scores, f1_scores, qid_list=None):
    if not qid_list:
        total = len(exact_scores)
        return collections.OrderedDict(
            [
                ("exact", 100.0 * sum(exact_scores.values()) / total),
                ("f1", 100.0 * sum(f1_scores.values()) / total),
                ("total", total),
            ]
        )
    else:
        total = len(qid_list)
        return collections.OrderedDict(
            [
                ("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
                ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total),
                ("total", total),
            ]
        )


def official_v2_merge_eval(main_eval, new_eval, prefix):
    for k in new_eval:
        main_eval[f"{prefix}_{k}"] = new_eval[k]


def official_v2_find_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            if preds[qid]:  # noqa: SIM108 (as the script has it)
                diff = -1
            else:
                diff = 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def official_v2_find_all_best_thresh(main_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans):
    best_exact, exact_thresh = official_v2_find_best_thresh(
        preds, exact_raw, na_probs, qid_to_has_ans
    )
    best_f1, f1_thresh = official_v2_find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def official_v2_evaluate(dataset, preds, na_probs=None, na_prob_thresh=1.0):
    """The script's main(): ``na_probs=None`` is running it without --na-prob-file."""
    na_prob_file = na_probs is not None
    if not na_prob_file:
        na_probs = {k: 0.0 for k in preds}
    qid_to_has_ans = official_v2_make_qid_to_has_ans(dataset)  # maps qid to True/False
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = official_v2_get_raw_scores(dataset, preds)
    exact_thresh = official_v2_apply_no_ans_threshold(
        exact_raw, na_probs, qid_to_has_ans, na_prob_thresh
    )
    f1_thresh = official_v2_apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    out_eval = official_v2_make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        has_ans_eval = official_v2_make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids)
        official_v2_merge_eval(out_eval, has_ans_eval, "HasAns")
    if no_ans_qids:
        no_ans_eval = official_v2_make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids)
        official_v2_merge_eval(out_eval, no_ans_eval, "NoAns")
    if na_prob_file:
        official_v2_find_all_best_thresh(
            out_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans
        )
    return dict(out_eval)


# ---------------------------------------------------------------- the real dev files


def _questions(dataset: list[dict]) -> list[tuple[str, str, list[str]]]:
    """(id, context, gold texts) per question, straight from the JSON."""
    return [
        (qa["id"], p["context"], [a["text"] for a in qa["answers"]])
        for article in dataset
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]


@pytest.fixture(scope="module")
def squad_dev() -> dict[str, Any]:
    """Per version: the JSON ``data`` (for the transcriptions), the harness's rows, questions."""
    loaded = {}
    for version, path in (("v1", V1_DEV), ("v2", V2_DEV)):
        dataset = json.loads(path.read_text(encoding="utf-8"))["data"]
        loaded[version] = SimpleNamespace(
            json=dataset, rows=list(read_squad_json(path)), questions=_questions(dataset)
        )
    return loaded


def _perturbed(questions: list[tuple[str, str, list[str]]], seed: int = 0) -> dict[str, str]:
    """Near misses and misses: a gold answer with a word dropped or added, recased, another gold
    answer, a random context span, "", "." (normalises to nothing), a random other answer."""
    rng = random.Random(seed)
    all_golds = [g for _, _, golds in questions for g in golds] or ["x"]
    predictions = {}
    for qid, context, golds in questions:
        words = rng.choice(golds).split() if golds else []
        context_words = context.split()
        kind = rng.randrange(8)
        if kind == 0 and len(words) > 1:
            words.pop(rng.randrange(len(words)))
        elif kind == 1:
            words.insert(rng.randrange(len(words) + 1), rng.choice(context_words))
        elif kind == 2:
            words = [w.upper() for w in words] + ["the"]
        elif kind == 3:
            start = rng.randrange(len(context_words))
            words = context_words[start : start + rng.randint(1, 6)]
        elif kind == 4:
            words = []
        elif kind == 5:
            words = ["."]
        elif kind == 6:
            words = rng.choice(all_golds).split()
        predictions[qid] = " ".join(words)
    return predictions


def _predictions(kind: str, questions: list[tuple[str, str, list[str]]]) -> dict[str, str]:
    if kind == "gold":
        return {qid: golds[0] if golds else "" for qid, _, golds in questions}
    if kind == "empty":
        return {qid: "" for qid, _, _ in questions}
    return _perturbed(questions)


def _na_probs(questions: list[tuple[str, str, list[str]]], seed: int = 1) -> dict[str, float]:
    """Random no-answer scores, rounded so that many tie (the sweep's order then matters)."""
    rng = random.Random(seed)
    return {qid: round(rng.gauss(0.0, 2.0), 1) for qid, _, _ in questions}


def _assert_same(ours: dict[str, float], official: dict[str, float]) -> None:
    assert list(ours) == list(official)
    assert ours == pytest.approx(official, rel=1e-12, abs=1e-12)


@needs_squad
@pytest.mark.parametrize("kind", ["gold", "empty", "perturbed"])
def test_v1_matches_official_script(squad_dev: dict, kind: str) -> None:
    dev = squad_dev["v1"]
    predictions = _predictions(kind, dev.questions)
    _assert_same(squad_metrics(predictions, dev.rows), official_v1_evaluate(dev.json, predictions))


@needs_squad
def test_v1_empty_prediction_against_a_dot_scores_f1_zero(squad_dev: dict) -> None:
    """Three v1.1 dev questions have "." among their gold answers: "" matches it exactly (EM 1)
    but shares no token with it (F1 0, where v2's rule would give 1)."""
    dev = squad_dev["v1"]
    dots = [qid for qid, _, golds in dev.questions if "." in golds]
    assert len(dots) == 3
    empty = {qid: "" for qid, _, _ in dev.questions}
    total = len(dev.questions)
    assert squad_v1_scores(empty, dev.rows) == {"exact_match": 100.0 * 3 / total, "f1": 0.0}
    dot_rows = [row for row in dev.rows if row["id"] in dots]
    assert squad_v1_scores(empty, dot_rows) == {"exact_match": 100.0, "f1": 0.0}


@needs_squad
@pytest.mark.parametrize("kind", ["gold", "empty", "perturbed"])
@pytest.mark.parametrize("with_na_probs", [False, True])
def test_v2_matches_official_script(squad_dev: dict, kind: str, with_na_probs: bool) -> None:
    dev = squad_dev["v2"]
    predictions = _predictions(kind, dev.questions)
    na_probs = _na_probs(dev.questions) if with_na_probs else None
    official = official_v2_evaluate(dev.json, predictions, na_probs)
    assert ("best_f1_thresh" in official) == with_na_probs
    # the runner's metrics, i.e. squad_v2_scores with v2's "exact" named "exact_match"
    runner = squad_metrics(predictions, dev.rows, version_2=True, na_probs=na_probs)
    official["exact_match"] = official.pop("exact")
    assert runner == pytest.approx(official, rel=1e-12, abs=1e-12)


@needs_squad
@pytest.mark.parametrize("na_prob_thresh", [-1.0, 0.0, 2.5])
def test_v2_no_answer_threshold_matches_official_script(
    squad_dev: dict, na_prob_thresh: float
) -> None:
    dev = squad_dev["v2"]
    predictions, na_probs = _perturbed(dev.questions), _na_probs(dev.questions)
    official = official_v2_evaluate(dev.json, predictions, na_probs, na_prob_thresh)
    _assert_same(squad_v2_scores(predictions, dev.rows, na_probs, na_prob_thresh), official)


# ---------------------------------------------------------------- the runner's scorer


def _scorer(task: str, q2_golds: list[str]) -> tuple[Scorer, datasets.Dataset]:
    """Two questions, one window each, offsets by hand; q1's gold answer is "Paris"."""
    examples = datasets.Dataset.from_dict(
        {
            "id": ["q1", "q2"],
            "context": ["Paris is big", "Rome is old"],
            "answers": [
                {"text": ["Paris"], "answer_start": [0]},
                {"text": q2_golds, "answer_start": [0] * len(q2_golds)},
            ],
        }
    )
    features = {
        "example_id": ["q1", "q2"],
        "offset_mapping": [[None, (0, 5), (6, 8), (9, 12)], [None, (0, 4), (5, 7), (8, 11)]],
    }
    config = OmegaConf.create(
        {"name": task, "n_best_size": 20, "max_answer_length": 30, "null_score_diff_threshold": 0}
    )
    data = SimpleNamespace(eval={"validation": features}, eval_examples={"validation": examples})
    return Scorer(config, data), examples


# q1: best span "Paris" 5 + 5 = 10, null 1 + 1 = 2 -> diff -8; q2: best span "is old"
# 1 + 1 = 2, null 3 + 3 = 6 -> diff 4 (> 0: answered "" in v2)
_STARTS = np.array([[1.0, 5.0, 0.0, 0.0], [3.0, 0.0, 1.0, 0.0]])
_ENDS = np.array([[1.0, 5.0, 0.0, 0.0], [3.0, 0.0, 0.0, 1.0]])


def test_scorer_squad_v2_reports_best_thresholds_from_null_score_diffs() -> None:
    scorer, examples = _scorer("squad_v2", [])
    scores = scorer("validation", (_STARTS, _ENDS), None)
    saved = scorer.predictions["validation"]
    assert saved == {
        "predictions": {"q1": "Paris", "q2": ""},
        "null_score_diffs": {"q1": -8.0, "q2": 4.0},
    }
    qas = [
        {"id": r["id"], "answers": [{"text": t} for t in r["answers"]["text"]]} for r in examples
    ]
    dataset = [{"paragraphs": [{"qas": qas}]}]
    official = official_v2_evaluate(dataset, saved["predictions"], saved["null_score_diffs"], 0.0)
    official["exact_match"] = official.pop("exact")
    assert scores == official
    assert (scores["best_exact"], scores["best_exact_thresh"]) == (100.0, -8.0)


def test_scorer_squad_v1_keeps_the_predictions_shape() -> None:
    scorer, _ = _scorer("squad_v1", ["Rome"])
    scores = scorer("validation", (_STARTS, _ENDS), None)
    assert scorer.predictions["validation"] == {"predictions": {"q1": "Paris", "q2": "is old"}}
    assert scores == {"exact_match": 50.0, "f1": 50.0}


# ---------------------------------------------------------------- python -m dcft.score


def _write(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> dict[str, float]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@needs_squad
def test_cli_squad_v1_from_the_data_dir(
    squad_dev: dict, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCFT_DATA_DIR", str(SHARED_DATA))
    dev = squad_dev["v1"]
    predictions = _perturbed(dev.questions, seed=7)
    scores = _run_cli(["squad_v1", str(_write(tmp_path / "p.json", predictions))], capsys)
    _assert_same(scores, official_v1_evaluate(dev.json, predictions))


@needs_squad
def test_cli_squad_v2_with_na_probs(
    squad_dev: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dev = squad_dev["v2"]
    predictions, na_probs = _perturbed(dev.questions, seed=8), _na_probs(dev.questions, seed=9)
    argv = ["squad_v2", str(_write(tmp_path / "p.json", predictions)), "--data", str(V2_DEV)]
    _assert_same(_run_cli(argv, capsys), official_v2_evaluate(dev.json, predictions))
    argv += ["--na-prob", str(_write(tmp_path / "na.json", na_probs))]
    _assert_same(_run_cli(argv, capsys), official_v2_evaluate(dev.json, predictions, na_probs))


def _glue_gold(config: str, split: str = "validation") -> dict[str, list]:
    return pq.read_table(GLUE_PARQUET / config / split / "0000.parquet").to_pydict()


@needs_glue
@pytest.mark.parametrize("task", ["rte", "stsb", "mrpc"])
def test_cli_glue(
    task: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rte and stsb from the data dir (their TSVs), mrpc from its parquet file, whose idx are
    not row numbers; rte labels partly as names."""
    monkeypatch.setenv("DCFT_DATA_DIR", str(SHARED_DATA))
    gold = _glue_gold(task)
    rng = np.random.default_rng(3)
    if task == "stsb":
        preds = list(np.clip(np.asarray(gold["label"]) + rng.normal(size=len(gold["idx"])), 0, 5))
        expected = {
            "pearson": pearsonr(preds, gold["label"])[0],
            "spearman": spearmanr(preds, gold["label"])[0],
        }
    else:
        preds = rng.integers(0, 2, size=len(gold["idx"])).tolist()
        expected = {"accuracy": accuracy_score(gold["label"], preds)}
        if task == "mrpc":
            expected["f1"] = f1_score(gold["label"], preds)
    values = [float(v) for v in preds] if task == "stsb" else preds
    if task == "rte":
        names = ("entailment", "not_entailment")
        values = [names[v] if i % 2 else v for i, v in enumerate(values)]
    path = _write(tmp_path / "p.json", dict(zip(map(str, gold["idx"]), values, strict=True)))
    argv = [task, str(path)]
    if task == "mrpc":
        argv += ["--data", str(GLUE_PARQUET / "mrpc" / "validation" / "0000.parquet")]
    assert _run_cli(argv, capsys) == pytest.approx(expected, rel=1e-12)


@needs_glue
def test_cli_refuses_hidden_test_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    test_file = GLUE_PARQUET / "sst2" / "test" / "0000.parquet"
    predictions = dict.fromkeys(map(str, _glue_gold("sst2", "test")["idx"]), 1)
    err = _cli_error(
        ["sst2", str(_write(tmp_path / "p.json", predictions)), "--data", str(test_file)], capsys
    )
    assert "sst2" in err and str(test_file) in err and "hidden" in err


@needs_glue
def test_cli_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCFT_DATA_DIR", str(SHARED_DATA))
    gold = _glue_gold("rte")
    partial = _write(tmp_path / "partial.json", dict.fromkeys(map(str, gold["idx"][:-1]), 0))
    err = _cli_error(["rte", str(partial)], capsys)
    assert str(partial) in err and "1 missing" in err and "[276]" in err
    missing = tmp_path / "absent.json"
    assert str(missing) in _cli_error(["rte", str(missing)], capsys)
    not_json = tmp_path / "bad.json"
    not_json.write_text("{oops")
    assert "cannot read predictions file" in _cli_error(["rte", str(not_json)], capsys)
    full = _write(tmp_path / "full.json", dict.fromkeys(map(str, gold["idx"]), 7))
    assert "label 7 is not valid for rte" in _cli_error(["rte", str(full)], capsys)
    assert "validation_matched" in _cli_error(["mnli", str(full), "--split", "test"], capsys)
    assert "only applies to squad_v2" in _cli_error(
        ["rte", str(full), "--na-prob", str(full)], capsys
    )


def test_cli_unknown_task_exits_2_naming_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = _cli_error(["wnli", str(tmp_path / "p.json")], capsys)
    assert "'wnli'" in err and "'cola'" in err and "'squad_v2'" in err
