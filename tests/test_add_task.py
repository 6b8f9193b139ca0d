"""Adding a GLUE-like task is one TaskSpec entry in dcft/data/tasks.py plus one
conf/task/*.yaml: a copy of the package gains a toy task that way (nothing else edited),
and a run of it reads its TSVs, trains and records the metrics its spec declares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, package_copy, place, records, train_cli

# Its own folder, column names, field name and word labels: the reader can only know them from
# the entry.
TOY_TASK = """

TASKS["toy"] = _glue(
    "toy",
    "Toy",
    tsv_layout("TOY", review="text", label="verdict", word_labels=True),
    label_names=("bad", "good"),
    metrics=("f1", "accuracy"),
    max_length=24,
)
"""

TOY_CONFIG = """
name: toy
max_length: ${task_spec:max_length}
"""


def _write_toy_tsvs(root: Path) -> None:
    words = ["a", "fine", "dull", "film", "plot", "great", "bad", "cast", "tale", "long"]
    for name, n in (("train.tsv", 16), ("dev.tsv", 8)):
        rows = [
            f"{i}\t{' '.join(words[(i + k) % len(words)] for k in range(5))}\t"
            f"{('bad', 'good')[i % 2]}"
            for i in range(n)
        ]
        path = root / "glue" / "TOY" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(["id\ttext\tverdict", *rows]) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_a_glue_task_is_one_spec_and_one_yaml(tmp_path: Path) -> None:
    tree = package_copy(tmp_path / "tree")
    with (tree / "dcft/data/tasks.py").open("a") as tasks:
        tasks.write(TOY_TASK)
    (tree / "conf/task/toy.yaml").write_text(TOY_CONFIG)
    _write_toy_tsvs(tmp_path / "data")

    argv = ["task=toy", "method=lora", "seed=0", *FAST, *place(tmp_path, tmp_path / "data")]
    train_cli(argv, cwd=tmp_path, pythonpath=tree)
    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    assert record["status"] == "finished"
    assert path.parent.parent.name == "toy"
    assert record["main_metric"] == {"name": "f1", "split": "validation"}
    for evaluation in record["evaluations"]:
        assert set(evaluation["metrics"]["validation"]) - {"loss"} == {"f1", "accuracy"}
    assert record["config"]["task"] == {"name": "toy", "max_length": 24}
    files = record["data"]["files"]
    assert [f["path"] for f in files["train"]] == ["glue/TOY/train.tsv"]
    assert record["data"]["examples"]["validation"] == {"available": 8, "used": 8}
    assert not (REPO / "conf/task/toy.yaml").exists()
