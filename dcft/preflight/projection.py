"""What a full run costs, from a preflight's measurement: its optimiser steps and evaluations
(as the Trainer schedules them), the projected time, the table's device-hours and the wall time
on N GPUs; and the preflight's files, which ``dcft.sweep --dry-run`` reads back. Imports no
torch: the dry run stays fast."""

from __future__ import annotations

import csv
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcft.run.identity import RunIdentity

PREFLIGHT_DIR = Path("results") / "preflight"
HOURS_COLUMN = "projected_h_per_run"


@dataclass(frozen=True)
class Schedule:
    """A full run's work: optimiser steps, evaluations, and the examples of one evaluation."""

    optimizer_steps: int
    evaluations: int
    eval_examples: int


def full_schedule(
    trainer: Mapping[str, Any], train_examples: int, eval_examples: int, processes: int = 1
) -> Schedule:
    """The Trainer's count: ``max_steps`` if set, else ``ceil(epochs x updates per epoch)`` with
    ``updates per epoch = max(ceil(n / (per-device batch x processes)) // accumulation, 1)``;
    evaluations every ``eval_steps`` (or ``logging_steps``) steps plus the final one ``fit``
    adds when the last step was not evaluated, or one per epoch."""
    accumulation = int(trainer["gradient_accumulation_steps"])
    per_device = int(trainer["batch_size"]) // (processes * accumulation)
    if int(trainer["max_steps"]) > 0:
        steps = int(trainer["max_steps"])
    else:
        batches = math.ceil(train_examples / (per_device * processes))
        steps = math.ceil(float(trainer["num_epochs"]) * max(batches // accumulation, 1))
    if trainer["eval_strategy"] == "steps":
        interval = int(trainer["eval_steps"] or trainer["logging_steps"])
        evaluations = steps // interval + (1 if steps % interval else 0)
    else:
        evaluations = math.ceil(float(trainer["num_epochs"]))
    return Schedule(steps, evaluations, eval_examples)


def projected_seconds(schedule: Schedule, step_s: float, eval_s_per_example: float) -> float:
    """Optimiser steps x step time + evaluations x examples x evaluation time per example."""
    evaluating = schedule.evaluations * schedule.eval_examples * eval_s_per_example
    return schedule.optimizer_steps * step_s + evaluating


def wall_seconds(durations: Sequence[float], gpus: int) -> float:
    """The ``gpus`` launcher's wall time: runs taken in order, each by the first GPU to be free."""
    free = [0.0] * max(gpus, 1)
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def setting_key(identity: RunIdentity) -> str:
    """A run's key without its seed: ``<model>/<task>/<method slug>/<hash8>`` (every seed of a
    setting shares the measurement and the projection)."""
    return f"{identity.model}/{identity.task}/{identity.method_slug}/{identity.hparams_hash}"


def report_paths(table: str, device: str, root: Path = PREFLIGHT_DIR) -> tuple[Path, Path]:
    """``<root>/<table>-<device>.md`` and ``.csv``."""
    stem = root / f"{table}-{device}"
    return stem.with_suffix(".md"), stem.with_suffix(".csv")


def read_projections(table: str, device: str, root: Path = PREFLIGHT_DIR) -> dict[str, float]:
    """Projected hours per run by setting key, from the preflight of ``table`` on ``device``
    (empty when there is none, and for settings without a projection)."""
    _, path = report_paths(table, device, root)
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {
            row["run"]: float(row[HOURS_COLUMN]) for row in csv.DictReader(f) if row[HOURS_COLUMN]
        }


def device_name() -> str:
    """``cpu``, or the CUDA device's name as a file name (``nvidia-a100-sxm4-80gb``)."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    return "-".join("".join(c if c.isalnum() else " " for c in name).split())


def projected_hours(table: str, root: Path = PREFLIGHT_DIR) -> dict[str, float]:
    """``read_projections`` for this machine's device (torch is imported only when some
    preflight of ``table`` exists)."""
    if not any(root.glob(f"{table}-*.csv")):
        return {}
    return read_projections(table, device_name(), root)
