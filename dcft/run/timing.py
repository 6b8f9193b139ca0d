"""Training time: per optimiser step and per segment of a resumed run."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    TrainerCallback,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState


class StepTimer(TrainerCallback, ExportableState):
    """Wall time of the training and of every optimiser step (forward, backward, clip, step;
    evaluation excluded), per segment: a run killed and resumed trains in several segments, and
    each checkpoint carries the segments so far (trainer_state.json), so the record sums them.
    A segment's time runs from its start to its last checkpoint; work after that checkpoint is
    lost and redone (and timed) in the next segment."""

    def __init__(self, segments: Sequence[Mapping[str, Any]] = ()) -> None:
        self.segments = [dict(s) for s in segments]  # earlier segments, from the checkpoint
        self.times: list[float] = []
        self._started = time.perf_counter()
        self._start: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.times.append(self._now() - self._start)
            self._start = None

    def current_segment(self) -> dict[str, Any]:
        return {
            "wall_time_s": time.perf_counter() - self._started,
            "optimizer_steps": len(self.times),
            "median_step_time_s": statistics.median(self.times) if self.times else None,
        }

    def all_segments(self) -> list[dict[str, Any]]:
        return [*self.segments, self.current_segment()]

    def state(self) -> dict[str, Any]:
        return {"args": {"segments": self.all_segments()}, "attributes": {}}

    @staticmethod
    def segments_in(checkpoint: Path | None) -> list[dict[str, Any]]:
        """The segments a checkpoint recorded (none for a fresh start)."""
        if checkpoint is None:
            return []
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
        saved = (state.get("stateful_callbacks") or {}).get(StepTimer.__name__) or {}
        return list((saved.get("args") or {}).get("segments") or [])


def total_timing(segments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summed wall time and steps over segments; the median step time is the step-weighted
    median of the segments' medians (exact for one segment)."""
    timed = sorted(
        (s["median_step_time_s"], s["optimizer_steps"])
        for s in segments
        if s["median_step_time_s"] is not None
    )
    steps = sum(n for _, n in timed)
    median, seen = None, 0
    for value, n in timed:
        seen += n
        if seen * 2 >= steps:
            median = value
            break
    return {
        "train_wall_time_s": sum(s["wall_time_s"] for s in segments),
        "median_step_time_s": median,
        "segments": [dict(s) for s in segments],
    }
