"""Settings that depend on where a run is launched: the numeric precision and how the global batch
splits over processes. Both change results, so the resolved values (not ``auto``) are part of
the run's key and record."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def resolve_precision(precision: str) -> str:
    """``auto`` = bf16 on a CUDA device that supports it, else fp32. fp16 is never chosen
    automatically: the DeBERTa-v2/v3 attention overflows in it, and the paper trained in fp32
    (the default of every experiment)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def world_size() -> int:
    """Processes training together (torchrun / accelerate set ``WORLD_SIZE``; 1 without them)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class BatchSplit:
    """``global_batch_size = per_device * processes * gradient_accumulation_steps``."""

    global_batch_size: int
    per_device: int
    processes: int
    gradient_accumulation_steps: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def split_batch(global_batch_size: int, processes: int, accumulation: int = 1) -> BatchSplit:
    """The per-device batch that keeps ``trainer.batch_size`` (the paper's, global) whatever the
    number of processes; a split that does not divide evenly is refused rather than rounded."""
    if global_batch_size < 1 or processes < 1 or accumulation < 1:
        raise ValueError(
            f"trainer.batch_size ({global_batch_size}), processes ({processes}) and "
            f"trainer.gradient_accumulation_steps ({accumulation}) must all be >= 1"
        )
    shards = processes * accumulation
    if global_batch_size % shards:
        raise ValueError(
            f"trainer.batch_size={global_batch_size} is the global batch and does not split "
            f"evenly over {processes} process(es) x {accumulation} accumulation step(s); "
            f"choose a process count / trainer.gradient_accumulation_steps that divides it"
        )
    return BatchSplit(global_batch_size, global_batch_size // shards, processes, accumulation)
