"""The parameter audit on the real model shapes (meta device): the counts the issue names."""

from __future__ import annotations

import csv

import pytest

from dcft.report.paper import parse_param_count
from dcft.tools.params import main


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    main(["--out", str(out)])
    with (out / "params.csv").open() as f:
        rows = list(csv.DictReader(f))
    return rows, (out / "params.md").read_text()


def ours(rows, table, model, method, setting):
    [row] = [
        r
        for r in rows
        if (r["table"], r["model"], r["method"], r["setting"]) == (table, model, method, setting)
    ]
    return int(row["ours"])


@pytest.mark.parametrize(
    ("table", "model", "method", "setting", "count"),
    [
        ("1", "deberta-v3-base", "dcft", "kernel=8", 25_344),
        ("1", "roberta-large", "dcft", "kernel=8", 64_512),
        ("2", "deberta-v2-xxlarge", "dcft", "kernel=8", 184_320),
        ("1", "deberta-v3-base", "dcft", "kernel=2", 83_232),
        ("1", "roberta-large", "dcft", "kernel=2", 221_760),
        ("2", "deberta-v2-xxlarge", "dcft", "kernel=2", 664_704),
        ("1", "deberta-v3-base", "lora", "r=1", 165_888),
        ("1", "deberta-v3-base", "hadapter", "bottleneck=8", 313_536),
        ("1", "deberta-v3-base", "padapter", "bottleneck=16", 304_320),
        ("5", "deberta-v3-base", "dcft", "kernel=8 stride=1", 169_488),
        ("5", "deberta-v3-base", "dcft", "kernel=8 stride=2", 87_120),
        ("5", "deberta-v3-base", "dcft", "kernel=8 stride=4", 45_936),
        ("5", "deberta-v3-base", "dcft", "kernel=8 stride=8", 25_344),
        ("6", "deberta-v3-base", "dcft", "kernel=8 targets=['q', 'k']", 6_144),
        ("6", "deberta-v3-base", "dcft", "kernel=8 targets=['q', 'k', 'v']", 9_216),
        ("6", "deberta-v3-base", "dcft", "kernel=8 targets=['q', 'k', 'v', 'o']", 12_288),
        (
            "6",
            "deberta-v3-base",
            "dcft",
            "kernel=8 targets=['q', 'k', 'v', 'o', 'ffn_out']",
            18_816,
        ),
    ],
)
def test_counts(audit, table, model, method, setting, count):
    assert ours(audit[0], table, model, method, setting) == count


def test_every_table_is_audited_and_every_gap_is_explained(audit):
    rows, markdown = audit
    assert {r["table"] for r in rows} == {"1", "2", "4", "5", "6"}
    for row in rows:
        if row["ratio"] != "-" and abs(float(row["ratio"]) - 1) > 0.05:
            assert row["reason"] and row["reason"] != "UNEXPLAINED", row
    assert "UNEXPLAINED" not in markdown
    assert "| 5 | deberta-v3-base | dcft | kernel=8 stride=1 | 169,488 |" in markdown


def test_table6_qkvo_is_audited_both_ways(audit):
    """The printed 18.4K fits q,k,v,o plus one FFN matrix, not q,k,v,o; the cause is unknown."""
    qkvo = [r for r in audit[0] if r["table"] == "6" and r["paper"] == "18.4K"]
    assert [(int(r["ours"]), r["ratio"]) for r in qkvo] == [(12_288, "0.652"), (18_816, "0.999")]
    assert "Cause unknown" in qkvo[0]["reason"] and not qkvo[1]["reason"]


def test_paper_units():
    assert parse_param_count("0.024M") == 24_000
    assert parse_param_count("165.5K", binary=True) == 165.5 * 1024
    assert parse_param_count("0.023M", binary=True) == 0.023 * 1024**2
    assert parse_param_count("1.5B") == 1.5e9
