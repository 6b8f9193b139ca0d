"""Every command line answers bad input with one line on stderr naming the input and the valid
choices, and exit code 2 (argparse's), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, place, write_tiny_data

# (arguments after `python -m`, what the one line must name)
CASES = [
    (["dcft.sweep", "table9"], ["'table9'", "table1, table2"]),
    (["dcft.sweep", "table4", "--dry-run", "model=foo"], ["model/foo", "tiny-bert", "minilm"]),
    (["dcft.sweep", "table4", "--bogus"], ["--bogus", "--dry-run", "--scale"]),
    (["dcft.train", "model=foo", "--cfg", "job"], ["model/foo", "tiny-bert", "minilm"]),
    (["dcft.train", "trainer.lerning_rate=1"], ["lerning_rate", "learning_rate, batch_size"]),
    (["dcft.train", "seed=["], ["'seed=['"]),
    (["dcft.train", "+method.options.foo=1"], ["['foo']", "kernel, stride"]),
    (["dcft.report", "--tables", "9"], ["9", "1, 2, 3"]),
    (["dcft.report", "--runs", "no/such/folder"], ["no/such/folder", "no such folder"]),
    (["dcft.score", "foo", "x.json"], ["'foo'", "'cola'", "'squad_v2'"]),
    (["dcft.tools.params", "--bad"], ["--bad", "--out"]),
    (["dcft.tools.bench", "--device", "tpu"], ["'tpu'", "'auto', 'cpu', 'cuda'"]),
    (["dcft.tools.bench", "--repeats", "0"], ["--repeats", "'0'", ">= 1"]),
]


def run_module(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def assert_one_line_error(done: subprocess.CompletedProcess, names: list[str]) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert ": error: " in line
    for name in names:
        assert name in line, f"{name!r} missing from: {line}"
    return line


@pytest.mark.parametrize(("argv", "names"), CASES, ids=[" ".join(argv) for argv, _ in CASES])
def test_bad_arguments_get_one_line_and_exit_code_2(argv, names, tmp_path):
    assert_one_line_error(run_module(argv, tmp_path), names)


@pytest.mark.slow
def test_train_refuses_bad_settings_and_data_in_one_line(tmp_path):
    """Refused settings (before anything loads) and a malformed data file (naming file and
    line), past Hydra's composition, are bad input too."""
    argv = ["dcft.train", "task=rte", *FAST, *place(tmp_path, tmp_path / "data")]
    data = write_tiny_data(tmp_path / "data", n_train=12, n_eval=6)
    done = run_module([*argv, "trainer.learning_rate=-1"], tmp_path)
    assert_one_line_error(done, ["trainer.learning_rate", "-1"])

    train = data / "glue" / "RTE" / "train.tsv"
    lines = train.read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tmaybe"
    train.write_text("\n".join(lines) + "\n")
    line = assert_one_line_error(run_module(argv, tmp_path), [str(train), "line 4", "'maybe'"])
    assert "entailment" in line  # the valid labels
    assert not list((tmp_path / "results").rglob("*.json"))  # no record
