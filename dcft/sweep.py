"""List or launch the sweep that rebuilds one of the paper's tables.

    python -m dcft.sweep table4 [--scale mini] [--seeds 3] [--launcher slurm] [OVERRIDES]
    python -m dcft.sweep table1 table4 --dry-run [--list-runs]   # what is done, what is left
    python -m dcft.sweep --list [--scale mini]     # the tables with a sweep at that scale

A table's file (specs/table/tableN.yaml) names the Hydra multirun experiments of
conf/experiment/ that sweep it at each scale (Table 1 has one per model; ``mini-tableN`` is the
CPU-sized twin); a table naming none at paper scale is swept from its rows: per row, its model,
method and options over the table's tasks and the paper's five seeds. ``--dry-run`` expands the
sweep exactly as Hydra will, computes every run's key as ``dcft.train`` would (dcft.run.composer:
once per setting, in seconds) and counts the runs finished, failed, running and to do per
model x task (dcft.sweep_summary; ``--list-runs``: every run too); otherwise each part is
launched as ``python -m dcft.train experiment=NAME`` (a row:
``python -m dcft.train --multirun model=... task=... method=...``), where runs with a finished
record are skipped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from dcft.cli import OneLineParser, hydra_errors
from dcft.preflight.cli import add_preflight_arguments, run_preflight
from dcft.preflight.projection import projected_hours
from dcft.report.tables import SCALES, RowSpec, TableSpec, table_specs
from dcft.run.composer import Composer
from dcft.run.config import CONF_DIR, seed_range
from dcft.run.identity import RunIdentity
from dcft.run.run_keys import override_key, run_keys
from dcft.run.status import run_status
from dcft.run.training_args import pass_through_overrides
from dcft.sweep_summary import add_dry_run_arguments, summary

EXPERIMENT_DIR = CONF_DIR / "experiment"
# The seeds of a table swept from its rows: the paper's, as in every paper-scale experiment.
ROW_SEEDS = seed_range("paper")


def _override_value(value: Any) -> str:
    """A table file's option value in Hydra's override syntax (``[q,k]``, ``true``, ``null``)."""
    if isinstance(value, list):
        return "[" + ",".join(map(_override_value, value)) + "]"
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Part:
    """One Hydra multirun of a table's sweep: an experiment file, or one row of a table file
    that names none (``params``: its model, method, options, tasks and seeds as sweeper params)."""

    name: str
    experiment: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    def fixed(self) -> list[str]:
        """What every job of the part is composed with besides its own overrides."""
        return [f"experiment={self.experiment}"] if self.experiment else []

    def jobs(self, overrides: Sequence[str] = ()) -> list[list[str]]:
        """Every job's overrides, as Hydra's basic sweeper expands the part."""
        if self.experiment:
            return job_overrides(self.experiment, overrides)
        return _expand(dict(self.params), overrides)

    def arguments(self, overrides: Sequence[str] = ()) -> list[str]:
        """``python -m dcft.train`` arguments that launch the part (before ``overrides``)."""
        if self.experiment:
            return self.fixed()
        given = {override_key(o) for o in overrides}
        return ["--multirun", *(f"{k}={v}" for k, v in self.params if k not in given)]


def _row_part(spec: TableSpec, row: RowSpec) -> Part:
    params = {
        "model": row.model,
        "task": ",".join(spec.columns),
        "method": row.method,
        **{f"method.options.{k}": _override_value(v) for k, v in row.options.items()},
        "seed": ROW_SEEDS,
    }
    return Part(
        f"{spec.name}: {row.model} {row.method} {row.setting}", params=tuple(params.items())
    )


def _spec(table: str) -> TableSpec:
    for spec in table_specs():
        if spec.name == table:
            return spec
    raise ValueError(f"unknown experiment {table!r}; existing: {', '.join(tables())}")


def parts(table: str, scale: str = "paper") -> list[Part]:
    """The multiruns that make up ``table`` at ``scale``."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
    spec = _spec(table)
    if scale in spec.experiments:
        return [Part(name, experiment=name) for name in spec.experiments[scale]]
    return [_row_part(spec, row) for row in spec.printed] if scale == "paper" else []


def tables(scale: str | None = None) -> list[str]:
    """``table1`` ... from the table files; with ``scale``, those that have a sweep at it."""
    names = [spec.name for spec in table_specs()]
    return names if scale is None else [name for name in names if parts(name, scale)]


def experiments(table: str, scale: str = "paper") -> list[str]:
    """The experiment configs that make up ``table`` at ``scale`` (none for a table swept from
    its rows)."""
    return [part.experiment for part in parts(table, scale) if part.experiment]


def _compose(overrides: Sequence[str], hydra_config: bool = False) -> DictConfig:
    return compose("config", overrides=list(overrides), return_hydra_config=hydra_config)


def _expand(params: Mapping[str, Any], overrides: Sequence[str]) -> list[list[str]]:
    """Sweeper params as Hydra's basic sweeper expands them, command-line overrides of the same
    key taking precedence: the product of each key's values (a list or a range), keys in the
    order first given, a key given twice keeping its last values (tests/test_sweep_order.py holds
    this equal to the basic sweeper's own expansion)."""
    given = {override_key(o) for o in overrides}
    sweep = [f"{k}={v}" for k, v in params.items() if k not in given] + list(overrides)
    axes: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(sweep):
        key = override.get_key_element()
        if not override.is_sweep_override():
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ValueError(
                f"{override.input_line}: the basic sweeper sweeps lists and ranges, not intervals"
            )
    return [list(job) for job in product(*axes.values())]


