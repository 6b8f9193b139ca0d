"""Tiny random models of each supported architecture, and their shapes, for the method tests."""

from __future__ import annotations

import torch
from torch import nn

from dcft.run.models import build_model, repo_config

TINY = ("tiny-deberta", "tiny-roberta", "tiny-bert")
NUM_LABELS = 3


def tiny_model(name: str, seed: int = 0, task_kind: str = "classification") -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("config", name, task_kind=task_kind, num_labels=NUM_LABELS)
    return model.eval()


def tiny_shape(name: str) -> tuple[int, int, int]:
    """(hidden, intermediate, layers) straight from the JSON config."""
    config = repo_config(name)
    return config.hidden_size, config.intermediate_size, config.num_hidden_layers


def tiny_inputs(seed: int = 1, batch: int = 3, length: int = 9) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 1000, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0
    return {"input_ids": ids, "attention_mask": mask}
