"""One GPU per worker process for parallel sweeps on one machine (the ``gpus`` launcher).

joblib reuses worker processes, and CUDA_VISIBLE_DEVICES only takes effect before CUDA starts,
so each worker claims one GPU for its whole life: it takes an exclusive lock on
``<lock_dir>/gpu<N>.lock`` for the first free N in ``DCFT_GPUS`` (default: every visible GPU)
and keeps it until the process exits, when the operating system releases it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

GPUS_ENV = "DCFT_GPUS"
log = logging.getLogger("dcft")
_lock: IO[str] | None = None


def _candidates() -> list[str]:
    """GPU indices to share out. Counted with nvidia-smi, not torch: CUDA must not start before
    CUDA_VISIBLE_DEVICES is set."""
    listed = os.environ.get(GPUS_ENV) or os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [g.strip() for g in listed.split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def claim_gpu(lock_dir: str | Path | None = None) -> str | None:
    """Claim a free GPU for this process and expose only it; None when there is nothing to claim
    (no GPUs) or the process already holds one. Raises when every listed GPU is taken."""
    global _lock
    if _lock is not None:
        return None
    gpus = _candidates()
    if not gpus:
        return None
    folder = Path(lock_dir or Path(tempfile.gettempdir()) / "dcft-gpu-locks")
    folder.mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        handle = (folder / f"gpu{gpu}.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _lock = handle
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        return gpu
    raise RuntimeError(
        f"every GPU in {gpus} is claimed by another worker; run at most {len(gpus)} jobs at once "
        f"(hydra.launcher.n_jobs) or list more GPUs in {GPUS_ENV}"
    )


class ClaimGpu(Callback):
    """Hydra job callback of the ``gpus`` launcher (conf/hydra/launcher/gpus.yaml): the job
    claims its worker's GPU before anything starts CUDA."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        gpu = claim_gpu()
        if gpu is not None:
            log.info(f"worker uses GPU {gpu}")
