"""List or launch the sweep that rebuilds one of the paper's tables.

    python -m dcft.sweep table4 [--scale mini] [--seeds 3] [--launcher slurm] [--dry-run] [OVERRIDES]

Each table is one or more Hydra multirun experiments in conf/experiment/ (``table1-*`` splits
Table 1 by model; ``mini-tableN`` is the CPU-sized twin). ``--dry-run`` expands the sweep
exactly as Hydra will, composes every run's config and says which runs already have a record;
otherwise each experiment is launched as ``python -m dcft.train experiment=NAME``, where runs
with a finished record are skipped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from dcft.run.config import CONF_DIR
from dcft.run.identity import RunIdentity
from dcft.run.records import CorruptRecordError, ForeignRecordError, read_record

EXPERIMENT_DIR = CONF_DIR / "experiment"
SCALES = ("paper", "mini")


def tables() -> list[str]:
    """``table1`` ... from the experiment files (others, such as the study's learning-rate
    search, are not tables)."""
    names = (p.stem.removeprefix("mini-") for p in EXPERIMENT_DIR.glob("*.yaml"))
    return sorted({n.split("-")[0] for n in names if n.startswith("table")})


def experiments(table: str, scale: str = "paper") -> list[str]:
    """The experiment configs that make up ``table`` at ``scale``."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid scales: {', '.join(SCALES)}")
    if table not in tables():
        raise ValueError(f"unknown experiment {table!r}; existing: {', '.join(tables())}")
    names = sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml"))
    if scale == "mini":
        return [n for n in names if n == f"mini-{table}"]
    return [n for n in names if n == table or n.startswith(f"{table}-")]


def _compose(overrides: Sequence[str], hydra_config: bool = False) -> DictConfig:
    return compose("config", overrides=list(overrides), return_hydra_config=hydra_config)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


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
    given = {_key(o) for o in overrides}
    sweep = [f"{k}={v}" for k, v in (params or {}).items() if k not in given] + list(overrides)
    [jobs] = BasicSweeper.split_arguments(parser.parse_overrides(sweep), max_batch_size=None)
    return jobs


@dataclass(frozen=True)
class PlannedRun:
    experiment: str
    overrides: tuple[str, ...]
    identity: RunIdentity
    record: Path
    status: str  # finished | failed | to do | corrupt | foreign


def _status(path: Path, identity: RunIdentity) -> str:
    try:
        record = read_record(path, identity)
    except ForeignRecordError:
        return "foreign"
    except CorruptRecordError:
        return "corrupt"
    return "to do" if record is None else record["status"]


def plan(table: str, scale: str = "paper", overrides: Sequence[str] = ()) -> list[PlannedRun]:
    """Every run ``table`` needs, with the state of its record."""
    runs = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for experiment in experiments(table, scale):
            for job in job_overrides(experiment, overrides):
                cfg = _compose([f"experiment={experiment}", *job])
                identity = RunIdentity.from_config(cfg)
                path = identity.record_path(cfg.results_dir)
                runs.append(
                    PlannedRun(experiment, tuple(job), identity, path, _status(path, identity))
                )
    return runs


def print_plan(runs: Sequence[PlannedRun]) -> None:
    for run in runs:
        i = run.identity
        print(f"{run.status:>8}  {i.model} {i.task} {i.method_slug} seed{i.seed}  {run.record}")
    counts = Counter(run.status for run in runs)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"{len(runs)} runs: {summary}")


def launch(table: str, scale: str, launcher: str, overrides: Sequence[str]) -> int:
    """Run every part of ``table`` (Table 1 has one per model) even when one fails; returns the
    number of parts that failed, after a summary naming them."""
    failed = []
    for experiment in experiments(table, scale):
        command = [
            sys.executable,
            "-m",
            "dcft.train",
            f"experiment={experiment}",
            f"hydra/launcher={launcher}",
            *overrides,
        ]
        print("+", " ".join(command), flush=True)
        code = subprocess.run(command, check=False).returncode
        if code != 0:
            failed.append(f"{experiment} (exit code {code})")
    if failed:
        print(f"{len(failed)} part(s) of {table} failed: {'; '.join(failed)}", flush=True)
    return len(failed)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="table1 ... table6")
    parser.add_argument("--scale", default="paper", choices=SCALES)
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: the experiment's)")
    parser.add_argument("--launcher", default="basic", help="basic | gpus | local | slurm | ...")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    parser.add_argument(
        "--retry-failed", action="store_true", help="train runs whose record says failed again"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides)
    if args.seeds is not None:
        overrides.append(f"seed=range(0,{args.seeds})")
    if args.retry_failed:
        overrides.append("retry_failed=true")
    if args.dry_run:
        print_plan(plan(args.table, args.scale, overrides))
    elif launch(args.table, args.scale, args.launcher, overrides):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
