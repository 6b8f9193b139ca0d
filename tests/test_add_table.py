"""Adding a table is one table file plus its paper CSV: in a copy of the package, a toy Table 7
(DCFT kernels 2 and 8 on RTE and MRPC) is listed, swept, reported and audited, no other file
edited."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dcft.run.records
from dcft.report.rows import printed_lines
from dcft.report.tables import TABLE_DIR, load_table
from tests.conftest import REPO, package_copy
from tests.test_report import write_run

TABLE7 = """\
title: "Table 7: toy, DCFT kernels on two tasks"
paper:
  scores: table7.csv
columns: [rte, mrpc]
label: "{method} d={kernel}"
rows:
  deberta-v3-base:
    - {method: dcft, options: {kernel: 2}}
    - {method: dcft, options: {kernel: 8}}
notes:
  - A toy table.
"""
PAPER7 = """\
table,model,method,variant,params_paper,params,kernel,stride,targets,task,split,metric,value,note
7,deberta-v3-base,dcft,,0.079M,79000.0,2,2,all,rte,,accuracy,88.45,
7,deberta-v3-base,dcft,,0.079M,79000.0,2,2,all,mrpc,,accuracy,91.42,
7,deberta-v3-base,dcft,,0.024M,24000.0,8,8,all,rte,,accuracy,88.45,
7,deberta-v3-base,dcft,,0.024M,24000.0,8,8,all,mrpc,,accuracy,90.93,
"""
# The W&B tags of a run Table 7 trains (no options: no printed row matches it, only sweeps do).
TAGS = """\
from dcft.run.identity import RunIdentity
from dcft.table_tags import tables_listing
identity = RunIdentity("default", "deberta-v3-base", "rte", "dcft", "dcft-k2-s2", {}, 0, "")
print(tables_listing(identity))
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package and the paper's numbers copied, plus Table 7's two files."""
    root = tmp_path_factory.mktemp("tree")
    package_copy(root)
    shutil.copytree(REPO / "results" / "paper", root / "results" / "paper")
    (root / "specs" / "table" / "table7.yaml").write_text(TABLE7, encoding="utf-8")
    (root / "results" / "paper" / "table7.csv").write_text(PAPER7, encoding="utf-8")
    return root


def run(tree: Path, *args: str) -> str:
    """``python ARGS`` importing the copy's dcft (no local data: the runs' keys name the Hub)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    env.pop("DCFT_DATA_DIR", None)
    done = subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_new_table_is_listed_and_swept_from_its_rows(tree: Path) -> None:
    assert run(tree, "-m", "dcft.sweep", "--list").split() == [f"table{n}" for n in range(1, 8)]
    assert "table7" not in run(tree, "-m", "dcft.sweep", "--list", "--scale", "mini").split()
    lines = run(tree, "-m", "dcft.sweep", "table7", "--list-runs", "results_dir=R").splitlines()
    assert lines[-1] == "20 runs: 20 to do"  # 2 rows x 2 tasks x the paper's 5 seeds
    planned = {line.split()[2] for line in lines[:20]}  # after "to do": the run's name
    assert planned == {
        f"deberta-v3-base-{task}-dcft-k{k}-s{k}-seed{seed}"
        for task in ("rte", "mrpc")
        for k in (2, 8)
        for seed in range(5)
    }
    assert run(tree, "-c", TAGS).strip() == "['table1', 'table4', 'table7']"


def test_the_new_table_is_reported_beside_the_papers_numbers(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dcft.run.records, "environment", dict)
    for seed in (0, 1):
        write_run(tmp_path / "runs", "rte", seed, 0.80 + seed / 100, options={"kernel": 2})
    out = tmp_path / "tables"
    run(
        tree,
        "-m",
        "dcft.report",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(out),
        "--tables",
        "7",
    )
    md = (out / "table7.md").read_text(encoding="utf-8")
    assert md.startswith("# Table 7: toy, DCFT kernels on two tasks\n")
    assert "| Method | Line | Setting | #Params | RTE | MRPC | Runs |" in md
    assert "| DCFT d=2 | paper |  | 0.079M | 88.45 | 91.42 |  |" in md
    assert "|  | ours | dcft-k2-s2 | 25,344 | 80.50 ± 0.71 (n=2) | — | 2 |" in md
    assert "| DCFT d=8 | paper |  | 0.024M | 88.45 | 90.93 |  |" in md
    assert "|  | ours | — | — | — | — | 0 |" in md
    assert "- A toy table." in md and (out / "table7.tex").is_file()


def test_the_new_table_is_in_the_parameter_audit(tree: Path, tmp_path: Path) -> None:
    run(tree, "-m", "dcft.tools.params", "--out", str(tmp_path))
    with (tmp_path / "params.csv").open(encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["table"] == "7"]
    assert [(r["setting"], r["ours"], r["paper"]) for r in rows] == [
        ("kernel=2", "83232", "0.079M"),
        ("kernel=8", "25344", "0.024M"),
    ]


def test_a_table_file_and_its_printed_lines_must_agree(tmp_path: Path) -> None:
    """Every printed line belongs to a row of the file and every row has printed lines; a
    mistyped key names the file."""
    table4 = yaml.safe_load((TABLE_DIR / "table4.yaml").read_text(encoding="utf-8"))
    rows = table4["rows"]["deberta-v3-base"]
    path = tmp_path / "table4.yaml"
    for broken, message in (
        (rows[:-1], "printed lines of no row"),
        ([*rows, {"method": "dcft", "options": {"kernel": 3}}], "nothing printed for .* kernel=3"),
    ):
        path.write_text(yaml.safe_dump({**table4, "rows": {"deberta-v3-base": broken}}))
        with pytest.raises(ValueError, match=message):
            printed_lines(load_table(path))
    path.write_text(yaml.safe_dump({**table4, "colums": table4["columns"]}))
    with pytest.raises(ValueError, match=r"table4.yaml: unknown \['colums'\]"):
        load_table(path)
