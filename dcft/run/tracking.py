"""Weights & Biases for one run: open it before training, always finish it afterwards.

The runner opens the W&B run itself (deterministic id, ``resume="allow"``, files under the run's
folder) in the study's one project, tagged with every table that lists the run, and lets
``DcftWandbCallback`` (transformers' public ``WandbCallback`` minus its flat TrainingArguments
and model config keys, handed to the Trainer as a callback) log the training curves into it.
The run's config is one ``dcft`` dict (identity, resolved config, harness version, data); its
summary holds the record's results and cost (``record_summary``); the record and the adapter go
up as an artifact. ``logger=none`` or
``mode=disabled`` never imports wandb.

Which tables list a run is the sweeps' and the report's knowledge (dcft.table_tags, a layer
above this one): ``python -m dcft.train`` passes it in as ``tables``; without it a run is
tagged with its model, task, method and setting only.

Offline runs are uploaded later by ``wandb sync`` (``make wandb-sync``).
"""

from __future__ import annotations

import hashlib
import json
import netrc
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig
from transformers import TrainerCallback
from transformers.integrations import WandbCallback

from dcft.data import get_task
from dcft.run.distributed import is_main_process
from dcft.run.identity import RunIdentity, run_name
from dcft.run.records import main_score, package_versions

MODES = ("auto", "online", "offline", "disabled")
LOGGERS = ("wandb", "none")
_DEFAULT_HOST = "https://api.wandb.ai"
_TIMING = ("train_wall_time_s", "median_step_time_s", "train_samples_per_second", "optimizer_steps")
# The tables that list a run (``table1`` ...): dcft.table_tags.tables_listing.
TableTags = Callable[[RunIdentity], Sequence[str]]


