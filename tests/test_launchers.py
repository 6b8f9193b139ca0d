"""Sweeps through the launcher options of conf/hydra/launcher/ (those runnable on a CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FAST, REPO, place, records


def train(launch: list[str], tmp_path, tiny_data, *overrides: str) -> str:
    """``<launch> -m dcft.train <overrides>`` in a subprocess, as a user types it; its stdout."""
    argv = [*launch, "-m", "dcft.train", *overrides, *FAST, *place(tmp_path, tiny_data)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_submitit_local_runs_a_two_run_sweep(tmp_path, tiny_data):
    multirun = ["--multirun", "hydra/launcher=local", "task=sst2", "method=dcft,lora"]
    train([sys.executable], tmp_path, tiny_data, *multirun)

    saved = [json.loads(p.read_text()) for p in records(tmp_path / "results")]
    assert sorted(r["identity"]["method"] for r in saved) == ["dcft", "lora"]
    assert all(r["status"] == "finished" for r in saved)
    # Each run went through submitit: its job folder holds the submission and the job's log.
    submitit = list((tmp_path / "outputs" / "multirun").rglob(".submitit/*/*_log.out"))
    assert len(submitit) == 2


def test_torchrun_trains_one_run_over_two_processes(tmp_path, tiny_data):
    """Multi-GPU runs go through torchrun; on a CPU its processes train together over gloo.
    Only the main process writes the record."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    stdout = train(torchrun, tmp_path, tiny_data, "task=sst2", "method=dcft")

    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    assert record["status"] == "finished" and record["timing"]["optimizer_steps"] == 4
    # trainer.batch_size is global: 8 = 2 processes x 4, so 4 steps see 32 of the 48 examples.
    assert record["evaluations"][-1]["epoch"] == pytest.approx(32 / 48, abs=0.01)
    assert record["run_settings"]["batch"] == {
        "global_batch_size": 8,
        "per_device": 4,
        "processes": 2,
        "gradient_accumulation_steps": 1,
    }
    assert record["config"]["processes"] == 2
    assert "process 1 done; the main process writes the record" in stdout
