"""Our results beside the paper's: Tables 1-6 as Markdown, LaTeX and CSV, plus Figures 2-3.

``python -m dcft.report [--runs results/runs] [--out results/tables] [--tables 1 2 ...]`` reads
result records only (it never trains) and writes ``table{N}.{md,tex,csv}`` and
``figure{2,3}.png`` into ``--out``.

How records become cells:

* a paper row matches the records of its model, method and the options that define the row
  (DCFT: kernel, stride, targets; baselines: the method name only), whatever ``experiment`` they
  were produced under; records are deduplicated by ``(hparams_hash, seed)``;
* the records of one paper row are split into our rows by ``method_slug`` (and by
  ``harness_version`` when several occur): different option sets are never averaged together;
* within one cell, records whose settings differ beyond the seed (e.g. learning rate) are kept
  apart: the cell shows the largest group (marked ``‡``), the others are listed as warnings;
* a cell is the mean ± sample std (ddof = 1) over seeds of the selected evaluation (``best`` or
  ``last`` of each record), in the paper's units (GLUE x 100); missing cells stay missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from dcft.data.tasks import TASKS
from dcft.methods.targets import TARGET_NAMES
from dcft.paper import load_paper_averages, load_paper_results, load_paper_times, parse_param_count
from dcft.results import CorruptRecordError, hashed_config, read_record

TABLES = (1, 2, 3, 4, 5, 6)
SCALES = ("auto", "paper", "mini")
SELECTS = ("best", "last")
TWIN_MODEL = "minilm"
TWIN_STANDS_FOR = "deberta-v3-base"
TWIN_LABEL = "MiniLM CPU twin: not comparable to the paper's numbers"
MISSING = "—"
CONFLICT = "‡"
TABLE3_KERNEL = 2
AVERAGED_TABLES = (1, 4)
TIMED_TABLES = (4, 5)
SQUAD_TASKS = ("squad_v1", "squad_v2")
TASK_LABELS = {name: spec.label for name, spec in TASKS.items()}
METHOD_LABELS = {
    "full": "Full FT",
    "bitfit": "BitFit",
    "hadapter": "HAdapter",
    "padapter": "PAdapter",
    "lora": "LoRA",
    "sora": "SoRA",
    "lorafa": "LoRA-FA",
    "dcft": "DCFT",
}
METRIC_LABELS = {"exact_match": "EM", "f1": "F1"}
TABLE_TITLES = {
    1: "Table 1: GLUE dev, DeBERTaV3-base and RoBERTa-large",
    2: "Table 2: GLUE dev, DeBERTaV2-xxlarge",
    3: "Table 3: SQuAD v1.1 / v2.0 dev (EM / F1), DeBERTaV3-base",
    4: "Table 4: DCFT kernel size d (stride = d), accuracy and training time",
    5: "Table 5: DCFT stride (kernel 8), accuracy and training time",
    6: "Table 6: DCFT target matrices (kernel 8)",
}
_PAPER_SPLITS = {"matched": "validation_matched", "mismatched": "validation_mismatched"}
_KEY_COLUMNS = ["table", "model", "method", "variant", "kernel", "stride", "targets"]


# ---------------------------------------------------------------------------------------------
# Records -> runs.


@dataclass(frozen=True)
class Run:
    """One finished record, flattened: identity, the selected evaluation's scores, cost."""

    path: Path
    record: dict[str, Any] = field(repr=False)
    model: str
    task: str
    method: str
    slug: str
    options: dict[str, Any]
    seed: int
    hparams_hash: str
    harness_version: str
    settings: str
    scores: dict[str, dict[str, float]]
    params: int | None
    params_total: int | None
    hours: float | None


@dataclass
class RunSet:
    """Every record under one folder: the usable runs and what was skipped (and why)."""

    runs_dir: Path
    select: str = "best"
    runs: list[Run] = field(default_factory=list)
    corrupt: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)

    @property
    def read(self) -> int:
        return len(self.runs) + len(self.corrupt) + len(self.failed) + len(self.duplicates)


