"""Which of the paper's tables list a run: the W&B tags ``table1`` ... (specs/table/), which
``python -m dcft.train`` hands to the run's tracker (dcft.run.tracking).

A table lists a run when one of its sweeps (the experiments its table file names, or its rows;
dcft.sweep) trains the run's (model, task, method slug), seeds aside, or when the report shows
the run in that table (Table 5 shows Table 4's fast-path d=8 as a row of its own).

The sweeps are read from their YAML instead of composing every job (Hydra's composition costs
~0.1 s per job, ~40 s for the 356 seed-free jobs of all tables): the sweeper params are expanded
as Hydra's basic sweeper expands them, and a job's slug comes from its method config plus its
``method.options.*`` overrides (tests/test_tracking.py holds this equal to Hydra's composition).
Sweeps and report rows are read once per process, in about 0.4 s; no Hydra instance is needed,
so it also works inside ``@hydra.main``. It sits above dcft.run (it reads the sweeps and the
report's rows), so the runner receives it as an argument instead of importing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from itertools import product
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dcft.report.rows import PaperRow, paper_rows
from dcft.report.runs import TWIN_MODEL, Run, model_for
from dcft.report.tables import SCALES, TABLES
from dcft.run.config import CONF_DIR
from dcft.run.identity import RunIdentity, method_slug
from dcft.sweep import EXPERIMENT_DIR, Part, parts, tables

Key = tuple[str, str, str]  # (model, task, method slug)
_OPTION = "method.options."


@cache
def _load(path: Path) -> DictConfig:
    """A group config merged with the configs its defaults list names (``- dcft``; ``_self_``
    last unless placed), as Hydra composes it; read once per process, never modified."""
    raw = OmegaConf.load(path)
    entries = list(raw.pop("defaults", None) or [])
    if "_self_" not in entries:
        entries.append("_self_")
    merged = OmegaConf.create()
    for entry in entries:
        merged = OmegaConf.merge(merged, raw if entry == "_self_" else _load(_path(path, entry)))
    return merged


def _path(config: Path, entry: str) -> Path:
    """A defaults-list entry's file: ``/group/name`` from conf/, ``name`` beside ``config``."""
    base = CONF_DIR if entry.startswith("/") else config.parent
    return base / f"{entry.lstrip('/')}.yaml"


def _choices(path: Path) -> dict[str, str]:
    """Group choices a config's defaults list makes (``model: x``, ``override /model: x``),
    following the configs it includes (``/twin/mini``)."""
    choices: dict[str, str] = {}
    for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults") or []:
        if isinstance(entry, dict):
            choices.update({k.removeprefix("override ").lstrip("/"): v for k, v in entry.items()})
        elif entry != "_self_":
            choices.update(_choices(_path(path, entry)))
    return choices


def _jobs(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A sweep without its seeds, one ``{key: value}`` per job: the product of the sweeper
    params' values, as Hydra's basic sweeper expands them."""
    overrides = OverridesParser.create().parse_overrides(
        [f"{k}={v}" for k, v in params.items() if k != "seed"]
    )
    axes = [
        [
            (o.key_or_group, v)
            for v in (o.sweep_iterator() if o.is_sweep_override() else [o.value()])
        ]
        for o in overrides
    ]
    return [dict(job) for job in product(*axes)]


@cache
def _name(group: str, choice: str) -> str:
    """The ``name`` of a model or task choice."""
    return str(_load(CONF_DIR / group / f"{choice}.yaml").name)


@cache
def _method(choice: str) -> tuple[str, dict[str, Any]]:
    """A method choice's name and resolved options."""
    method = _load(CONF_DIR / "method" / f"{choice}.yaml")
    return str(method.name), OmegaConf.to_container(method.options, resolve=True) or {}


def sweep_keys(experiment: str) -> set[Key]:
    """(model, task, method slug) of every job of ``experiment``'s sweep."""
    path = EXPERIMENT_DIR / f"{experiment}.yaml"
    params = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
    return _keys(params, _choices(path))


def _keys(params: Mapping[str, Any], choices: Mapping[str, str]) -> set[Key]:
    """(model, task, method slug) of every job of a sweep whose configs choose ``choices``."""
    choices = {**_choices(CONF_DIR / "config.yaml"), **choices}
    keys = set()
    for job in _jobs(params):
        name, options = _method(job.get("method", choices["method"]))
        options = {
            **options,
            **{k.removeprefix(_OPTION): v for k, v in job.items() if k.startswith(_OPTION)},
        }
        model, task = (_name(g, job.get(g, choices[g])) for g in ("model", "task"))
        keys.add((model, task, method_slug(name, options)))
    return keys


def _part_keys(part: Part) -> set[Key]:
    if part.experiment:
        return sweep_keys(part.experiment)
    return _keys(dict(part.params), {})


@cache
def _swept() -> dict[str, frozenset[Key]]:
    return {
        table: frozenset(
            key for scale in SCALES for part in parts(table, scale) for key in _part_keys(part)
        )
        for table in tables()
    }


@cache
def _report_rows() -> tuple[PaperRow, ...]:
    return tuple(row for table in TABLES for row in paper_rows(table))


def _reported(identity: RunIdentity) -> set[str]:
    """Tables whose report shows the run (the MiniLM twin in place of DeBERTaV3-base)."""
    scale = "mini" if identity.model == TWIN_MODEL else "paper"
    run = Run(
        path=Path(),
        record={},
        model=identity.model,
        task=identity.task,
        method=identity.method,
        slug=identity.method_slug,
        options=identity.options,
        seed=identity.seed,
        hparams_hash=identity.hparams_hash,
        harness_version="",
        settings="",
        scores={},
        params=None,
        params_total=None,
        hours=None,
    )
    return {
        f"table{row.table}"
        for row in _report_rows()
        if row.matches(run, model_for(row.model, scale))
    }


def tables_listing(identity: RunIdentity) -> list[str]:
    """``table1`` ...: every table whose sweep trains the run or whose report shows it."""
    key = (identity.model, identity.task, identity.method_slug)
    swept = {table for table, keys in _swept().items() if key in keys}
    return sorted(swept | _reported(identity))
