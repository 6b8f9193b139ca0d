"""Result records -> runs: every record under a folder, flattened, deduplicated by
``(hparams_hash, seed)``, with what was skipped and why; and which scale they are at (the paper's
models, or the MiniLM CPU twin standing in for DeBERTaV3-base)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dcft.report.tables import table_specs
from dcft.run.identity import hashed_config
from dcft.run.records import CorruptRecordError, read_record

SCALES = ("auto", "paper", "mini")
SELECTS = ("best", "last")
TWIN_MODEL = "minilm"
TWIN_STANDS_FOR = "deberta-v3-base"
TWIN_LABEL = "MiniLM CPU twin: not comparable to the paper's numbers"


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
    paper_models = {row.model for spec in table_specs() for row in spec.printed}
    return "mini" if TWIN_MODEL in models and not models & paper_models else "paper"


def model_for(paper_model: str, scale: str) -> str:
    """The records' model for a paper model: the MiniLM twin stands in for DeBERTaV3-base."""
    return TWIN_MODEL if scale == "mini" and paper_model == TWIN_STANDS_FOR else paper_model