def settings_key(record: dict[str, Any]) -> str:
    """8 hex digits of every result-changing setting except the seed: runs sharing it are seeds
    of one configuration (``hparams_hash`` also digests the seed)."""
    settings = hashed_config(OmegaConf.create(record.get("config") or {}))
    settings.pop("seed", None)
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def _run(path: Path, record: dict[str, Any], select: str) -> Run:
    identity = record["identity"]
    evaluation = record.get(select) or {}
    parameters = record.get("parameters") or {}
    wall = (record.get("timing") or {}).get("train_wall_time_s")
    return Run(
        path=path,
        record=record,
        model=identity["model"],
        task=identity["task"],
        method=identity["method"],
        slug=identity["method_slug"],
        options=dict(identity.get("options") or {}),
        seed=int(identity["seed"]),
        hparams_hash=str(identity["hparams_hash"]),
        harness_version=str(record.get("harness_version")),
        settings=settings_key(record),
        scores=evaluation.get("metrics") or {},
        params=parameters.get("paper"),
        params_total=parameters.get("total"),
        hours=None if wall is None else wall / 3600,
    )


def load_runs(runs_dir: str | Path, select: str = "best") -> RunSet:
    """Read every ``*.json`` record under ``runs_dir``; unreadable ones are named in
    ``corrupt``, failed runs in ``failed``, repeated ``(hparams_hash, seed)`` in ``duplicates``."""
    if select not in SELECTS:
        raise ValueError(f"unknown evaluation selection {select!r}; valid: {', '.join(SELECTS)}")
    runset = RunSet(Path(runs_dir), select)
    seen: set[tuple[str, int]] = set()
    for path in sorted(runset.runs_dir.rglob("*.json")):
        try:
            record = read_record(path)
            if record["status"] != "finished":
                runset.failed.append(path)
                continue
            run = _run(path, record, select)
        except CorruptRecordError as err:
            runset.corrupt.append((path, str(err)))
            continue
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            runset.corrupt.append((path, f"not a usable run record ({type(err).__name__}: {err})"))
            continue
        if (run.hparams_hash, run.seed) in seen:
            runset.duplicates.append(path)
            continue
        seen.add((run.hparams_hash, run.seed))
        runset.runs.append(run)
    return runset


def detect_scale(runset: RunSet) -> str:
    """``mini`` when the records hold MiniLM runs and none of a paper model, else ``paper``."""
    models = {r.model for r in runset.runs}
    paper_models = set(load_paper_results()["model"])
    return "mini" if TWIN_MODEL in models and not models & paper_models else "paper"


# ---------------------------------------------------------------------------------------------
# Paper rows.


@dataclass(frozen=True)
class Cell:
    """One printed number: task, the record split it compares with, metric, value."""

    task: str
    split: str
    metric: str
    paper: float
    label: str

    @property
    def factor(self) -> float:
        """Record value -> the paper's units (GLUE scores are 0-1 in records, SQuAD 0-100)."""
        return 1.0 if self.task in SQUAD_TASKS else 100.0


@dataclass(frozen=True)
class PaperRow:
    table: int
    model: str
    method: str
    variant: str
    kernel: int | None
    stride: int | None
    targets: str
    params_text: str
    cells: tuple[Cell, ...]
    avg: float | None
    hours: dict[str, float]

    @property
    def label(self) -> str:
        name = METHOD_LABELS.get(self.method, self.method)
        if self.method != "dcft":
            return name
        kernel, stride = self.dcft_options()[:2]
        marks = {"efficient": "∆", "best": "†"}
        if self.table in (1, 2):
            return f"{name}{marks.get(self.variant, '')} (d={kernel})"
        if self.table == 3:
            return f"{name} (d={kernel}*)"
        if self.table == 5:
            return f"{name} d={kernel}, s={stride}"
        if self.table == 6:
            return f"{name} {(self.targets or 'all').upper()}"
        return f"{name} d={kernel}"

    def dcft_options(self) -> tuple[int, int, tuple[str, ...]]:
        """(kernel, stride, targets) that define a DCFT row (Table 3: kernel 2, not stated)."""
        kernel = self.kernel if self.kernel is not None else TABLE3_KERNEL
        stride = self.stride if self.stride is not None else kernel
        names = self.targets.split(",") if self.targets not in ("", "all") else TARGET_NAMES
        return kernel, stride, tuple(t for t in TARGET_NAMES if t in names)

    def matches(self, run: Run, model: str) -> bool:
        """Same model, method and (DCFT) kernel, stride and target set; task in this row."""
        if run.model != model or run.method != self.method:
            return False
        if run.task not in {c.task for c in self.cells}:
            return False
        if self.method != "dcft":
            return True
        kernel, stride, targets = self.dcft_options()
        ours = run.options.get("targets") or ()
        ours = TARGET_NAMES if ours == "all" else tuple(t for t in TARGET_NAMES if t in ours)
        return (
            run.options.get("kernel") == kernel
            and run.options.get("stride", run.options.get("kernel")) == stride
            and ours == targets
        )

    def params_paper(self) -> float | None:
        """The printed #Params as a count; DCFT's are printed in binary units (results/params.md)."""
        return parse_param_count(self.params_text, binary=self.method == "dcft")


