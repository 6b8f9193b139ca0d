"""A table's tasks and methods are its table file's (specs/table/tableN.yaml); the experiment
files that sweep it at paper scale must train exactly its rows x columns, and every table sweep
takes its seeds from one place (``SEEDS``, as ``${seeds:SCALE}``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from omegaconf import OmegaConf

from dcft.report.tables import SCALES, RowSpec, table_specs
from dcft.run.config import CONF_DIR, SEEDS
from dcft.sweep import EXPERIMENT_DIR, ROW_SEEDS, experiments
from dcft.table_tags import _choices, _jobs, _method, _name

SWEPT = [spec for spec in table_specs() if spec.experiments.get("paper")]


def _settings(experiment: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(model, task, method, options) of every seed-free job of the experiment's sweep, read
    from its file (the defaults it chooses, its sweeper params, the method configs)."""
    path = EXPERIMENT_DIR / f"{experiment}.yaml"
    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params")
    choices = {**_choices(CONF_DIR / "config.yaml"), **_choices(path)}
    out = []
    for job in _jobs(params):
        name, options = _method(job.get("method", choices["method"]))
        options = {
            **options,
            **{k.split(".")[-1]: v for k, v in job.items() if k.startswith("method.options.")},
        }
        model, task = (_name(g, job.get(g, choices[g])) for g in ("model", "task"))
        out.append((model, task, name, options))
    return out


def _row_of(setting: tuple[str, str, str, dict[str, Any]], rows: tuple[RowSpec, ...]) -> list:
    """The indices of the rows whose model, method and stated options the setting has."""
    model, _, method, options = setting
    return [
        i
        for i, row in enumerate(rows)
        if (row.model, row.method) == (model, method)
        and all(options.get(k) == v for k, v in row.options.items())
    ]


@pytest.mark.parametrize("spec", SWEPT, ids=lambda spec: spec.name)
def test_paper_experiments_train_exactly_the_tables_rows_by_columns(spec):
    """Each job is one row's setting on one of the table's tasks, and each row x column cell is
    trained by exactly one setting: a task or method added to one file only fails here."""
    cells: Counter = Counter()
    for experiment in experiments(spec.name):
        for setting in _settings(experiment):
            rows = _row_of(setting, spec.printed)
            assert len(rows) == 1, f"{experiment}: {setting} matches rows {rows}"
            assert setting[1] in spec.columns, f"{experiment}: task {setting[1]} not a column"
            cells[(rows[0], setting[1])] += 1
    expected = {(i, task) for i in range(len(spec.printed)) for task in spec.columns}
    assert set(cells) == expected and set(cells.values()) == {1}


def test_the_check_sees_a_method_missing_from_the_table_file():
    spec = next(spec for spec in SWEPT if spec.name == "table4")
    setting = next(s for s in _settings("table4") if s[2] == "full")
    assert len(_row_of(setting, spec.printed)) == 1
    assert _row_of(setting, tuple(r for r in spec.printed if r.method != "full")) == []


@pytest.mark.parametrize("scale", SCALES)
def test_table_sweeps_take_their_seeds_from_one_place(scale):
    """Every table experiment sweeps ``${seeds:SCALE}`` (no literal seed range), which Hydra
    resolves to SEEDS' count, as the row sweeps do."""
    for spec in table_specs():
        for experiment in spec.experiments.get(scale, ()):
            raw = OmegaConf.load(EXPERIMENT_DIR / f"{experiment}.yaml")
            params = raw.hydra.sweeper.params
            assert OmegaConf.to_container(params)["seed"] == f"${{seeds:{scale}}}", experiment
            assert params.seed == f"range(0,{SEEDS[scale]})"
    assert ROW_SEEDS == f"range(0,{SEEDS['paper']})" == "range(0,5)"
