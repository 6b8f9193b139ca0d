"""The CPU study's rows and tasks are its experiments' (conf/experiment/mini-*.yaml, the sweeps
of the tables at ``mini`` scale): dcft.report.study's ROWS and TASKS, which give them labels and
an order, must name exactly the settings and tasks those sweeps train."""

from __future__ import annotations

from dcft.report.study import ROWS, TASKS
from dcft.sweep import experiments, tables
from dcft.table_tags import sweep_keys

MINI = [experiment for table in tables() for experiment in experiments(table, "mini")]


def test_the_study_rows_are_the_mini_sweeps_settings():
    assert sorted(MINI) == ["mini-table1", "mini-table4", "mini-table5"]
    keys = set().union(*(sweep_keys(experiment) for experiment in MINI))
    assert {model for model, _, _ in keys} == {"minilm"}
    slugs = [slug for slug, _ in ROWS]
    assert len(slugs) == len(set(slugs))
    assert set(slugs) == {slug for _, _, slug in keys}
    assert set(TASKS) == {task for _, task, _ in keys}