def job_overrides(experiment: str, overrides: Sequence[str] = ()) -> list[list[str]]:
    """Every job of the experiment's multirun, as Hydra's basic sweeper expands it: the sweeper
    params of the experiment, with command-line overrides of the same key taking precedence."""
    parser = OverridesParser.create()
    fixed = [
        o
        for o, p in zip(overrides, parser.parse_overrides(list(overrides)), strict=True)
        if not p.is_sweep_override()
    ]
    params = _compose([f"experiment={experiment}", *fixed], hydra_config=True).hydra.sweeper.params
    return _expand(params or {}, overrides)


@dataclass(frozen=True)
class PlannedRun:
    experiment: str  # the part's name: the experiment, or "tableN: <row>" for a row
    overrides: tuple[str, ...]
    identity: RunIdentity
    record: Path
    status: str  # finished | failed | running | to do | corrupt | foreign (dcft.run.status)
    detail: str = ""  # the failure reason, the lock's holder and age, why a record is refused
    data: str = ""  # the run's data.fingerprint
    composed: tuple[str, ...] = ()  # every override the run is composed with (the part's too)


def plan(table: str, scale: str = "paper", overrides: Sequence[str] = ()) -> list[PlannedRun]:
    """Every run ``table`` needs, with the state of its record."""
    return plan_parts(parts(table, scale), overrides)


def plan_parts(planned: Sequence[Part], overrides: Sequence[str] = ()) -> list[PlannedRun]:
    """Every run of the multiruns ``planned``, with the state of its record.

    A run's key is what ``dcft.train`` computes from the same overrides (tests/test_sweep_keys.py)
    but composed by ``Composer``, once per setting and on every core (dcft.run.run_keys)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        jobs = [(part, job) for part in planned for job in part.jobs(overrides)]
        composed = [(*part.fixed(), *job) for part, job in jobs]
        keys = run_keys(Composer(), composed)
    runs = []
    for (part, job), overrides_of_run, key in zip(jobs, composed, keys, strict=True):
        path = key.identity.record_path(key.results_dir)
        state = run_status(path, key.identity)
        runs.append(
            PlannedRun(
                part.name,
                tuple(job),
                key.identity,
                path,
                state.status,
                state.detail,
                key.data,
                overrides_of_run,
            )
        )
    return runs


def launch(table: str, scale: str, launcher: str, overrides: Sequence[str]) -> int:
    """Run every part of ``table`` (Table 1 has one per model) even when one fails; returns the
    number of parts that failed, after a summary naming them. A part fails when one of its runs
    fails (a NaN loss: the part's other runs still train) or its launch does."""
    failed = []
    for part in parts(table, scale):
        command = [
            sys.executable,
            "-m",
            "dcft.train",
            *part.arguments(overrides),
            f"hydra/launcher={launcher}",
            *overrides,
        ]
        print("+", " ".join(command), flush=True)
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            failed.append(f"{part.name} (exit code {code})")
    if failed:
        print(
            f"{len(failed)} part(s) of {table} failed (a failed run or launch; its log says "
            f"which): {'; '.join(failed)}",
            flush=True,
        )
    return len(failed)


def _is_override(argument: str) -> bool:
    return "=" in argument or argument.startswith(("~", "+"))


def main(argv: Sequence[str] | None = None) -> None:
    parser = OneLineParser(prog="python -m dcft.sweep", description=__doc__.splitlines()[0])
    parser.add_argument(
        "arguments",
        nargs="*",
        metavar="TABLE|OVERRIDE",
        help="tables (table1 ...; see --list), then Hydra overrides (key=value) for every run",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the tables with a sweep at --scale, one a line"
    )
    parser.add_argument("--scale", default="paper", choices=SCALES)
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: the experiment's)")
    parser.add_argument("--launcher", default="basic", help="basic | gpus | local | slurm | ...")
    add_dry_run_arguments(parser)
    add_preflight_arguments(parser)
    parser.add_argument(
        "--retry-failed", action="store_true", help="train runs whose record says failed again"
    )
    args = parser.parse_intermixed_args(argv)
    chosen = [a for a in args.arguments if not _is_override(a)]
    if args.list:
        print("\n".join(tables(args.scale)))
        return
    if not chosen:
        parser.error("name a table (python -m dcft.sweep --list shows them)")
    unknown = [table for table in chosen if table not in tables()]
    if unknown:
        parser.error(f"unknown table {unknown[0]!r}; valid choices: {', '.join(tables())}")
    overrides = pass_through_overrides([a for a in args.arguments if _is_override(a)])
    if args.seeds is not None:
        overrides.append(f"seed=range(0,{args.seeds})")
    if args.retry_failed:
        overrides.append("retry_failed=true")
    if args.preflight:
        with hydra_errors(parser.prog):
            run_preflight(chosen, args.scale, overrides, args)
    elif args.dry_run or args.list_runs:
        with hydra_errors(parser.prog):
            for table in chosen:
                runs = plan(table, args.scale, overrides)
                title = f"{table} at {args.scale} scale"
                hours = projected_hours(table)
                print(summary(title, runs, args.list_runs, hours), flush=True)
    elif sum(launch(table, args.scale, args.launcher, overrides) for table in chosen):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
