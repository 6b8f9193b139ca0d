"""Sweeps through the launcher options of conf/hydra/launcher/ (those runnable on a CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import CONF_DIR, FAST, place, records


def test_submitit_local_runs_a_two_run_sweep(tmp_path, tiny_data):
    argv = [
        sys.executable,
        "-m",
        "dcft.train",
        "--multirun",
        "hydra/launcher=local",
        "task=sst2",
        "method=dcft,lora",
        *FAST,
        *place(tmp_path, tiny_data),
    ]
    env = {**os.environ, "PYTHONPATH": str(CONF_DIR.parent), "WANDB_MODE": "disabled"}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    saved = [json.loads(p.read_text()) for p in records(tmp_path / "results")]
    assert sorted(r["identity"]["method"] for r in saved) == ["dcft", "lora"]
    assert all(r["status"] == "finished" for r in saved)
    # Each run went through submitit: its job folder holds the submission and the job's log.
    submitit = list((tmp_path / "outputs" / "multirun").rglob(".submitit/*/*_log.out"))
    assert len(submitit) == 2
