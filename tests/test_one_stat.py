"""Mean ± std over seeds is computed in one place, ``dcft.report.stats.Stat``: the figures'
curves and bands agree with a table cell's numbers at every step, a NaN seed included (left out
of both, never averaged), against the standard library's mean and sample std."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest

from dcft.report.figures import _mean_curve
from dcft.report.stats import Stat

POINTS = {0: {20: 70.0, 40: 74.0}, 1: {20: 73.0, 40: math.nan}, 2: {20: 70.0, 40: 75.0}}


def test_curve_mean_and_band_are_the_tables_stat():
    runs = [SimpleNamespace(seed=seed, points=points) for seed, points in POINTS.items()]
    steps, mean, std = _mean_curve(runs, lambda run: run.points)
    assert list(steps) == [20, 40]
    for i, step in enumerate(steps):
        finite = [p[step] for p in POINTS.values() if math.isfinite(p[step])]
        cell = Stat.of([p[step] for p in POINTS.values()], list(POINTS))
        assert mean[i] == pytest.approx(statistics.fmean(finite)) == pytest.approx(cell.mean)
        assert std[i] == pytest.approx(statistics.stdev(finite)) == pytest.approx(cell.std)
