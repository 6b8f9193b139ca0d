"""SoRA (Ding et al., 2023): LoRA with a gate vector between the factors, sparsified by a
proximal step.

``y = base(x) + (alpha / r) * ((x A^T) * g) B^T``. The gates are excluded from the main AdamW;
``SparseAdamW`` updates them after each main step and soft-thresholds them by ``xi`` (SoRA's
proximal gradient step), so ranks whose gate reaches zero drop out of the update and out of the
parameter count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .lora import LoraLinear
from .registry import LowRankMethod, MatrixOptions, register


class SoraLinear(LoraLinear):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base, r, alpha, dropout)
        self.lora_gate = nn.Parameter(torch.randn(r, device=base.weight.device))

    def factor_parameters(self) -> tuple[nn.Parameter, ...]:
        return self.lora_A, self.lora_B, self.lora_gate

    def build_factors(
        self, a: torch.Tensor, b: torch.Tensor, gate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return a, (b * (gate * self.scale)).T

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B * self.lora_gate) @ self.lora_A * self.scale

    def pruned_parameter_count(self) -> int:
        """Parameters of the ranks whose gate is exactly zero (A row, B column, gate)."""
        if self.lora_gate.is_meta:
            return 0
        zeros = int((self.lora_gate == 0).sum())
        return zeros * (self.in_features + self.out_features + 1)


class SparseAdamW(torch.optim.AdamW):
    """AdamW followed by soft-thresholding each parameter by ``xi`` (the proximal L1 step)."""

    def __init__(self, params, lr: float, xi: float, **kwargs) -> None:
        super().__init__(params, lr=lr, weight_decay=0.0, **kwargs)
        self.xi = xi

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.copy_(torch.sign(p) * torch.clamp(p.abs() - self.xi, min=0.0))
        return loss


@dataclass
class SoraOptions(MatrixOptions):
    """r: maximum rank (r_max); alpha: scale alpha / r; xi: proximal soft threshold per step;
    l1_weight: optional L1 term ``l1_weight * sum|g| / numel`` on the loss; gate_lr: learning rate
    of the gates' SparseAdamW (defaults to the main learning rate)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    xi: float = 3e-4
    l1_weight: float = 0.0
    gate_lr: float | None = None


@register("sora")
class Sora(LowRankMethod):
    Options = SoraOptions

    def make_layer(self, name: str, base: nn.Linear) -> SoraLinear:
        return SoraLinear(base, self.options.r, self.options.alpha, self.options.dropout)

    @staticmethod
    def _layers(model: nn.Module) -> list[SoraLinear]:
        return [m for m in model.modules() if isinstance(m, SoraLinear)]

    def auxiliary_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [layer.lora_gate for layer in self._layers(model)]

    def auxiliary_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        gate_lr = self.options.gate_lr if self.options.gate_lr is not None else lr
        return SparseAdamW(self.auxiliary_parameters(model), lr=gate_lr, xi=self.options.xi)

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        gates = self.auxiliary_parameters(model)
        if self.options.l1_weight == 0 or not gates:
            return None
        flat = torch.cat([g.abs() for g in gates])
        return self.options.l1_weight * flat.sum() / flat.numel()

    def pruned_parameter_count(self, model: nn.Module) -> int:
        return sum(layer.pruned_parameter_count() for layer in self._layers(model))
