"""dcft.report --from-wandb: W&B runs built from records (their config and summary as
dcft.run.tracking writes them, through JSON) render the tables the records render (wandb.Api
mocked)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import dcft.run.records
from dcft.report.cli import main
from dcft.report.render import tex_escape
from dcft.report.tables import TABLES
from dcft.report.wandb_runs import load_wandb_runs
from dcft.run.tracking import record_summary, run_config
from tests.test_report import write_run

PROJECT = "lab/dcft-repro"


@pytest.fixture(autouse=True)
def _fast_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_record's environment probe (git, package versions) is irrelevant here and slow."""
    monkeypatch.setattr(dcft.run.records, "environment", dict)


@dataclass
class FakeRun:
    """The attributes of wandb.apis.public.Run that dcft.report.wandb_runs reads."""

    path: list[str]
    config: dict[str, Any]
    summary_metrics: dict[str, Any]
    created_at: str
    state: str


class FakeApi:
    def __init__(self, runs: list[FakeRun]) -> None:
        self._runs = runs

    def runs(self, path: str, **kwargs: Any) -> list[FakeRun]:
        assert path == PROJECT
        return self._runs


def _through_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def wandb_run(record_path: Path, run_id: str) -> FakeRun:
    """The W&B run dcft.run.tracking leaves for this record (config at init, summary at the end)."""
    record = json.loads(record_path.read_text())
    config = run_config(
        record["identity"], record["config"], record["harness_version"], record.get("data")
    )
    summary = record_summary(record) if record["status"] == "finished" else {}
    summary.update(status=record["status"], failure_reason=record["failure_reason"])
    state = "finished" if record["status"] == "finished" else "failed"
    return FakeRun(
        [*PROJECT.split("/"), run_id],
        _through_json(config),
        _through_json(summary),
        record["created_at"],
        state,
    )


@pytest.fixture
def records(tmp_path: Path) -> list[Path]:
    """Six records: DCFT d=8 on CoLA (3 seeds) and RTE (2 seeds at two learning rates: a cell
    with a conflict), and a DCFT d=2 CoLA run that failed."""
    root = tmp_path / "runs"
    paths = [
        write_run(root, "cola", seed, 0.6 + 0.05 * seed, options={"kernel": 8}) for seed in range(3)
    ]
    paths += [
        write_run(root, "rte", 0, 0.7, options={"kernel": 8}),
        write_run(root, "rte", 1, 0.75, options={"kernel": 8}, learning_rate=2e-3),
    ]
    failed = write_run(root, "cola", 0, 0.5, options={"kernel": 2})
    record = json.loads(failed.read_text())
    record.update(status="failed", failure_reason="loss is nan at step 3", best=None, last=None)
    failed.write_text(json.dumps(record))
    return [*paths, failed]


def test_tables_from_wandb_equal_tables_from_records(records, tmp_path, monkeypatch, capsys):
    import wandb

    runs = [wandb_run(path, f"run{i}") for i, path in enumerate(records)]
    crashed = FakeRun([*PROJECT.split("/"), "crashed"], runs[0].config, {}, "", "crashed")
    monkeypatch.setattr(wandb, "Api", lambda: FakeApi([*reversed(runs), crashed]))

    main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "a"), "--no-figures"])
    main(["--from-wandb", PROJECT, "--out", str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert f"5 usable records, 1 failed, 0 duplicates, 0 unreadable in wandb:{PROJECT}" in out
    assert f"skipped W&B run {PROJECT}/crashed (crashed): no record" in out
    assert not list((tmp_path / "b").glob("*.png"))

    # The same text but for where the runs were read: the folder / record vs project / run.
    sources = {str(tmp_path / "runs"): "RUNS", f"wandb:{PROJECT}": "RUNS"}
    for i, path in enumerate(records):
        sources[str(path)] = sources[f"{PROJECT}/run{i}"] = f"RUN{i}"
    for table in TABLES:
        for suffix in ("md", "tex", "csv"):
            ours = [(tmp_path / d / f"table{table}.{suffix}").read_text() for d in "ab"]
            for source in sorted(sources, key=len, reverse=True):  # records before their folder
                shown = tex_escape(source) if suffix == "tex" else source
                ours = [text.replace(shown, sources[source]) for text in ours]
            assert ours[0] == ours[1], f"table{table}.{suffix}"
    table4 = (tmp_path / "b" / "table4.md").read_text()
    assert "loss is nan at step 3 (RUN5)" in table4.replace(f"{PROJECT}/run5", "RUN5")


def test_runs_that_are_not_dcft_runs_are_skipped(records):
    other = FakeRun(["lab", "dcft-repro", "x"], {"lr": 1}, {"loss": 1.0}, "", "finished")
    runset, skipped = load_wandb_runs(PROJECT, api=FakeApi([other, wandb_run(records[0], "a")]))
    assert [r.seed for r in runset.runs] == [0]
    assert skipped == ["lab/dcft-repro/x (finished)"]
