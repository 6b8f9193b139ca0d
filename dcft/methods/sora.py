"""SoRA (Ding et al., 2023): LoRA with a gate vector between the factors, sparsified by a
proximal step.

``y = base(x) + (alpha / r) * ((x A^T) * g) B^T``. The gates are excluded from the main AdamW and
trained as the authors' code (TsinghuaC3I/SoRA @ c275ac2) trains them:

- the loss gains ``l1_weight * sum|g| / numel(g)`` over all gates together (src/trainer.py
  ``compute_loss``, lines 400-407; the GLUE script scripts/run_glue_sora_no_schedule.sh passes
  ``--sparse_lambda 10``);
- ``SparseAdamW`` steps them right after each main step with transformers' AdamW update (eps 1e-6,
  no weight decay; src/sparse_optimizer.py lines 84-113), then thresholds them by ``xi``
  (``--sparse_lambda_2 3e-4``) with three masks applied in sequence (lines 116-119): ``p -= xi``
  where ``p > xi``, ``p += xi`` where ``p < -xi``, then ``p = 0`` where ``|p| < xi``. The masks
  compose, so a gate above xi in magnitude is shrunk by xi and then zeroed unless it was at least
  2 xi: every gate below 2 xi ends at zero (except one exactly at xi, left as is).
  ``threshold="soft"`` is the paper's proximal step instead, ``sign(p) max(|p| - xi, 0)``;
- their learning rate follows the main warmup + linear decay (run_glue.py lines 618-621 build a
  second linear schedule over the same steps): the runner's ``AuxiliaryOptimizerCallback`` scales
  it by the main schedule's multiplier each step; ``gate_schedule="constant"`` keeps it fixed.

Ranks whose gate is zero drop out of the update and out of the parameter count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dcft.optim import AuthorsAdamW

from .lora import LoraLinear
from .registry import LowRankMethod, MatrixOptions, register


class SoraLinear(LoraLinear):
    closed_form_grads = False  # the gate's gradient comes through autograd over build_factors

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


def sora_threshold(p: torch.Tensor, xi: float) -> torch.Tensor:
    """SoRA's three masks, each applied to the result of the one before."""
    p = torch.where(p > xi, p - xi, p)
    p = torch.where(p < -xi, p + xi, p)
    return torch.where(p.abs() < xi, torch.zeros_like(p), p)


def soft_threshold(p: torch.Tensor, xi: float) -> torch.Tensor:
    """The proximal operator of ``xi * |p|`` (the SoRA paper's update)."""
    return torch.sign(p) * torch.clamp(p.abs() - xi, min=0.0)


THRESHOLDS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "sora": sora_threshold,
    "soft": soft_threshold,
}
GATE_SCHEDULES = ("main", "constant")


class SparseAdamW(AuthorsAdamW):
    """The authors' AdamW (``dcft.optim.AuthorsAdamW``: transformers' update, eps 1e-6) without
    weight decay, then ``THRESHOLDS[threshold]`` by ``xi``.

    ``follow_schedule`` is read by the runner's ``AuxiliaryOptimizerCallback``: True scales the
    rate by the main schedule's multiplier every step."""

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        xi: float,
        threshold: str = "sora",
        follow_schedule: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
    ) -> None:
        if threshold not in THRESHOLDS:
            raise ValueError(f"unknown threshold {threshold!r}; valid: {', '.join(THRESHOLDS)}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=0.0)
        gate_settings = {"xi": xi, "threshold": threshold, "follow_schedule": follow_schedule}
        self.defaults.update(gate_settings)
        for group in self.param_groups:
            group.update(gate_settings)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = super().step(closure)
        for group in self.param_groups:
            threshold = THRESHOLDS[group["threshold"]]
            for p in group["params"]:
                if p.grad is not None:
                    p.copy_(threshold(p, group["xi"]))
        return loss


@dataclass
class SoraOptions(MatrixOptions):
    """r: maximum rank (r_max); alpha: scale alpha / r; xi: gate threshold per step;
    l1_weight: the L1 term ``l1_weight * sum|g| / numel`` on the loss (SoRA's sparse_lambda);
    gate_lr: base learning rate of the gates (None: the main one); threshold: sora (the authors'
    three masks) | soft (plain soft threshold); gate_schedule: main (the gate rate follows the
    main warmup + decay) | constant."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    xi: float = 3e-4
    l1_weight: float = 10.0
    gate_lr: float | None = None
    threshold: str = "sora"
    gate_schedule: str = "main"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold not in THRESHOLDS:
            raise ValueError(
                f"unknown threshold {self.threshold!r}; valid: {', '.join(THRESHOLDS)}"
            )
        if self.gate_schedule not in GATE_SCHEDULES:
            raise ValueError(
                f"unknown gate_schedule {self.gate_schedule!r}; valid: {', '.join(GATE_SCHEDULES)}"
            )


@register("sora")
class Sora(LowRankMethod):
    Options = SoraOptions
    label = "SoRA"
    slug_options = (("r", "r"),)
    count_rule = (
        "SoRA's count is the ranks left after its gates are sparsified in training; before "
        "training all r_max ranks count (an upper bound)"
    )

    def make_layer(self, name: str, base: nn.Linear) -> SoraLinear:
        return SoraLinear(base, self.options.r, self.options.alpha, self.options.dropout)

    @staticmethod
    def _layers(model: nn.Module) -> list[SoraLinear]:
        return [m for m in model.modules() if isinstance(m, SoraLinear)]

    def auxiliary_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [layer.lora_gate for layer in self._layers(model)]

    def auxiliary_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        o = self.options
        return SparseAdamW(
            self.auxiliary_parameters(model),
            lr=o.gate_lr if o.gate_lr is not None else lr,
            xi=o.xi,
            threshold=o.threshold,
            follow_schedule=o.gate_schedule == "main",
        )

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        gates = self.auxiliary_parameters(model)
        if self.options.l1_weight == 0 or not gates:
            return None
        flat = torch.cat([g.abs() for g in gates])
        return self.options.l1_weight * flat.sum() / flat.numel()

    def pruned_parameter_count(self, model: nn.Module) -> int:
        return sum(layer.pruned_parameter_count() for layer in self._layers(model))
