"""The CPU study's own summary: every method on every task beside the two rows that make a cell
readable (the dev set's majority class and head-only training), with seeds, parameters and
training time, the learning curves, and the per-task paired differences the paper's claims
rest on; and every run's scores, seed by seed.

    python -m dcft.report.study [--runs results/study/runs] [--out results/study]

writes ``study-best.md`` and ``study-last.md`` (each run's best, respectively last, evaluation)
and ``study-seeds.csv`` (one line per run).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

import numpy as np
from scipy import stats as scipy_stats

from dcft.data import DataUnavailableError, get_task, load_raw_splits
from dcft.data.metrics import glue_metrics
from dcft.report.runs import SELECTS, Run, load_runs
from dcft.report.stats import Stat, format_stat

TASKS = ("cola", "sst2", "mrpc", "stsb")
HEAD = "head"
# (slug, label) in the order printed; rows whose slug has no record are left out. The settings
# and TASKS are those the study's sweeps train (conf/experiment/mini-*.yaml), which
# tests/test_study_rows.py holds equal: a row added to one place only fails there.
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
    (HEAD, "Head only (frozen backbone)"),
)
# Paired comparisons, one task at a time: (slug A, slug B); the difference is A - B.
PAIRS = (
    ("dcft-k8-s8", "lora-r1"),
    ("dcft-k8-s8", "full"),
    ("dcft-k8-s8", HEAD),
    ("lora-r1", HEAD),
    ("full", HEAD),
    ("dcft-k2-s2", "dcft-k8-s8"),
)


def score(run: Run) -> float:
    """The task's headline metric of the selected evaluation, x100 (paper units); NaN when that
    evaluation has none (a run whose every evaluation scored NaN has no best one)."""
    spec = get_task(run.task)
    return spec.paper_units * run.scores.get(spec.eval_splits[0], {}).get(spec.metric, math.nan)


def evaluation_scores(run: Run) -> dict[int, float]:
    """Step -> the headline metric x100 of each of the run's dev evaluations."""
    spec = get_task(run.task)
    return {
        e["step"]: spec.paper_units * value
        for e in run.record.get("evaluations") or []
        if (value := e["metrics"].get(spec.eval_splits[0], {}).get(spec.metric)) is not None
    }


def best_is_last(run: Run) -> bool:
    """Whether the run's best evaluation is its last one (still improving when it stopped)."""
    steps = sorted(evaluation_scores(run))
    return bool(steps) and (run.record.get("best") or {}).get("step") == steps[-1]


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
        out[task] = spec.paper_units * glue_metrics(task, constant, labels)[spec.metric]
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


@dataclass(frozen=True)
class PairedDifference:
    """Mean of A - B over the seeds both have on one task, with the 95% interval of a paired
    t-test (NaN below two pairs); ``nan_seeds``: the seeds both have that are left out because
    A's or B's score is NaN."""

    mean: float
    low: float
    high: float
    n: int
    nan_seeds: tuple[int, ...] = ()

    def text(self, seeds: int) -> str:
        """``+mean [low, high]``, ``—`` below two pairs; the pair count named when it is fewer
        than ``seeds``, and the NaN seeds left out."""
        notes = [f"n={self.n}"] if self.n < max(seeds, 2) else []
        if self.nan_seeds:
            notes.append(f"NaN, left out: seed {', '.join(map(str, self.nan_seeds))}")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        if self.n < 2:
            return f"—{suffix}"
        return f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}]{suffix}"


def paired_difference(a: Sequence[Run], b: Sequence[Run], task: str) -> PairedDifference:
    """A - B on ``task``, pairs matched on seed, seeds with a NaN score left out (and named);
    the interval is ``scipy.stats.ttest_rel(A, B).confidence_interval()``."""
    by_seed = [{r.seed: score(r) for r in runs if r.task == task} for runs in (a, b)]
    shared = sorted(by_seed[0].keys() & by_seed[1].keys())
    seeds = [s for s in shared if all(math.isfinite(d[s]) for d in by_seed)]
    nan_seeds = tuple(s for s in shared if s not in seeds)
    if len(seeds) < 2:
        return PairedDifference(math.nan, math.nan, math.nan, len(seeds), nan_seeds)
    first, second = ([d[s] for s in seeds] for d in by_seed)
    interval = scipy_stats.ttest_rel(first, second).confidence_interval(0.95)
    mean = fmean(x - y for x, y in zip(first, second, strict=True))
    return PairedDifference(mean, float(interval.low), float(interval.high), len(seeds), nan_seeds)


