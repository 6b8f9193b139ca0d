"""dcft: a reproduction harness for DCFT (arXiv 2503.01419) and its PEFT baselines.

The small public API::

    import dcft
    dcft.apply_method(model, "dcft", kernel=8)   # in place; returns the model
    dcft.count_parameters(model)                 # {"paper": ..., "with_head": ..., ...}
    dcft.save_adapter(model, "adapter.safetensors")
    dcft.load_adapter(fresh_model, "adapter.safetensors")
"""

from .methods import (
    METHODS,
    apply_method,
    count_parameters,
    load_adapter,
    merge,
    regularizer,
    save_adapter,
    unmerge,
)

__all__ = [
    "METHODS",
    "apply_method",
    "count_parameters",
    "load_adapter",
    "merge",
    "regularizer",
    "save_adapter",
    "unmerge",
]
