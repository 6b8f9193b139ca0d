"""The printed rows of a table: each row of its table file (specs/table/) with the paper's
numbers for it (results/paper/), and which records it compares with.

A row's lines in the paper's scores CSV are those of the table's number with the row's model,
method and variant, whose ``kernel``, ``stride`` and ``targets`` are blank or the row's (its
``printed_as`` where given). Every printed line must belong to a row and every row must have
lines: a table file and its CSV that disagree fail loudly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from dcft.data.tasks import TASKS, get_task
from dcft.methods import TARGET_NAMES, get_method
from dcft.report.paper import load_paper_csv, parse_param_count
from dcft.report.runs import Run
from dcft.report.tables import RowSpec, TableSpec, table_spec

TASK_LABELS = {name: spec.label for name, spec in TASKS.items()}
METRIC_LABELS = {"exact_match": "EM", "f1": "F1"}
# The paper's marks of its two DCFT settings in Tables 1-2: DCFT∆ most efficient, DCFT† best.
VARIANT_MARKS = {"efficient": "∆", "best": "†"}
_PAPER_SPLITS = {"matched": "validation_matched", "mismatched": "validation_mismatched"}
_OPTION_COLUMNS = ("kernel", "stride", "targets")


@dataclass(frozen=True)
class Cell:
    """One printed number: task, the record split it compares with, metric, value."""

    task: str
    split: str
    metric: str
    paper: float | None  # None: a task the study ran that the paper's table has no number for
    label: str

    @property
    def factor(self) -> float:
        """Record value -> the paper's units (``TaskSpec.paper_units``)."""
        return get_task(self.task).paper_units


def dcft_setting(options: dict[str, Any]) -> tuple[int, int, tuple[str, ...]]:
    """(kernel, stride, targets) a DCFT row stands for; stride defaults to the kernel."""
    kernel = options["kernel"]
    names = options.get("targets", "all")
    names = TARGET_NAMES if names == "all" else names
    return kernel, options.get("stride") or kernel, tuple(t for t in TARGET_NAMES if t in names)


def _targets_text(targets: str | list[str]) -> str:
    """``targets`` as the paper's CSV writes it: ``all`` or ``q,k,v``."""
    return targets if isinstance(targets, str) else ",".join(targets)


@dataclass(frozen=True)
class PaperRow:
    """A row of the table file beside the paper's numbers for it."""

    table: int
    model: str
    method: str
    variant: str
    label: str
    spec: RowSpec = field(repr=False)
    params_text: str
    cells: tuple[Cell, ...]
    avg: float | None
    hours: dict[str, float]

    def matches(self, run: Run, model: str) -> bool:
        """Same model, method and (DCFT) kernel, stride and target set; task in this row."""
        return run.task in {c.task for c in self.cells} and self.same_setting(run, model)

    def same_setting(self, run: Run, model: str) -> bool:
        """Same model, method and (DCFT) kernel, stride and target set, whatever the task."""
        if run.model != model or run.method != self.method:
            return False
        if self.method != "dcft":
            return True
        kernel, stride, targets = dcft_setting(self.spec.options)
        ours = run.options.get("targets") or ()
        ours = TARGET_NAMES if ours == "all" else tuple(t for t in TARGET_NAMES if t in ours)
        return (
            run.options.get("kernel") == kernel
            and run.options.get("stride", run.options.get("kernel")) == stride
            and ours == targets
        )

    def with_tasks(self, tasks: Sequence[str]) -> PaperRow:
        """This row with a cell (no paper number) for each of ``tasks`` it lacks."""
        have = {c.task for c in self.cells}
        extra = []
        for task in (t for t in tasks if t not in have):
            split, label = _split_of(task, "")
            extra.append(Cell(task, split, get_task(task).metric, None, label))
        return replace(self, cells=(*self.cells, *extra)) if extra else self

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


def _label(spec: TableSpec, row: RowSpec) -> str:
    name = get_method(row.method).label
    if row.method != "dcft":
        return name
    kernel, stride, _ = dcft_setting(row.options)
    targets = _targets_text(row.options.get("targets", "all")).upper()
    mark = VARIANT_MARKS.get(row.variant, "")
    return spec.label.format(method=name, mark=mark, kernel=kernel, stride=stride, targets=targets)