def _none(value: Any) -> Any:
    return None if pd.isna(value) else value


def _split_of(task: str, paper_split: str) -> tuple[str, str]:
    """(record split, column label) for a printed cell."""
    label = TASK_LABELS.get(task, task)
    if paper_split:
        return _PAPER_SPLITS[paper_split], f"{label}-{'m' if paper_split == 'matched' else 'mm'}"
    if task == "mnli":
        return "validation_matched", label
    return "validation", label


def paper_rows(table: int) -> list[PaperRow]:
    """The printed rows of ``table``, in the paper's order."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; valid: {', '.join(map(str, TABLES))}")
    results = load_paper_results()
    results = results[results["table"] == table]
    averages = load_paper_averages()
    times = load_paper_times()
    rows = []
    for key, group in results.groupby(_KEY_COLUMNS, sort=False, dropna=False):
        t, model, method, variant, kernel, stride, targets = key
        kernel, stride = _none(kernel), _none(stride)
        cells = []
        for item in group.itertuples():
            split, label = _split_of(item.task, item.split)
            if table == 3:
                label = f"{label} {METRIC_LABELS.get(item.metric, item.metric)}"
            cells.append(Cell(item.task, split, item.metric, float(item.value), label))
        avg = averages[
            (averages["table"] == t)
            & (averages["model"] == model)
            & (averages["method"] == method)
            & (averages["variant"] == variant)
            & (averages["kernel"].fillna(-1) == (-1 if kernel is None else kernel))
            & (averages["stride"].fillna(-1) == (-1 if stride is None else stride))
        ]["value"]
        hours = times[
            (times["table"] == t)
            & (times["method"] == method)
            & (times["kernel"].fillna(-1) == (-1 if kernel is None else kernel))
            & (times["stride"].fillna(-1) == (-1 if stride is None else stride))
        ]
        rows.append(
            PaperRow(
                table=int(t),
                model=model,
                method=method,
                variant=variant,
                kernel=None if kernel is None else int(kernel),
                stride=None if stride is None else int(stride),
                targets=targets,
                params_text=group["params_paper"].iloc[0],
                cells=tuple(cells),
                avg=float(avg.iloc[0]) if len(avg) else None,
                hours=dict(zip(hours["task"], hours["hours"].astype(float), strict=True)),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Aggregation.


@dataclass
class Stat:
    """Mean ± sample std over seeds (n = number of seeds; std is NaN for n = 1)."""

    n: int
    mean: float
    std: float
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, values: Sequence[float], seeds: Sequence[int]) -> Stat | None:
        if not values:
            return None
        series = pd.Series(values, dtype=float)
        return cls(len(values), float(series.mean()), float(series.std(ddof=1)), tuple(seeds))


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
        return _mean([_mean(v) for v in per_task.values()])

    def average_hours(self) -> float | None:
        tasks = list(dict.fromkeys(c.task for c in self.paper.cells))
        if any(t not in self.hours for t in tasks):
            return None
        return _mean([self.hours[t].mean for t in tasks])

    def params(self) -> list[int]:
        return sorted({r.params for r in self.runs if r.params is not None})


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _newest(runs: Sequence[Run]) -> str:
    return max(str(r.record.get("created_at") or "") for r in runs)


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
                scored = [r for r in runs if first.metric in r.scores.get(first.split, {})]
                stat = Stat.of(
                    [r.scores[first.split][first.metric] * first.factor for r in scored],
                    [r.seed for r in scored],
                )
                score = f"{first.label} {first.metric} {_stat(stat)}"
                conflicts.append(
                    Conflict(row.paper.label, task, row.setting, settings, runs, score, rank == 0)
                )
        for cell in (c for c in row.paper.cells if c.task == task):
            scored = [r for r in shown if cell.metric in r.scores.get(cell.split, {})]
            stat = Stat.of(
                [r.scores[cell.split][cell.metric] * cell.factor for r in scored],
                [r.seed for r in scored],
            )
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


def model_for(paper_model: str, scale: str) -> str:
    """The records' model for a paper model: the MiniLM twin stands in for DeBERTaV3-base."""
    return TWIN_MODEL if scale == "mini" and paper_model == TWIN_STANDS_FOR else paper_model


