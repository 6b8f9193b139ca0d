"""Figures 2 and 3 of the paper from result records (PNG, matplotlib Agg backend).

* Figure 2: total training time, DCFT (d=8) vs LoRA (r=1) on CoLA, RTE, MRPC and QNLI: grouped
  bars of the mean ``timing.train_wall_time_s`` over seeds, in seconds, minutes or hours as the
  magnitudes need (error bars: ± std where there are several seeds); a missing bar is labelled
  "missing".
* Figure 3: SST-2 validation accuracy and loss per evaluation step, DCFT (d=8) vs LoRA (r=1):
  every seed's points, their mean and a ± std band. The loss panel shows the training loss when
  records carry a ``loss_history`` (``[{"step", "loss"}, ...]``), else the validation loss of
  the evaluations, and says which.

Both use Table 1's DeBERTaV3-base rows, so a figure shows exactly the runs the table's cells
average. The CPU study (scale ``mini``) draws its own two: its per-run times shared the CPU with
other work, so its Figure 2 is ``make bench``'s side-by-side step times (results/bench/cpu.csv),
and its Figure 3 adds head-only training and the majority class to DCFT and LoRA's curves.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from dcft.data.provenance import file_sha256
from dcft.data.tasks import get_task
from dcft.report.aggregate import OurRow, build_table
from dcft.report.rows import TASK_LABELS
from dcft.report.runs import TWIN_LABEL, TWIN_MODEL, TWIN_STANDS_FOR, Run, RunSet
from dcft.report.stats import Stat
from dcft.report.study import HEAD, MAJORITY_FILE, ROWS

FIGURE2_TASKS = ("cola", "rte", "mrpc", "qnli")
# (seconds per unit, name): the largest unit in which the longest bar is at least 2.
TIME_UNITS = ((3600, "hours"), (60, "minutes"), (1, "seconds"))
FIGURE3_TASK = "sst2"
SERIES = (("dcft", "efficient", "DCFT (d=8)"), ("lora", "", "LoRA (r=1)"))
# The CPU study's figures: make bench's step times, and the curves of these rows (slugs).
BENCH_CSV = Path("results/bench/cpu.csv")
STUDY_CURVES = ("dcft-k8-s8", "lora-r1", HEAD)
CURVES_LEGEND = 0.13  # the share of Figure 3's height under the panels, for its legend
Points = Callable[[Run], dict[int, float]]


def _series_rows(runset: RunSet) -> dict[str, OurRow | None]:
    """Table 1's DeBERTaV3-base DCFT∆ and LoRA rows: the our-row with the most runs of each."""
    rows = build_table(1, runset, "paper").rows
    found: dict[str, OurRow | None] = {}
    for method, variant, label in SERIES:
        candidates = [
            r
            for r in rows
            if r.paper.model == TWIN_STANDS_FOR
            and r.paper.method == method
            and r.paper.variant == variant
        ]
        found[label] = candidates[0] if candidates and candidates[0].slug else None
    return found


def time_unit(longest_hours: float) -> tuple[float, str]:
    """(hours -> unit factor, unit name) so that the longest bar reads as a number >= 2."""
    seconds = 3600 * longest_hours
    per_unit, name = next(((p, n) for p, n in TIME_UNITS if seconds / p >= 2), TIME_UNITS[-1])
    return 3600 / per_unit, name


def figure2(runset: RunSet, path: str | Path) -> Path:
    """Grouped bars of training time per task (DCFT vs LoRA); missing bars are labelled."""
    rows = _series_rows(runset)
    stats = [row.hours.get(t) for row in rows.values() if row for t in FIGURE2_TASKS]
    factor, unit = time_unit(max((s.mean for s in stats if s is not None), default=1.0))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(rows)
    x = np.arange(len(FIGURE2_TASKS))
    missing = []
    for i, (label, row) in enumerate(rows.items()):
        offset = x + (i - (len(rows) - 1) / 2) * width
        for j, task in enumerate(FIGURE2_TASKS):
            stat = row.hours.get(task) if row else None
            if stat is None:
                missing.append(f"{label} {TASK_LABELS[task]}")
                ax.text(offset[j], 0, "missing", rotation=90, ha="center", va="bottom", fontsize=7)
                continue
            err = factor * stat.std if stat.n > 1 else None
            ax.bar(offset[j], factor * stat.mean, width, yerr=err, color=f"C{i}", capsize=3,
                   label=label if label not in ax.get_legend_handles_labels()[1] else None)  # fmt: skip
    ax.set_xticks(x, [TASK_LABELS[t] for t in FIGURE2_TASKS])
    ax.set_ylabel(f"training time ({unit}, mean over seeds;\nerror bars: ± std over seeds)")
    ax.set_title("Figure 2: total training time, DCFT vs LoRA")
    if ax.get_legend_handles_labels()[1]:
        ax.legend()
    if missing:
        fig.text(0.01, 0.01, "no records: " + ", ".join(missing), fontsize=6, wrap=True)
    return _save(fig, path)


