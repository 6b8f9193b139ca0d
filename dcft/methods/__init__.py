"""The method library: DCFT and its baselines as interchangeable methods applied by name."""

import importlib
import pkgutil

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

# Every module of this package is imported, which registers its methods (@register): a new
# method file needs no line here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

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