def build_table(table: int, runset: RunSet, scale: str = "paper") -> TableResult:
    """Match the runs to the paper rows of ``table`` and aggregate them per cell."""
    if scale not in ("paper", "mini"):
        raise ValueError(f"unknown scale {scale!r}; valid: paper, mini (or auto on the CLI)")
    rows: list[OurRow] = []
    conflicts: list[Conflict] = []
    for paper in paper_rows(table):
        model = model_for(paper.model, scale)
        matched = [r for r in runset.runs if paper.matches(r, model)]
        keys = sorted(
            {(r.slug, r.harness_version) for r in matched},
            key=lambda k: (-sum((r.slug, r.harness_version) == k for r in matched), k),
        )
        if not keys:
            rows.append(OurRow(paper, None, None))
            continue
        show_harness = len({k[1] for k in keys}) > 1
        for slug, harness in keys:
            row = OurRow(paper, slug, harness, show_harness)
            row.runs = [r for r in matched if (r.slug, r.harness_version) == (slug, harness)]
            _fill(row, conflicts)
            rows.append(row)
    return TableResult(table, scale, rows, conflicts, runset)


# ---------------------------------------------------------------------------------------------
# Rendering: a display grid per model block (md, tex), a tidy frame (csv), footnotes.


def _num(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _stat(stat: Stat | None, digits: int = 2) -> str:
    if stat is None:
        return MISSING
    spread = "" if stat.n < 2 else f" ± {stat.std:.{digits}f}"
    return f"{stat.mean:.{digits}f}{spread} (n={stat.n})"


def _hours(stat: Stat | None) -> str:
    if stat is None:
        return MISSING
    spread = "" if stat.n < 2 else f" ± {stat.std:.2g}"
    return f"{stat.mean:.3g}{spread} (n={stat.n})"


def _diff(ours: float | None, paper: float | None) -> float | None:
    return None if ours is None or paper is None else ours - paper


def _signed(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.2f}"


def _params_ours(row: OurRow) -> tuple[str, float | None]:
    """Our #Params text and the ratio ours / paper (percent of the model for Table 3)."""
    counts = row.params()
    if not counts:
        return MISSING, None
    text = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,}"
    count = _mean(counts)
    if row.paper.params_text.endswith("%"):
        totals = [r.params_total for r in row.runs if r.params_total]
        if not totals:
            return text, None
        percent = 100 * count / _mean(totals)
        return f"{text} ({percent:.3f}%)", percent / float(row.paper.params_text[:-1])
    paper = row.paper.params_paper()
    return text, None if not paper else count / paper


def _blocks(result: TableResult) -> dict[str, list[OurRow]]:
    blocks: dict[str, list[OurRow]] = {}
    for row in result.rows:
        blocks.setdefault(row.paper.model, []).append(row)
    return blocks


