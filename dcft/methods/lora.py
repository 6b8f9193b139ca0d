"""LoRA (Hu et al., 2022) and LoRA-FA (A frozen at its random init, only B trains).

``y = base(x) + (alpha / r) * B A x`` with A (r x n_in) Kaiming-uniform and B (n_out x r) zero,
exactly as peft initialises it. ``constraint`` adds a low-rank constraint (see constraints.py);
``mpc_n`` puts a ReLU between A and B, which makes the update non-linear (no merge, no dense
delta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .constraints import constraint_terms, validate_constraint
from .layers import LinearAdapter, LowRankLinear
from .registry import LowRankMethod, MatrixOptions, register


class LoraLinear(LowRankLinear):
    def __init__(
        self,
        base: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        constraint: str = "none",
        freeze_a: bool = False,
    ) -> None:
        super().__init__(base)
        factory = {"device": base.weight.device, "dtype": torch.float32}
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_A.requires_grad_(not freeze_a)
        self.scale = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.constraint = constraint
        self.relu = constraint == "mpc_n"

    def factor_parameters(self) -> tuple[nn.Parameter, ...]:
        return self.lora_A, self.lora_B

    def build_factors(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a, (b * self.scale).T

    def fused(self) -> bool:
        return self.fuse and not (self.training and isinstance(self.dropout, nn.Dropout))

    def update(self, x: torch.Tensor) -> torch.Tensor:
        return super().update(self.dropout(x))

    def delta_weight(self) -> torch.Tensor:
        if self.constraint == "mpc_n":
            raise ValueError(
                "a LoRA update with the mpc_n ReLU is non-linear: no dense delta_weight"
            )
        return (self.lora_B @ self.lora_A) * self.scale

    def regularizer_terms(self) -> list[torch.Tensor]:
        return constraint_terms(self.constraint, self.lora_A, self.lora_B)


@dataclass
class LoraOptions(MatrixOptions):
    """r: rank; alpha: the update is scaled by alpha / r; dropout on the adapter input;
    constraint: none | orth | orth_sq | mpc_o | mpc_d | mpc_n, weighted by gamma."""

    r: int = 1
    alpha: float = 2.0
    dropout: float = 0.0
    constraint: str = "none"
    gamma: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")
        validate_constraint(self.constraint)


@register("lora")
class Lora(LowRankMethod):
    Options = LoraOptions
    freeze_a = False

    def make_layer(self, name: str, base: nn.Linear) -> LinearAdapter:
        o = self.options
        return LoraLinear(base, o.r, o.alpha, o.dropout, o.constraint, freeze_a=self.freeze_a)


@register("lorafa")
class LoraFA(Lora):
    """LoRA-FA (Zhang et al., 2023a): A stays at its random init; only B (zero-init) trains."""

    freeze_a = True
