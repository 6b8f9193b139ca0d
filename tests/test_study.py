"""The CPU study's own pieces: the learning-rate choice, the majority-class row and the paired
differences, each against an independent computation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dcft.report.study import majority_scores, paired_difference, score
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


def test_paired_difference_is_a_t_interval_over_matching_pairs():
    a = [_Run("sst2", s, v) for s, v in enumerate([0.80, 0.82, 0.78])] + [_Run("rte", 0, 0.5)]
    b = [_Run("sst2", s, v) for s, v in enumerate([0.79, 0.80, 0.79])]
    mean, low, high, n = paired_difference(a, b)
    diffs = np.array([1.0, 2.0, -1.0])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert n == 3 and mean == pytest.approx(diffs.mean())
    assert (low, high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert score(a[0]) == pytest.approx(80.0)
    assert paired_difference(a, b, tasks=["rte"])[3] == 0  # rte has no partner in b
    assert paired_difference(a, b, tasks=["sst2"]) == (mean, low, high, n)


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
