"""W&B runs -> the report's runs, for ``python -m dcft.report --from-wandb ENTITY/PROJECT`` when
the records live on cluster nodes.

Each W&B run that dcft.tracking opened carries the record's identity, config, harness version
and data under ``config["dcft"]`` and its results under summary keys (``record_summary``); they
are put back into a record-like dict, which dcft.report.runs reads like a record file. The
record's ``created_at`` is the W&B run's creation time; evaluation histories (Figure 3) are not
fetched. Runs without a ``status`` in their summary (running, crashed, killed: no record yet)
are skipped and named.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcft.report.runs import SELECTS, RunSet, run_of_record
from dcft.run.identity import record_stem

_PAGE = 500


def _prefixed(summary: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in summary.items() if k.startswith(prefix)}


def _evaluation(summary: Mapping[str, Any], which: str) -> dict[str, Any] | None:
    if f"{which}/metrics" not in summary:
        return None
    return {"step": summary.get(f"{which}/step"), "metrics": summary[f"{which}/metrics"]}


def record_from_wandb(
    config: Mapping[str, Any], summary: Mapping[str, Any], created_at: str | None
) -> dict[str, Any] | None:
    """A record-like dict from a W&B run's config and summary; None for a run that is not a
    dcft run or has no record (no ``status`` in its summary)."""
    dcft = config.get("dcft")
    if not isinstance(dcft, Mapping) or "status" not in summary:
        return None
    return {
        "harness_version": dcft.get("harness_version"),
        "status": summary["status"],
        "failure_reason": summary.get("failure_reason"),
        "created_at": created_at,
        "identity": dcft["identity"],
        "config": dcft["config"],
        "data": dcft.get("data"),
        "best": _evaluation(summary, "best"),
        "last": _evaluation(summary, "last"),
        "parameters": _prefixed(summary, "parameters/"),
        "timing": _prefixed(summary, "timing/"),
    }


def _record_path(item: tuple[Path, dict[str, Any]]) -> tuple[str, ...]:
    """The order of load_runs: by the record's path (model, task, slug, seed, hash)."""
    identity = item[1].get("identity") or {}
    keys = ("model", "task", "method_slug")
    return (
        *(str(identity.get(k)) for k in keys),
        record_stem(identity.get("seed"), identity.get("hparams_hash")),
    )


def load_wandb_runs(
    project: str, select: str = "best", api: Any = None
) -> tuple[RunSet, list[str]]:
    """The report's runs from the W&B project ``ENTITY/PROJECT`` (as dcft.report.runs.load_runs
    reads a records folder), and the W&B runs skipped for having no record."""
    if select not in SELECTS:
        raise ValueError(f"unknown evaluation selection {select!r}; valid: {', '.join(SELECTS)}")
    if api is None:
        import wandb

        api = wandb.Api()
    runset = RunSet(Path(f"wandb:{project}"), select)
    found, skipped = [], []
    for wandb_run in api.runs(project, per_page=_PAGE, lazy=False):
        path = Path(*wandb_run.path)
        record = record_from_wandb(
            wandb_run.config, wandb_run.summary_metrics, wandb_run.created_at
        )
        if record is None:
            skipped.append(f"{path} ({wandb_run.state})")
        else:
            found.append((path, record))
    seen: set[tuple[str, int]] = set()
    for path, record in sorted(found, key=_record_path):
        try:
            run = run_of_record(path, record, select)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            runset.corrupt.append((path, f"not a usable run ({type(err).__name__}: {err})"))
            continue
        if record["status"] != "finished":
            runset.failed.append(run)
        elif (run.hparams_hash, run.seed) in seen:
            runset.duplicates.append(path)
        else:
            seen.add((run.hparams_hash, run.seed))
            runset.runs.append(run)
    return runset, skipped
