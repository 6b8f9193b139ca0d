"""The ``gpus`` launcher's GPU pool: each worker process gets a different GPU."""

from __future__ import annotations

import os

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dcft.run import gpu_pool
from dcft.run.config import CONF_DIR


@pytest.fixture
def fresh_worker(monkeypatch):
    """A process that holds no GPU yet (as a new joblib worker)."""

    def reset() -> None:
        monkeypatch.setattr(gpu_pool, "_lock", None)

    reset()
    monkeypatch.setenv(gpu_pool.GPUS_ENV, "3,5")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return reset


def test_workers_claim_distinct_gpus_and_a_third_is_refused(fresh_worker, tmp_path, monkeypatch):
    held = []
    for expected in ("3", "5"):
        fresh_worker()
        assert gpu_pool.claim_gpu(tmp_path) == expected
        assert os.environ["CUDA_VISIBLE_DEVICES"] == expected
        held.append(gpu_pool._lock)
    fresh_worker()
    with pytest.raises(RuntimeError, match=r"every GPU in \['3', '5'\] is claimed.*DCFT_GPUS"):
        gpu_pool.claim_gpu(tmp_path)
    held[0].close()  # a worker exits: its GPU is free again
    assert gpu_pool.claim_gpu(tmp_path) == "3"


def test_a_worker_keeps_its_gpu_for_later_jobs(fresh_worker, tmp_path):
    assert gpu_pool.claim_gpu(tmp_path) == "3"
    assert gpu_pool.claim_gpu(tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_no_gpus_means_nothing_to_claim(fresh_worker, tmp_path, monkeypatch):
    monkeypatch.delenv(gpu_pool.GPUS_ENV)
    monkeypatch.setattr(gpu_pool, "_candidates", lambda: [])
    assert gpu_pool.claim_gpu(tmp_path) is None


def test_the_gpus_launcher_claims_through_a_job_callback(fresh_worker, tmp_path, monkeypatch):
    """hydra/launcher=gpus registers ClaimGpu as a job callback; Hydra instantiates it in the
    worker and calls on_job_start before the run, which claims the worker's GPU."""
    monkeypatch.setattr(gpu_pool.tempfile, "gettempdir", lambda: str(tmp_path))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=gpus"], return_hydra_config=True)
    assert "JoblibLauncher" in cfg.hydra.launcher._target_
    callback = instantiate(cfg.hydra.callbacks.claim_gpu)
    callback.on_job_start(config=cfg)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert (tmp_path / "dcft-gpu-locks" / "gpu3.lock").exists()
