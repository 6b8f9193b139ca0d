"""The convergence study's report: DCFT d=8 against LoRA r=1 on MiniLM-L6, trained until LoRA and
full fine-tuning stop improving, with head-only training and the majority class as reference rows.

    python -m dcft.report.converge [--runs results/study/converge/runs] [--out results/study/converge]

Writes ``converge.md`` (cells, reference checks, paired differences per task along the budget),
``converge-seeds.csv`` (every run's best and last score), ``curves.png`` (dev score against
optimiser step) and ``gap.png`` (DCFT - LoRA against the budget, with 95% intervals). Reads the
records only (and the committed majority-class scores), so it renders without the data.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, median, stdev

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats as scipy_stats

from dcft.data import get_task
from dcft.report.runs import Run, load_runs
from dcft.run.config import CONF_DIR, method_config_slugs

TASKS = ("sst2", "stsb", "mrpc")
# (slug, label), in the order printed and drawn; rows without records are left out.
ROWS = (
    ("lora-r1", "LoRA r=1"),
    ("dcft-k8-s8", "DCFT d=8"),
    ("dcft-k8-s8-init_lora", "DCFT d=8, init=lora (b=0)"),
    ("full", "Full FT"),
    ("head", "Head only (frozen backbone)"),
)
LABELS = dict(ROWS)
# Paired comparisons (A, B): A - B, seeds matched.
COMPARISONS = (
    ("dcft-k8-s8", "lora-r1"),
    ("dcft-k8-s8-init_lora", "lora-r1"),
    ("dcft-k8-s8-init_lora", "dcft-k8-s8"),
)
# The rows that must beat head-only training for the budget to count as "trained until they stop
# improving", and the points along the budget at which the comparisons are made.
STRONG_ROWS = ("lora-r1", "full")
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
# The majority-class scores of the dev sets (written by python -m dcft.report.study).
ROOT = Path(__file__).resolve().parents[2]
MAJORITY_FILE = ROOT / "results" / "study" / "majority.json"
# The study's sweep: which tasks, methods and seeds it trains.
EXPERIMENT = CONF_DIR / "experiment" / "converge.yaml"
COLORS = {
    "lora-r1": "tab:blue",
    "dcft-k8-s8": "tab:red",
    "dcft-k8-s8-init_lora": "tab:orange",
    "full": "tab:green",
    "head": "tab:gray",
}


def planned(experiment: Path = EXPERIMENT) -> dict[tuple[str, str], list[int]]:
    """(task, method slug) -> the seeds the study's sweep trains, read from its experiment file's
    ``hydra.sweeper.params`` with Hydra's own override parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    params = OmegaConf.load(experiment).hydra.sweeper.params
    parser = OverridesParser.create()
    swept = {
        key: list(parser.parse_override(f"{key}={params[key]}").sweep_iterator())
        for key in ("task", "method", "seed")
    }
    slugs = method_config_slugs(swept["method"])
    return {
        (task, slugs[method]): sorted(swept["seed"])
        for task in swept["task"]
        for method in swept["method"]
    }


def progress(runs: Sequence[Run], plan: dict[tuple[str, str], list[int]]) -> tuple[int, int, str]:
    """How many of the planned runs have a finished record, of how many, and which are missing
    (one ``task method seeds`` entry per incomplete cell)."""
    done = {(r.task, r.slug, r.seed) for r in runs}
    missing = []
    for (task, slug), seeds in plan.items():
        absent = [s for s in seeds if (task, slug, s) not in done]
        if absent:
            missing.append(f"{task} {LABELS.get(slug, slug)} seed {','.join(map(str, absent))}")
    total = sum(len(seeds) for seeds in plan.values())
    count = sum(1 for (t, s), seeds in plan.items() for seed in seeds if (t, s, seed) in done)
    return count, total, "; ".join(missing)


def curve(run: Run) -> dict[int, float]:
    """Dev score (the task's headline metric, x100) at every evaluation step of the run."""
    spec = get_task(run.task)
    split = spec.eval_splits[0]
    return {
        int(e["step"]): 100 * e["metrics"][split][spec.metric]
        for e in run.record.get("evaluations") or []
        if spec.metric in e["metrics"].get(split, {})
    }


def max_steps(run: Run) -> int:
    return int(run.record["config"]["trainer"]["max_steps"])


def best_up_to(run: Run, fraction: float) -> float:
    """The best dev score among the evaluations within the first ``fraction`` of the run: the
    paper's protocol (best evaluation) applied to the run stopped there. NaN if none."""
    limit = fraction * max_steps(run)
    values = [v for step, v in curve(run).items() if step <= limit + 1e-9]
    return max(values) if values else math.nan


