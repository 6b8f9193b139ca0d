"""trainer.predict=true: GLUE benchmark-server files for the test sets and dev predictions that
``python -m dcft.score`` (and the official SQuAD scripts) take, on tiny models; the formats
against hand-made expected files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dcft.data import DataFormatError, get_task, load_test_data
from dcft.data.glue import read_glue_parquet
from dcft.data.location import tsv_path
from dcft.data.submission import glue_dev_predictions, glue_submission_tsv
from dcft.score import score
from tests.conftest import FAST, SHARED_DATA, TEST_INDEX_BASE, place, write_tiny_data

# Hand-made: what the GLUE server reads (jiant's strict GLUE format, GLUE's submission page).
EXPECTED = {
    "rte": ([[2.0, -1.0], [-3.0, 0.5]], "index\tprediction\n7\tentailment\n9\tnot_entailment\n"),
    "qnli": ([[0.1, 0.0], [0.0, 0.1]], "index\tprediction\n7\tentailment\n9\tnot_entailment\n"),
    "mnli": (
        [[0.0, 1.0, 0.5], [0.0, 0.1, 0.5]],
        "index\tprediction\n7\tneutral\n9\tcontradiction\n",
    ),
    "cola": ([[0.0, 1.0], [1.0, 0.0]], "index\tprediction\n7\t1\n9\t0\n"),
    "sst2": ([[0.0, 1.0], [1.0, 0.0]], "index\tprediction\n7\t1\n9\t0\n"),
    "mrpc": ([[0.0, 1.0], [1.0, 0.0]], "index\tprediction\n7\t1\n9\t0\n"),
    "qqp": ([[0.0, 1.0], [1.0, 0.0]], "index\tprediction\n7\t1\n9\t0\n"),
    "stsb": ([[5.3], [2.71828]], "index\tprediction\n7\t5.000\n9\t2.718\n"),
}


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_submission_files_use_the_servers_labels(task):
    logits, expected = EXPECTED[task]
    assert glue_submission_tsv(get_task(task), [7, 9], np.array(logits)) == expected


def test_dev_predictions_keep_stsb_unclipped_and_key_by_idx():
    assert glue_dev_predictions(get_task("stsb"), [3, 1], [5.5, -0.25]) == {"3": 5.5, "1": -0.25}
    assert glue_dev_predictions(get_task("mnli"), [0], [2]) == {"0": "contradiction"}


def test_server_file_names():
    names = {t: [s.submission for s in get_task(t).test_splits] for t in EXPECTED}
    assert names == {
        "cola": ["CoLA.tsv"],
        "sst2": ["SST-2.tsv"],
        "mrpc": ["MRPC.tsv"],
        "qqp": ["QQP.tsv"],
        "stsb": ["STS-B.tsv"],
        "mnli": ["MNLI-m.tsv", "MNLI-mm.tsv"],
        "qnli": ["QNLI.tsv"],
        "rte": ["RTE.tsv"],
    }


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "stsb", "qnli", "rte"])
def test_real_test_sets_read_whole_and_match_their_parquet_copies(task):
    """The distribution's test TSVs (row counts of shared/data/SOURCES.tsv) hold the same
    examples as the Hub's parquet copies, index for idx."""
    spec = get_task(task)
    tsv = load_test_data(task, SHARED_DATA).splits["test"]
    parquet = read_glue_parquet(SHARED_DATA / "glue_parquet" / task / "test", spec, test=True)
    sources = (SHARED_DATA / "SOURCES.tsv").read_text().splitlines()
    rows = next(
        int(line.split("\t")[3])
        for line in sources
        if line.startswith(f"{tsv_path(SHARED_DATA, spec, 'test').relative_to(SHARED_DATA)}\t")
    )
    assert len(tsv) == len(parquet) == rows
    assert tsv["idx"] == parquet["idx"] == list(range(rows))
    for field in spec.text_fields:
        assert tsv[field][:50] == parquet[field][:50]


