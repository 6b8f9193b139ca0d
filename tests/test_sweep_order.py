"""dcft.sweep expands a multirun with Hydra's public override parser; the jobs and their order
are those of Hydra's basic sweeper, whose private ``split_arguments`` is used here only, as the
reference (composed from the experiment through Hydra's public ``compose``)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from dcft.report.tables import table_specs
from dcft.sweep import CONF_DIR, SCALES, _expand, _row_part, job_overrides, parts, tables

# Every experiment of every table, and every table's rows swept as a table naming no experiment.
PARTS = [part for table in tables() for scale in SCALES for part in parts(table, scale)] + [
    _row_part(spec, row) for spec in table_specs() for row in spec.printed
]
OVERRIDES = [
    [],
    ["seed=range(0,3)"],
    ["seed=1,0", "trainer.max_steps=2"],
    ["data.max_train_samples=8,16", "logger=none"],
    ["seed=0", "seed=2,1"],  # a key given twice: its last values
]


def _basic_sweeper(params: dict[str, str], overrides: list[str]) -> list[list[str]]:
    """Hydra's basic sweeper's jobs: params not overridden, then the overrides."""
    given = {o.split("=", 1)[0] for o in overrides}
    sweep = [f"{k}={v}" for k, v in params.items() if k not in given] + overrides
    parsed = OverridesParser.create().parse_overrides(sweep)
    [jobs] = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return jobs


@pytest.fixture(scope="module")
def swept() -> dict[str, dict[str, str]]:
    """Each part's sweeper params: an experiment's as Hydra composes them, a row's as given."""
    out = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for part in PARTS:
            if part.experiment:
                cfg = compose("config", [f"experiment={part.experiment}"], return_hydra_config=True)
                out[part.name] = dict(cfg.hydra.sweeper.params or {})
            else:
                out[part.name] = dict(part.params)
    return out


@pytest.mark.parametrize("overrides", OVERRIDES, ids=" ".join)
def test_jobs_and_their_order_are_the_basic_sweepers(swept, overrides):
    assert len(PARTS) > 40
    for part in PARTS:
        expected = _basic_sweeper(swept[part.name], overrides)
        assert len(expected) > 1
        assert _expand(swept[part.name], overrides) == expected, part.name


def test_an_experiments_jobs_are_its_composed_sweep(swept):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for part in PARTS[:3]:
            assert job_overrides(part.experiment) == _basic_sweeper(swept[part.name], [])


def test_an_interval_sweep_is_refused():
    with pytest.raises(ValueError, match=r"lr=interval\(0.1, 1.0\): .*lists and ranges"):
        _expand({"lr": "interval(0.1, 1.0)"}, [])