def cell_stat(runs: Sequence[Run], task: str) -> Stat | None:
    """Mean ± std over the cell's seeds; NaN seeds (a collapsed correlation) are named apart,
    never averaged."""
    cell = [r for r in runs if r.task == task]
    return Stat.of([score(r) for r in cell], [r.seed for r in cell])


def reference(task: str, majority: dict[str, float], head: Stat | None) -> float:
    """The score a cell must beat to count as learning: the dev set's majority class, or
    head-only training's mean where the majority class scores 0 (CoLA's MCC and STS-B's
    correlation of a constant prediction: any model that varies its output beats it)."""
    if majority[task] == 0 and head is not None and head.n > 0:
        return head.mean
    return majority[task]


def learns(stat: Stat | None, reference: float) -> bool:
    """Above ``reference`` by more than twice the seed std, on at least 2 finite seeds."""
    return stat is not None and stat.n >= 2 and stat.mean - reference > 2 * stat.std


def _by_slug(runs: Sequence[Run]) -> dict[str, list[Run]]:
    by_slug: dict[str, list[Run]] = {}
    for run in runs:
        by_slug.setdefault(run.slug, []).append(run)
    return by_slug


def _curve(runs: Sequence[Run], task: str, steps: list[int]) -> str:
    """Mean over seeds at each evaluation (``Stat``: NaN seeds never averaged, a step with no
    finite score left out), ``a → b → c``; the steps named if they are not the study's."""
    per_step: dict[int, list[tuple[float, int]]] = {}
    for run in runs:
        if run.task == task:
            for step, value in evaluation_scores(run).items():
                per_step.setdefault(step, []).append((value, run.seed))
    stats = {step: Stat.of(*zip(*scored, strict=True)) for step, scored in per_step.items()}
    means = {step: stat.mean for step, stat in stats.items() if stat and stat.n}
    if not means:
        return "—"
    text = " → ".join(f"{means[s]:.2f}" for s in sorted(means))
    return (
        text if sorted(means) == steps else f"{text} (steps {', '.join(map(str, sorted(means)))})"
    )