def _grid(rows: list[OurRow], averaged: bool, timed: bool) -> tuple[list[str], list[list[str]]]:
    """Header and lines of one model block: per paper row a ``paper`` line, then per our row an
    ``ours`` and a ``Δ`` line (Tables 4-5: ``ours h`` / ``paper h`` training hours too)."""
    cells = list(dict.fromkeys(c for r in rows for c in r.paper.cells))
    labels = list(dict.fromkeys(c.label for c in cells))
    header = ["Method", "Line", "Setting", "#Params", *labels]
    header += ["Avg."] if averaged else []
    header += ["Runs"]
    lines: list[list[str]] = []
    done: set[int] = set()  # ids of the paper rows already printed

    def line(values: dict[str, str], *lead: str) -> list[str]:
        body = [values.get(label, "") for label in labels]
        tail = [values.get("Avg.", MISSING)] if averaged else []
        return [*lead, *body, *tail, values.get("Runs", "")]

    for row in rows:
        paper = row.paper
        by_label = {c.label: c for c in paper.cells}
        tasks = {c.task: c.label for c in paper.cells}
        if id(paper) not in done:
            done.add(id(paper))
            values = {c.label: _num(c.paper) for c in paper.cells}
            values["Avg."] = _num(paper.avg)
            lines.append(line(values, paper.label, "paper", "", paper.params_text or MISSING))
        params, ratio = _params_ours(row)
        ours = {
            label: _stat(row.cells.get(c)) + (f" {CONFLICT}" if c.task in row.conflicted else "")
            for label, c in by_label.items()
        }
        ours["Avg."] = _num(row.average())
        ours["Runs"] = str(sum(len(runs) for runs in row.cell_runs.values()))
        lines.append(line(ours, "", "ours", row.setting, params))
        delta = {
            label: _signed(_diff(row.cells[c].mean if c in row.cells else None, c.paper))
            for label, c in by_label.items()
        }
        delta["Avg."] = _signed(_diff(row.average(), paper.avg))
        ratio_text = MISSING if ratio is None else f"x{ratio:.3f}"
        lines.append(line(delta, "", "Δ", row.setting, ratio_text))
        if timed:
            hours = {tasks[t]: _hours(row.hours.get(t)) for t in tasks}
            hours["Avg."] = _num(row.average_hours(), 3)
            lines.append(line(hours, "", "ours h", row.setting, ""))
            printed = {tasks[t]: _num(paper.hours.get(t)) for t in tasks}
            printed["Avg."] = _num(paper.hours.get("avg"))
            lines.append(line(printed, "", "paper h", "", ""))
    return header, lines


TABLE_NOTES = {
    1: "RoBERTa-large prints one MNLI number; ours is validation_matched. LoRA / LoRA-FA rows "
    "match records by method name and model, split by method slug.",
    3: f"The paper does not state Table 3's DCFT kernel; ours is d={TABLE3_KERNEL} (0.04% of 184M "
    "fits d=2 better than d=8). Table 3 prints #Params as percentages.",
    6: "Targets match as sets of q, k, v, o, ffn_in, ffn_out; ALL = all six. The paper's Q,K,V,O "
    "count (18.4K) fits q, k, v, o plus ffn_out (results/params.md).",
}


def notes(result: TableResult) -> list[str]:
    """The footnotes of one table: what the numbers are, the table's caveats, skipped records."""
    runset = result.runset
    out = []
    if result.scale == "mini":
        out.append(
            f"{TWIN_LABEL}. Records of model {TWIN_MODEL!r} stand in for {TWIN_STANDS_FOR}; the "
            "paper's numbers are shown beside them for orientation only."
        )
    out.append(
        f"ours: mean ± sample std (ddof=1) over seeds of each record's {runset.select!r} "
        "evaluation, n = seeds; GLUE scores x100, SQuAD as printed (0-100). "
        "Δ = ours - paper in the paper's units; missing cells are shown as "
        f"{MISSING} and never filled in."
    )
    out.append(
        "#Params: ours = the records' `parameters.paper` (adapter tensors, task head excluded); "
        "Δ line = ours / paper, with the paper's DCFT counts read in binary units "
        "(K = 1024, M = 1024^2; see results/params.md)."
    )
    if result.table in AVERAGED_TABLES:
        out.append(
            "Avg.: mean over the tasks, MNLI counted once as mean(m, mm) (the convention that "
            "reproduces the paper's averages); computed only when every cell is present."
        )
    if result.table in TIMED_TABLES:
        out.append(
            "ours h: hours of `timing.train_wall_time_s` (Trainer.train, in-training evaluation "
            "included), mean ± std over seeds; paper h: the printed training times."
        )
    if result.table in TABLE_NOTES:
        out.append(TABLE_NOTES[result.table])
    if any(r.conflicted for r in result.rows):
        out.append(
            f"{CONFLICT}: records with other settings exist for this cell; the largest group is "
            "shown and the others are listed under Warnings (never averaged in)."
        )
    versions = sorted({r.harness for r in result.rows if r.show_harness})
    if versions:
        out.append(
            f"Records of harness versions {', '.join(versions)} are kept in separate rows "
            "(Setting @version), never averaged together."
        )
    if result.matched == 0:
        out.append(
            f"No result records matched this table ({len(runset.runs)} usable records read from "
            f"{runset.runs_dir}): every cell is missing."
        )
    out.append(
        f"Records: {runset.read} files read from {runset.runs_dir}, {result.matched} used here; "
        f"{len(runset.failed)} failed runs, {len(runset.duplicates)} duplicates of an "
        f"(hparams_hash, seed) skipped; {len(runset.corrupt)} unreadable"
        + (": " + ", ".join(str(p) for p, _ in runset.corrupt) if runset.corrupt else "")
        + "."
    )
    return out


