"""Result records -> the cells of the paper's Tables 1-6 (dcft.report renders them).

How records become cells:

* a paper row matches the records of its model, method and the options that define the row
  (DCFT: kernel, stride, targets; baselines: the method name only), whatever ``experiment`` they
  were produced under; records are deduplicated by ``(hparams_hash, seed)``; a printed row in
  ``EXTRA_TARGETS`` is also compared with a second DCFT target set, as a row of its own;
* the records of one paper row are split into our rows by ``method_slug`` (and by
  ``harness_version`` when several occur): different option sets are never averaged together;
* within one cell, records whose settings differ beyond the seed (e.g. learning rate) are kept
  apart: the cell shows the largest group (marked ``‡``), the others are listed as warnings;
* a cell is the mean ± sample std (ddof = 1) over seeds of the selected evaluation (``best`` or
  ``last`` of each record), in the paper's units (GLUE x 100); missing cells stay missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from dcft.data.tasks import TASKS
from dcft.methods.targets import TARGET_NAMES
from dcft.report.paper import (
    load_paper_averages,
    load_paper_results,
    load_paper_times,
    parse_param_count,
)
from dcft.run.identity import hashed_config
from dcft.run.records import CorruptRecordError, read_record

TABLES = (1, 2, 3, 4, 5, 6)
SCALES = ("auto", "paper", "mini")
SELECTS = ("best", "last")
TWIN_MODEL = "minilm"
TWIN_STANDS_FOR = "deberta-v3-base"
TWIN_LABEL = "MiniLM CPU twin: not comparable to the paper's numbers"
MISSING = "—"
CONFLICT = "‡"
FAILED = "✗"
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
# Printed rows compared with a second target set, shown as their own row. Table 6's Q,K,V,O
# prints 18.4K: q, k, v, o alone give 12,288 (12K), q, k, v, o plus one FFN matrix 18,816 (18.4K
# in binary units); the cause is unknown (results/params.md), so both settings are run.
EXTRA_TARGETS = {(6, "q,k,v,o"): "q,k,v,o,ffn_out"}
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
    failed: list[Run] = field(default_factory=list)
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


def run_of_record(path: Path, record: dict[str, Any], select: str) -> Run:
    """A record (finished or failed) as a :class:`Run`, its ``select`` evaluation's scores."""
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
            run = run_of_record(path, record, select)
            if record["status"] != "finished":
                runset.failed.append(run)
                continue
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
        row = PaperRow(
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
        rows.append(row)
        extra = EXTRA_TARGETS.get((row.table, row.targets))
        if extra:
            rows.append(dataclasses.replace(row, targets=extra))
    return rows


# ---------------------------------------------------------------------------------------------
# Aggregation.


@dataclass
class Stat:
    """Mean ± sample std over seeds (n = seeds averaged; std is NaN for n = 1). Seeds whose
    score is NaN/inf are never averaged: they are counted in ``dropped`` and named."""

    n: int
    mean: float
    std: float
    seeds: tuple[int, ...]
    dropped: tuple[int, ...] = ()

    @classmethod
    def of(cls, values: Sequence[float], seeds: Sequence[int]) -> Stat | None:
        kept = [(v, s) for v, s in zip(values, seeds, strict=True) if math.isfinite(v)]
        dropped = tuple(s for v, s in zip(values, seeds, strict=True) if not math.isfinite(v))
        if not kept:
            return cls(0, math.nan, math.nan, (), dropped) if dropped else None
        series = pd.Series([v for v, _ in kept], dtype=float)
        std = float(series.std(ddof=1))
        return cls(len(kept), float(series.mean()), std, tuple(s for _, s in kept), dropped)


def format_stat(stat: Stat | None, digits: int = 2) -> str:
    """``mean ± std (n=N)``; the std only from two seeds on; NaN seeds named, never averaged;
    missing as ``MISSING``."""
    if stat is None:
        return MISSING
    nan = f"; NaN: seed {', '.join(map(str, stat.dropped))}" if stat.dropped else ""
    if stat.n == 0:
        return f"NaN (n=0{nan})"
    spread = "" if stat.n < 2 else f" ± {stat.std:.{digits}f}"
    return f"{stat.mean:.{digits}f}{spread} (n={stat.n}{nan})"


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
                score = f"{first.label} {first.metric} {format_stat(stat)}"
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
