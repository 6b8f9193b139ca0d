"""The committed CPU study is complete and is what today's code renders from its records: every
run the study's sweeps list has a finished record, and the committed tables are rebuilt from
those records byte for byte (a change in aggregation or rendering shows up here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcft import sweep
from dcft.report.cli import report
from dcft.report.runs import SELECTS, load_runs
from dcft.report.study import MAJORITY_FILE, render
from dcft.tools import lr_search
from tests.conftest import REPO, SHARED_DATA, parquet_copy

STUDY = REPO / "results" / "study"
STUDY_TABLES = sweep.tables("mini")
STUDY_TASKS = ("cola", "sst2", "mrpc", "stsb")


needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="run identities hash the data: ../shared"
)


@pytest.fixture(scope="module", params=["tsv", "parquet"])
def study_data(request, tmp_path_factory) -> Path:
    """The study's data as it trained on it (GLUE TSVs), and the same examples in the Hub's
    parquet layout (shared/data's copy of the Hub's files, SST-2's training set written from its
    TSV): a run's key names the examples, so both find the committed records."""
    if request.param == "tsv":
        return SHARED_DATA
    return parquet_copy(SHARED_DATA, tmp_path_factory.mktemp("parquet"), STUDY_TASKS)


def _not_finished(runs: list[sweep.PlannedRun]) -> list[str]:
    return [
        f"{r.identity.task}/{r.identity.method_slug}/seed{r.identity.seed}: {r.status}"
        for r in runs
        if r.status != "finished"
    ]


@needs_shared
@pytest.mark.parametrize("table", STUDY_TABLES)
def test_every_run_of_the_study_has_a_finished_record(table, study_data, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("DCFT_DATA_DIR", str(study_data))
    runs = sweep.plan(table, "mini")  # the mini sweeps' results_dir: results/study/runs
    assert runs and not _not_finished(runs)
    seeds = {(r.identity.task, r.identity.method_slug): set() for r in runs}
    for r in runs:
        seeds[(r.identity.task, r.identity.method_slug)].add(r.identity.seed)
    assert all(len(s) == 3 for s in seeds.values())


@needs_shared
def test_every_run_of_the_search_has_a_finished_record(study_data, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("DCFT_DATA_DIR", str(study_data))
    runs = sweep.plan_parts(lr_search.parts(lr_search.load_search()))
    assert len(runs) == 64 and not _not_finished(runs)


def test_committed_tables_are_what_the_committed_records_render(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the tables name the records' folder as make report does
    numbers = [int(t.removeprefix("table")) for t in STUDY_TABLES]
    runs = load_runs("results/study/runs", "best")
    written = report(runs, tmp_path, numbers, "mini", figures=False)
    assert written
    for path in written:
        assert path.read_text() == (STUDY / "tables" / path.name).read_text(), path.name
    for figure in ("figure2.png", "figure3.png"):
        assert (STUDY / "tables" / figure).stat().st_size > 10_000


@pytest.mark.parametrize("select", SELECTS)
def test_committed_summary_is_what_the_committed_records_render(select):
    majority = json.loads((REPO / MAJORITY_FILE).read_text())
    runs = load_runs(STUDY / "runs", select).runs
    assert render(runs, majority, select) == (STUDY / f"study-{select}.md").read_text()