def bench_step_times(path: str | Path = BENCH_CSV) -> dict[str, dict[str, tuple[float, ...]]]:
    """``make bench``'s whole-step times: model -> setting -> (median, q1, q3) seconds, in the
    file's order; empty when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    out: dict[str, dict[str, tuple[float, ...]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["section"] == "step" and row["metric"] == "seconds":
                times = tuple(float(row[k]) for k in ("median", "q1", "q3"))
                out.setdefault(row["subject"], {})[row["config"]] = times
    return out


def _setting_color(name: str) -> str:
    """DCFT blue and LoRA orange as in Figure 3; every other setting grey."""
    return "C0" if name.startswith("DCFT") else "C1" if name.startswith("LoRA") else "C7"


def study_figure2(path: str | Path, bench: str | Path = BENCH_CSV) -> Path:
    """The CPU study's Figure 2: seconds per training step of each setting, measured side by
    side by ``make bench``, with each median over LoRA r=1's."""
    times = bench_step_times(bench)
    models = sorted(times, key=lambda m: m != TWIN_MODEL)  # the study's model first
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(11, 4.6), squeeze=False)
    if not models:
        axes[0][0].text(0.5, 0.5, f"no `make bench` results in {bench}", ha="center")
    for ax, model in zip(axes[0], models, strict=False):
        settings = times[model]
        lora = settings.get("LoRA r=1")
        for i, (name, (median, q1, q3)) in enumerate(settings.items()):
            ax.bar(i, median, yerr=[[median - q1], [q3 - median]], color=_setting_color(name),
                   capsize=3)  # fmt: skip
            if lora:
                ax.text(i, q3, f"{median / lora[0]:.2f}x", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(settings)), list(settings), rotation=25, ha="right")
        ax.set(title=model + (" (the study's model)" if model == TWIN_MODEL else ""))
        ax.set_ylabel("seconds per training step")
    fig.suptitle(
        "Figure 2 (CPU study): time per training step, DCFT d=8 vs LoRA r=1, from `make bench`"
    )
    fig.text(
        0.01,
        0.01,
        f"Bars: median of the timed steps; error bars: their interquartile range (q1-q3); "
        f"numbers: median / LoRA r=1's median. Source: {bench} (every setting timed side by "
        "side in one process). The study's per-run wall times shared the CPU with other work "
        "and are not drawn.",
        fontsize=7,
        wrap=True,
    )
    return _save(fig, path, bottom=0.1, source=bench)


def source_digest(path: str | Path) -> str:
    """sha256 of the file a figure is drawn from, stored in the PNG's ``Source`` text chunk so a
    test can tell a figure drawn from other data (say, an older bench) from a current one."""
    return file_sha256(Path(path)) if Path(path).exists() else "none"