def late_gain(run: Run) -> float:
    """How much the run's best score rose in the last quarter of its budget: best overall
    minus best within the first 75% (0 once the curve has flattened)."""
    return best_up_to(run, 1.0) - best_up_to(run, 0.75)


def last_score(run: Run) -> float:
    points = curve(run)
    return points[max(points)] if points else math.nan


@dataclass(frozen=True)
class Paired:
    """A - B over seed-matched pairs: mean and 95% interval (scipy's paired t-test)."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, a: dict[int, float], b: dict[int, float]) -> Paired:
        seeds = sorted(s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s]))
        if len(seeds) < 2:
            return cls(math.nan, math.nan, math.nan, len(seeds))
        x, y = [a[s] for s in seeds], [b[s] for s in seeds]
        differences = [p - q for p, q in zip(x, y, strict=True)]
        if len(set(differences)) == 1:  # no spread: the interval is the point
            return cls(differences[0], differences[0], differences[0], len(seeds))
        interval = scipy_stats.ttest_rel(x, y).confidence_interval(0.95)
        return cls(fmean(differences), float(interval.low), float(interval.high), len(seeds))

    def text(self) -> str:
        if self.n < 2:
            return f"— (n={self.n})"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def _along_budget(cell_a: dict[int, Run], cell_b: dict[int, Run]) -> list[Paired]:
    """A - B, paired on seed, of the best evaluation within each fraction of the budget."""
    return [
        Paired.of(
            _scores(cell_a, lambda r, f=f: best_up_to(r, f)),
            _scores(cell_b, lambda r, f=f: best_up_to(r, f)),
        )
        for f in FRACTIONS
    ]


def _by_cell(runs: Sequence[Run]) -> dict[tuple[str, str], dict[int, Run]]:
    cells: dict[tuple[str, str], dict[int, Run]] = {}
    for run in runs:
        cells.setdefault((run.task, run.slug), {})[run.seed] = run
    return cells


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    return fmean(finite), (stdev(finite) if len(finite) > 1 else math.nan), len(finite)


def _stat_text(values: Sequence[float]) -> str:
    mean, std, n = _mean_std(values)
    if n == 0:
        return "—"
    nan = len(values) - n
    spread = f" ± {std:.2f}" if n > 1 else ""
    return f"{mean:.2f}{spread} (n={n}{f', {nan} NaN' if nan else ''})"


def _scores(cell: dict[int, Run], score: Callable[[Run], float]) -> dict[int, float]:
    return {seed: score(run) for seed, run in cell.items()}


def render(
    runs: Sequence[Run], majority: dict[str, float], plan: dict[tuple[str, str], list[int]]
) -> str:
    cells = _by_cell(runs)
    tasks = [t for t in TASKS if any(task == t for task, _ in cells)]
    count, total, missing = progress(runs, plan)
    lines = [
        "# Convergence study: DCFT d=8 against LoRA r=1 on MiniLM-L6",
        "",
        f"Runs with a finished record: {count} of {total} planned "
        f"(conf/experiment/converge.yaml)" + (f"; still to run: {missing}." if missing else "."),
        "",
        "Dev scores x100 ("
        + ", ".join(f"{get_task(t).metric} for {get_task(t).label}" for t in TASKS)
        + "), mean ± std over seeds (n seeds). best = the best of the run's evaluations (the paper's protocol, a choice "
        "made on dev), last = the final evaluation. 'best before the end' counts the runs whose "
        "best evaluation came before the last one (the curve had flattened or turned down); "
        "'gain in the last 25%' is the mean of best overall minus best within the first 75% "
        "of the run. "
        "Learning rates were chosen on data held out from the training split "
        "(lr_search.md), never on dev.",
        "",
    ]
    for task in tasks:
        spec = get_task(task)
        sample = next(r for (t, _), c in cells.items() if t == task for r in c.values())
        trainer = sample.record["config"]["trainer"]
        lines += [
            f"## {spec.label}",
            "",
            f"Budget: {trainer['max_steps']} optimiser steps of {trainer['batch_size']}, "
            f"evaluated every {trainer['eval_steps']} steps; optimiser "
            f"{trainer.get('optimizer', 'adamw_torch')}. Majority class: {majority[task]:.2f}.",
            "",
            "| method | best | last | best before the end | gain in the last 25% "
            "| learning rate | params (paper) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for slug, label in ROWS:
            cell = cells.get((task, slug))
            if not cell:
                continue
            earlier = sum(
                1 for r in cell.values() if r.record["best"]["step"] < max(curve(r), default=0)
            )
            rates = sorted(
                {float(r.record["config"]["trainer"]["learning_rate"]) for r in cell.values()}
            )
            params = sorted({r.params for r in cell.values() if r.params is not None})
            lines.append(
                f"| {label} | {_stat_text(list(_scores(cell, lambda r: best_up_to(r, 1.0)).values()))} "
                f"| {_stat_text(list(_scores(cell, last_score).values()))} "
                f"| {earlier}/{len(cell)} | {fmean(late_gain(r) for r in cell.values()):+.2f} "
                f"| {', '.join(f'{x:g}' for x in rates)} "
                f"| {params[0] if params else 0:,} |"
            )
        lines += ["", *_reference_checks(cells, task), ""]
        lines += [
            "Paired differences A - B (x100, seeds matched, 95% interval of scipy's paired "
            "t-test), of the best evaluation within the first 25/50/75/100% of the run, and of the "
            "last evaluation:",
            "",
            "| A | B | " + " | ".join(f"best in {f:.0%}" for f in FRACTIONS) + " | last | pairs |",
            "|---|---|" + "---|" * (len(FRACTIONS) + 1) + "---:|",
        ]
        for a, b in COMPARISONS:
            cell_a, cell_b = cells.get((task, a)), cells.get((task, b))
            if not cell_a or not cell_b:
                continue
            along = _along_budget(cell_a, cell_b)
            last = Paired.of(_scores(cell_a, last_score), _scores(cell_b, last_score))
            lines.append(
                f"| {LABELS[a]} | {LABELS[b]} | "
                + " | ".join(p.text() for p in along)
                + f" | {last.text()} | {last.n} |"
            )
        lines.append("")
    lines += _cost(cells)
    return "\n".join(lines)


def train_minutes(run: Run) -> float:
    """The run's training wall time in minutes, evaluations included, summed over the segments
    of a resumed run (``timing.train_wall_time_s``)."""
    return run.record["timing"]["train_wall_time_s"] / 60


def _cost(cells: dict[tuple[str, str], dict[int, Run]]) -> list[str]:
    """Training wall time per cell and in all, from the records."""
    lines = [
        "## Cost",
        "",
        "Training wall time per run (evaluations included; a resumed run's segments summed), "
        "each run on one torch thread, two runs at a time on a 2-core machine (make converge) "
        "that other work also used: not idle times.",
        "",
        "| task | method | runs | minutes per run, median (min-max) | resumed | hours |",
        "|---|---|---:|---|---:|---:|",
    ]
    total, count = 0.0, 0
    for task in TASKS:
        for slug, label in ROWS:
            cell = cells.get((task, slug))
            if not cell:
                continue
            minutes = sorted(train_minutes(r) for r in cell.values())
            resumed = sum(1 for r in cell.values() if len(r.record["timing"]["segments"]) > 1)
            total, count = total + sum(minutes), count + len(minutes)
            lines.append(
                f"| {get_task(task).label} | {label} | {len(minutes)} "
                f"| {median(minutes):.0f} ({minutes[0]:.0f}-{minutes[-1]:.0f}) | {resumed} "
                f"| {sum(minutes) / 60:.1f} |"
            )
    lines += ["", f"In all: {count} runs, {total / 60:.1f} hours of one thread.", ""]
    return lines


def _reference_checks(cells: dict[tuple[str, str], dict[int, Run]], task: str) -> list[str]:
    """Whether LoRA r=1 and full fine-tuning beat head-only training by more than twice their
    own seed std (the sign that the budget trains the backbone, not just the head)."""
    head = cells.get((task, "head"))
    if not head:
        return ["Head-only training: no records."]
    head_mean, _, _ = _mean_std([best_up_to(r, 1.0) for r in head.values()])
    out = []
    for slug in STRONG_ROWS:
        cell = cells.get((task, slug))
        if not cell:
            continue
        mean, std, n = _mean_std([best_up_to(r, 1.0) for r in cell.values()])
        margin = mean - head_mean
        verdict = "yes" if n >= 2 and margin > 2 * std else "NO"
        out.append(
            f"- {LABELS[slug]} beats head-only ({head_mean:.2f}) by more than twice its seed std: "
            f"{verdict} ({margin:+.2f} against 2 x {std:.2f})."
        )
    return out


def seeds_csv(runs: Sequence[Run]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["task", "method", "seed", "best", "best_step", "last", "last_step", "lr"])
    order = {slug: i for i, (slug, _) in enumerate(ROWS)}
    for run in sorted(runs, key=lambda r: (TASKS.index(r.task), order.get(r.slug, 99), r.seed)):
        points = curve(run)
        writer.writerow(
            [
                run.task,
                run.slug,
                run.seed,
                f"{best_up_to(run, 1.0):.4f}",
                run.record["best"]["step"],
                f"{last_score(run):.4f}",
                max(points, default=""),
                f"{float(run.record['config']['trainer']['learning_rate']):g}",
            ]
        )
    return out.getvalue()


def curves_figure(runs: Sequence[Run], majority: dict[str, float], path: Path) -> Path:
    cells = _by_cell(runs)
    tasks = [t for t in TASKS if any(task == t for task, _ in cells)]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5.2 * max(len(tasks), 1), 4.2))
    axes = np.atleast_1d(axes)
    for ax, task in zip(axes, tasks, strict=False):
        spec = get_task(task)
        lowest = []
        for slug, label in ROWS:
            cell = cells.get((task, slug))
            if not cell:
                continue
            per_run = [curve(r) for r in cell.values()]
            steps = sorted(set.intersection(*(set(p) for p in per_run)))
            values = np.array([[p[s] for s in steps] for p in per_run])
            mean = values.mean(axis=0)
            std = values.std(axis=0, ddof=1) if len(per_run) > 1 else np.zeros_like(mean)
            ax.plot(steps, mean, color=COLORS[slug], label=f"{label} (n={len(per_run)})", lw=1.6)
            ax.fill_between(steps, mean - std, mean + std, color=COLORS[slug], alpha=0.15, lw=0)
            lowest.append(np.nanmin(mean - std))
        ax.axhline(majority[task], color="black", ls=":", lw=1, label="majority class")
        floor = min([*lowest, majority[task]])
        ax.set_ylim(bottom=max(floor - 2, -5))
        ax.set_title(f"MiniLM-L6 on {spec.label}")
        ax.set_xlabel("optimiser step (batch 32)")
        ax.set_ylabel(f"dev {spec.metric} x100")
        ax.grid(alpha=0.3)
    for ax in axes[: len(tasks)]:  # each panel its own: the rows and seeds differ per task
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Dev score along training: mean over seeds, band = mean ± 1 std over seeds")
    return _save(fig, path)


@dataclass(frozen=True)
class GapSeries:
    """One line of the gap figure: A - LoRA r=1 on a task at each budget fraction."""

    task: str
    slug: str
    label: str
    along: list[Paired]


def gap_series(runs: Sequence[Run]) -> list[GapSeries]:
    """The (task, DCFT row) comparisons with LoRA r=1 that have an interval (2+ pairs)."""
    cells = _by_cell(runs)
    series = []
    for task in TASKS:
        for slug in ("dcft-k8-s8", "dcft-k8-s8-init_lora"):
            cell_a, cell_b = cells.get((task, slug)), cells.get((task, "lora-r1"))
            if not cell_a or not cell_b:
                continue
            along = _along_budget(cell_a, cell_b)
            if along[0].n >= 2:
                label = f"{get_task(task).label}: {LABELS[slug]} - LoRA r=1 (n={along[0].n})"
                series.append(GapSeries(task, slug, label, along))
    return series


def gap_figure(runs: Sequence[Run], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    markers = {"sst2": "o", "stsb": "s", "mrpc": "^"}
    for line in gap_series(runs):
        offset = TASKS.index(line.task) - 1
        x = np.array(FRACTIONS) * 100 + offset * 1.2
        mean = np.array([p.mean for p in line.along])
        err = np.array(
            [[p.mean - p.low for p in line.along], [p.high - p.mean for p in line.along]]
        )
        style = "-" if line.slug == "dcft-k8-s8" else "--"
        ax.errorbar(
            x,
            mean,
            yerr=err,
            fmt=markers.get(line.task, "o") + style,
            capsize=3,
            color=COLORS[line.slug],
            alpha=0.9,
            label=line.label,
        )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("budget: % of the run's optimiser steps (best evaluation up to there)")
    ax.set_ylabel("difference in dev score x100")
    ax.set_title("DCFT - LoRA r=1 along the budget (error bars: 95% paired t-interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def write(
    runs_dir: Path,
    out: Path,
    majority_file: Path = MAJORITY_FILE,
    plan: dict[tuple[str, str], list[int]] | None = None,
) -> list[Path]:
    runs = [r for r in load_runs(runs_dir).runs if r.task in TASKS and r.slug in LABELS]
    majority = json.loads(majority_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "converge.md", out / "converge-seeds.csv"]
    written[0].write_text(render(runs, majority, planned() if plan is None else plan))
    written[1].write_text(seeds_csv(runs))
    written.append(curves_figure(runs, majority, out / "curves.png"))
    written.append(gap_figure(runs, out / "gap.png"))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=ROOT / "results/study/converge/runs", type=Path)
    parser.add_argument("--out", default=ROOT / "results/study/converge", type=Path)
    args = parser.parse_args(argv)
    for path in write(args.runs, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
