"""The keys ``dcft.sweep --dry-run`` computes without composing every run (dcft.run.composer)
are the keys ``dcft.train`` computes (issue 27): equal to Hydra's composition for every run of
every table on a tiny model and for a sample of the paper tables, and to the records of real tiny
runs; and the dry run's summary says what is finished, failed, running and to do."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from hydra import compose, initialize_config_dir

from dcft.run.config import CONF_DIR
from dcft.run.identity import RunIdentity
from dcft.run.records import lock_path
from dcft.run.runner import run
from dcft.sweep import main, parts, plan, tables
from tests.conftest import FAST, compose_config

SWEEPS = [(table, scale) for scale in ("paper", "mini") for table in tables(scale)]
# Every 7th run of the paper tables: every table, model, several tasks, methods and seeds.
PAPER_SAMPLE = 7


def _composed(table: str, scale: str, overrides: list[str]) -> list[tuple[RunIdentity, str]]:
    """Each run's identity and record path as ``dcft.train`` composes them with Hydra."""
    keys = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for part in parts(table, scale):
            for job in part.jobs(overrides):
                cfg = compose("config", overrides=[*part.fixed(), *job])
                identity = RunIdentity.from_config(cfg)
                keys.append((identity, str(identity.record_path(cfg.results_dir))))
    return keys


def _planned(table: str, scale: str, overrides: list[str]) -> list[tuple[RunIdentity, str]]:
    return [(r.identity, str(r.record)) for r in plan(table, scale, overrides)]


@pytest.fixture
def data(tiny_data, monkeypatch):
    monkeypatch.setenv("DCFT_DATA_DIR", str(tiny_data))
    return tiny_data


@pytest.mark.parametrize(("table", "scale"), SWEEPS)
def test_every_runs_key_is_the_composed_key_on_a_tiny_model(table, scale, data, tmp_path):
    overrides = ["model=tiny-bert", "seed=0", f"results_dir={tmp_path}"]
    planned = _planned(table, scale, overrides)
    assert planned and planned == _composed(table, scale, overrides)


@pytest.mark.parametrize("table", tables("paper"))
def test_a_sample_of_the_paper_tables_keys_is_the_composed_keys(table, data):
    """The paper's models with their per-task settings (conf/hparams), every seed."""
    runs = plan(table)[::PAPER_SAMPLE]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        part_of = {part.name: part for part in parts(table)}
        for r in runs:
            cfg = compose("config", overrides=[*part_of[r.experiment].fixed(), *r.overrides])
            assert (r.identity, r.record) == (
                RunIdentity.from_config(cfg),
                RunIdentity.from_config(cfg).record_path(cfg.results_dir),
            )
    assert len({r.identity.seed for r in runs}) > 1


def test_a_setting_that_interpolates_the_seed_is_keyed_per_seed(data, tmp_path):
    overrides = ["task=mrpc", "data.subset_seed=${seed}", f"results_dir={tmp_path}"]
    planned = _planned("table4", "mini", overrides)
    assert planned == _composed("table4", "mini", overrides)
    by_seed = {i.seed: i.hparams_hash for i, _ in planned if i.method_slug == "dcft-k8-s8"}
    assert len(set(by_seed.values())) == 3  # the seeds no longer share their hash


@pytest.mark.parametrize("table", tables("paper"))
def test_a_real_tiny_run_of_every_table_is_found_by_the_dry_run(table, data, tmp_path):
    overrides = [*FAST, f"results_dir={tmp_path / 'results'}", f"outputs_dir={tmp_path / 'out'}"]
    first = plan(table, "paper", overrides)[0]
    fixed = parts(table)[[p.name for p in parts(table)].index(first.experiment)].fixed()
    record = run(compose_config([*fixed, *first.overrides]))
    assert record["status"] == "finished"
    again = plan(table, "paper", overrides)[0]
    assert again.status == "finished" and again.record.is_file()
    assert json.loads(again.record.read_text())["identity"] == first.identity.to_dict()


def _lock(path, pid: int, since: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": pid, "launch": "test", "since": since}
    path.write_text(json.dumps(owner))


def test_the_summary_counts_and_names_each_state(data, tmp_path, capsys):
    overrides = [f"results_dir={tmp_path}"]
    runs = plan("table5", "mini", overrides)
    finished, failed, running, stale, corrupt = runs[:5]
    for r, status, reason in ((finished, "finished", None), (failed, "failed", "loss is nan")):
        r.record.parent.mkdir(parents=True, exist_ok=True)
        record = {"status": status, "failure_reason": reason, "identity": r.identity.to_dict()}
        r.record.write_text(json.dumps(record))
    an_hour_ago = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 3720))
    _lock(lock_path(running.record), os.getpid(), an_hour_ago)
    dead = 2**22 + 1  # above any pid this machine hands out
    _lock(lock_path(stale.record), dead, an_hour_ago)
    corrupt.record.parent.mkdir(parents=True, exist_ok=True)
    corrupt.record.write_text("{not json")

    main(["table5", "--scale", "mini", "--dry-run", *overrides])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "table5 at mini scale: 24 runs"
    header = out[1].split()
    assert header == ["model", "task", "finished", "failed", "running", "to", "do", "corrupt"]
    assert out[2].split() == ["minilm", "sst2", "1", "1", "1", "8", "1"]
    assert out[3].split() == ["minilm", "stsb", "0", "0", "0", "12", "0"]
    assert out[4].split() == ["all", "1", "1", "1", "20", "1"]
    text = "\n".join(out)
    name = f"minilm-sst2-{failed.identity.method_slug}-seed{failed.identity.seed}"
    assert f"failed (1):\n  {name}: loss is nan\n    {failed.record}" in text
    assert f"host {socket.gethostname()}, pid {os.getpid()}, for 1 h 02 min" in text
    assert f"pid {dead}" in text and "stale lock" in text
    assert "corrupt (1):" in text
    assert out[-1] == "24 runs: 1 corrupt, 1 failed, 1 finished, 1 running, 20 to do"
    main(["table5", "--scale", "mini", "--list-runs", *overrides])
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[0] == "finished" and listed[0].endswith(str(finished.record))
    assert [line.split()[-1] for line in listed[:24]] == [str(r.record) for r in runs]
    assert listed[24:] == out