def _mean_curve(runs: Sequence[Run], points: Points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and std over runs of ``points(run) -> {step: value}`` (``Stat``: the report's
    one mean ± std; no band where a step has a single run)."""
    per_run = [(r.seed, points(r)) for r in runs]
    steps = sorted({s for _, p in per_run for s in p})
    stats = [
        Stat.of([p[s] for _, p in per_run if s in p], [seed for seed, p in per_run if s in p])
        for s in steps
    ]
    mean = np.array([stat.mean for stat in stats])
    std = np.array([stat.std if stat.n > 1 else 0.0 for stat in stats])
    return np.array(steps), mean, std


LegendEntry = tuple[object, str]


def _draw_curve(
    ax: plt.Axes, runs: Sequence[Run], points: Points, color: str, label: str
) -> LegendEntry | None:
    """Every run's points (dots), their mean (line) and, from two runs on, a ± std band;
    returns the legend entry (handle, text), or None when the runs have no such points."""
    steps, mean, std = _mean_curve(runs, points)
    if len(steps) == 0:
        return None
    for run in runs:
        seed_points = points(run)
        ax.plot(list(seed_points), list(seed_points.values()), ".", color=color, alpha=0.35)
    (line,) = ax.plot(steps, mean, color=color)
    if len(runs) < 2:
        return line, f"{label} (1 seed)"
    band = ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    return (band, line), f"{label}: mean ± std over {len(runs)} seeds"


def _legend(fig: plt.Figure, entries: list[LegendEntry | None]) -> None:
    """One legend under the panels, of ``(handle, text)`` entries and the dots of single
    seeds."""
    entries = [e for e in entries if e is not None]
    if entries:
        dot = Line2D([], [], marker=".", linestyle="None", color="C7", alpha=0.6)
        handles, texts = zip(*entries, (dot, "one seed's value"), strict=True)
        fig.legend(handles, texts, loc="lower center", ncol=3, fontsize=8, frameon=False)


def _accuracy(run: Run) -> dict[int, float]:
    return {
        e["step"]: get_task(run.task).paper_units * e["metrics"]["validation"]["accuracy"]
        for e in run.record.get("evaluations") or []
        if "accuracy" in e["metrics"].get("validation", {})
    }


def _train_loss(run: Run) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in run.record.get("loss_history") or [] if "loss" in e}


def _eval_loss(run: Run) -> dict[int, float]:
    return {
        e["step"]: e["metrics"]["validation"]["loss"]
        for e in run.record.get("evaluations") or []
        if "loss" in e["metrics"].get("validation", {})
    }


def _curves(
    series: dict[str, list[Run]], title: str, majority: float | None = None, note: str = ""
) -> plt.Figure:
    """SST-2 accuracy and loss per step, one curve per series (mean, band, every seed's
    points); the majority class as a line on the accuracy panel where it is given."""
    has_train_loss = any(_train_loss(r) for group in series.values() for r in group)
    loss_points, loss_name = (
        (_train_loss, "training loss") if has_train_loss else (_eval_loss, "validation loss")
    )
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    notes = [note] if note else []
    entries = []
    for i, (label, group) in enumerate(series.items()):
        if not group:
            notes.append(f"{label}: no SST-2 records")
            continue
        accuracy = _draw_curve(acc_ax, group, _accuracy, f"C{i}", label)
        entries.append(_draw_curve(loss_ax, group, loss_points, f"C{i}", label) or accuracy)
    if majority is not None:
        line = acc_ax.axhline(majority, color="k", linestyle=":", linewidth=1)
        entries.append((line, f"majority class of the dev set ({majority:.2f})"))
    if not has_train_loss:
        notes.append("records carry no training-loss history: validation loss shown")
    acc_ax.set(xlabel="optimiser step", ylabel="SST-2 dev accuracy (%)", title="accuracy")
    loss_ax.set(xlabel="optimiser step", ylabel=loss_name, title=loss_name)
    _legend(fig, entries)
    fig.suptitle(title)
    if notes:
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=7, wrap=True)
    return fig


def figure3(runset: RunSet, path: str | Path) -> Path:
    """SST-2 accuracy and loss per step, DCFT vs LoRA (Table 1's rows)."""
    series = {
        label: row.cell_runs.get(FIGURE3_TASK, []) if row else []
        for label, row in _series_rows(runset).items()
    }
    figure = _curves(series, "Figure 3: SST-2 accuracy and loss, DCFT vs LoRA")
    return _save(figure, path, bottom=CURVES_LEGEND)


def study_curves(runset: RunSet, majority_file: str | Path = MAJORITY_FILE) -> plt.Figure:
    """The CPU study's Figure 3: SST-2 curves of DCFT d=8, LoRA r=1 and head-only training
    beside the dev set's majority class (from ``majority_file``, where it exists)."""
    labels = dict(ROWS)
    series = {
        labels[slug]: [r for r in runset.runs if r.slug == slug and r.task == FIGURE3_TASK]
        for slug in STUDY_CURVES
    }
    majority_file = Path(majority_file)
    majority = (
        json.loads(majority_file.read_text()).get(FIGURE3_TASK) if majority_file.is_file() else None
    )
    note = "" if majority is not None else f"majority class not drawn: no {majority_file}"
    title = f"Figure 3 (CPU study): SST-2 accuracy and loss\n({TWIN_LABEL})"
    return _curves(series, title, majority, note)


def _save(
    fig: plt.Figure, path: str | Path, bottom: float = 0.04, source: str | Path | None = None
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    metadata = {"Source": f"sha256:{source_digest(source)}"} if source is not None else None
    fig.savefig(path, dpi=120, metadata=metadata)
    plt.close(fig)
    return path


def write_figures(runset: RunSet, out: str | Path, scale: str = "paper") -> list[Path]:
    """``figure2.png`` and ``figure3.png`` in ``out``: the paper's, or at scale ``mini`` the
    CPU study's."""
    out = Path(out)
    if scale == "mini":
        curves = _save(study_curves(runset), out / "figure3.png", bottom=CURVES_LEGEND)
        return [study_figure2(out / "figure2.png"), curves]
    return [figure2(runset, out / "figure2.png"), figure3(runset, out / "figure3.png")]
