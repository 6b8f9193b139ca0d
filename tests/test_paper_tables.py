"""Checks of the transcription of the DCFT paper's Tables 1-6 (results/paper/*.csv).

* spot checks: individual cells against literals read off the paper;
* every printed table row is re-rendered from the CSVs and compared with the row as printed
  (PRINTED_ROWS, copied from the paper text), and, when the paper text is on disk, each
  printed row is looked up in it;
* the printed averages against the mean of their row (Table 1: MNLI counts as one task, the
  mean of matched and mismatched); rows that no convention reproduces must be listed in
  KNOWN_AVERAGE_SLIPS;
* the paper's known slips (SoRA == LoRA-FA, cross-table disagreements) are present and flagged;
* row counts, unique keys and value parsing.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from pathlib import Path
from statistics import mean

import pandas as pd
import pytest

from dcft.report.paper import (
    PAPER_DIR,
    load_paper_averages,
    load_paper_results,
    load_paper_times,
    parse_param_count,
)

V3 = "deberta-v3-base"
RL = "roberta-large"
V2 = "deberta-v2-xxlarge"
PAPER_TEXT = Path(
    os.environ.get("DCFT_PAPER_TEXT", "/work/shared/paper/dcft-2503.01419-fulltext.txt")
)
# Printed values have two decimals at most: a correct average is within half a unit of the
# exact mean (plus float noise).
AVG_TOL = 0.0051

KEY = ["table", "model", "method", "variant", "kernel", "stride", "targets", "task", "split",
       "metric"]  # fmt: skip


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return load_paper_results()


@pytest.fixture(scope="module")
def averages() -> pd.DataFrame:
    return load_paper_averages()


@pytest.fixture(scope="module")
def times() -> pd.DataFrame:
    return load_paper_times()


def _raw(name: str) -> list[dict[str, str]]:
    with open(PAPER_DIR / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _select(frame: pd.DataFrame, **where: object) -> pd.DataFrame:
    mask = pd.Series(True, index=frame.index)
    for column, wanted in where.items():
        mask &= frame[column] == wanted
    return frame[mask]


def _one(frame: pd.DataFrame, **where: object) -> pd.Series:
    rows = _select(frame, **where)
    assert len(rows) == 1, f"{len(rows)} rows match {where}"
    return rows.iloc[0]


# ---------------------------------------------------------------------------------------------
# (a) spot checks: literals read off the paper
# ---------------------------------------------------------------------------------------------
SPOT_CHECKS: list[tuple[dict[str, object], float]] = [
    # Table 1, DeBERTaV3-base
    ({"table": 1, "model": V3, "method": "dcft", "variant": "best", "task": "rte"}, 88.45),
    ({"table": 1, "model": V3, "method": "dcft", "variant": "efficient", "task": "cola"}, 71.07),
    ({"table": 1, "model": V3, "method": "dcft", "variant": "efficient", "task": "qqp"}, 89.20),
    ({"table": 1, "model": V3, "method": "dcft", "variant": "best", "task": "sst2"}, 96.10),
    ({"table": 1, "model": V3, "method": "full", "task": "qqp"}, 91.10),
    ({"table": 1, "model": V3, "method": "bitfit", "task": "mnli", "split": "matched"}, 87.45),
    ({"table": 1, "model": V3, "method": "hadapter", "task": "mnli", "split": "mismatched"}, 90.02),
    ({"table": 1, "model": V3, "method": "padapter", "task": "rte"}, 84.48),
    ({"table": 1, "model": V3, "method": "lora", "task": "rte"}, 81.29),
    ({"table": 1, "model": V3, "method": "sora", "task": "mrpc"}, 89.22),
    (
        {
            "table": 1,
            "model": V3,
            "method": "dcft",
            "variant": "best",
            "task": "mnli",
            "split": "mismatched",
        },
        90.12,
    ),
    # Table 1, RoBERTa-large
    ({"table": 1, "model": RL, "method": "lora", "task": "qqp"}, 91.1),
    ({"table": 1, "model": RL, "method": "full", "task": "rte"}, 86.6),
    ({"table": 1, "model": RL, "method": "hadapter", "task": "rte"}, 72.9),
    ({"table": 1, "model": RL, "method": "lorafa", "task": "mrpc"}, 90.0),
    ({"table": 1, "model": RL, "method": "dcft", "variant": "best", "task": "qnli"}, 95.1),
    ({"table": 1, "model": RL, "method": "dcft", "variant": "efficient", "task": "mnli"}, 90.1),
    # Table 2, DeBERTaV2-xxl
    ({"table": 2, "model": V2, "method": "dcft", "task": "qnli"}, 96.2),
    ({"table": 2, "model": V2, "method": "lora", "task": "cola"}, 72.4),
    ({"table": 2, "model": V2, "method": "full", "task": "sst2"}, 97.2),
    # Table 3, SQuAD
    ({"table": 3, "method": "dcft", "task": "squad_v2", "metric": "f1"}, 87.7),
    ({"table": 3, "method": "dcft", "task": "squad_v2", "metric": "exact_match"}, 84.7),
    ({"table": 3, "method": "lora", "task": "squad_v1", "metric": "exact_match"}, 86.6),
    ({"table": 3, "method": "padapter", "task": "squad_v1", "metric": "f1"}, 91.7),
    ({"table": 3, "method": "full", "task": "squad_v2", "metric": "exact_match"}, 85.4),
    # Table 4, kernel sizes
    ({"table": 4, "method": "dcft", "kernel": 6, "task": "cola"}, 70.69),
    ({"table": 4, "method": "dcft", "kernel": 12, "task": "rte"}, 84.12),
    ({"table": 4, "method": "dcft", "kernel": 4, "task": "stsb"}, 91.80),
    ({"table": 4, "method": "full", "task": "qnli"}, 94.03),
    # Table 5, strides (kernel 8)
    ({"table": 5, "stride": 4, "task": "cola"}, 65.97),
    ({"table": 5, "stride": 1, "task": "mrpc"}, 90.69),
    ({"table": 5, "stride": 2, "task": "rte"}, 88.09),
    ({"table": 5, "stride": 8, "task": "stsb"}, 91.50),
    # Table 6, target matrices (kernel 8)
    ({"table": 6, "targets": "q,v", "task": "mrpc"}, 89.95),
    ({"table": 6, "targets": "q,k", "task": "cola"}, 64.99),
    ({"table": 6, "targets": "all", "task": "cola"}, 71.06),
    ({"table": 6, "targets": "q,k,v,o", "task": "rte"}, 85.92),
]

TIME_SPOT_CHECKS: list[tuple[dict[str, object], float]] = [
    ({"table": 5, "stride": 4, "task": "cola"}, 1.03),
    ({"table": 5, "stride": 1, "task": "stsb"}, 1.71),
    ({"table": 4, "kernel": 2, "task": "qnli"}, 13.67),
    ({"table": 4, "kernel": 8, "task": "avg"}, 3.16),
    ({"table": 4, "kernel": 12, "task": "sst2"}, 5.43),
]

AVERAGE_SPOT_CHECKS: list[tuple[dict[str, object], float]] = [
    ({"table": 1, "model": V3, "method": "dcft", "variant": "best"}, 88.99),
    ({"table": 1, "model": V3, "method": "lora"}, 87.23),
    ({"table": 1, "model": RL, "method": "hadapter"}, 86.40),
    ({"table": 4, "method": "dcft", "kernel": 12}, 87.09),
    ({"table": 4, "method": "full"}, 87.28),
]

PARAM_SPOT_CHECKS: list[tuple[dict[str, object], str, float | None]] = [
    ({"table": 1, "model": V3, "method": "dcft", "variant": "efficient"}, "0.024M", 24_000.0),
    ({"table": 1, "model": V3, "method": "full"}, "184M", 184_000_000.0),
    ({"table": 1, "model": RL, "method": "lorafa"}, "3.7M", 3_700_000.0),
    ({"table": 2, "method": "full"}, "1.5B", 1_500_000_000.0),
    ({"table": 3, "method": "lora"}, "0.08%", None),
    ({"table": 5, "stride": 1}, "165.5K", 165_500.0),
    ({"table": 6, "targets": "q,k,v,o"}, "18.4k", 18_400.0),
]


@pytest.mark.parametrize(("where", "expected"), SPOT_CHECKS)
def test_spot_check_cell(results: pd.DataFrame, where: dict[str, object], expected: float) -> None:
    assert _one(results, **where)["value"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("where", "expected"), TIME_SPOT_CHECKS)
def test_spot_check_time(times: pd.DataFrame, where: dict[str, object], expected: float) -> None:
    assert _one(times, **where)["hours"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("where", "expected"), AVERAGE_SPOT_CHECKS)
def test_spot_check_average(
    averages: pd.DataFrame, where: dict[str, object], expected: float
) -> None:
    assert _one(averages, **where)["value"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("where", "printed", "count"), PARAM_SPOT_CHECKS)
def test_spot_check_params(
    results: pd.DataFrame, where: dict[str, object], printed: str, count: float | None
) -> None:
    rows = _select(results, **where)
    assert len(rows) > 0
    assert set(rows["params_paper"]) == {printed}
    if count is None:
        assert rows["params"].isna().all()
    else:
        assert set(rows["params"]) == {count}


# ---------------------------------------------------------------------------------------------
# every printed row, re-rendered from the CSVs
# ---------------------------------------------------------------------------------------------
# Row key -> the row as the paper text prints it (PDF extraction artifacts kept, e.g. "Q,V )").
# Table 1/2/3/6 keys: (table, model, method, variant or targets); Table 4: (4, "acc"|"time",
# method, kernel); Table 5: (5, "acc"|"time", stride).
PRINTED_ROWS: dict[tuple[object, ...], str] = {
    (1, V3, "full", ""): "Fine-Tune 184M 69.21 95.64 89.22 91.10 91.59 89.98/89.95 93.78 82.49 87.82",
    (1, V3, "bitfit", ""): "Bitfit 0.1M 68.70 94.38 87.16 86.68 89.71 87.45/87.45 91.90 76.12 85.18",
    (1, V3, "hadapter", ""): "HAdapter 0.31M 67.65 95.41 89.25 90.18 91.31 90.10/90.02 93.52 83.39 87.60",
    (1, V3, "padapter", ""): "PAdapter 0.3M 69.06 94.72 89.71 90.01 91.38 89.89/90.06 93.87 84.48 87.90",
    (1, V3, "lora", ""): "LoRA 0.17M 68.60 94.95 88.24 89.79 91.41 90.09/90.28 93.35 81.29 87.23",
    (1, V3, "sora", ""): "SoRA 0.12M 70.24 95.14 89.22 90.13 91.41 90.08/90.41 93.43 83.02 87.85",
    (1, V3, "lorafa", ""): "LoRA-FA 0.12M 70.24 95.14 89.22 90.13 91.41 90.08/90.41 93.43 83.02 87.85",
    (1, V3, "dcft", "efficient"): "DCFT∆(ours) 0.024M 71.07 95.53 90.93 89.20 91.56 89.40/89.63 93.59 88.45 88.73",
    (1, V3, "dcft", "best"): "DCFT†(ours) 0.079M 70.43 96.10 91.42 89.60 91.76 89.97/90.12 94.14 88.45 88.99",
    (1, RL, "full", ""): "Fine-Tune 335M 68.0 96.4 90.9 92.2 92.4 90.2 94.7 86.6 88.93",
    (1, RL, "hadapter", ""): "HAdapter 0.8M 66.3 96.3 87.7 91.5 91.5 90.3 94.7 72.9 86.40",
    (1, RL, "padapter", ""): "PAdapter 0.8M 67.8 96.6 89.7 91.7 91.9 90.5 94.8 83.8 88.35",
    (1, RL, "lora", ""): "LoRA 0.8M 68.0 96.2 90.2 91.1 91.9 90.0 94.4 86.3 88.51",
    (1, RL, "lorafa", ""): "LoRA-FA 3.7M 68.0 96.0 90.0 91.1 92.0 90.1 94.4 86.1 88.46",
    (1, RL, "dcft", "efficient"): "DCFT∆(ours) 0.06M 68.5 96.0 90.9 90.6 92.2 90.1 94.2 87.0 88.69",
    (1, RL, "dcft", "best"): "DCFT†(ours) 0.21M 69.3 96.4 90.7 91.5 92.2 90.5 95.1 89.9 89.31",
    (2, V2, "full", ""): "Fine-Tune 1.5B 72.0 97.2 92.9 96.0",
    (2, V2, "lora", ""): "LoRA 4.7M 72.4 96.9 93.0 96.0",
    (2, V2, "dcft", "efficient"): "DCFT∆(ours) 0.18M 73.0 96.8 93.1 96.2",
    (3, V3, "full", ""): "Fine-Tune 184M 86.0 / 92.7 85.4 / 88.4",
    (3, V3, "hadapter", ""): "HAdapter 0.08% 84.4 / 91.5 83.4 / 86.6",
    (3, V3, "padapter", ""): "PAdapter 0.08% 84.4 / 91.7 84.2 / 87.2",
    (3, V3, "lora", ""): "LoRA 0.08% 86.6 / 92.9 83.6 / 86.7",
    (3, V3, "dcft", ""): "DCFT(ours) 0.04% 87.3 / 93.4 84.7 / 87.7",
    (4, "acc", "full", None): "Full FT Acc 95.63 69.19 94.03 83.75 89.46 91.60 87.28",
    (4, "acc", "dcft", 2): "DCFT(d = 2) Acc 96.10 70.43 94.14 88.45 91.42 91.76 88.72",
    (4, "time", "dcft", 2): "0.079M Time 9.57h 0.97h 13.67h 1.63h 1.25h 0.97h 4.68h",
    (4, "acc", "dcft", 4): "DCFT(d = 4) Acc 95.76 69.24 93.76 88.45 90.20 91.80 88.20",
    (4, "time", "dcft", 4): "0.041M Time 7.32h 0.68h 12.27h 1.47h 1.27h 0.79h 3.97h",
    (4, "acc", "dcft", 6): "DCFT(d = 6) Acc 95.07 70.69 93.65 86.28 89.95 91.73 87.90",
    (4, "time", "dcft", 6): "0.029M Time 6.97h 0.64h 12.16h 1.45h 1.24h 0.77h 3.87h",
    (4, "acc", "dcft", 8): "DCFT(d = 8) Acc 95.53 71.07 93.59 88.45 90.93 91.56 88.52",
    (4, "time", "dcft", 8): "0.024M Time 5.01h 0.54h 10.19h 1.08h 0.98h 0.63h 3.16h",
    (4, "acc", "dcft", 12): "DCFT(d = 12) Acc 95.76 67.87 93.57 84.12 89.46 91.73 87.09",
    (4, "time", "dcft", 12): "0.023M Time 5.43h 0.62h 11.45h 1.28h 1.05h 0.72h 3.43h",
    (5, "acc", 1): "DCFT(step= 1) Acc 70.96 90.69 91.48 88.45",
    (5, "time", 1): "165.5K Time 1.99h 1.22h 1.71h 1.62h",
    (5, "acc", 2): "DCFT(step= 2) Acc 70.04 90.44 91.37 88.09",
    (5, "time", 2): "85K Time 0.89h 0.99h 0.89h 1.14h",
    (5, "acc", 4): "DCFT(step= 4) Acc 65.97 88.97 90.73 87.36",
    (5, "time", 4): "44.9k Time 1.03h 0.99h 0.86h 1.11h",
    (5, "acc", 8): "DCFT(step= 8) Acc 71.07 90.93 91.50 88.45",
    (5, "time", 8): "24.6k Time 0.54h 0.98h 0.63h 1.08h",
    (6, V3, "dcft", "q,k"): "DCFT(Q,K) 6k 64.99 87.25 90.55 83.03",
    (6, V3, "dcft", "q,v"): "DCFT(Q,V ) 6k 64.50 89.95 91.43 83.03",
    (6, V3, "dcft", "q,k,v"): "DCFT(Q,K,V ) 9k 65.31 88.97 91.24 84.12",
    (6, V3, "dcft", "q,k,v,o"): "DCFT(Q,K,V,O) 18.4k 68.37 89.95 91.50 85.92",
    (6, V3, "dcft", "all"): "DCFT(ALL) 24k 71.06 90.93 91.56 88.45",
}  # fmt: skip

LABELS = {"full": "Fine-Tune", "bitfit": "Bitfit", "hadapter": "HAdapter", "padapter": "PAdapter",
          "lora": "LoRA", "sora": "SoRA", "lorafa": "LoRA-FA"}  # fmt: skip
DCFT_LABELS = {1: {"efficient": "DCFT∆(ours)", "best": "DCFT†(ours)"},
               2: {"efficient": "DCFT∆(ours)"}, 3: {"": "DCFT(ours)"}}  # fmt: skip
T6_LABELS = {"q,k": "DCFT(Q,K)", "q,v": "DCFT(Q,V )", "q,k,v": "DCFT(Q,K,V )",
             "q,k,v,o": "DCFT(Q,K,V,O)", "all": "DCFT(ALL)"}  # fmt: skip
COLUMNS = {1: ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"],
           2: ["cola", "sst2", "stsb", "qnli"],
           4: ["sst2", "cola", "qnli", "rte", "mrpc", "stsb"],
           5: ["cola", "mrpc", "stsb", "rte"], 6: ["cola", "mrpc", "stsb", "rte"]}  # fmt: skip


def _render_all() -> dict[tuple[object, ...], str]:
    """Rebuild every printed row from the raw CSV text (trailing zeros kept as printed)."""
    groups: dict[tuple[object, ...], list[dict[str, str]]] = {}
    for row in _raw("results.csv"):
        table = int(row["table"])
        if table in (1, 2, 3):
            key: tuple[object, ...] = (table, row["model"], row["method"], row["variant"])
        elif table == 4:
            key = (4, "acc", row["method"], int(row["kernel"]) if row["kernel"] else None)
        elif table == 5:
            key = (5, "acc", int(row["stride"]))
        else:
            key = (6, row["model"], row["method"], row["targets"])
        groups.setdefault(key, []).append(row)
    avg = {}
    for row in _raw("averages.csv"):
        kernel = int(row["kernel"]) if row["kernel"] else None
        if row["table"] == "1":
            avg[(1, row["model"], row["method"], row["variant"])] = row["value"]
        else:
            avg[(4, "acc", row["method"], kernel)] = row["value"]

    rendered: dict[tuple[object, ...], str] = {}
    for key, rows in groups.items():
        table = int(rows[0]["table"])
        method, variant, params = rows[0]["method"], rows[0]["variant"], rows[0]["params_paper"]
        assert {r["params_paper"] for r in rows} == {params}, key
        if table == 3:
            cells = {(r["task"], r["metric"]): r["value"] for r in rows}
            label = DCFT_LABELS[3][variant] if method == "dcft" else LABELS[method]
            pairs = [
                f"{cells[t, 'exact_match']} / {cells[t, 'f1']}" for t in ("squad_v1", "squad_v2")
            ]
            rendered[key] = " ".join([label, params, *pairs])
            continue
        cells = {}
        for r in rows:
            if r["task"] == "mnli" and r["split"]:
                cells.setdefault("mnli", {})[r["split"]] = r["value"]
            else:
                assert r["task"] not in cells, key
                cells[r["task"]] = r["value"]
        if isinstance(cells.get("mnli"), dict):
            cells["mnli"] = f"{cells['mnli']['matched']}/{cells['mnli']['mismatched']}"
        assert set(cells) == set(COLUMNS[table]), key
        values = [cells[task] for task in COLUMNS[table]]
        if table in (1, 2):
            label = DCFT_LABELS[table][variant] if method == "dcft" else LABELS[method]
            rendered[key] = " ".join([label, params, *values, *([avg[key]] if table == 1 else [])])
        elif table == 4:
            label = "Full FT" if method == "full" else f"DCFT(d = {rows[0]['kernel']})"
            rendered[key] = " ".join([label, "Acc", *values, avg[key]])
            if method == "dcft":
                hours = {
                    t["task"]: t["hours"]
                    for t in _raw("times.csv")
                    if t["table"] == "4" and t["kernel"] == rows[0]["kernel"]
                }
                cols = [*COLUMNS[4], "avg"]
                rendered[(4, "time", method, key[3])] = " ".join(
                    [params, "Time", *(f"{hours[c]}h" for c in cols)]
                )
        elif table == 5:
            stride = rows[0]["stride"]
            rendered[key] = " ".join([f"DCFT(step= {stride})", "Acc", *values])
            hours = {
                t["task"]: t["hours"]
                for t in _raw("times.csv")
                if t["table"] == "5" and t["stride"] == stride
            }
            rendered[(5, "time", int(stride))] = " ".join(
                [params, "Time", *(f"{hours[c]}h" for c in COLUMNS[5])]
            )
        else:
            rendered[key] = " ".join([T6_LABELS[rows[0]["targets"]], params, *values])
    return rendered


def test_every_printed_row_matches_the_csvs() -> None:
    rendered = _render_all()
    assert set(rendered) == set(PRINTED_ROWS)
    for key, printed in PRINTED_ROWS.items():
        assert rendered[key] == printed, key


def test_printed_rows_appear_in_the_paper_text() -> None:
    if not PAPER_TEXT.is_file():
        pytest.skip(f"paper text not available at {PAPER_TEXT}")
    lines = PAPER_TEXT.read_text(encoding="utf-8").splitlines()
    missing = [row for row in PRINTED_ROWS.values() if not any(row in line for line in lines)]
    assert not missing


def test_times_csv_has_no_row_outside_the_printed_tables() -> None:
    rows = _raw("times.csv")
    keys = {(int(r["table"]), int(r["kernel"]), int(r["stride"])) for r in rows}
    assert keys == {(4, k, k) for k in (2, 4, 6, 8, 12)} | {(5, 8, s) for s in (1, 2, 4, 8)}


# ---------------------------------------------------------------------------------------------
# (b) averages
# ---------------------------------------------------------------------------------------------
# Rows whose printed Avg. is not reproduced (within rounding) by ANY averaging convention.
KNOWN_AVERAGE_SLIPS: dict[tuple[object, ...], str] = {
    (1, V3, "full", ""): "printed 87.82; 8-task mean (MNLI = mean of m/mm) is 87.87",
    (1, V3, "bitfit", ""): "printed 85.18; 8-task mean (MNLI = mean of m/mm) is 85.26",
    (1, RL, "dcft", "best"): "printed 89.31; 8-task mean is 89.45",
}
KNOWN_TIME_AVERAGE_SLIPS: dict[int, str] = {
    8: "Table 4 d=8 Avg. time printed 3.16h; mean of the six printed times is 3.07h",
}


def _mnli_candidates(matched: float, mismatched: float) -> dict[str, list[float]]:
    return {
        "mnli_mean_of_m_mm": [(matched + mismatched) / 2],
        "mnli_matched_only": [matched],
        "mnli_mismatched_only": [mismatched],
        "mnli_both_as_two_tasks": [matched, mismatched],
    }


def _table1_candidate_means(results: pd.DataFrame, model: str, method: str, variant: str) -> dict:
    rows = _select(results, table=1, model=model, method=method, variant=variant)
    others = rows[rows["task"] != "mnli"]["value"].tolist()
    assert len(others) == 7
    mnli = rows[rows["task"] == "mnli"].set_index("split")["value"]
    if set(mnli.index) == {"matched", "mismatched"}:
        extra = _mnli_candidates(mnli["matched"], mnli["mismatched"])
    else:  # a single MNLI number: every convention uses it once
        assert list(mnli.index) == [""]
        extra = _mnli_candidates(mnli[""], mnli[""])
        extra["mnli_both_as_two_tasks"] = [mnli[""]]
    return {name: mean(others + values) for name, values in extra.items()}


def test_table1_average_convention(results: pd.DataFrame, averages: pd.DataFrame) -> None:
    """MNLI counts as one task, the mean of matched and mismatched; 8 tasks in all."""
    worst: dict[str, float] = {}
    unexplained = set()
    for row in _select(averages, table=1).itertuples():
        key = (1, row.model, row.method, row.variant)
        means = _table1_candidate_means(results, row.model, row.method, row.variant)
        errors = {name: abs(value - row.value) for name, value in means.items()}
        if min(errors.values()) > AVG_TOL:
            unexplained.add(key)
            continue
        for name, error in errors.items():
            worst[name] = max(worst.get(name, 0.0), error)
    assert unexplained == {k for k in KNOWN_AVERAGE_SLIPS if k[0] == 1}
    assert worst["mnli_mean_of_m_mm"] <= AVG_TOL
    # the convention is determined: every alternative misses at least one printed average
    assert all(err > AVG_TOL for name, err in worst.items() if name != "mnli_mean_of_m_mm")


@pytest.mark.parametrize("key", sorted(KNOWN_AVERAGE_SLIPS, key=str))
def test_known_average_slips_are_real_and_flagged(
    results: pd.DataFrame, averages: pd.DataFrame, key: tuple[object, ...]
) -> None:
    _, model, method, variant = key
    row = _one(averages, table=1, model=model, method=method, variant=variant)
    means = _table1_candidate_means(results, model, method, variant)
    assert all(abs(value - row["value"]) > 0.03 for value in means.values())
    assert row["note"], f"{key} not flagged in averages.csv"


def test_table4_accuracy_averages(results: pd.DataFrame, averages: pd.DataFrame) -> None:
    rows = _select(averages, table=4)
    assert len(rows) == 6
    for row in rows.itertuples():
        where = {"table": 4, "method": row.method}
        if row.method == "dcft":
            where["kernel"] = row.kernel
        values = _select(results, **where)["value"]
        assert len(values) == 6
        assert abs(values.mean() - row.value) <= AVG_TOL, row


def test_table4_time_averages(times: pd.DataFrame) -> None:
    for kernel in (2, 4, 6, 8, 12):
        rows = _select(times, table=4, kernel=kernel)
        per_task = rows[rows["task"] != "avg"]["hours"]
        assert len(per_task) == 6
        printed = _one(rows, task="avg")
        error = abs(per_task.mean() - printed["hours"])
        if kernel in KNOWN_TIME_AVERAGE_SLIPS:
            assert error > 0.05 and printed["note"], kernel
        else:
            assert error <= AVG_TOL, kernel


# ---------------------------------------------------------------------------------------------
# (c) the paper's slips are transcribed as printed and flagged
# ---------------------------------------------------------------------------------------------
README = PAPER_DIR / "README.md"


def test_sora_and_lorafa_rows_of_table1_are_identical_and_flagged(
    results: pd.DataFrame, averages: pd.DataFrame
) -> None:
    cols = ["task", "split", "metric", "value", "params_paper"]
    sora = _select(results, table=1, model=V3, method="sora")[cols].reset_index(drop=True)
    lorafa = _select(results, table=1, model=V3, method="lorafa")[cols].reset_index(drop=True)
    assert len(sora) == 9
    pd.testing.assert_frame_equal(sora, lorafa)
    avg = [_one(averages, table=1, model=V3, method=m)["value"] for m in ("sora", "lorafa")]
    assert avg[0] == avg[1] == 87.85
    flagged = _select(results, table=1, model=V3)
    flagged = flagged[flagged["method"].isin(["sora", "lorafa"])]
    assert flagged["note"].str.contains("copy slip").all()
    assert "LoRA-FA" in README.read_text(encoding="utf-8")


def test_cross_table_consistency_and_known_disagreements(
    results: pd.DataFrame, times: pd.DataFrame
) -> None:
    def dcft(table: int, **where: object) -> pd.Series:
        rows = _select(results, table=table, model=V3, method="dcft", **where)
        return rows.set_index(["task", "split"])["value"]

    t1_eff, t1_best = dcft(1, variant="efficient"), dcft(1, variant="best")
    t4_d8, t4_d2 = dcft(4, kernel=8), dcft(4, kernel=2)
    t5_s8, t6_all = dcft(5, stride=8), dcft(6, targets="all")
    # Table 4 d=8 / d=2 are exactly Table 1's DCFT∆ / DCFT† on the six shared tasks
    assert (t4_d8 == t1_eff[t4_d8.index]).all()
    assert (t4_d2 == t1_best[t4_d2.index]).all()
    # Table 5 step=8 and Table 6 ALL repeat Table 4 d=8, except one cell each (flagged)
    diff5 = t5_s8[t5_s8 != t4_d8[t5_s8.index]]
    assert diff5.to_dict() == {("stsb", ""): 91.50}
    assert t4_d8["stsb", ""] == 91.56
    diff6 = t6_all[t6_all != t4_d8[t6_all.index]]
    assert diff6.to_dict() == {("cola", ""): 71.06}
    assert t4_d8["cola", ""] == 71.07
    assert "91.56" in _one(results, table=5, stride=8, task="stsb")["note"]
    assert "71.07" in _one(results, table=6, targets="all", task="cola")["note"]
    # Table 5 step=8 times are Table 4 d=8 times
    t4 = _select(times, table=4, kernel=8).set_index("task")["hours"]
    t5 = _select(times, table=5, stride=8).set_index("task")["hours"]
    assert (t5 == t4[t5.index]).all()
    # Table 4's Full FT row differs from Table 1's on all six shared tasks (flagged)
    full4 = _select(results, table=4, method="full").set_index("task")["value"]
    full1 = _select(results, table=1, model=V3, method="full", split="").set_index("task")["value"]
    assert (full4 != full1[full4.index]).all()
    assert _select(results, table=4, method="full")["note"].str.contains("Table 1").all()


def test_table3_slips_flagged(results: pd.DataFrame) -> None:
    t3 = _select(results, table=3)
    baselines = t3[t3["method"].isin(["hadapter", "padapter", "lora"])]
    assert set(baselines["params_paper"]) == {"0.08%"}
    assert baselines["note"].str.contains("0.08%").all()
    dcft = t3[t3["method"] == "dcft"]
    assert dcft["kernel"].isna().all() and dcft["stride"].isna().all()
    assert dcft["note"].str.contains("kernel size not stated").all()


def test_readme_lists_the_slips() -> None:
    text = README.read_text(encoding="utf-8")
    for needle in ("87.82", "85.18", "89.31", "3.16", "71.06", "91.50", "0.08%", "24.6k"):
        assert needle in text, needle


# ---------------------------------------------------------------------------------------------
# (d) shape, keys, parsing
# ---------------------------------------------------------------------------------------------
EXPECTED_ROWS = {
    (1, V3): 9 * 9,  # 9 methods x (7 tasks + MNLI m + MNLI mm)
    (1, RL): 7 * 8,  # 7 methods x 8 tasks (one MNLI number)
    (2, V2): 3 * 4,
    (3, V3): 5 * 2 * 2,  # 5 methods x 2 datasets x (EM, F1)
    (4, V3): 6 * 6,  # Full FT + 5 kernels, 6 tasks
    (5, V3): 4 * 4,
    (6, V3): 5 * 4,
}


def test_row_counts(results: pd.DataFrame, averages: pd.DataFrame, times: pd.DataFrame) -> None:
    counts = Counter(zip(results["table"], results["model"], strict=True))
    assert dict(counts) == EXPECTED_ROWS
    assert len(results) == 241
    assert Counter(averages["table"]) == {1: 16, 4: 6}
    assert Counter(times["table"]) == {4: 5 * 7, 5: 4 * 4}


def test_unique_keys(results: pd.DataFrame, averages: pd.DataFrame, times: pd.DataFrame) -> None:
    assert not results.duplicated(KEY).any()
    assert not averages.duplicated(["table", "model", "method", "variant", "kernel"]).any()
    assert not times.duplicated(["table", "kernel", "stride", "task"]).any()


def test_columns_and_vocabularies(results: pd.DataFrame) -> None:
    assert list(results.columns) == [*KEY[:4], "params_paper", "params", *KEY[4:], "value", "note"]
    assert set(results["model"]) == {V3, RL, V2}
    assert set(results["method"]) <= {"full", "bitfit", "hadapter", "padapter", "lora", "sora",
                                      "lorafa", "dcft"}  # fmt: skip
    assert set(results["variant"]) == {"", "efficient", "best"}
    assert (results.loc[results["variant"] != "", "method"] == "dcft").all()
    tasks = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "squad_v1", "squad_v2"}
    assert set(results["task"]) == tasks
    assert set(results["split"]) == {"", "matched", "mismatched"}
    assert (results.loc[results["split"] != "", "task"] == "mnli").all()
    expected_metric = {"cola": {"matthews_correlation"}, "stsb": {"pearson"},
                       "squad_v1": {"exact_match", "f1"}, "squad_v2": {"exact_match", "f1"}}  # fmt: skip
    for task, metrics in results.groupby("task")["metric"]:
        assert set(metrics) == expected_metric.get(task, {"accuracy"}), task
    assert set(results["targets"]) == {"", "q,k", "q,v", "q,k,v", "q,k,v,o", "all"}


def test_dcft_configuration_columns(results: pd.DataFrame) -> None:
    base = results[results["method"] != "dcft"]
    assert base["kernel"].isna().all() and base["stride"].isna().all()
    assert (base["targets"] == "").all()
    dcft = results[(results["method"] == "dcft") & (results["table"] != 3)]
    assert dcft["kernel"].notna().all() and dcft["stride"].notna().all()
    kernels = {(t, v): set(g) for (t, v), g in dcft.groupby(["table", "variant"])["kernel"]}
    assert kernels == {(1, "best"): {2}, (1, "efficient"): {8}, (2, "efficient"): {8},
                       (4, ""): {2, 4, 6, 8, 12}, (5, ""): {8}, (6, ""): {8}}  # fmt: skip
    assert set(_select(dcft, table=5)["stride"]) == {1, 2, 4, 8}
    stride_is_kernel = dcft[dcft["table"] != 5]
    assert (stride_is_kernel["stride"] == stride_is_kernel["kernel"]).all()


def test_values_parse(results: pd.DataFrame, averages: pd.DataFrame, times: pd.DataFrame) -> None:
    for frame, column in ((results, "value"), (averages, "value"), (times, "hours")):
        assert frame[column].notna().all()
        assert frame[column].between(0, 100).all()
    for row in _raw("results.csv") + _raw("averages.csv"):
        assert float(row["value"]) >= 0  # plain decimal text, as printed
        assert row["value"].replace(".", "", 1).isdigit(), row["value"]


def test_params_column_matches_printed_text(results: pd.DataFrame) -> None:
    for printed, count in zip(results["params_paper"], results["params"], strict=True):
        parsed = parse_param_count(printed)
        if parsed is None:
            assert math.isnan(count), printed
        else:
            assert count == parsed, printed
    # only Table 4's Full FT row prints no #Params
    blank = results[results["params_paper"] == ""]
    assert set(zip(blank["table"], blank["method"], strict=True)) == {(4, "full")}
    assert parse_param_count("0.024M") == 24_000.0
    assert parse_param_count("165.5K") == 165_500.0
    assert parse_param_count("0.08%") is None
    with pytest.raises(ValueError):
        parse_param_count("12X")
