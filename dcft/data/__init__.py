"""Data layer: task registry, raw GLUE/SQuAD loading (local files or the Hub), tokenisation.

The names below are imported from their modules when first used (PEP 562), so that a task's
facts, its files and a cached data fingerprint (what a run's key needs) come without loading
``datasets`` or ``transformers``.
"""

import importlib
from typing import Any

_EXPORTS = {
    "DataFormatError": "errors",
    "DataUnavailableError": "errors",
    "data_fingerprint": "fingerprint",
    "tokenize_glue": "glue_tokenize",
    "DATA_DIR_ENV": "location",
    "resolve_data_dir": "location",
    "RawData": "sources",
    "load_raw_splits": "sources",
    "load_task_data": "sources",
    "load_test_data": "sources",
    "prepare_squad_eval_features": "squad_features",
    "prepare_squad_train_features": "squad_features",
    "tokenize_squad": "squad_features",
    "postprocess_squad": "squad_postprocess",
    "postprocess_squad_predictions": "squad_postprocess",
    "TASKS": "tasks",
    "TaskSpec": "tasks",
    "get_task": "tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