def _read_submission(path: Path) -> tuple[list[str], list[int], list[str]]:
    header, *rows = path.read_text().splitlines()
    cells = [row.split("\t") for row in rows]
    return header.split("\t"), [int(i) for i, _ in cells], [p for _, p in cells]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["rte", "mnli", "stsb"])
def test_glue_run_writes_server_files_and_rescorable_dev_predictions(
    hydra_main, tmp_path, tiny_data, task
):
    hydra_main(
        [f"task={task}", "method=lora", "trainer.predict=true", *FAST, *place(tmp_path, tiny_data)]
    )
    (path,) = (tmp_path / "results").rglob("seed*.json")
    record = json.loads(path.read_text())
    spec = get_task(task)
    folder = Path(record["predict"]["dir"])
    assert folder == Path(record["run_dir"]) / "predict"

    for test in spec.test_splits:
        header, idx, labels = _read_submission(folder / "test" / test.submission)
        assert header == ["index", "prediction"]
        assert idx == [TEST_INDEX_BASE + i for i in range(24)]
        if spec.is_regression:
            assert all(0.0 <= float(v) <= 5.0 and len(v.split(".")[1]) == 3 for v in labels)
        else:
            assert set(labels) <= set(spec.label_names)
        files = record["predict"]["test_data"]["files"][test.split]
        assert files[0]["path"] == str(tsv_path(tiny_data, spec, test.split).relative_to(tiny_data))

    last = record["last"]["metrics"]
    for split in spec.eval_splits:
        dev = tsv_path(tiny_data, spec, split)
        rescored = score(task, folder / split / "predictions.json", data=dev, split=split)
        assert rescored == pytest.approx(
            {k: v for k, v in last[split].items() if k in spec.metrics}
        )


@pytest.mark.slow
def test_squad_run_writes_run_qa_files_that_dcft_score_takes(hydra_main, tmp_path, tiny_data):
    argv = ["task=squad_v2", "method=lora", "trainer.predict=true", "task.max_length=64"]
    hydra_main([*argv, "task.doc_stride=32", *FAST, *place(tmp_path, tiny_data)])
    (path,) = (tmp_path / "results").rglob("seed*.json")
    record = json.loads(path.read_text())
    folder = Path(record["predict"]["dir"]) / "validation"
    assert sorted(p.name for p in folder.iterdir()) == [
        "nbest_predictions.json",
        "null_odds.json",
        "predictions.json",
    ]
    rescored = score(
        "squad_v2",
        folder / "predictions.json",
        data=tiny_data / "squad" / "v2.0" / "dev-v2.0.json",
        na_prob_file=folder / "null_odds.json",
    )
    last = record["last"]["metrics"]["validation"]
    assert rescored["exact"] == pytest.approx(last["exact_match"])
    assert rescored["f1"] == pytest.approx(last["f1"])

    predictions = json.loads((folder / "predictions.json").read_text())
    nbest = json.loads((folder / "nbest_predictions.json").read_text())
    odds = json.loads((folder / "null_odds.json").read_text())
    assert set(nbest) == set(predictions) == set(odds)
    for qid, entries in nbest.items():
        assert sum(e["probability"] for e in entries) == pytest.approx(1.0)
        spans = [e for e in entries if e["text"]]
        best_span = spans[0]["start_logit"] + spans[0]["end_logit"] if spans else -np.inf
        null = next(e for e in entries if not e["text"])
        assert odds[qid] == pytest.approx(null["start_logit"] + null["end_logit"] - best_span)
        assert predictions[qid] == ("" if odds[qid] > 0 else spans[0]["text"])


def test_a_malformed_test_file_is_refused_naming_file_and_line(tmp_path):
    data = write_tiny_data(tmp_path, n_train=4, n_eval=4)
    path = tsv_path(data, get_task("rte"), "test")
    lines = path.read_text().splitlines()
    lines[2] = "x" + lines[2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=rf"{path}, line 3: index 'x10\d' is not a whole"):
        load_test_data("rte", data)