def api_key_configured() -> bool:
    """A W&B API key in ``WANDB_API_KEY`` or ~/.netrc (no network, no prompt)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", _DEFAULT_HOST)).hostname or ""
    try:
        entry = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``online`` with an API key, else ``offline``; other modes as given."""
    if mode not in MODES:
        raise ValueError(f"unknown W&B mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode == "auto":
        return "online" if api_key_configured() else "offline"
    return mode


def wandb_run_id(identity: RunIdentity) -> str:
    """The same run always maps to the same W&B run (so a resumed run continues it), whichever
    table's sweep launched it: like the record's path, the id leaves the experiment out."""
    key = {k: v for k, v in identity.to_dict().items() if k != "experiment"}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run_tags(identity: RunIdentity, tables: Sequence[str] = ()) -> list[str]:
    """``tables`` (every table that lists the run: ``table1`` ... ``table6``), then the run's
    model, task, method and setting (method slug)."""
    tags = [*tables, identity.model, identity.task, identity.method, identity.method_slug]
    return list(dict.fromkeys(tags))


def run_config(
    identity: Mapping[str, Any],
    config: Mapping[str, Any],
    harness_version: str | None,
    data: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The W&B config: one ``dcft`` dict holding the record's ``identity``, ``config``,
    ``harness_version`` and ``data`` under the record's names."""
    return {
        "dcft": {
            "identity": dict(identity),
            "config": dict(config),
            "harness_version": harness_version,
            "data": None if data is None else dict(data),
        }
    }


def _evaluation(which: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """``<which>/main`` (the task's headline metric in the paper's units: GLUE x100, SQuAD as
    is), ``<which>/<metric>`` (as recorded), ``<which>/step`` and ``<which>/metrics`` (every
    split's scores) of the record's best or last evaluation."""
    evaluation = record.get(which)
    if not evaluation:
        return {f"{which}/main": None}
    out = {f"{which}/step": evaluation["step"], f"{which}/metrics": evaluation["metrics"]}
    main = record.get("main_metric")
    if main:
        value = main_score(record, which)
        factor = get_task(record["identity"]["task"]).paper_units
        out[f"{which}/main"] = None if value is None else value * factor
        out[f"{which}/{main['name']}"] = value
    return out


def record_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's W&B summary: ``status``, ``failure_reason``, the best and last evaluations,
    ``parameters/*``, ``timing/*`` (wall time, median step time, samples/s, steps),
    ``memory/peak_bytes`` and ``adapter/size_bytes``."""
    timing = record.get("timing") or {}
    return {
        "status": record["status"],
        "failure_reason": record.get("failure_reason"),
        **_evaluation("best", record),
        **_evaluation("last", record),
        **{f"parameters/{k}": v for k, v in (record.get("parameters") or {}).items()},
        **{f"timing/{k}": timing.get(k) for k in _TIMING},
        "memory/peak_bytes": (record.get("memory") or {}).get("bytes"),
        "adapter/size_bytes": (record.get("adapter") or {}).get("size_bytes"),
    }


def record_artifact(record: Mapping[str, Any]) -> Any:
    """The record (``record.json``) and the adapter of a run as one W&B artifact of type
    ``dcft-run``, named after the record's path."""
    import wandb

    i = record["identity"]
    artifact = wandb.Artifact(
        name=f"{run_name(i['model'], i['task'], i['method_slug'], i['seed'])}-{i['hparams_hash']}",
        type="dcft-run",
        metadata={"identity": i, "status": record["status"]},
    )
    with artifact.new_file("record.json", mode="w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    adapter = (record.get("adapter") or {}).get("path")
    if adapter:
        artifact.add_file(adapter, name="adapter.safetensors")
    return artifact


class DcftWandbCallback(WandbCallback):
    """transformers' public W&B callback (passed to the Trainer as a callback; ``report_to`` is
    ``none``) with its own ``setup``, the override point transformers documents: the run is
    already open (``tracking``), and the parent's setup would write ~150 flat keys into its
    config (``TrainingArguments.to_dict()``, the model config, ``model/num_parameters``) where
    the run's config is dcft's own (``run_config``). This setup sets the curves' x-axis, as the
    parent's does; logging the curves and the summary scalars is the parent's."""

    def setup(self, args: Any, state: Any, model: Any, **kwargs: Any) -> None:
        import wandb

        self._initialized = True
        if state.is_world_process_zero:
            wandb.define_metric("train/global_step")
            wandb.define_metric("*", step_metric="train/global_step", step_sync=True)


def _enabled(logger: DictConfig) -> bool:
    if logger.name not in LOGGERS:
        raise ValueError(f"unknown logger {logger.name!r}; valid loggers: {', '.join(LOGGERS)}")
    return logger.name == "wandb" and resolve_mode(str(logger.mode)) != "disabled"


@dataclass
class Tracker:
    """What the runner needs from the tracker: the Trainer's callbacks and a summary sink."""

    callbacks: list[TrainerCallback] = field(default_factory=list)
    run: Any = None
    artifacts: bool = False
    failure: str | None = None

    def summarize(self, values: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(dict(values))

    def fail(self, reason: str) -> None:
        """Mark the run failed: its summary says why and it ends with a failing exit code."""
        self.failure = reason
        self.summarize({"status": "failed", "failure_reason": reason})

    def log_record(self, record: Mapping[str, Any]) -> None:
        """A finished run's record: its summary keys and, with ``logger.artifacts``, the record
        and adapter as an artifact."""
        self.summarize(record_summary(record))
        if self.run is not None and self.artifacts:
            self.run.log_artifact(record_artifact(record))


@contextmanager
def tracking(
    logger: DictConfig,
    identity: RunIdentity,
    config: Mapping[str, Any],
    run_dir: Path,
    data: Mapping[str, Any] | None = None,
    tables: TableTags | None = None,
) -> Iterator[Tracker]:
    """Open the run's tracker (a no-op ``Tracker`` for logger=none, mode=disabled and every
    process but the main one of a multi-GPU run). W&B files go to ``<run_dir>/wandb``;
    ``wandb.finish()`` runs however the block ends, with exit code 1 when the run failed or the
    block raised, so the next job of a multirun starts clean. ``tables`` names the tables that
    list the run (its W&B tags); it is called only when W&B is on."""
    if not _enabled(logger) or not is_main_process():
        yield Tracker()
        return
    import wandb

    run_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=logger.project,
        entity=logger.entity,
        group=logger.group,
        job_type=logger.job_type,
        name=logger.run_name,
        tags=run_tags(identity, tables(identity) if tables else ()),
        id=wandb_run_id(identity),
        resume="allow",
        mode=resolve_mode(str(logger.mode)),
        dir=str(run_dir),
        config=run_config(identity.to_dict(), config, package_versions()["dcft"], data),
    )
    tracker = Tracker([DcftWandbCallback()], run, bool(logger.artifacts))
    failed = True
    try:
        yield tracker
        failed = tracker.failure is not None
    finally:
        wandb.finish(exit_code=1 if failed else 0)