def render(runs: Sequence[Run], majority: dict[str, float], select: str) -> str:
    """The study's summary as Markdown (results/study/study-{select}.md)."""
    by_slug = _by_slug(runs)
    rows = [(slug, label) for slug, label in ROWS if by_slug.get(slug)]
    labels = dict(ROWS)
    head = {t: cell_stat(by_slug.get(HEAD, []), t) for t in TASKS}
    refs = {t: reference(t, majority, head[t]) for t in TASKS}
    by_head = [get_task(t).label for t in TASKS if refs[t] != majority[t]]
    steps = sorted({s for run in runs for s in evaluation_scores(run)})
    full_seeds = max((len({r.seed for r in g}) for g in by_slug.values()), default=0)
    header = ["method", *(get_task(t).label for t in TASKS), "params (paper)", "train time"]
    header.append("best = last")
    lines = [
        "# CPU study: MiniLM-L6 on GLUE",
        "",
        f"Scores x100 ({select} evaluation of each run; mean ± std over seeds, n seeds), "
        "params = adapter tensors without the head, train time = mean wall time per run "
        "(training + evaluations) on a 2-core CPU, part of the time shared with other work (not a "
        "method's cost: "
        "`make bench` measures that, results/bench/), best = last = runs whose best evaluation "
        "(the first of equal scores) is their last one. * = not above the task's reference by more than twice its seed std "
        "(or fewer than 2 finite seeds); the reference is the majority class of the dev set, or "
        "head-only training's mean on the tasks where the majority class scores 0 (a constant "
        f"prediction's MCC or correlation: {', '.join(by_head) or 'none'}); head-only training "
        "itself is held against the majority class. NaN = a constant prediction, whose "
        "correlation is undefined. Every run's scores: study-seeds.csv.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        "| Majority class (dev) | "
        + " | ".join(f"{majority[t]:.2f}" for t in TASKS)
        + " | 0 | — | — |",
    ]
    marked = cells = 0
    for slug, label in rows:
        group = by_slug[slug]
        texts = []
        for task in TASKS:
            stat = cell_stat(group, task)
            if stat is None:
                texts.append("—")
                continue
            bar = majority[task] if slug == HEAD else refs[task]
            mark = "" if learns(stat, bar) else " *"
            cells += slug != HEAD
            marked += slug != HEAD and bool(mark)
            texts.append(f"{format_stat(stat)}{mark}")
        params = sorted({r.params for r in group if r.params is not None})
        hours = [r.hours for r in group if r.hours is not None]
        time_text = f"{3600 * fmean(hours):.0f} s" if hours else "—"
        last = sum(best_is_last(r) for r in group)
        lines.append(
            f"| {label} | "
            + " | ".join(texts)
            + f" | {params[0] if params else 0:,} | {time_text} | {last}/{len(group)} |"
        )
    dcft_runs = [r for r in runs if r.method == "dcft"]
    other_runs = [r for r in runs if r.method != "dcft"]
    lines += [
        "",
        f"{marked} of {cells} cells are marked (head-only's own row not counted). Runs whose "
        f"best evaluation is their last: {sum(map(best_is_last, dcft_runs))} of "
        f"{len(dcft_runs)} DCFT runs (every kernel and stride), "
        f"{sum(map(best_is_last, other_runs))} of {len(other_runs)} of the other rows.",
        "",
        "## Learning curves",
        "",
        f"Dev score x100 at each evaluation (steps {', '.join(map(str, steps))}), mean over seeds.",
        "",
        "| method | " + " | ".join(get_task(t).label for t in TASKS) + " |",
        "|---|" + "---:|" * len(TASKS),
        *(
            f"| {label} | " + " | ".join(_curve(by_slug[slug], t, steps) for t in TASKS) + " |"
            for slug, label in rows
        ),
        "",
        "## Paired differences, per task",
        "",
        "A - B x100 on each task, pairs matched on seed, mean with the 95% interval of a paired "
        "t-test (`scipy.stats.ttest_rel(A, B).confidence_interval()`, n - 1 degrees of freedom; "
        f"n pairs named where fewer than {full_seeds}; a seed whose score is NaN on either side is "
        "left out and named).",
        "",
        "| A | B | " + " | ".join(get_task(t).label for t in TASKS) + " |",
        "|---|---|" + "---:|" * len(TASKS),
    ]
    for a, b in PAIRS:
        texts = [
            paired_difference(by_slug.get(a, []), by_slug.get(b, []), t).text(full_seeds)
            for t in TASKS
        ]
        lines.append(f"| {labels[a]} | {labels[b]} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def seeds_csv(runs: Sequence[Run]) -> str:
    """One line per run (rows in the summary's order, then task and seed): its score x100 at
    every evaluation step, its best evaluation, training time and parameters."""
    steps = sorted({s for run in runs for s in evaluation_scores(run)})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["method", "method_slug", "task", "metric", "seed"]
        + [f"dev_step{s}" for s in steps]
        + ["best", "best_step", "train_time_s", "params"]
    )
    by_slug = _by_slug(runs)
    for slug, label in ROWS:
        order = {t: i for i, t in enumerate(TASKS)}
        for run in sorted(by_slug.get(slug, []), key=lambda r: (order.get(r.task, 99), r.seed)):
            curve = evaluation_scores(run)
            best = score(run)
            writer.writerow(
                [label, slug, run.task, get_task(run.task).metric, run.seed]
                + [f"{curve[s]:.4f}" if s in curve else "" for s in steps]
                + [
                    f"{best:.4f}",
                    (run.record.get("best") or {}).get("step", ""),
                    "" if run.hours is None else f"{3600 * run.hours:.1f}",
                    "" if run.params is None else run.params,
                ]
            )
    return out.getvalue()


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
    path = out / "study-seeds.csv"
    path.write_text(seeds_csv(load_runs(args.runs, "best").runs))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