def warnings(result: TableResult) -> list[str]:
    """Per cell with records of several settings (beyond the seed): the group shown and each
    group kept apart, with its score, seeds, hashes and files."""
    out = []
    for c in result.conflicts:
        seeds = ", ".join(str(r.seed) for r in c.runs)
        hashes = ", ".join(sorted({r.hparams_hash for r in c.runs}))
        files = ", ".join(str(r.path) for r in c.runs)
        out.append(
            ("shown" if c.shown else "kept apart")
            + f": {c.row} / {TASK_LABELS.get(c.task, c.task)} / {c.slug}: settings {c.settings}, "
            f"{c.score} (seeds {seeds}; hparams_hash {hashes}; harness "
            f"{', '.join(sorted({r.harness_version for r in c.runs}))}): {files}"
        )
    return out


def tidy(result: TableResult) -> pd.DataFrame:
    """One line per (our row, printed cell) plus an ``avg`` line for Tables 1 and 4."""
    records = []
    for row in result.rows:
        params, ratio = _params_ours(row)
        base = {
            "table": result.table,
            "scale": result.scale,
            "model": row.paper.model,
            "row": row.paper.label,
            "method": row.paper.method,
            "variant": row.paper.variant,
            "method_slug": row.slug or "",
            "harness_version": row.harness or "",
            "params_ours": params if params != MISSING else "",
            "params_paper": row.paper.params_text,
            "params_ratio": ratio,
        }
        for cell in row.paper.cells:
            stat = row.cells.get(cell)
            hours = row.hours.get(cell.task)
            records.append(
                {
                    **base,
                    "task": cell.task,
                    "split": cell.split,
                    "metric": cell.metric,
                    "n": stat.n if stat else 0,
                    "seeds": " ".join(map(str, stat.seeds)) if stat else "",
                    "mean": stat.mean if stat else None,
                    "std": stat.std if stat else None,
                    "paper": cell.paper,
                    "diff": _diff(stat.mean if stat else None, cell.paper),
                    "hours_mean": hours.mean if hours else None,
                    "hours_std": hours.std if hours else None,
                    "hours_paper": row.paper.hours.get(cell.task),
                    "conflict": cell.task in row.conflicted,
                }
            )
        if result.table in AVERAGED_TABLES:
            avg = row.average()
            counts = [row.cells[c].n if c in row.cells else 0 for c in row.paper.cells]
            records.append(
                {
                    **base,
                    "task": "avg",
                    "split": "",
                    "metric": "avg",
                    "n": min(counts),
                    "mean": avg,
                    "paper": row.paper.avg,
                    "diff": _diff(avg, row.paper.avg),
                    "hours_mean": row.average_hours(),
                    "hours_paper": row.paper.hours.get("avg"),
                }
            )
    return pd.DataFrame.from_records(records)


def _title(result: TableResult) -> str:
    title = TABLE_TITLES[result.table]
    return f"{title} ({TWIN_LABEL})" if result.scale == "mini" else title


