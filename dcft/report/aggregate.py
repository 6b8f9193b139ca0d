"""Runs -> the cells of one of the paper's tables (dcft.report renders them).

How records become cells:

* a printed row (dcft.report.rows) matches the records of its model, method and the options
  that define the row (DCFT: kernel, stride, targets; baselines: the method name only), whatever
  ``experiment`` they were produced under; records are deduplicated by ``(hparams_hash, seed)``
  (dcft.report.runs); a row of the table file with ``printed_as`` compares another setting with
  a printed row, as a row of its own;
* the records of one paper row are split into our rows by ``method_slug`` (and by
  ``harness_version`` when several occur): different option sets are never averaged together;
* within one cell, records whose settings differ beyond the seed (e.g. learning rate) are kept
  apart: the cell shows the largest group (marked ``‡``), the others are listed as warnings;
* a cell is the mean ± sample std (ddof = 1) over seeds of the selected evaluation (``best`` or
  ``last`` of each record), in the paper's units (GLUE x 100); missing cells stay missing; a
  seed whose score is NaN (or who has no best evaluation because every one was NaN) is named
  in the cell, never averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean

from dcft.report.rows import Cell, PaperRow, paper_rows
from dcft.report.runs import Run, RunSet, model_for
from dcft.report.stats import MISSING, Stat, format_stat
from dcft.report.tables import TableSpec, table_spec


@dataclass
class Conflict:
    """Records of one cell whose settings differ from the group shown: reported, not averaged."""

    row: str
    task: str
    slug: str
    settings: str
    runs: list[Run]
    score: str
    shown: bool


@dataclass
class OurRow:
    """Our runs for one paper row and one method slug (and harness version)."""

    paper: PaperRow
    slug: str | None
    harness: str | None
    show_harness: bool = False
    runs: list[Run] = field(default_factory=list)
    cells: dict[Cell, Stat] = field(default_factory=dict)
    hours: dict[str, Stat] = field(default_factory=dict)
    cell_runs: dict[str, list[Run]] = field(default_factory=dict)
    conflicted: set[str] = field(default_factory=set)
    failed: dict[str, list[Run]] = field(default_factory=dict)

    @property
    def setting(self) -> str:
        if self.slug is None:
            return MISSING
        return f"{self.slug} @{self.harness}" if self.show_harness else self.slug

    def average(self) -> float | None:
        """The paper's Avg.: mean over tasks, a task with two splits (MNLI m/mm) counted once as
        the mean of its splits; only when every cell is present."""
        if any(c not in self.cells for c in self.paper.cells):
            return None
        per_task: dict[str, list[float]] = {}
        for cell in self.paper.cells:
            per_task.setdefault(cell.task, []).append(self.cells[cell].mean)
        return fmean([fmean(v) for v in per_task.values()])

    def average_hours(self) -> float | None:
        tasks = list(dict.fromkeys(c.task for c in self.paper.cells))
        if any(t not in self.hours for t in tasks):
            return None
        return fmean([self.hours[t].mean for t in tasks])

    def params(self) -> list[int]:
        return sorted({r.params for r in self.runs if r.params is not None})


def _newest(runs: Sequence[Run]) -> str:
    return max(str(r.record.get("created_at") or "") for r in runs)


def _cell_stat(runs: Sequence[Run], cell: Cell) -> Stat | None:
    """Mean ± std of ``cell`` over ``runs``. A run without the cell's score counts as NaN: its
    selected evaluation has none (every evaluation of it scored NaN, e.g. STS-B's Pearson of a
    constant prediction, so it has no best one), and it is named among the NaN seeds, never
    left out silently."""
    return Stat.of(
        [r.scores.get(cell.split, {}).get(cell.metric, math.nan) * cell.factor for r in runs],
        [r.seed for r in runs],
    )


def _fill(row: OurRow, conflicts: list[Conflict]) -> None:
    """Per task: the largest settings group gives the cells; the others become conflicts."""
    for task in dict.fromkeys(c.task for c in row.paper.cells):
        groups: dict[str, list[Run]] = {}
        for run in (r for r in row.runs if r.task == task):
            groups.setdefault(run.settings, []).append(run)
        if not groups:
            continue
        shown_key = max(groups, key=lambda k: (len(groups[k]), _newest(groups[k])))
        ranked = [(shown_key, groups[shown_key])]
        ranked += [(k, runs) for k, runs in groups.items() if k != shown_key]
        shown = ranked[0][1]
        row.cell_runs[task] = shown
        if len(ranked) > 1:
            row.conflicted.add(task)
            first = next(c for c in row.paper.cells if c.task == task)
            for rank, (settings, runs) in enumerate(ranked):
                stat = _cell_stat(runs, first)
                score = f"{first.label} {first.metric} {format_stat(stat)}"
                conflicts.append(
                    Conflict(row.paper.label, task, row.setting, settings, runs, score, rank == 0)
                )
        for cell in (c for c in row.paper.cells if c.task == task):
            stat = _cell_stat(shown, cell)
            if stat is not None:
                row.cells[cell] = stat
        timed = [r for r in shown if r.hours is not None]
        stat = Stat.of([r.hours for r in timed], [r.seed for r in timed])
        if stat is not None:
            row.hours[task] = stat


@dataclass
class TableResult:
    """One table: our rows per paper row, conflicts and the footnotes."""

    table: int
    scale: str
    rows: list[OurRow]
    conflicts: list[Conflict]
    runset: RunSet

    @property
    def matched(self) -> int:
        return sum(len(r.runs) for r in self.rows)

    @property
    def spec(self) -> TableSpec:
        """The table's file: title, notes, whether it is averaged and timed."""
        return table_spec(self.table)


def build_table(table: int, runset: RunSet, scale: str = "paper") -> TableResult:
    """Match the runs to the paper rows of ``table`` and aggregate them per cell."""
    if scale not in ("paper", "mini"):
        raise ValueError(f"unknown scale {scale!r}; valid: paper, mini (or auto on the CLI)")
    rows: list[OurRow] = []
    conflicts: list[Conflict] = []
    for paper in paper_rows(table):
        model = model_for(paper.model, scale)
        if scale == "mini":  # the study's tasks, also where the paper has no column for them
            tasks = {r.task for r in [*runset.runs, *runset.failed] if paper.same_setting(r, model)}
            paper = paper.with_tasks(sorted(tasks))
        matched = [r for r in runset.runs if paper.matches(r, model)]
        failed = [r for r in runset.failed if paper.matches(r, model)]
        keys = sorted(
            {(r.slug, r.harness_version) for r in [*matched, *failed]},
            key=lambda k: (-sum((r.slug, r.harness_version) == k for r in matched), k),
        )
        if not keys:
            rows.append(OurRow(paper, None, None))
            continue
        show_harness = len({k[1] for k in keys}) > 1
        for slug, harness in keys:
            row = OurRow(paper, slug, harness, show_harness)
            row.runs = [r for r in matched if (r.slug, r.harness_version) == (slug, harness)]
            for run in failed:
                if run.slug == slug:
                    row.failed.setdefault(run.task, []).append(run)
            _fill(row, conflicts)
            rows.append(row)
    return TableResult(table, scale, rows, conflicts, runset)
