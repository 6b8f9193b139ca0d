"""What ``python -m dcft.sweep tableN --dry-run`` prints: how many runs are finished, failed,
running and to do, for the table and per model x task; the failed runs with their reasons, the
running ones with their holder and age, records that cannot be trusted; with ``--list-runs``,
every run first, one a line."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from dcft.data.fingerprint import UNAVAILABLE
from dcft.preflight.projection import setting_key
from dcft.run.status import STATUSES

if TYPE_CHECKING:  # dcft.sweep prints with this module
    from dcft.sweep import PlannedRun

# Always shown as columns; corrupt and foreign records only when there are some.
MAIN_STATUSES = ("finished", "failed", "running", "to do")


def run_line(run: PlannedRun, hours: Mapping[str, float] | None = None) -> str:
    projected = (hours or {}).get(setting_key(run.identity))
    shown = f"  ~{projected:.2f} h" if projected is not None else ""
    return f"{run.status:>8}  {run.identity.run_name}{shown}  {run.record}"


def projection_line(runs: Sequence[PlannedRun], hours: Mapping[str, float]) -> str:
    """The preflight's projected device-hours of the runs to do, and of all."""
    todo = [r for r in runs if r.status not in ("finished", "running")]
    priced = [hours[setting_key(r.identity)] for r in runs if setting_key(r.identity) in hours]
    left = [hours[setting_key(r.identity)] for r in todo if setting_key(r.identity) in hours]
    return (
        f"projected by this device's preflight (results/preflight/): {sum(left):.1f} h for "
        f"{len(left)} of the {len(todo)} runs not finished or running, {sum(priced):.1f} h for "
        f"{len(priced)} of all {len(runs)} runs"
    )


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if c < 2 else cell.rjust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def counts_table(runs: Sequence[PlannedRun]) -> list[str]:
    """Runs per status, per model x task (in the sweep's order) and in all."""
    shown = [s for s in STATUSES if s in MAIN_STATUSES or any(r.status == s for r in runs)]
    cells: dict[tuple[str, str], Counter[str]] = {}
    for run in runs:
        cells.setdefault((run.identity.model, run.identity.task), Counter())[run.status] += 1
    total = Counter(run.status for run in runs)
    rows = [["model", "task", *shown]]
    rows += [[m, t, *(str(c[s]) for s in shown)] for (m, t), c in cells.items()]
    rows.append(["all", "", *(str(total[s]) for s in shown)])
    return _table(rows)


def _details(runs: Iterable[PlannedRun], status: str) -> list[str]:
    named = [r for r in runs if r.status == status and (r.detail or status != "to do")]
    lines = [f"{status} ({len(named)}):"] if named else []
    for run in named:
        lines.append(f"  {run.identity.run_name}: {run.detail}")
        lines.append(f"    {run.record}")
    return lines


def summary_line(runs: Sequence[PlannedRun]) -> str:
    counts = Counter(run.status for run in runs)
    return f"{len(runs)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def summary(
    title: str,
    runs: Sequence[PlannedRun],
    list_runs: bool = False,
    hours: Mapping[str, float] | None = None,
) -> str:
    """The dry run's report of ``runs`` (one table's), under ``title``; ``hours``: the projected
    hours per run of a preflight (dcft.preflight.projection.projected_hours), by setting key."""
    lines = [run_line(run, hours) for run in runs] if list_runs else []
    lines.append(f"{title}: {len(runs)} runs")
    if runs:
        lines += counts_table(runs)
    for status in ("failed", "running", "to do", "corrupt", "foreign"):
        lines += _details(runs, status)
    missing = sorted(
        {r.identity.task for r in runs if r.data == UNAVAILABLE or r.data.startswith("absent:")}
    )
    if missing:
        lines.append(
            f"no data here for {', '.join(missing)}: those runs' keys name no examples (set "
            "DCFT_DATA_DIR or data.dir to see their records); they cannot train here"
        )
    if hours:
        lines.append(projection_line(runs, hours))
    lines.append(summary_line(runs))
    return "\n".join(lines)


def add_dry_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dry-run`` and ``--list-runs``, as every command that plans runs takes them."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="train nothing: how many runs are finished, failed, running, to do (per model x task)",
    )
    parser.add_argument(
        "--list-runs", action="store_true", help="with --dry-run: every run and its state, too"
    )
