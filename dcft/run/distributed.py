"""Which process of a multi-GPU run (torchrun / accelerate launch) this is.

Every process trains (the Trainer wraps the model in DistributedDataParallel); only the main one
writes the record, the adapter, the predictions and the W&B run.
"""

from __future__ import annotations

import os


def process_rank() -> int:
    """Global rank from the launcher's environment (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0
