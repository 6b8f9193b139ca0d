"""Weights & Biases for one run: open it before training, always finish it afterwards.

The runner opens the W&B run itself (deterministic id, ``resume="allow"``, files under the run's
folder) and lets transformers' ``WandbCallback`` log into it (``report_to=["wandb"]``): the
callback reuses an active run instead of creating one. ``logger=none`` or ``mode=disabled``
never imports wandb.
"""

from __future__ import annotations

import hashlib
import json
import netrc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig

from dcft.distributed import is_main_process
from dcft.results import RunIdentity

MODES = ("auto", "online", "offline", "disabled")
LOGGERS = ("wandb", "none")
_DEFAULT_HOST = "https://api.wandb.ai"


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
    """The same run identity always maps to the same W&B run (so a resumed run continues it)."""
    canonical = json.dumps(identity.to_dict(), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _enabled(logger: DictConfig) -> bool:
    if logger.name not in LOGGERS:
        raise ValueError(f"unknown logger {logger.name!r}; valid loggers: {', '.join(LOGGERS)}")
    return logger.name == "wandb" and resolve_mode(str(logger.mode)) != "disabled"


@dataclass
class Tracker:
    """What the runner needs from the tracker: the Trainer's ``report_to`` and a summary sink."""

    report_to: list[str] = field(default_factory=list)
    run: Any = None
    failure: str | None = None

    def summarize(self, values: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(dict(values))

    def fail(self, reason: str) -> None:
        """Mark the run failed: its summary says why and it ends with a failing exit code."""
        self.failure = reason
        self.summarize({"status": "failed", "failure_reason": reason})


@contextmanager
def tracking(
    logger: DictConfig, identity: RunIdentity, config: Mapping[str, Any], run_dir: Path
) -> Iterator[Tracker]:
    """Open the run's tracker (a no-op ``Tracker`` for logger=none, mode=disabled and every
    process but the main one of a multi-GPU run). W&B files go to
    ``<run_dir>/wandb``; ``wandb.finish()`` runs however the block ends, so the next job of a
    multirun starts clean."""
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
        id=wandb_run_id(identity),
        resume="allow",
        mode=resolve_mode(str(logger.mode)),
        dir=str(run_dir),
        config=dict(config),
    )
    tracker = Tracker(["wandb"], run)
    try:
        yield tracker
    finally:
        wandb.finish(exit_code=1 if tracker.failure else 0)
