"""Figures 2 and 3 of the paper from result records (PNG, matplotlib Agg backend).

* Figure 2: total training time, DCFT (d=8) vs LoRA on CoLA, RTE, MRPC and QNLI (the CPU study:
  on the tasks it has): grouped bars of the mean ``timing.train_wall_time_s`` over seeds, in
  seconds, minutes or hours as the magnitudes need (± std where there are several seeds); a
  missing bar is labelled "missing".
* Figure 3: SST-2 validation accuracy and loss per evaluation step, DCFT (d=8) vs LoRA: mean over
  seeds (band: ± std where several seeds share the step). The loss panel shows the training loss
  when records carry a ``loss_history`` (``[{"step", "loss"}, ...]``), else the validation loss
  of the evaluations, and says which.

Both use Table 1's DeBERTaV3-base rows (or their MiniLM twin), so a figure shows exactly the runs
the table's cells average.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dcft.report.aggregate import OurRow, build_table
from dcft.report.rows import TASK_LABELS
from dcft.report.runs import TWIN_LABEL, TWIN_STANDS_FOR, Run, RunSet

FIGURE2_TASKS = ("cola", "rte", "mrpc", "qnli")
# (seconds per unit, name): the largest unit in which the longest bar is at least 2.
TIME_UNITS = ((3600, "hours"), (60, "minutes"), (1, "seconds"))
FIGURE3_TASK = "sst2"
SERIES = (("dcft", "efficient", "DCFT (d=8)"), ("lora", "", "LoRA"))


def _series_rows(runset: RunSet, scale: str) -> dict[str, OurRow | None]:
    """Table 1's DeBERTaV3-base DCFT∆ and LoRA rows: the our-row with the most runs of each."""
    rows = build_table(1, runset, scale).rows
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


def _title(text: str, scale: str) -> str:
    return f"{text}\n({TWIN_LABEL})" if scale == "mini" else text


def time_unit(longest_hours: float) -> tuple[float, str]:
    """(hours -> unit factor, unit name) so that the longest bar reads as a number >= 2."""
    seconds = 3600 * longest_hours
    per_unit, name = next(((p, n) for p, n in TIME_UNITS if seconds / p >= 2), TIME_UNITS[-1])
    return 3600 / per_unit, name


def _figure2_tasks(rows: dict[str, OurRow | None], scale: str) -> tuple[str, ...]:
    """The paper's four tasks; the CPU study's own tasks at mini scale (it has no RTE, QNLI)."""
    if scale != "mini":
        return FIGURE2_TASKS
    timed = {task for row in rows.values() if row for task in row.hours}
    return tuple(task for task in TASK_LABELS if task in timed) or FIGURE2_TASKS


def figure2(runset: RunSet, path: str | Path, scale: str = "paper") -> Path:
    """Grouped bars of training time per task (DCFT vs LoRA); missing bars are labelled."""
    rows = _series_rows(runset, scale)
    tasks = _figure2_tasks(rows, scale)
    stats = [row.hours.get(t) for row in rows.values() if row for t in tasks]
    factor, unit = time_unit(max((s.mean for s in stats if s is not None), default=1.0))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(rows)
    x = np.arange(len(tasks))
    missing = []
    for i, (label, row) in enumerate(rows.items()):
        offset = x + (i - (len(rows) - 1) / 2) * width
        for j, task in enumerate(tasks):
            stat = row.hours.get(task) if row else None
            if stat is None:
                missing.append(f"{label} {TASK_LABELS[task]}")
                ax.text(offset[j], 0, "missing", rotation=90, ha="center", va="bottom", fontsize=7)
                continue
            err = factor * stat.std if stat.n > 1 else None
            ax.bar(offset[j], factor * stat.mean, width, yerr=err, color=f"C{i}", capsize=3,
                   label=label if label not in ax.get_legend_handles_labels()[1] else None)  # fmt: skip
    ax.set_xticks(x, [TASK_LABELS[t] for t in tasks])
    ax.set_ylabel(f"training time ({unit}, mean over seeds)")
    ax.set_title(_title("Figure 2: total training time, DCFT vs LoRA", scale))
    if ax.get_legend_handles_labels()[1]:
        ax.legend()
    if missing:
        fig.text(0.01, 0.01, "no records: " + ", ".join(missing), fontsize=6, wrap=True)
    return _save(fig, path)


def _mean_curve(runs: Sequence[Run], points) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and std over runs of ``points(run) -> {step: value}``."""
    per_run = [points(r) for r in runs]
    steps = sorted({s for p in per_run for s in p})
    values = [[p[s] for p in per_run if s in p] for s in steps]
    mean = np.array([np.mean(v) for v in values])
    std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
    return np.array(steps), mean, std


def _accuracy(run: Run) -> dict[int, float]:
    return {
        e["step"]: 100 * e["metrics"]["validation"]["accuracy"]
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


def figure3(runset: RunSet, path: str | Path, scale: str = "paper") -> Path:
    """SST-2 accuracy and loss per step, DCFT vs LoRA (mean over seeds, ± std band)."""
    rows = _series_rows(runset, scale)
    runs = {
        label: row.cell_runs.get(FIGURE3_TASK, []) if row else [] for label, row in rows.items()
    }
    has_train_loss = any(_train_loss(r) for group in runs.values() for r in group)
    loss_points, loss_name = (
        (_train_loss, "training loss") if has_train_loss else (_eval_loss, "validation loss")
    )
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4))
    notes = []
    for i, (label, group) in enumerate(runs.items()):
        if not group:
            notes.append(f"{label}: no SST-2 records")
            continue
        for ax, points in ((acc_ax, _accuracy), (loss_ax, loss_points)):
            steps, mean, std = _mean_curve(group, points)
            if len(steps) == 0:
                continue
            ax.plot(steps, mean, color=f"C{i}", marker=".", label=f"{label} (n={len(group)})")
            if len(group) > 1:
                ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2)
    if not has_train_loss:
        notes.append("records carry no training-loss history: validation loss shown")
    acc_ax.set(xlabel="step", ylabel="SST-2 validation accuracy (%)", title="accuracy")
    loss_ax.set(xlabel="step", ylabel=loss_name, title=loss_name)
    for ax in (acc_ax, loss_ax):
        if ax.get_legend_handles_labels()[1]:
            ax.legend()
    fig.suptitle(_title("Figure 3: SST-2 accuracy and loss, DCFT vs LoRA", scale))
    if notes:
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=7)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_figures(runset: RunSet, out: str | Path, scale: str = "paper") -> list[Path]:
    """``figure2.png`` and ``figure3.png`` in ``out``."""
    out = Path(out)
    return [
        figure2(runset, out / "figure2.png", scale),
        figure3(runset, out / "figure3.png", scale),
    ]
