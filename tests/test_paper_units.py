"""The paper's units (GLUE scores x100, SQuAD's EM/F1 as recorded) are declared once, in
``TaskSpec.paper_units``: the W&B headline, the report's cells, the CPU study's scores and its
curves all print a recorded 0.8 the same way, and as the paper does (GLUE: 80.0 percent; SQuAD:
0.8, its EM/F1 being recorded 0-100 already)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcft.data.tasks import TASKS
from dcft.report.rows import Cell
from dcft.report.runs import Run
from dcft.report.study import evaluation_scores, score
from dcft.run.tracking import record_summary

RECORDED = 0.8


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_place_prints_a_score_in_the_papers_units(task):
    spec = TASKS[task]
    expected = RECORDED if task.startswith("squad") else 100 * RECORDED
    split = spec.eval_splits[0]
    scores = {split: {spec.metric: RECORDED}}
    evaluation = {"step": 7, "metrics": scores}
    record = {
        "status": "finished",
        "identity": {"task": task},
        "main_metric": {"name": spec.metric, "split": split},
        "best": evaluation,
        "last": evaluation,
        "evaluations": [evaluation],
    }
    run = Run(
        path=Path("r.json"),
        record=record,
        model="minilm",
        task=task,
        method="dcft",
        slug="dcft-k8-s8",
        options={},
        seed=0,
        hparams_hash="0123abcd",
        harness_version="1",
        settings="s",
        scores=scores,
        params=1,
        params_total=None,
        hours=None,
    )
    assert record_summary(record)["best/main"] == pytest.approx(expected)
    assert score(run) == pytest.approx(expected)
    assert evaluation_scores(run) == {7: pytest.approx(expected)}
    cell = Cell(task=task, split=split, metric=spec.metric, paper=None, label=spec.label)
    assert cell.factor * RECORDED == pytest.approx(expected)
