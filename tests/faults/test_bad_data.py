"""Bad data must fail at load with the file, the line (or question id / row) and the rule broken
(issue 12 item 8): nothing malformed may reach training."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dcft.data import DataFormatError, load_raw_splits
from tests.conftest import write_tiny_data

SCORE_RULE = "is not a number in [0, 5]"
SPAN_RULE = "context[answer_start : answer_start + len(text)] == text"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_tiny_data(tmp_path, n_train=12, n_eval=6)


def load_error(task: str, root: Path, split: str = "train", **kwargs) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        load_raw_splits(task, root, splits=[split], **kwargs)
    return info.value


def assert_names(err: Exception, *parts: str) -> None:
    message = str(err)
    for part in parts:
        assert part in message, f"{part!r} missing from: {message}"


def replace_last_field(path: Path, line: int, value: str) -> None:
    """Set the last tab-separated field (the label or score) of 1-based ``line``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = lines[line - 1].rsplit("\t", 1)[0] + "\t" + value
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- SQuAD answer offsets


def squad_dev(root: Path, version: str = "v1.1") -> Path:
    return root / "squad" / version / f"dev-{version}.json"


def shift_answers(path: Path, shift: int | None = None, start: int | None = None) -> str:
    """Move every answer_start by ``shift`` or set it to ``start``; return the first answered id."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    first = None
    for paragraph in payload["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            for answer in qa["answers"]:
                answer["answer_start"] = answer["answer_start"] + shift if shift else start
                first = first or qa["id"]
    path.write_text(json.dumps(payload), encoding="utf-8")
    return first


@pytest.mark.parametrize("version", ["v1.1", "v2.0"])
def test_shifted_answer_start(data: Path, version: str) -> None:
    path = squad_dev(data, version)
    first = shift_answers(path, shift=7)
    err = load_error("squad_v1" if version == "v1.1" else "squad_v2", data, "validation")
    assert_names(err, str(path), f"question id {first!r}", SPAN_RULE, "the text first occurs at")
    assert err.record == f"question id {first!r}"


@pytest.mark.parametrize("start", [10_000, -3])
def test_answer_start_outside_context(data: Path, start: int) -> None:
    """Out-of-range starts used to become 'no answer' silently."""
    path = squad_dev(data)
    first = shift_answers(path, start=start)
    err = load_error("squad_v1", data, "validation")
    assert_names(err, str(path), f"question id {first!r}", f"answer_start {start}", SPAN_RULE)


def test_one_wrong_answer_among_good_ones(data: Path) -> None:
    path = squad_dev(data)
    payload = json.loads(path.read_text(encoding="utf-8"))
    qa = payload["data"][0]["paragraphs"][3]["qas"][0]
    qa["answers"].append({"text": "not in there", "answer_start": 0})
    path.write_text(json.dumps(payload), encoding="utf-8")
    err = load_error("squad_v1", data, "validation")
    assert_names(
        err, f"question id {qa['id']!r}", "the text is not in the context", "1 answer(s) in 1 of"
    )


# ---------------------------------------------------------------- STS-B scores


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "57", "-0.5", "5.01"])
def test_stsb_score_out_of_range(data: Path, score: str) -> None:
    path = data / "glue" / "STS-B" / "train.tsv"
    replace_last_field(path, 5, score)
    err = load_error("stsb", data)
    assert_names(err, f"{path}, line 5: score {score!r} {SCORE_RULE}")
    assert err.line == 5


def test_stsb_boundary_scores_load(data: Path) -> None:
    path = data / "glue" / "STS-B" / "train.tsv"
    replace_last_field(path, 2, "0")
    replace_last_field(path, 3, "5.000")
    train = load_raw_splits("stsb", data, splits=["train"])["train"]
    assert train["label"][:2] == [0.0, 5.0]


def write_parquet(root: Path, task: str, rows: list[dict], types: dict) -> Path:
    folder = root / "glue_parquet" / task / "train"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(types)), folder / "0000.parquet")
    return folder / "0000.parquet"


def test_stsb_parquet_nan_score(tmp_path: Path) -> None:
    rows = [
        {"sentence1": "a", "sentence2": "b", "label": s, "idx": i}
        for i, s in enumerate([1.0, 4.5, float("nan")])
    ]
    types = {"sentence1": pa.string(), "sentence2": pa.string(), "label": pa.float32()}
    shard = write_parquet(tmp_path, "stsb", rows, {**types, "idx": pa.int32()})
    err = load_error("stsb", tmp_path)
    assert_names(err, f"{shard}, row 2: score nan {SCORE_RULE}")


# ---------------------------------------------------------------- classification labels


@pytest.mark.parametrize(
    ("task", "folder", "line", "bad", "allowed"),
    [
        ("sst2", "SST-2", 4, "2", "['0', '1']"),
        ("cola", "CoLA", 3, "-1", "['0', '1']"),  # no header: the label is not the last field
        ("rte", "RTE", 2, "neutral", "['entailment', 'not_entailment']"),
        ("mnli", "MNLI", 6, "1", "['contradiction', 'entailment', 'neutral']"),
    ],
)
def test_tsv_label_outside_label_set(
    data: Path, task: str, folder: str, line: int, bad: str, allowed: str
) -> None:
    path = data / "glue" / folder / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = lines[line - 1].split("\t")
    fields[1 if task == "cola" else -1] = bad
    lines[line - 1] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = load_error(task, data)
    assert_names(err, f"{path}, line {line}: label {bad!r} is not one of {allowed}")


@pytest.mark.parametrize("bad", [2, -1])
def test_parquet_label_outside_label_set(tmp_path: Path, bad: int) -> None:
    rows = [{"sentence": "x y", "label": label, "idx": i} for i, label in enumerate([0, 1, bad])]
    shard = write_parquet(
        tmp_path, "sst2", rows, {"sentence": pa.string(), "label": pa.int64(), "idx": pa.int32()}
    )
    err = load_error("sst2", tmp_path)
    assert_names(err, f"{shard}, row 2: label {bad} is not one of [0, 1]")


# ---------------------------------------------------------------- encoding and field size


def test_tsv_not_utf8(data: Path) -> None:
    """The bad byte sits far past the first 8 KB read buffer, so its line must be computed."""
    path = data / "glue" / "SST-2" / "train.tsv"
    good = [f"sentence number {i} is fine \t{i % 2}" for i in range(2000)]
    text = "sentence\tlabel\n" + "\n".join(good[:1500]) + "\n"
    bad_offset = len(text.encode("utf-8")) + len("un film tr")
    body = text.encode("utf-8") + "un film très bon \t1\n".encode("latin-1")
    path.write_bytes(body + "\n".join(good[1500:]).encode("utf-8") + b"\n")
    err = load_error("sst2", data)
    assert_names(err, f"{path}, line 1502: not UTF-8", f"byte 0xe8 at byte offset {bad_offset}")
    assert err.line == 1502


def test_squad_not_utf8(data: Path) -> None:
    path = squad_dev(data)
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["data"][0]["title"] = "Café"
    text = json.dumps(payload, indent=1, ensure_ascii=False)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "Café" in row)
    path.write_bytes(text.encode("latin-1"))
    err = load_error("squad_v1", data, "validation")
    assert_names(err, f"{path}, line {line}: not UTF-8", "byte 0xe9 at byte offset")


def test_field_too_large(data: Path) -> None:
    path = data / "glue" / "SST-2" / "train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = "x" * 2_000_000 + "\t1"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = load_error("sst2", data)
    assert_names(err, f"{path}, line 3: field too large")


# ---------------------------------------------------------------- no examples


@pytest.mark.parametrize(
    ("task", "folder", "header_only"),
    [
        ("sst2", "SST-2", True),
        ("sst2", "SST-2", False),
        ("stsb", "STS-B", True),
        ("cola", "CoLA", False),
    ],
)
def test_train_file_without_examples(data: Path, task: str, folder: str, header_only: bool) -> None:
    """Header-only or empty (CoLA has no header); these used to fail later in transformers."""
    path = data / "glue" / folder / "train.tsv"
    header = path.read_text(encoding="utf-8").splitlines()[0] + "\n"
    path.write_text(header if header_only else "", encoding="utf-8")
    err = load_error(task, data)
    assert_names(err, str(path), "no examples")


def test_parquet_without_rows(tmp_path: Path) -> None:
    text = {"sentence1": pa.string(), "sentence2": pa.string()}
    shard = write_parquet(tmp_path, "rte", [], {**text, "label": pa.int64(), "idx": pa.int32()})
    err = load_error("rte", tmp_path)
    assert_names(err, str(shard.parent), "no examples")


def test_squad_without_questions(data: Path) -> None:
    path = squad_dev(data)
    path.write_text(json.dumps({"version": "1.1", "data": []}), encoding="utf-8")
    err = load_error("squad_v1", data, "validation")
    assert_names(err, str(path), "no examples")


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"max_train_samples": 0}, "data.max_train_samples"),
        ({"max_eval_samples": 0}, "data.max_eval_samples"),
    ],
)
def test_zero_sample_limit(data: Path, kwargs: dict, setting: str) -> None:
    with pytest.raises(ValueError, match=rf"{setting}=0 leaves no examples") as info:
        load_raw_splits("rte", data, **kwargs)
    assert_names(info.value, setting)
