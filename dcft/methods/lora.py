"""LoRA (Hu et al., 2022) and LoRA-FA (A frozen at its random init, only B trains).

``y = base(x) + (alpha / r) * B A x`` with A (r x n_in) Kaiming-uniform and B (n_out x r) zero,
exactly as peft initialises it. ``constraint`` adds a low-rank constraint (see constraints.py);
``mpc_n`` puts a ReLU between A and B, which makes the update non-linear (no merge, no dense
delta).

LoRA-FA has two definitions, chosen by ``grad_scaling``:

- ``none`` (default): the LoRA-FA paper (Zhang et al., 2023, arXiv 2308.03303): A frozen, B
  trained on its plain gradient by the run's optimiser (AdamW), like any other tensor.
- ``peft``: peft's ``create_lorafa_optimizer`` (huggingface/peft @ 5d602fd,
  src/peft/optimizers/lorafa.py, ``LoraFAOptimizer.step``) also replaces B's gradient g by
  ``(1 / s^2) g (A A^T + 1e-8 I)^+`` with s = alpha / r, the least-squares fit of full
  fine-tuning's gradient. For r = 1 that is g times the positive scalar ``(r/alpha)^2 / |a|^2``,
  which Adam's normalisation all but cancels; for r > 1 it mixes B's columns. Here the rescaling
  sits in the layer's backward (``PeftLoraFAGradient``), so it reaches the gradient that flows
  through the layer's output; the rest is the run's own AdamW. Unlike peft's optimiser, that
  means the rescaled gradient is what the Trainer clips, eps stays the run's (peft: 1e-6 added to
  the uncorrected sqrt(v)), a constraint regulariser's gradient on B is left unscaled, and the
  product runs in fp32 (peft: under bf16 autocast where bf16 is available).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .constraints import validate_constraint
from .layers import LinearAdapter, LowRankLinear
from .registry import LowRankMethod, MatrixOptions, register


def peft_lorafa_gradient(grad_b: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    """peft's LoRA-FA gradient for B (n_out x r) given A (r x n_in) and scale s = alpha / r."""
    gram = a @ a.T
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return grad_b @ torch.linalg.pinv(gram + 1e-8 * eye).to(grad_b.dtype) / scale**2


class PeftLoraFAGradient(torch.autograd.Function):
    """Identity on B; its backward hands B ``peft_lorafa_gradient`` of the incoming gradient."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, b: torch.Tensor, a: torch.Tensor, scale: float
    ) -> torch.Tensor:
        ctx.save_for_backward(a)
        ctx.scale = scale
        return b.view_as(b)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        (a,) = ctx.saved_tensors
        return peft_lorafa_gradient(grad, a.detach(), ctx.scale), None, None


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

    closed_form_grads = True

    def build_factors(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a, (b * self.scale).T

    def factor_grads(
        self, grad_down: torch.Tensor | None, grad_up: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        return grad_down, None if grad_up is None else grad_up.T * self.scale

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

    def constrained_factors(self) -> tuple[str, torch.Tensor, torch.Tensor]:
        return self.constraint, self.lora_A, self.lora_B


class LoraFALinear(LoraLinear):
    """LoRA with A frozen; ``grad_scaling="peft"`` rescales B's gradient as peft's optimiser."""

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        alpha: float,
        dropout: float = 0.0,
        constraint: str = "none",
        grad_scaling: str = "none",
    ) -> None:
        super().__init__(base, r, alpha, dropout, constraint, freeze_a=True)
        self.grad_scaling = grad_scaling
        # peft's rescaling of B's gradient runs in autograd (PeftLoraFAGradient)
        self.closed_form_grads = grad_scaling != "peft"

    def build_factors(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.grad_scaling == "peft":
            b = PeftLoraFAGradient.apply(b, a, self.scale)
        return super().build_factors(a, b)


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


GRAD_SCALINGS = ("none", "peft")


@dataclass
class LoraFAOptions(LoraOptions):
    """grad_scaling: none (the LoRA-FA paper: B's plain gradient) | peft (peft's rescaled one)."""

    grad_scaling: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grad_scaling not in GRAD_SCALINGS:
            raise ValueError(
                f"unknown grad_scaling {self.grad_scaling!r}; valid: {', '.join(GRAD_SCALINGS)}"
            )


@register("lora")
class Lora(LowRankMethod):
    Options = LoraOptions
    label = "LoRA"
    slug_options = (("r", "r"),)

    def make_layer(self, name: str, base: nn.Linear) -> LinearAdapter:
        o = self.options
        return LoraLinear(base, o.r, o.alpha, o.dropout, o.constraint)


@register("lorafa")
class LoraFA(Lora):
    """LoRA-FA (Zhang et al., 2023a): A stays at its random init; only B (zero-init) trains."""

    Options = LoraFAOptions
    label = "LoRA-FA"
    count_rule = "LoRA-FA trains only B: r * n_out per matrix (A stays at its random init)"

    def make_layer(self, name: str, base: nn.Linear) -> LinearAdapter:
        o = self.options
        return LoraFALinear(base, o.r, o.alpha, o.dropout, o.constraint, o.grad_scaling)
