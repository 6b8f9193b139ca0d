"""The paper's tables as data: one file per table in ``specs/table/`` (``table4.yaml`` is
Table 4), the only place that says what a table holds. Adding a table is its file plus its
printed numbers in ``results/paper/``; the sweep (dcft.sweep), the report (dcft.report), the
parameter audit (dcft.tools.params) and the W&B table tags (dcft.table_tags) read it.

A table file's keys (``*`` = required):

* ``title``\\*: the report's heading;
* ``columns``\\*: the tasks, in the paper's order;
* ``rows``\\*: per model, the printed rows in the paper's order, each ``method``\\* plus
  ``options`` (the setting the row stands for: the sweeps' options, the parameter audit's
  setting; DCFT rows state their kernel and match records on kernel, stride and targets, other
  rows match on the method name), ``variant`` (the paper's DCFT∆ ``efficient`` / DCFT†
  ``best``), ``printed_as`` (the ``kernel``, ``stride`` or ``targets`` of the printed row the
  row is compared with, where they are not its own), ``params_reason`` (why our count differs
  from the printed #Params) and ``audit_only`` (a setting the paper does not print: counted by
  the parameter audit, not shown in the report);
* ``paper``\\*: files in ``results/paper/``: ``scores``\\* (one line per printed score, see its
  README), ``averages`` (the printed Avg. column: the report averages the table) and ``times``
  (the printed training hours: the report times it); lines are those of this table's number;
* ``experiments``: per scale (``paper``, ``mini``), the experiment files (conf/experiment/)
  that sweep the table; a table naming none at paper scale is swept from its rows x columns;
* ``label``: how a DCFT row is labelled (``{method}``, ``{mark}``, ``{kernel}``, ``{stride}``,
  ``{targets}``); other rows show their method's label;
* ``notes``: the table's caveats, printed under it;
* ``params_audit``: false to leave the table out of the parameter audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from dcft.run.config import SPECS_DIR

# Outside conf/: a table is no config group a run could pick (``--help`` does not offer it).
TABLE_DIR = SPECS_DIR / "table"
SCALES = ("paper", "mini")


@dataclass(frozen=True)
class RowSpec:
    """One row of a table file (see the module docstring for the keys)."""

    model: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    printed_as: dict[str, Any] = field(default_factory=dict)
    params_reason: str = ""
    audit_only: bool = False

    @property
    def setting(self) -> str:
        """``kernel=8 stride=1``: the options as the parameter audit names them."""
        return " ".join(f"{k}={v}" for k, v in self.options.items()) or "-"


@dataclass(frozen=True)
class TableSpec:
    """One table file, read and checked."""

    number: int
    path: Path
    title: str
    columns: tuple[str, ...]
    rows: tuple[RowSpec, ...]
    paper: dict[str, str]
    experiments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    label: str = "{method}"
    notes: tuple[str, ...] = ()
    params_audit: bool = True

    @property
    def name(self) -> str:
        return f"table{self.number}"

    @property
    def averaged(self) -> bool:
        return "averages" in self.paper

    @property
    def timed(self) -> bool:
        return "times" in self.paper

    @property
    def printed(self) -> tuple[RowSpec, ...]:
        """The rows the report shows (every row but the audit-only ones)."""
        return tuple(row for row in self.rows if not row.audit_only)


def _checked(raw: Any, cls: type, where: str, required: tuple[str, ...]) -> dict[str, Any]:
    """``raw`` as keyword arguments of ``cls``: a typo or a missing key names the file. Fields
    set from elsewhere (a table's number and path, a row's model) are not keys of the file."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {raw!r}")
    valid = {f.name for f in fields(cls)} - {"number", "path", "model"}
    unknown = sorted(set(raw) - valid)
    missing = [k for k in required if k not in raw]
    if unknown or missing:
        raise ValueError(f"{where}: unknown {unknown}, missing {missing}; valid: {sorted(valid)}")
    return dict(raw)


def load_table(path: Path) -> TableSpec:
    """Read one table file; its number is the one in its name (``table4.yaml`` -> 4)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw = _checked(raw, TableSpec, str(path), ("title", "columns", "rows", "paper"))
    rows = tuple(
        RowSpec(model=model, **_checked(row, RowSpec, f"{path}: {model}", ("method",)))
        for model, model_rows in raw.pop("rows").items()
        for row in model_rows
    )
    experiments = {k: tuple(v) for k, v in (raw.pop("experiments", None) or {}).items()}
    unknown = sorted(set(experiments) - set(SCALES)) + sorted(
        set(raw["paper"]) - {"scores", "averages", "times"}
    )
    if unknown or "scores" not in raw["paper"]:
        raise ValueError(f"{path}: unknown scale or paper file {unknown}, or no paper.scores")
    return TableSpec(
        number=int(path.stem.removeprefix("table")),
        path=path,
        rows=rows,
        experiments=experiments,
        columns=tuple(raw.pop("columns")),
        notes=tuple(raw.pop("notes", ())),
        **raw,
    )


@cache
def table_specs() -> tuple[TableSpec, ...]:
    """Every table file, by number."""
    specs = (load_table(path) for path in TABLE_DIR.glob("table*.yaml"))
    return tuple(sorted(specs, key=lambda spec: spec.number))


TABLES: tuple[int, ...] = tuple(spec.number for spec in table_specs())


def table_spec(table: int) -> TableSpec:
    """The file of Table ``table``; an unknown number names the valid ones."""
    for spec in table_specs():
        if spec.number == table:
            return spec
    raise ValueError(f"unknown table {table!r}; valid: {', '.join(map(str, TABLES))}")
