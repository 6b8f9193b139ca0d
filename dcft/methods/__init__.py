"""The method library: DCFT and its baselines as interchangeable methods applied by name."""

from . import adapters, dcft, lora, scaling, simple, sora  # noqa: F401  (registers the methods)
from .api import (
    adapter_layers,
    adapter_state,
    applied_method,
    apply_method,
    count_parameters,
    head_parameter_names,
    load_adapter,
    merge,
    merged,
    read_adapter,
    regularizer,
    save_adapter,
    unmerge,
)
from .registry import METHODS, Method, get_method, register
from .targets import ARCHITECTURES, TARGET_NAMES

__all__ = [
    "ARCHITECTURES",
    "METHODS",
    "TARGET_NAMES",
    "Method",
    "adapter_layers",
    "adapter_state",
    "applied_method",
    "apply_method",
    "count_parameters",
    "get_method",
    "head_parameter_names",
    "load_adapter",
    "merge",
    "merged",
    "read_adapter",
    "register",
    "regularizer",
    "save_adapter",
    "unmerge",
]
