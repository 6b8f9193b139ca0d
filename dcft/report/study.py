"""The CPU study's own summary: every method on every task beside the two rows that make a cell
readable (the dev set's majority class and head-only training), with seeds, parameters and
training time, and the paired differences the paper's claims rest on.

    python -m dcft.report.study [--runs results/study/runs] [--out results/study]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean, stdev

import numpy as np
from scipy import stats as scipy_stats

from dcft.data import DataUnavailableError, get_task, load_raw_splits
from dcft.data.metrics import glue_metrics
from dcft.report.runs import SELECTS, Run, load_runs
from dcft.report.stats import Stat, format_stat

TASKS = ("cola", "sst2", "mrpc", "stsb")
# (slug, label) in the order printed; rows whose slug has no record are left out.
ROWS = (
    ("full", "Full FT"),
    ("bitfit", "BitFit"),
    ("hadapter-m8", "HAdapter (m=8)"),
    ("padapter-m16", "PAdapter (m=16)"),
    ("lora-r1", "LoRA (r=1)"),
    ("lorafa-r1", "LoRA-FA (r=1)"),
    ("sora-r8", "SoRA (r_max=8)"),
    ("dcft-k8-s8", "DCFT (d=8)"),
    ("dcft-k2-s2", "DCFT (d=2)"),
    ("dcft-k4-s4", "DCFT (d=4)"),
    ("dcft-k6-s6", "DCFT (d=6)"),
    ("dcft-k12-s12", "DCFT (d=12)"),
    *((f"dcft-k8-s{s}-impl_reference", f"DCFT (d=8, s={s}, reference path)") for s in (8, 4, 2, 1)),
    ("head", "Head only (frozen backbone)"),
)
# Paired comparisons over tasks x seeds: (slug A, slug B); the difference is A - B.
PAIRS = (("dcft-k8-s8", "lora-r1"), ("dcft-k8-s8", "full"), ("dcft-k2-s2", "full"))


def score(run: Run) -> float:
    """The task's headline metric of the selected evaluation, x100 (paper units); NaN when that
    evaluation has none (a run whose every evaluation scored NaN has no best one)."""
    spec = get_task(run.task)
    return 100 * run.scores.get(spec.eval_splits[0], {}).get(spec.metric, math.nan)


# The majority-class scores of the dev sets, committed so that the report renders without data.
MAJORITY_FILE = Path("results/study/majority.json")


def majority_scores(data_dir: str | Path | None, tasks: Sequence[str] = TASKS) -> dict[str, float]:
    """The headline metric of always predicting the dev set's most frequent label (STS-B:
    always predicting the mean score, whose correlation is undefined and counted as 0)."""
    out = {}
    for task in tasks:
        spec = get_task(task)
        labels = np.asarray(
            load_raw_splits(task, data_dir, splits=[spec.eval_splits[0]])[spec.eval_splits[0]][
                "label"
            ]
        )
        if spec.is_regression:
            out[task] = 0.0
            continue
        values, counts = np.unique(labels, return_counts=True)
        constant = np.full_like(labels, values[counts.argmax()])
        out[task] = 100 * glue_metrics(task, constant, labels)[spec.metric]
    return out


def study_majority(data_dir: str | Path | None, path: Path = MAJORITY_FILE) -> dict[str, float]:
    """Counted from the dev sets when they are at hand (and saved to ``path``), else read from
    ``path``: the committed study renders on a machine without the data."""
    try:
        majority = majority_scores(data_dir)
    except DataUnavailableError:
        if not path.is_file():
            raise
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(majority, indent=2) + "\n")
    return majority


def _pairs(
    a: Sequence[Run], b: Sequence[Run], tasks: Sequence[str] | None
) -> list[tuple[str, int, float]]:
    """(task, seed, A - B) over the (task, seed) pairs both have, of ``tasks`` (default all)."""
    by_key = {(r.task, r.seed): score(r) for r in b}
    return [
        (r.task, r.seed, score(r) - by_key[(r.task, r.seed)])
        for r in a
        if (tasks is None or r.task in tasks) and (r.task, r.seed) in by_key
    ]


def paired_difference(
    a: Sequence[Run], b: Sequence[Run], tasks: Sequence[str] | None = None
) -> tuple[float, float, float, int]:
    """Mean of A - B over the (task, seed) pairs both have (of ``tasks``, default all), with a
    95% t-interval; pairs with a NaN score are left out (``nan_pairs`` names them)."""
    diffs = [d for _, _, d in _pairs(a, b, tasks) if math.isfinite(d)]
    if len(diffs) < 2:
        return math.nan, math.nan, math.nan, len(diffs)
    mean = fmean(diffs)
    half = scipy_stats.t.ppf(0.975, len(diffs) - 1) * stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half, len(diffs)


def nan_pairs(a: Sequence[Run], b: Sequence[Run], tasks: Sequence[str] | None = None) -> list[str]:
    """The pairs ``paired_difference`` leaves out because A's or B's score is NaN."""
    return [
        f"{get_task(task).label} seed {seed}"
        for task, seed, diff in _pairs(a, b, tasks)
        if not math.isfinite(diff)
    ]


def cell_stat(runs: Sequence[Run], task: str) -> Stat | None:
    """Mean ± std over the cell's seeds; NaN seeds (a collapsed correlation) are named apart,
    never averaged."""
    cell = [r for r in runs if r.task == task]
    return Stat.of([score(r) for r in cell], [r.seed for r in cell])


def learns(stat: Stat | None, majority: float) -> bool:
    """Above the majority class by more than twice the seed std, on at least 2 finite seeds."""
    return stat is not None and stat.n >= 2 and stat.mean - majority > 2 * stat.std


def render(runs: Sequence[Run], majority: dict[str, float], select: str) -> str:
    """The study's summary as Markdown (results/study/study-{select}.md)."""
    by_slug: dict[str, list[Run]] = {}
    for run in runs:
        by_slug.setdefault(run.slug, []).append(run)
    header = ["method", *(get_task(t).label for t in TASKS), "params (paper)", "train time"]
    lines = [
        "# CPU study: MiniLM-L6 on GLUE",
        "",
        f"Scores x100 ({select} evaluation of each run; mean ± std over seeds, n seeds), "
        "params = adapter tensors without the head, train time = mean wall time per run "
        "(training + evaluations) on this 2-core CPU. "
        "* = not above the majority class by more than twice its seed std (or fewer than 2 "
        "finite seeds); NaN = a constant prediction, whose correlation is undefined.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        "| Majority class (dev) | "
        + " | ".join(f"{majority[t]:.2f}" for t in TASKS)
        + " | 0 | — |",
    ]
    for slug, label in ROWS:
        group = by_slug.get(slug)
        if not group:
            continue
        cells = []
        for task in TASKS:
            stat = cell_stat(group, task)
            if stat is None:
                cells.append("—")
                continue
            mark = "" if learns(stat, majority[task]) else " *"
            cells.append(f"{format_stat(stat)}{mark}")
        params = sorted({r.params for r in group if r.params is not None})
        hours = [r.hours for r in group if r.hours is not None]
        time_text = f"{3600 * fmean(hours):.0f} s" if hours else "—"
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {params[0] if params else 0:,} | {time_text} |"
        )
    lines += [
        "",
        "Paired differences over tasks x seeds (A - B, x100, 95% t-interval), over every task and "
        "over the tasks where both A and B beat the majority class (no * in either cell):",
        "",
        "| A | B | tasks | mean difference | 95% interval | pairs |",
        "|---|---|---|---:|---|---:|",
    ]
    labels = dict(ROWS)
    for a, b in PAIRS:
        runs_a, runs_b = by_slug.get(a, []), by_slug.get(b, [])
        learned = [
            t
            for t in TASKS
            if learns(cell_stat(runs_a, t), majority[t])
            and learns(cell_stat(runs_b, t), majority[t])
        ]
        for tasks, named in (
            (None, "all"),
            (learned, ", ".join(get_task(t).label for t in learned)),
        ):
            mean, low, high, n = paired_difference(runs_a, runs_b, tasks)
            dropped = nan_pairs(runs_a, runs_b, tasks)
            left_out = f" (NaN, left out: {', '.join(dropped)})" if dropped else ""
            lines.append(
                f"| {labels[a]} | {labels[b]} | {named or 'none'} | {mean:+.2f} "
                f"| [{low:+.2f}, {high:+.2f}] | {n}{left_out} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="results/study/runs")
    parser.add_argument("--out", default="results/study")
    parser.add_argument("--data", default=None, help="data folder (default: DCFT_DATA_DIR)")
    args = parser.parse_args(argv)
    majority = study_majority(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for select in SELECTS:
        runs = load_runs(args.runs, select).runs
        path = out / f"study-{select}.md"
        path.write_text(render(runs, majority, select))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
