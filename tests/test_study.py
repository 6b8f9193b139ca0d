"""The CPU study's own pieces: the learning-rate choice, the majority-class row, the reference a
cell must beat, the per-task paired differences and the per-seed table, each against an
independent computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dcft.report.runs import Run
from dcft.report.stats import Stat
from dcft.report.study import (
    learns,
    majority_scores,
    paired_difference,
    reference,
    render,
    score,
    seeds_csv,
)
from dcft.tools.lr_search import (
    SEARCH_CONFIG,
    choose,
    grid_slugs,
    load_search,
    overrides,
    rates_yaml,
    summary_markdown,
)
from tests.conftest import SHARED_DATA, compose_config

REPO = Path(__file__).resolve().parents[1]
SEARCH_RUNS = REPO / "results" / "study" / "lr_search" / "runs"


def _record(folder: Path, method: str, task: str, rate: float, value: float, seed: int = 0):
    metric = {"sst2": "accuracy", "stsb": "pearson"}[task]
    slug = {"dcft": "dcft-k8-s8", "lora": "lora-r1"}.get(method, method)
    record = {
        "status": "finished",
        "identity": {
            "model": "minilm",
            "task": task,
            "method": method,
            "method_slug": slug,
            "options": {},
            "seed": seed,
            "hparams_hash": f"{abs(hash((method, task, rate))) % 10**8:08d}",
        },
        "config": {"trainer": {"learning_rate": rate}},
        "best": {"step": 60, "metrics": {"validation": {metric: value}}},
        "last": {"step": 60, "metrics": {"validation": {metric: value}}},
    }
    path = folder / f"{method}-{task}-{rate}-{seed}.json"
    path.write_text(json.dumps(record))


def test_the_rate_with_the_best_mean_over_tasks_is_chosen(tmp_path):
    search = {"tasks": ["sst2", "stsb"], "grid": {"lora": [1e-3, 3e-3]}, "seed": 0}
    search |= {"holdout_from_train": 0.15, "max_eval_samples": 500, "results_dir": str(tmp_path)}
    search |= {"name": "lr_search", "rates_used_in": "conf/hparams/minilm/*.yaml"}
    _record(tmp_path, "lora", "sst2", 1e-3, 0.80)
    _record(tmp_path, "lora", "stsb", 1e-3, 0.60)  # mean 70
    _record(tmp_path, "lora", "sst2", 3e-3, 0.90)
    _record(tmp_path, "lora", "stsb", 3e-3, 0.40)  # mean 65: best on SST-2 alone, not overall
    (choice,) = choose(search, tmp_path)
    assert choice.rate == 1e-3 and choice.mean(1e-3) == pytest.approx(70.0)
    assert choice.at_edge  # the lowest rate of the grid: said in the summary
    assert "| lora | 0.001 | 80.00 | 60.00 | 70.00 | **yes** (edge of the grid) |" in (
        summary_markdown(search, [choice])
    )


@pytest.mark.parametrize(
    ("name", "experiment", "optimizer"),
    [
        ("lr_search", "mini-lr-search", "adamw_torch"),
        ("converge_lr_search", "converge-lr-search", "adamw_authors"),
    ],
)
def test_search_runs_never_see_the_dev_set(name, experiment, optimizer):
    search = load_search(SEARCH_CONFIG.with_name(f"{name}.yaml"))
    for method in search["grid"]:
        cfg = compose_config([o for o in overrides(search, method) if "," not in o])
        assert cfg.data.holdout_from_train == search["holdout_from_train"] > 0
        assert cfg.experiment == experiment
        assert cfg.trainer.optimizer == optimizer


def test_convergence_search_grid_names_the_slugs_of_its_runs():
    search = load_search(SEARCH_CONFIG.with_name("converge_lr_search.yaml"))
    slugs = grid_slugs(search)
    assert slugs["dcft"] == "dcft-k8-s8"
    assert slugs["dcft-init-lora"] == "dcft-k8-s8-init_lora"
    assert slugs["lora"] == "lora-r1"


@pytest.mark.skipif(not SEARCH_RUNS.is_dir(), reason="the study's search records are not here")
def test_committed_search_chose_the_configured_rates():
    """The rates in conf/hparams/minilm are the search's, and the search never read a dev
    file: its records were evaluated on data held out from the training split."""
    search = load_search(SEARCH_CONFIG)
    chosen = {c.method: c.rate for c in choose(search)}
    assert set(chosen) == set(search["grid"])
    for task in ("cola", "sst2", "mrpc", "stsb"):
        cfg = compose_config(["model=minilm", f"task={task}"])
        assert {m: cfg.hparams.lr[m] for m in chosen} == pytest.approx(chosen), task
    for path in SEARCH_RUNS.rglob("*.json"):
        record = json.loads(path.read_text())
        data = record["data"]
        assert data["holdout_from_train"]["fraction"] == search["holdout_from_train"], path
        assert set(data["files"]) == {"train"}, path  # no dev file was read


def test_committed_search_records_render_to_the_committed_summary():
    """results/study/lr_search.md is what today's code renders from the committed records."""
    search = load_search(SEARCH_CONFIG)
    committed = (REPO / "results" / "study" / "lr_search.md").read_text()
    assert summary_markdown(search, choose(search)) == committed


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
def test_majority_class_scores_match_a_direct_count():
    got = majority_scores(SHARED_DATA)
    labels = {"sst2": SHARED_DATA / "glue" / "SST-2" / "dev.tsv"}
    rows = labels["sst2"].read_text().splitlines()[1:]
    gold = [int(line.rsplit("\t", 1)[1]) for line in rows]
    assert got["sst2"] == pytest.approx(100 * max(gold.count(0), gold.count(1)) / len(gold))
    assert got["cola"] == 0.0  # MCC of a constant prediction
    assert got["mrpc"] == pytest.approx(100 * 279 / 408)  # GLUE MRPC dev: 279 positives
    assert got["stsb"] == 0.0
    # What the committed study renders with when the data is not at hand.
    committed = json.loads((REPO / "results" / "study" / "majority.json").read_text())
    assert committed == pytest.approx(got)


