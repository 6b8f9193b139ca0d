"""Every experiment config composes, and every table's sweep expands to exactly its runs."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from dcft.sweep import CONF_DIR, experiments, job_overrides, main, plan, tables

# cells (model x task x method setting) per table; the paper's tables use 5 seeds, the study 3
PAPER_CELLS = {
    "table1": 8 * 9 + 8 * 7,
    "table2": 4 * 3,
    "table3": 2 * 5,
    "table4": 6 * 6,
    "table5": 4 * 4,
    "table6": 4 * 6,  # the paper's five rows + q,k,v,o,ffn_out beside its Q,K,V,O (18.4K)
}
# The CPU study (3 seeds each): Table 1's methods + head only, Table 4's kernels, Table 5's strides.
MINI_CELLS = {"table1": 4 * 10, "table4": 4 * 6, "table5": 2 * 4}
ALL_EXPERIMENTS = [e for t in PAPER_CELLS for s in ("paper", "mini") for e in experiments(t, s)]


@pytest.fixture
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def test_every_table_has_its_experiments():
    assert tables() == sorted(PAPER_CELLS)
    assert len(ALL_EXPERIMENTS) == 7 + 3  # Table 1 is split by model; the study has three


@pytest.mark.parametrize("experiment", ALL_EXPERIMENTS)
def test_experiment_composes_into_a_multirun(hydra_conf, experiment):
    cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.experiment.removeprefix("mini-").split("-")[0] in PAPER_CELLS
    assert (cfg.model.name == "minilm") == experiment.startswith("mini-")


@pytest.mark.parametrize("table", sorted(PAPER_CELLS))
def test_sweeps_expand_to_exactly_the_tables_runs(hydra_conf, table):
    paper = sum(len(job_overrides(e)) for e in experiments(table))
    mini = sum(len(job_overrides(e)) for e in experiments(table, "mini"))
    assert paper == 5 * PAPER_CELLS[table]
    assert mini == 3 * MINI_CELLS.get(table, 0)
    assert sum(len(job_overrides(e, ["seed=range(0,2)"])) for e in experiments(table)) == (
        2 * PAPER_CELLS[table]
    )


def test_unknown_experiment_lists_the_existing_ones():
    with pytest.raises(ValueError, match=r"unknown experiment 'table9'; existing: table1, table2"):
        experiments("table9")


@pytest.mark.parametrize(("table", "scale"), [("table5", "paper"), ("table5", "mini")])
def test_dry_run_names_every_run_and_sees_finished_ones(tmp_path, table, scale):
    runs = plan(table, scale, [f"results_dir={tmp_path}", "seed=0"])
    cells = PAPER_CELLS[table] if scale == "paper" else MINI_CELLS[table]
    assert len(runs) == cells
    assert len({r.record for r in runs}) == cells
    assert {r.status for r in runs} == {"to do"}
    done = runs[0].record
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"status": "finished", "identity": runs[0].identity.to_dict()}))
    runs[1].record.parent.mkdir(parents=True, exist_ok=True)
    runs[1].record.write_text("{not json")
    again = plan(table, scale, [f"results_dir={tmp_path}", "seed=0"])
    assert [r.status for r in again[:2]] == ["finished", "corrupt"]
    assert {r.status for r in again[2:]} == {"to do"}
    # A record of another run copied to this path is not trusted as this run's.
    runs[2].record.parent.mkdir(parents=True, exist_ok=True)
    runs[2].record.write_text(done.read_text())
    assert plan(table, scale, [f"results_dir={tmp_path}", "seed=0"])[2].status == "foreign"


def test_cli_takes_overrides_after_its_flags(tmp_path, capsys):
    """As ``make reproduce-tableN DRY_RUN=1 HYDRA_ARGS=...`` calls it: flags, then overrides."""
    main(["table4", "--scale", "mini", "--dry-run", f"results_dir={tmp_path}", "task=mrpc"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    runs = 3 * MINI_CELLS["table4"] // 4  # one task of four, three seeds
    assert last == f"{runs} runs: {runs} to do"


def test_table5_and_table6_cover_the_papers_settings():
    strides = {r.identity.options["stride"] for r in plan("table5", overrides=["seed=0"])}
    assert strides == {1, 2, 4, 8}
    targets = {tuple(r.identity.options["targets"]) for r in plan("table6", overrides=["seed=0"])}
    assert targets == {
        ("q", "k"),
        ("q", "v"),
        ("q", "k", "v"),
        ("q", "k", "v", "o"),
        ("q", "k", "v", "o", "ffn_out"),
        ("q", "k", "v", "o", "ffn_in", "ffn_out"),
    }
