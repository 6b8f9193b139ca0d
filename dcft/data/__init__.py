"""Data layer: task registry, raw GLUE/SQuAD loading (local files or the Hub), tokenisation."""

from dcft.data.errors import DataFormatError, DataUnavailableError
from dcft.data.fingerprint import data_fingerprint
from dcft.data.glue_tokenize import tokenize_glue
from dcft.data.sources import (
    DATA_DIR_ENV,
    RawData,
    load_raw_splits,
    load_task_data,
    load_test_data,
    resolve_data_dir,
)
from dcft.data.squad_features import (
    prepare_squad_eval_features,
    prepare_squad_train_features,
    tokenize_squad,
)
from dcft.data.squad_postprocess import postprocess_squad, postprocess_squad_predictions
from dcft.data.tasks import TASKS, TaskSpec, get_task

__all__ = [
    "DATA_DIR_ENV",
    "TASKS",
    "DataFormatError",
    "DataUnavailableError",
    "RawData",
    "TaskSpec",
    "data_fingerprint",
    "get_task",
    "load_raw_splits",
    "load_task_data",
    "load_test_data",
    "postprocess_squad",
    "postprocess_squad_predictions",
    "prepare_squad_eval_features",
    "prepare_squad_train_features",
    "resolve_data_dir",
    "tokenize_glue",
    "tokenize_squad",
]