def to_markdown(result: TableResult) -> str:
    timed, averaged = result.table in TIMED_TABLES, result.table in AVERAGED_TABLES
    parts = [f"# {_title(result)}", ""]
    for model, rows in _blocks(result).items():
        header, lines = _grid(rows, averaged, timed)
        shown = model_for(model, result.scale)
        parts += [f"## {model}" + (f" (ours: {shown})" if shown != model else ""), ""]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
        parts += ["| " + " | ".join(v.replace("|", "/") for v in line) + " |" for line in lines]
        parts.append("")
    parts += [f"- {n}" for n in notes(result)]
    found = warnings(result)
    if found:
        parts += ["", "## Warnings: records kept apart", "", *(f"- {w}" for w in found)]
    return "\n".join(parts) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "∆": r"$^\Delta$",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "—": "---",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(result: TableResult) -> str:
    timed, averaged = result.table in TIMED_TABLES, result.table in AVERAGED_TABLES
    parts = [f"% {_title(result)}: generated by python -m dcft.report; do not edit"]
    for model, rows in _blocks(result).items():
        header, lines = _grid(rows, averaged, timed)
        parts += [
            r"\begin{table}[ht]",
            r"\centering\scriptsize",
            r"\begin{tabular}{lll" + "r" * (len(header) - 3) + "}",
            r"\toprule",
            " & ".join(tex_escape(h) for h in header) + r" \\",
            r"\midrule",
            *(" & ".join(tex_escape(v) for v in line) + r" \\" for line in lines),
            r"\bottomrule",
            r"\end{tabular}",
            r"\caption{" + tex_escape(f"{_title(result)}; {model}") + "}",
            r"\end{table}",
        ]
    parts += [r"\begin{itemize}\scriptsize"]
    parts += [r"\item " + tex_escape(n) for n in [*notes(result), *warnings(result)]]
    parts += [r"\end{itemize}"]
    return "\n".join(parts) + "\n"


def write_table(result: TableResult, out: str | Path) -> list[Path]:
    """``table{N}.md``, ``.tex`` and ``.csv`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"table{result.table}"
    paths = [stem.with_suffix(".md"), stem.with_suffix(".tex"), stem.with_suffix(".csv")]
    paths[0].write_text(to_markdown(result), encoding="utf-8")
    paths[1].write_text(to_latex(result), encoding="utf-8")
    tidy(result).to_csv(paths[2], index=False)
    return paths


# ---------------------------------------------------------------------------------------------
# CLI.


def report(
    runset: RunSet,
    out: str | Path,
    tables: Sequence[int] = TABLES,
    scale: str = "auto",
    figures: bool = True,
) -> list[Path]:
    """Write the tables (and figures) from ``runset`` into ``out``; returns the paths."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    scale = detect_scale(runset) if scale == "auto" else scale
    written = []
    for table in tables:
        written += write_table(build_table(table, runset, scale), out)
    if figures:
        from dcft.report_figures import write_figures

        written += write_figures(runset, out, scale)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dcft.report",
        description="Tables 1-6 and Figures 2-3 from result records, beside the paper's numbers "
        "(reads records only; never trains).",
    )
    parser.add_argument("--runs", default="results/runs", help="folder of run records (*.json)")
    parser.add_argument("--out", default="results/tables", help="where tables and figures go")
    parser.add_argument("--tables", nargs="+", type=int, choices=TABLES, default=list(TABLES))
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="auto",
        help=f"mini: the {TWIN_MODEL} CPU twin stands in for {TWIN_STANDS_FOR}; auto: mini when "
        "the records hold MiniLM runs and none of a paper model",
    )
    parser.add_argument(
        "--select", choices=SELECTS, default="best", help="which evaluation of each record"
    )
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    runset = load_runs(args.runs, args.select)
    paths = report(runset, args.out, args.tables, args.scale, not args.no_figures)
    print(
        f"{len(runset.runs)} usable records, {len(runset.failed)} failed, "
        f"{len(runset.duplicates)} duplicates, {len(runset.corrupt)} unreadable in {args.runs}"
    )
    for path, reason in runset.corrupt:
        print(f"skipped {path}: {reason}")
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
