"""task=custom: your own CSV / TSV / JSON-lines files train, record, predict and are refused when
malformed (file and line), like a GLUE task."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import pytest

from dcft.data import DataFormatError, DataUnavailableError, load_task_data
from dcft.data.custom import custom_spec, infer_text_columns, use_task_config
from dcft.data.fingerprint import custom_fingerprint
from tests.conftest import FAST, records, train_cli

WORDS = ["good", "bad", "great", "awful", "fine", "dull", "movie", "plot", "acting", "music"]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(6))


def write_csv(path: Path, n: int, labels=("pos", "neg", "neu"), seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review", "label"])
        for i in range(n):
            writer.writerow([i, _sentence(rng), labels[i % len(labels)]])
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def task(train: Path, dev: Path, **extra) -> dict:
    return {
        "name": "custom",
        "train_file": str(train),
        "validation_file": str(dev),
        "test_file": None,
        "text_columns": None,
        "label_column": "label",
        "regression": None,
        "max_length": 32,
        **extra,
    }


@pytest.mark.parametrize(
    ("columns", "texts"),
    [
        (["idx", "sentence2", "label", "sentence1"], ["sentence1", "sentence2"]),
        (["premise", "hypothesis", "genre", "label"], ["premise", "hypothesis"]),
        (["label", "text"], ["text"]),
    ],
)
def test_text_columns_are_chosen_as_run_glue_does(columns, texts):
    assert infer_text_columns(columns, "label") == texts


def test_classes_come_sorted_from_the_training_file(tmp_path):
    train = write_csv(tmp_path / "t.csv", 9)
    spec = custom_spec(task(train, train))
    assert spec.label_names == ("neg", "neu", "pos") and not spec.is_regression
    assert spec.text_fields == ("id", "review")  # run_glue's rule: the first two columns
    assert spec.metrics == ("accuracy",)
    numbers = write_csv(tmp_path / "n.csv", 6, labels=("10", "2"))
    spec = custom_spec(task(numbers, numbers))
    assert spec.label_names == ("2", "10") and spec.metrics == ("accuracy", "f1")


def test_regression_is_inferred_from_non_whole_numbers_or_asked_for(tmp_path):
    rows = [{"text": "a b", "label": value} for value in (0.5, -1.0, 2)]
    scores = write_jsonl(tmp_path / "r.jsonl", rows)
    spec = custom_spec(task(scores, scores))
    assert spec.is_regression and spec.metrics == ("pearson", "spearman")
    whole = [{"text": "a b", "label": value} for value in (1, 3)]
    train = write_jsonl(tmp_path / "w.jsonl", whole)
    assert not custom_spec(task(train, train)).is_regression
    assert custom_spec(task(train, train, regression=True)).is_regression


def _load_error(config: dict) -> str:
    with pytest.raises(DataFormatError) as err:
        use_task_config(config)
        load_task_data("custom")
    return str(err.value)


def test_malformed_files_are_refused_naming_file_and_line(tmp_path):
    train = write_csv(tmp_path / "train.csv", 9)
    dev = write_csv(tmp_path / "dev.csv", 4, labels=("pos", "maybe"))
    message = _load_error(task(train, dev, text_columns=["review"]))
    assert message.startswith(f"{dev}, line 3: label 'maybe' is not one of ['neg', 'neu', 'pos']")

    short = tmp_path / "short.csv"
    short.write_text("review,label\nfine movie,pos\njust text\n")
    assert _load_error(task(train, short, text_columns=["review"])).startswith(
        f"{short}, line 3: expected 2 fields, got 1"
    )
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"review": "a", "label": "pos"}\n{"review": "b", label}\n')
    assert f"{bad_json}, line 2: invalid JSON" in _load_error(
        task(train, bad_json, text_columns=["review"])
    )
    assert "lacks columns ['text']" in _load_error(task(train, dev, text_columns=["text"]))
    reg = write_jsonl(
        tmp_path / "reg.jsonl", [{"text": "a", "label": 0.5}, {"text": "b", "label": "x"}]
    )
    assert f"{reg}, line 2: label 'x' is not a finite number" in _load_error(
        task(reg, reg, regression=True)
    )
    sheet = tmp_path / "t.xlsx"
    sheet.write_bytes(b"PK")
    assert "unknown file type '.xlsx'" in _load_error(task(sheet, dev))
    with pytest.raises(DataUnavailableError, match=r"task.validation_file: no such file"):
        use_task_config(task(train, tmp_path / "missing.csv"))


def test_the_runs_key_follows_the_files_examples(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    for folder in (here, there):
        folder.mkdir()
        write_csv(folder / "t.csv", 9)
        write_csv(folder / "d.csv", 3)

    def key_of(train: Path, dev: Path, texts=("review",)) -> str:
        return custom_fingerprint(task(train, dev, text_columns=list(texts)))

    key = key_of(here / "t.csv", here / "d.csv")
    assert key_of(there / "t.csv", there / "d.csv") == key  # moved: same key
    with (here / "t.csv").open() as handle:  # the same examples as JSON lines, columns reordered
        rows = [{"label": r["label"], "review": r["review"]} for r in csv.DictReader(handle)]
    as_jsonl = write_jsonl(there / "t.jsonl", rows)
    assert key_of(as_jsonl, there / "d.csv") == key
    # Other text columns make other examples of the same files (not a stale cache entry).
    assert key_of(here / "t.csv", here / "d.csv", ("id", "review")) != key
    write_csv(there / "t.csv", 9, seed=1)
    assert key_of(there / "t.csv", there / "d.csv") != key


@pytest.mark.slow
def test_a_csv_of_ones_own_trains_records_and_predicts(tmp_path):
    train = write_csv(tmp_path / "train.csv", 40)
    dev = write_csv(tmp_path / "dev.csv", 12, seed=1)
    test = write_csv(tmp_path / "test.csv", 8, seed=2)
    argv = [
        "task=custom",
        f"task.train_file={train}",
        f"task.validation_file={dev}",
        f"task.test_file={test}",
        "task.text_columns=[review]",
        "trainer.predict=true",
        "method=lora",
        *FAST,
        f"results_dir={tmp_path / 'results'}",
        f"outputs_dir={tmp_path / 'outputs'}",
    ]
    train_cli(argv, cwd=tmp_path)
    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    assert record["status"] == "finished" and path.parent.parent.name == "custom"
    files = record["data"]["files"]
    assert files["train"][0]["sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()
    assert record["data"]["task"] == {
        "text_columns": ["review"],
        "labels": ["neg", "neu", "pos"],
        "regression": False,
    }
    assert record["data"]["examples"]["validation"] == {"available": 12, "used": 12}

    # The dev predictions, scored here against dev.csv, give the record's last accuracy.
    folder = Path(record["predict"]["dir"])
    predicted = json.loads((folder / "validation" / "predictions.json").read_text())
    with dev.open() as handle:
        gold = [row["label"] for row in csv.DictReader(handle)]
    accuracy = sum(predicted[str(i)] == label for i, label in enumerate(gold)) / len(gold)
    assert record["last"]["metrics"]["validation"]["accuracy"] == pytest.approx(accuracy)

    header, *rows = (folder / "test" / "predictions.tsv").read_text().splitlines()
    assert header == "index\tprediction"
    assert [row.split("\t")[0] for row in rows] == [str(i) for i in range(8)]
    assert {row.split("\t")[1] for row in rows} <= {"neg", "neu", "pos"}