def _row_mask(lines: pd.DataFrame, row: RowSpec) -> pd.Series:
    """The lines of the paper's CSV that print ``row``."""
    key: dict[str, Any] = dict.fromkeys(_OPTION_COLUMNS)
    if row.method == "dcft":
        kernel, stride, _ = dcft_setting(row.options)
        key.update(kernel=kernel, stride=stride, targets=row.options.get("targets", "all"))
    if not set(row.printed_as) <= set(_OPTION_COLUMNS):
        raise ValueError(f"printed_as takes {', '.join(_OPTION_COLUMNS)}: {row.printed_as}")
    key.update(row.printed_as)
    key["targets"] = key["targets"] and _targets_text(key["targets"])
    mask = (lines["model"] == row.model) & (lines["method"] == row.method)
    mask &= lines["variant"] == row.variant
    for column in _OPTION_COLUMNS:
        blank = lines[column].isna() | (lines[column].astype(str) == "")
        mask &= blank | (lines[column].astype(str) == str(key[column]))
    return mask


def printed_lines(spec: TableSpec) -> list[tuple[RowSpec, pd.DataFrame]]:
    """Each printed row of ``spec`` with its lines of the paper's scores CSV, in column order."""
    scores = load_paper_csv(spec.paper["scores"])
    lines = scores[scores["table"] == spec.number]
    where = f"{spec.path} vs results/paper/{spec.paper['scores']}"
    unknown = sorted(set(lines["task"]) - set(spec.columns))
    if unknown:
        raise ValueError(f"{where}: printed tasks {unknown} are not among the columns")
    claimed = pd.Series(False, index=lines.index)
    out = []
    for row in spec.printed:
        mask = _row_mask(lines, row)
        if not mask.any():
            raise ValueError(f"{where}: nothing printed for {row.model} {row.method} {row.setting}")
        claimed |= mask
        group = lines[mask]
        order = group["task"].map(spec.columns.index)
        out.append((row, group.iloc[order.argsort(kind="stable")]))
    if not claimed.all():
        raise ValueError(f"{where}: printed lines of no row:\n{lines[~claimed]}")
    return out


def _matching(frame: pd.DataFrame, line: pd.Series, columns: tuple[str, ...]) -> pd.Series:
    """Rows of ``frame`` equal to ``line`` on ``columns`` (blank kernel or stride = -1)."""
    mask = pd.Series(True, index=frame.index)
    for column in columns:
        if column in ("kernel", "stride"):
            value = _none(line[column])
            mask &= frame[column].fillna(-1) == (-1 if value is None else value)
        else:
            mask &= frame[column] == line[column]
    return mask


def paper_rows(table: int) -> list[PaperRow]:
    """The printed rows of ``table``, in the table file's order."""
    spec = table_spec(table)
    printed = printed_lines(spec)
    all_lines = pd.concat([group for _, group in printed])
    several = {t for t, n in all_lines.groupby("task")["metric"].nunique().items() if n > 1}
    averages = load_paper_csv(spec.paper["averages"]) if spec.averaged else None
    times = load_paper_csv(spec.paper["times"]) if spec.timed else None
    rows = []
    for row, group in printed:
        cells = []
        for item in group.itertuples():
            split, label = _split_of(item.task, item.split)
            if item.task in several:  # e.g. SQuAD's EM and F1: the column names its metric
                label = f"{label} {METRIC_LABELS.get(item.metric, item.metric)}"
            cells.append(Cell(item.task, split, item.metric, float(item.value), label))
        first = group.iloc[0]
        avg = None
        if averages is not None:
            keys = ("table", "model", "method", "variant", "kernel", "stride")
            found = averages[_matching(averages, first, keys)]["value"]
            avg = float(found.iloc[0]) if len(found) else None
        hours: dict[str, float] = {}
        if times is not None:
            found = times[_matching(times, first, ("table", "method", "kernel", "stride"))]
            hours = dict(zip(found["task"], found["hours"].astype(float), strict=True))
        rows.append(
            PaperRow(
                table=spec.number,
                model=row.model,
                method=row.method,
                variant=row.variant,
                label=_label(spec, row),
                spec=row,
                params_text=first["params_paper"],
                cells=tuple(cells),
                avg=avg,
                hours=hours,
            )
        )
    return rows
