"""dcft: a reproduction harness for DCFT (arXiv 2503.01419) and its PEFT baselines.

The small public API (imported on first use, so that ``python -m dcft.train --help`` does not
load torch)::

    import dcft
    dcft.apply_method(model, "dcft", kernel=8)   # in place; returns the model
    dcft.count_parameters(model)                 # {"paper": ..., "with_head": ..., ...}
    dcft.save_adapter(model, "adapter.safetensors")
    dcft.load_adapter(fresh_model, "adapter.safetensors")
    dcft.read_adapter("adapter.safetensors")     # method, options, tensors (no model needed)
    dcft.merge(model); dcft.unmerge(model)       # fold the update into the weights and back
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "METHODS",
    "apply_method",
    "count_parameters",
    "load_adapter",
    "merge",
    "read_adapter",
    "regularizer",
    "save_adapter",
    "unmerge",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("dcft.methods"), name)
    raise AttributeError(f"module 'dcft' has no attribute {name!r}")
