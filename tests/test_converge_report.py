"""The convergence study's report (dcft.report.converge) on hand-made records: the paired
intervals against a direct t computation, the budget fractions, the reference checks."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dcft.report.converge import (
    ROWS,
    Paired,
    gap_series,
    planned,
    progress,
    render,
    seeds_csv,
    write,
)
from dcft.report.runs import load_runs


def _record(folder: Path, task: str, slug: str, seed: int, curve: dict[int, float]) -> None:
    metric = {"sst2": "accuracy", "stsb": "pearson", "mrpc": "f1"}[task]
    method = slug.split("-")[0]
    evaluations = [
        {"step": s, "epoch": 0.0, "metrics": {"validation": {metric: v}}}
        for s, v in sorted(curve.items())
    ]
    best = max(evaluations, key=lambda e: e["metrics"]["validation"][metric])
    record = {
        "status": "finished",
        "identity": {
            "model": "minilm",
            "task": task,
            "method": method,
            "method_slug": slug,
            "options": {},
            "seed": seed,
            "hparams_hash": f"{abs(hash((task, slug))) % 10**8:08d}",
        },
        "config": {
            "trainer": {
                "learning_rate": 1e-3,
                "max_steps": 100,
                "eval_steps": 25,
                "batch_size": 32,
                "optimizer": "adamw_authors",
            }
        },
        "evaluations": evaluations,
        "timing": {
            # seed s trains 20 + 10 s minutes; seed 1 was resumed once (two segments)
            "train_wall_time_s": 60.0 * (20 + 10 * seed),
            "segments": [{"wall_time_s": 60.0}] * (2 if seed == 1 else 1),
        },
        "best": {"step": best["step"], "metrics": best["metrics"]},
        "last": {"step": evaluations[-1]["step"], "metrics": evaluations[-1]["metrics"]},
    }
    path = folder / task / slug / f"seed{seed}-{record['identity']['hparams_hash']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


LORA = {0: [0.70, 0.80, 0.85, 0.84], 1: [0.72, 0.81, 0.86, 0.86], 2: [0.69, 0.79, 0.83, 0.84]}
DCFT = {0: [0.60, 0.74, 0.82, 0.83], 1: [0.62, 0.73, 0.80, 0.85], 2: [0.61, 0.70, 0.81, 0.82]}
HEAD = {0: [0.60, 0.62, 0.63, 0.63], 1: [0.61, 0.62, 0.62, 0.63], 2: [0.60, 0.61, 0.63, 0.62]}


# What the hand-made records cover, and one cell they lack (head-only's seed 2 on MRPC).
PLAN = {("sst2", slug): [0, 1, 2] for slug in ("lora-r1", "dcft-k8-s8", "head")}
PLAN[("mrpc", "head")] = [2]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    for slug, curves in (("lora-r1", LORA), ("dcft-k8-s8", DCFT), ("head", HEAD)):
        for seed, values in curves.items():
            _record(tmp_path, "sst2", slug, seed, dict(zip((25, 50, 75, 100), values, strict=True)))
    return tmp_path


def _interval(differences: list[float]) -> tuple[float, float, float]:
    """The paired t-interval written out: mean ± t(0.975, n-1) s / sqrt(n)."""
    d = np.asarray(differences)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


def test_paired_interval_is_the_t_interval_of_the_differences():
    a, b = {0: 80.0, 1: 82.5, 2: 79.0, 3: 81.0}, {0: 83.0, 1: 82.0, 2: 84.5, 3: 80.0, 9: 1.0}
    got = Paired.of(a, b)
    mean, low, high = _interval([a[s] - b[s] for s in range(4)])
    assert got.n == 4  # seed 9 has no partner
    assert (got.mean, got.low, got.high) == pytest.approx((mean, low, high))


def test_report_gives_the_gap_along_the_budget_and_the_reference_checks(runs_dir: Path):
    runs = load_runs(runs_dir).runs
    text = render(runs, {"sst2": 50.92}, PLAN)
    # Best within the first half: DCFT 74, 73, 70 against LoRA 80, 81, 79.
    mean, low, high = _interval(
        [100 * (d - lo) for d, lo in zip((0.74, 0.73, 0.70), (0.80, 0.81, 0.79), strict=True)]
    )
    assert f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]" in text
    # Last evaluation: 83, 85, 82 against 84, 86, 84.
    mean, low, high = _interval([-1.0, -1.0, -2.0])
    assert f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]" in text
    assert "Runs with a finished record: 9 of 10 planned" in text
    assert "still to run: mrpc Head only (frozen backbone) seed 2." in text
    assert "LoRA r=1 beats head-only (63.00) by more than twice its seed std: yes" in text
    # Best 85, 86, 84; last 84, 86, 84; the best came before the end in seeds 0 and 1 (a tie
    # keeps the first evaluation, as the runner's best does).
    # Best within the first 75%: 85, 86, 83, so the last quarter gained 0, 0, 1 (mean 0.33).
    assert "| LoRA r=1 | 85.00 ± 1.00 (n=3) | 84.67 ± 1.15 (n=3) | 2/3 | +0.33 |" in text
    # Cost: 20, 30, 40 minutes per cell, one resumed run each; 3 cells of 1.5 hours.
    assert "| SST-2 | LoRA r=1 | 3 | 30 (20-40) | 1 | 1.5 |" in text
    assert "In all: 9 runs, 4.5 hours of one thread." in text
    rows = seeds_csv(runs).splitlines()
    assert rows[1] == "sst2,lora-r1,0,85.0000,75,84.0000,100,0.001"


def test_the_gap_figure_draws_only_comparisons_with_an_interval(runs_dir: Path):
    """One init=lora seed gives one pair with LoRA: no interval, so no line (nor legend entry)."""
    _record(runs_dir, "sst2", "dcft-k8-s8-init_lora", 0, {25: 0.6, 50: 0.7, 75: 0.8, 100: 0.8})
    series = gap_series(load_runs(runs_dir).runs)
    assert [(s.task, s.slug) for s in series] == [("sst2", "dcft-k8-s8")]
    assert series[0].label == "SST-2: DCFT d=8 - LoRA r=1 (n=3)"
    # Best within the first half: DCFT 74, 73, 70 against LoRA 80, 81, 79 (as in the report).
    mean, low, high = _interval([-6.0, -8.0, -9.0])
    half = series[0].along[1]
    assert (half.mean, half.low, half.high) == pytest.approx((mean, low, high))


def test_write_renders_every_output(runs_dir: Path, tmp_path: Path):
    majority = tmp_path / "majority.json"
    majority.write_text(json.dumps({"sst2": 50.92, "stsb": 0.0, "mrpc": 68.38}))
    written = write(runs_dir, tmp_path / "out", majority, PLAN)
    assert [p.name for p in written] == [
        "converge.md",
        "converge-seeds.csv",
        "curves.png",
        "gap.png",
    ]
    assert all(p.stat().st_size > 0 for p in written)


def test_the_plan_is_the_experiments_sweep():
    plan = planned()
    assert len(plan) == 15 and set(map(len, plan.values())) == {3}
    assert {task for task, _ in plan} == {"sst2", "stsb", "mrpc"}
    assert {slug for _, slug in plan} == {slug for slug, _ in ROWS}


COMMITTED = Path(__file__).resolve().parents[1] / "results" / "study" / "converge"


def _committed_runs() -> list:
    return [r for r in load_runs(COMMITTED / "runs").runs if r.slug in dict(ROWS)]


def test_committed_report_is_what_the_committed_records_render():
    """converge.md and converge-seeds.csv are today's rendering of the committed records (the
    report reads the records only, so this holds on a clone without the data)."""
    majority = json.loads((COMMITTED.parent / "majority.json").read_text())
    runs = _committed_runs()
    assert runs, "no committed convergence records"
    assert render(runs, majority, planned()) == (COMMITTED / "converge.md").read_text()
    assert seeds_csv(runs) == (COMMITTED / "converge-seeds.csv").read_text()
    for figure in ("curves.png", "gap.png"):
        assert (COMMITTED / figure).stat().st_size > 10_000


def test_every_planned_cell_has_its_seeds():
    """The study is complete: every (task, method) of the sweep has a record for each of its
    seeds, and the report says so."""
    count, total, missing = progress(_committed_runs(), planned())
    assert missing == "" and count == total == 45
    assert "; still to run" not in (COMMITTED / "converge.md").read_text()


def test_committed_records_are_runs_of_the_plan_and_the_report_counts_them():
    """Every committed record is a planned (task, method, seed) of the sweep, none twice, and
    the report's progress line counts exactly them."""
    plan = planned()
    runs = _committed_runs()
    seen = [(r.task, r.slug, r.seed) for r in runs]
    assert len(seen) == len(set(seen))
    for task, slug, seed in seen:
        assert seed in plan[(task, slug)], (task, slug, seed)
    total = sum(len(seeds) for seeds in plan.values())
    head = (COMMITTED / "converge.md").read_text().splitlines()[2]
    assert head.startswith(f"Runs with a finished record: {len(seen)} of {total} planned")


README = Path(__file__).resolve().parents[1] / "README.md"
_STAT = re.compile(r"[+-]?\d+\.\d\d (?:± \d+\.\d\d|\[[+-]?\d+\.\d\d, [+-]?\d+\.\d\d\])")


def _sections(text: str, level: str) -> dict[str, str]:
    """Heading -> body, for the headings of one level of a markdown text."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_readme_convergence_table_quotes_the_committed_report():
    """Every mean ± std and every interval in the README's convergence table is in the committed
    converge.md, in the section of the same task: the README states the records' numbers."""
    study = _sections(README.read_text(), "##")["The convergence study"]
    report = _sections((COMMITTED / "converge.md").read_text(), "##")
    quoted = 0
    for line in study.splitlines():
        cells = line.split("|")[1:-1]
        task = cells[0].split(" (")[0].strip() if cells else ""
        if task not in report:
            continue
        for stat in _STAT.findall("|".join(cells[1:])):
            assert stat in report[task], (task, stat)
            quoted += 1
    assert quoted >= 3 * 8, quoted
