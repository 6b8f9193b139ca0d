"""The committed CPU study is complete and is what today's code renders from its records: every
run the study's sweeps list has a finished record, and the committed tables are rebuilt from
those records byte for byte (a change in aggregation or rendering shows up here); the per-seed
table holds what the records hold, and the summary's numbers follow from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from dcft import sweep
from dcft.report.cli import report
from dcft.report.figures import BENCH_CSV, bench_step_times, source_digest, study_figure2
from dcft.report.runs import SELECTS, load_runs
from dcft.report.study import MAJORITY_FILE, render, seeds_csv
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


def test_committed_seed_table_is_what_the_committed_records_render():
    runs = load_runs(STUDY / "runs", "best").runs
    assert seeds_csv(runs) == (STUDY / "study-seeds.csv").read_text()


METRICS = {
    "cola": "matthews_correlation",
    "sst2": "accuracy",
    "mrpc": "accuracy",
    "stsb": "pearson",
}


def test_seed_table_holds_every_record_and_the_summary_follows_from_it():
    """Read the records' JSON directly (not through the report's loader) and check every line of
    study-seeds.csv; then recompute a cell and a paired interval of the summary from the CSV."""
    table = pd.read_csv(STUDY / "study-seeds.csv")
    records = [json.loads(p.read_text()) for p in sorted((STUDY / "runs").rglob("*.json"))]
    assert len(table) == len(records) == 180
    indexed = table.set_index(["method_slug", "task", "seed"]).sort_index()
    for record in records:
        identity = record["identity"]
        line = indexed.loc[(identity["method_slug"], identity["task"], identity["seed"])]
        metric = METRICS[identity["task"]]
        for evaluation in record["evaluations"]:
            value = 100 * evaluation["metrics"]["validation"][metric]
            assert line[f"dev_step{evaluation['step']}"] == pytest.approx(value, abs=1e-4)
        assert line["best"] == pytest.approx(
            100 * record["best"]["metrics"]["validation"][metric], abs=1e-4
        )
        assert line["best_step"] == record["best"]["step"]
    summary = (STUDY / "study-best.md").read_text()
    cell = indexed.loc[("dcft-k8-s8", "sst2"), "best"]
    assert f"| {cell.mean():.2f} ± {cell.std(ddof=1):.2f} (n=3) |" in summary
    dcft, lora = (
        indexed.loc[(slug, "sst2"), "best"].sort_index() for slug in ("dcft-k8-s8", "lora-r1")
    )
    diffs = (dcft - lora).to_numpy()
    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
    interval = f"{diffs.mean():+.2f} [{diffs.mean() - half:+.2f}, {diffs.mean() + half:+.2f}]"
    pair = next(
        line for line in summary.splitlines() if line.startswith("| DCFT (d=8) | LoRA (r=1) |")
    )
    assert interval == pair.split(" | ")[3]  # the SST-2 column


def test_study_figure2_draws_the_bench_step_times():
    """The study's Figure 2 is `make bench`'s step times: what it reads reproduces the bench's
    own DCFT / LoRA targets."""
    times = bench_step_times(REPO / BENCH_CSV)
    bench = pd.read_csv(REPO / BENCH_CSV)
    targets = bench[bench.section == "target"].set_index("subject")["median"]
    for model in ("minilm (fp32)", "deberta-v3-base (fp32)"):
        dcft, lora = times[model]["DCFT d=8"][0], times[model]["LoRA r=1"][0]
        target = targets[f"{model} step time, DCFT d=8 / LoRA r=1"]
        assert dcft / lora == pytest.approx(float(target), abs=1e-4)
        median, q1, q3 = times[model]["LoRA r=1"]
        assert q1 <= median <= q3
    assert bench_step_times(REPO / "no-such-bench.csv") == {}


def test_committed_study_figure2_is_drawn_from_the_committed_bench(tmp_path: Path):
    """The committed Figure 2 records the sha256 of the bench it drew; it must be the committed
    cpu.csv's, so a new `make bench` run without `make report` fails here. A figure drawn from
    another file carries another digest."""
    committed = Image.open(REPO / "results" / "study" / "tables" / "figure2.png").text
    assert committed["Source"] == f"sha256:{source_digest(REPO / BENCH_CSV)}"
    other = tmp_path / "cpu.csv"
    other.write_text((REPO / BENCH_CSV).read_text() + "\n")
    drawn = Image.open(study_figure2(tmp_path / "figure2.png", other)).text
    assert drawn["Source"] != committed["Source"]
