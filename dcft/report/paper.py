"""The DCFT paper's (arXiv 2503.01419) Tables 1-6, as transcribed in ``results/paper/``.

Three tidy CSV files, one row per printed number (see ``results/paper/README.md``); a table file
(specs/table/) names the files its numbers are in (``load_paper_csv``):

* ``results.csv``: every task score of Tables 1-6 (``load_paper_results``);
* ``averages.csv``: the printed "Avg." column of Tables 1 and 4 (``load_paper_averages``);
* ``times.csv``: the training times (hours) of Tables 4 and 5 (``load_paper_times``).

Text columns come back as ``str`` with ``""`` for blanks; ``kernel`` and ``stride`` as nullable
integers (``Int64``); ``value``, ``params`` and ``hours`` as floats (``NaN`` when blank).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd

PAPER_DIR: Path = Path(__file__).resolve().parents[2] / "results" / "paper"

_INT_COLUMNS = ("table", "kernel", "stride")
_FLOAT_COLUMNS = ("params", "value", "hours")
_UNIT_POWERS = {"k": 1, "K": 1, "M": 2, "B": 3}


def parse_param_count(text: str, binary: bool = False) -> float | None:
    """Turn a printed #Params cell ("0.024M", "165.5K", "1.5B") into a number of parameters.

    Percentages ("0.08%") and blanks are not absolute counts and give ``None``. Units are
    decimal (M = 10**6, k = 10**3) unless ``binary`` (M = 2**20, k = 2**10), the units in which
    the paper prints its DCFT counts (see results/params.md).
    """
    text = text.strip()
    if not text or text.endswith("%"):
        return None
    unit = text[-1]
    if unit not in _UNIT_POWERS:
        raise ValueError(f"unknown #Params unit in {text!r}")
    return float(Decimal(text[:-1]) * (1024 if binary else 1000) ** _UNIT_POWERS[unit])


def load_paper_csv(name: str) -> pd.DataFrame:
    """``results/paper/<name>``, typed as described above."""
    frame = pd.read_csv(PAPER_DIR / name, dtype=str, keep_default_na=False, encoding="utf-8")
    for column in frame.columns:
        if column in _INT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column].replace("", None)).astype("Int64")
        elif column in _FLOAT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column].replace("", None)).astype(float)
    return frame


def load_paper_results() -> pd.DataFrame:
    """All task scores of Tables 1-6: one row per printed number (MNLI m/mm are two rows)."""
    return load_paper_csv("results.csv")


def load_paper_averages() -> pd.DataFrame:
    """The printed "Avg." values of Tables 1 and 4, one row per table row."""
    return load_paper_csv("averages.csv")


def load_paper_times() -> pd.DataFrame:
    """The training times (hours) of Tables 4 and 5; Table 4's "Avg." column is task "avg"."""
    return load_paper_csv("times.csv")