class _Run:
    def __init__(self, task: str, seed: int, value: float) -> None:
        self.task, self.seed = task, seed
        self.scores = {"validation": {"accuracy": value}}


def test_paired_difference_is_a_t_interval_over_seed_matched_pairs():
    a = [_Run("sst2", s, v) for s, v in enumerate([0.80, 0.82, 0.78])]
    a += [_Run("sst2", 3, 0.90), _Run("rte", 0, 0.5)]  # seed 3 and RTE: no partner in b
    b = [_Run("sst2", s, v) for s, v in ((2, 0.79), (0, 0.79), (1, 0.80))]
    diff = paired_difference(a, b, "sst2")
    diffs = np.array([1.0, 2.0, -1.0])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert diff.n == 3 and diff.mean == pytest.approx(diffs.mean())
    assert (diff.low, diff.high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert (
        diff.text(3)
        == f"{diffs.mean():+.2f} [{diffs.mean() - half:+.2f}, {diffs.mean() + half:+.2f}]"
    )
    assert score(a[0]) == pytest.approx(80.0)
    assert paired_difference(a, b, "rte").n == 0


def test_rates_file_holds_only_settled_choices_per_slug(tmp_path):
    search = load_search(SEARCH_CONFIG.with_name("converge_lr_search.yaml"))
    grid = {"lora": [1e-3, 3e-3, 1e-2], "dcft": [1e-2]}
    search |= {"tasks": ["sst2", "stsb"], "grid": grid, "results_dir": str(tmp_path)}
    _record(tmp_path, "lora", "sst2", 3e-3, 0.90)
    _record(tmp_path, "lora", "stsb", 3e-3, 0.55)  # the only rate run yet: not settled
    text = rates_yaml(search, choose(search, tmp_path))
    assert "Not settled yet" in text and "lora, dcft" in text
    assert [line for line in text.splitlines() if not line.startswith("#")] == []
    _record(tmp_path, "lora", "sst2", 1e-3, 0.80)
    _record(tmp_path, "lora", "stsb", 1e-3, 0.60)  # mean 70 against 72.5: 3e-3 at the edge so far
    _record(tmp_path, "lora", "sst2", 1e-2, 0.85)
    assert "lora-r1" not in rates_yaml(search, choose(search, tmp_path))  # 1e-2 lacks stsb
    _record(tmp_path, "lora", "stsb", 1e-2, 0.50)  # mean 67.5: 3e-3 wins inside the grid
    _record(tmp_path, "dcft", "sst2", 1e-2, 0.70)  # dcft's stsb run is missing
    text = rates_yaml(search, choose(search, tmp_path))
    assert text.splitlines()[-2:] == [
        "# Not settled yet (a rate of the grid not run on every task, or the best at its edge): dcft.",
        "lora-r1: 0.003",
    ]
    _record(tmp_path, "dcft", "stsb", 1e-2, 0.30)
    text = rates_yaml(search, choose(search, tmp_path))
    assert text.splitlines()[-2:] == ["lora-r1: 0.003", "dcft-k8-s8: 0.01"]


SEEDS = (0, 1, 2)


def test_head_only_is_the_reference_where_the_majority_class_scores_zero():
    majority = {"stsb": 0.0, "sst2": 50.0}
    head = Stat.of([20.0, 21.0, 22.0], SEEDS)
    assert reference("stsb", majority, head) == pytest.approx(21.0)
    assert reference("sst2", majority, head) == 50.0  # a majority class that scores: it
    assert reference("stsb", majority, None) == 0.0  # no head-only runs: the majority class
    assert learns(Stat.of([30.0, 31.0, 32.0], SEEDS), 21.0)  # +10 over head-only, std 1
    assert not learns(Stat.of([25.0, 31.0, 37.0], SEEDS), 21.0)  # +10, std 6: not twice over
    assert learns(Stat.of([25.0, 31.0, 37.0], SEEDS), 0.0)  # what the majority class would say


def _study_run(slug: str, task: str, seed: int, curve: dict[int, float]) -> Run:
    """A finished study run whose dev evaluations score ``curve`` (x100) and whose best is the
    highest."""
    metric = {"sst2": "accuracy", "stsb": "pearson"}[task]
    evaluations = [
        {"step": step, "metrics": {"validation": {metric: value / 100}}}
        for step, value in curve.items()
    ]
    best = max(evaluations, key=lambda e: e["metrics"]["validation"][metric])
    method = "dcft" if slug.startswith("dcft") else slug
    return Run(
        path=Path(f"{slug}-{task}-{seed}.json"),
        record={"evaluations": evaluations, "best": best},
        model="minilm",
        task=task,
        method=method,
        slug=slug,
        options={},
        seed=seed,
        hparams_hash=f"{slug}-{task}",
        harness_version="1",
        settings="s",
        scores=best["metrics"],
        params=100,
        params_total=None,
        hours=60 / 3600,
    )


def test_summary_marks_cells_against_head_only_and_gives_per_task_intervals():
    curves = {  # (slug, task) -> per seed, the scores at steps 20 and 40
        ("head", "stsb"): [(10, 20), (11, 21), (12, 22)],
        ("dcft-k8-s8", "stsb"): [(10, 25), (12, 31), (14, 37)],  # above 0, not above head-only
        ("lora-r1", "stsb"): [(20, 30), (21, 32), (22, 31)],
        ("head", "sst2"): [(60, 61), (60, 62), (60, 63)],
        ("dcft-k8-s8", "sst2"): [(70, 74), (73, 72), (70, 75)],  # seed 1: best at 20
        ("lora-r1", "sst2"): [(80, 80), (81, 79), (82, 83)],
    }
    runs = [
        _study_run(slug, task, seed, dict(zip((20, 40), values, strict=True)))
        for (slug, task), per_seed in curves.items()
        for seed, values in enumerate(per_seed)
    ]
    majority = {"cola": 0.0, "sst2": 50.0, "mrpc": 68.0, "stsb": 0.0}
    md = render(runs, majority, "best")
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if "(n=3)" in line}
    assert "31.00 ± 6.00 (n=3) * |" in rows["DCFT (d=8)"]  # STS-B: 10 over head-only, std 6
    assert "74.00 ± 1.00 (n=3) |" in rows["DCFT (d=8)"]  # SST-2 against the majority class
    assert "21.00 ± 1.00 (n=3) |" in rows["Head only (frozen backbone)"]  # against the majority
    assert rows["DCFT (d=8)"].endswith("| 5/6 |")
    assert "1 of 4 cells are marked" in md
    assert "| DCFT (d=8) | — | 71.00 → 73.67 | — | 12.00 → 31.00 |" in md
    sst2 = np.array([74.0, 73.0, 75.0]) - np.array([80.0, 81.0, 83.0])
    half = stats.t.ppf(0.975, 2) * sst2.std(ddof=1) / math.sqrt(3)
    pair = next(line for line in md.splitlines() if line.startswith("| DCFT (d=8) | LoRA (r=1) |"))
    assert f"{sst2.mean():+.2f} [{sst2.mean() - half:+.2f}, {sst2.mean() + half:+.2f}]" in pair
    assert pair.count("—") == 2  # CoLA and MRPC: no runs


def test_seeds_csv_has_one_line_per_run_with_every_evaluation():
    runs = [_study_run("lora-r1", "sst2", seed, {20: 70.0 + seed, 40: 75.0}) for seed in (1, 0)]
    lines = seeds_csv(runs).splitlines()
    assert lines[0] == (
        "method,method_slug,task,metric,seed,dev_step20,dev_step40,best,best_step,train_time_s,params"
    )
    assert lines[1:] == [
        "LoRA (r=1),lora-r1,sst2,accuracy,0,70.0000,75.0000,75.0000,40,60.0,100",
        "LoRA (r=1),lora-r1,sst2,accuracy,1,71.0000,75.0000,75.0000,40,60.0,100",
    ]
