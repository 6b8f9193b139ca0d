"""The shared shape of every layer a method inserts.

``AdapterModule`` marks modules that own adapter state (saved by ``save_adapter``). A
``LinearAdapter`` wraps one frozen ``nn.Linear`` (``self.base``) and adds a learned update;
low-rank methods express it as ``update(x)`` and ``delta_weight()`` in nn.Linear's
(out_features, in_features) orientation, so merging is ``weight += delta_weight()``.

A ``LowRankLinear`` writes its update as ``act(x @ down^T) @ up`` with small factors
(h x n_in, h x n_out) and runs the frozen layer and the update as one op
(``FusedLowRankLinear``), so an adapted layer allocates what the frozen Linear allocates: one
output and one input gradient, nothing else token-sized beyond the (tokens x h) hidden, and
keeps nothing for backward but x and its own parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AdapterModule(nn.Module):
    """A module added by a method; its parameters outside ``base`` are adapter state."""

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if not n.startswith("base.")}

    def constrained_factors(self) -> tuple[str, torch.Tensor, torch.Tensor] | None:
        """(constraint, A, B) of a low-rank pair under a constraint (constraints.py), or None; the
        method averages the per-factor terms over the model."""
        return None


class LinearAdapter(AdapterModule):
    """A frozen ``base`` Linear plus an additive update ``update(x)``."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> nn.Parameter:
        """The frozen weight, so code that reads ``linear.weight`` keeps working."""
        return self.base.weight

    @property
    def bias(self) -> nn.Parameter | None:
        return self.base.bias

    def adapter_dtype(self) -> torch.dtype:
        return next(iter(self.adapter_parameters().values())).dtype

    def update(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """The dense update in nn.Linear's (out_features, in_features) orientation."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + self.update(x.to(self.adapter_dtype())).to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the frozen weight (for inference)."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False


class FusedLowRankLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias) + act(x @ down^T) @ up`` (act: identity or ReLU) as one op,
    with ``(down, up) = layer.build_factors(*params)``.

    Unfused, the update costs a tokens x n_out output, a tokens x n_out sum, and in backward a
    second tokens x n_in input gradient plus the add that accumulates it; here the update is
    accumulated in place into the frozen layer's output (``addmm_``) and into its input gradient.
    Only x, the weight and ``params`` are saved: backward rebuilds the small factors and the
    (tokens x h) hidden. The factor gradients go back to ``params`` through
    ``layer.factor_grads`` where the layer has them in closed form (LoRA), else through autograd
    over ``build_factors``. Computation runs in the output's dtype (bf16/fp16 under CUDA autocast)
    and each gradient is returned in its input's dtype."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        layer: LowRankLinear,
        relu: bool,
        *params: torch.Tensor,
    ) -> torch.Tensor:
        down, up = layer.build_factors(*params)
        x2d = x.reshape(-1, x.shape[-1])
        out = F.linear(x2d, weight, bias)
        hidden = F.linear(x2d.to(out.dtype), down.to(out.dtype))
        if relu:
            hidden = hidden.relu_()
        out.addmm_(hidden, up.to(out.dtype))
        ctx.save_for_backward(x, weight, *params)
        ctx.layer, ctx.relu = layer, relu
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, weight, *params = ctx.saved_tensors
        need_x, need_w, need_b, _, _, *need_params = ctx.needs_input_grad
        layer = ctx.layer
        if layer.closed_form_grads:
            down, up = layer.build_factors(*params)
            need_down, need_up = need_params[:2]
        else:
            with torch.enable_grad():
                leaves = [
                    p.detach().requires_grad_(n) for p, n in zip(params, need_params, strict=True)
                ]
                down, up = layer.build_factors(*leaves)
            need_down, need_up = down.requires_grad, up.requires_grad
        dtype = grad_out.dtype
        grad2d = grad_out.reshape(-1, grad_out.shape[-1])
        x2d = x.reshape(-1, x.shape[-1]).to(dtype)
        down_c, up_c = down.detach().to(dtype), up.detach().to(dtype)
        hidden = F.linear(x2d, down_c)
        grad_hidden = F.linear(grad2d, up_c)
        if ctx.relu:
            grad_hidden = grad_hidden.mul_(hidden > 0)
            hidden = hidden.relu_()
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = torch.mm(grad2d, weight.to(dtype)).addmm_(grad_hidden, down_c)
            grad_x = grad_x.view(x.shape).to(x.dtype)
        if need_w:
            grad_w = (grad2d.T @ x2d).to(weight.dtype)
        if need_b:
            grad_b = grad2d.sum(0).to(weight.dtype)
        grad_down = (grad_hidden.T @ x2d).to(down.dtype) if need_down else None
        grad_up = (hidden.T @ grad2d).to(up.dtype) if need_up else None
        if layer.closed_form_grads:
            grad_params = list(layer.factor_grads(grad_down, grad_up))
        else:
            grad_params = autograd_factor_grads(leaves, (down, grad_down), (up, grad_up))
        return grad_x, grad_w, grad_b, None, None, *grad_params


def autograd_factor_grads(
    leaves: list[torch.Tensor], *factor_and_grad: tuple[torch.Tensor, torch.Tensor | None]
) -> list[torch.Tensor | None]:
    """Gradients of ``leaves`` given those of the factors built from them (None where unused)."""
    pairs = [(f, g) for f, g in factor_and_grad if g is not None]
    wanted = [leaf for leaf in leaves if leaf.requires_grad]
    found = {}
    if wanted and pairs:
        factors, grads = zip(*pairs, strict=True)
        found = dict(
            zip(
                wanted,
                torch.autograd.grad(factors, wanted, grads, allow_unused=True),
                strict=True,
            )
        )
    return [found.get(leaf) for leaf in leaves]


class LowRankLinear(LinearAdapter):
    """A frozen ``base`` plus ``act(x @ down^T) @ up``: ``build_factors(*factor_parameters())``
    returns (down, up), with any scale folded into ``up``. Set ``relu`` for a ReLU between the
    factors (MPC_n)."""

    relu: bool = False
    # False runs ``base(x) + update(x)`` as separate ops (the benchmark's unfused baseline).
    fuse: bool = True
    # True: ``factor_grads`` maps the gradients of (down, up) to those of the factor parameters
    # (no autograd graph over ``build_factors`` in backward).
    closed_form_grads: bool = False

    def factor_parameters(self) -> tuple[nn.Parameter, ...]:
        raise NotImplementedError

    def build_factors(self, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def factor_grads(
        self, grad_down: torch.Tensor | None, grad_up: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        """The factor parameters' gradients from those of (down, up) (``closed_form_grads``)."""
        raise NotImplementedError

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.build_factors(*self.factor_parameters())

    def fused(self) -> bool:
        """Whether forward runs as one ``FusedLowRankLinear`` op (not under LoRA dropout)."""
        return self.fuse

    def update(self, x: torch.Tensor) -> torch.Tensor:
        down, up = self.factors()
        hidden = F.linear(x, down)
        return (hidden.relu() if self.relu else hidden) @ up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or not self.fused():
            return super().forward(x)
        return FusedLowRankLinear.apply(
            x, self.base.weight, self.base.bias, self, self.relu, *self.factor_parameters()
        )
