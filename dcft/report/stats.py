"""Mean ± sample std over seeds, and how a cell prints it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

MISSING = "—"
CONFLICT = "‡"
FAILED = "✗"


@dataclass
class Stat:
    """Mean ± sample std over seeds (n = seeds averaged; std is NaN for n = 1). Seeds whose
    score is NaN/inf are never averaged: they are counted in ``dropped`` and named."""

    n: int
    mean: float
    std: float
    seeds: tuple[int, ...]
    dropped: tuple[int, ...] = ()

    @classmethod
    def of(cls, values: Sequence[float], seeds: Sequence[int]) -> Stat | None:
        kept = [(v, s) for v, s in zip(values, seeds, strict=True) if math.isfinite(v)]
        dropped = tuple(s for v, s in zip(values, seeds, strict=True) if not math.isfinite(v))
        if not kept:
            return cls(0, math.nan, math.nan, (), dropped) if dropped else None
        series = pd.Series([v for v, _ in kept], dtype=float)
        std = float(series.std(ddof=1))
        return cls(len(kept), float(series.mean()), std, tuple(s for _, s in kept), dropped)


def format_stat(stat: Stat | None, digits: int = 2) -> str:
    """``mean ± std (n=N)``; the std only from two seeds on; NaN seeds named, never averaged;
    missing as ``MISSING``."""
    if stat is None:
        return MISSING
    nan = f"; NaN: seed {', '.join(map(str, stat.dropped))}" if stat.dropped else ""
    if stat.n == 0:
        return f"NaN (n=0{nan})"
    spread = "" if stat.n < 2 else f" ± {stat.std:.{digits}f}"
    return f"{stat.mean:.{digits}f}{spread} (n={stat.n}{nan})"
