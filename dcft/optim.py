"""The optimisers a run can train with (``trainer.optimizer``).

``adamw_authors`` is the AdamW of transformers 4.4.2, which the DCFT authors' code (Godz-z/DCFT,
``NLU/src/transformers/optimization.py``) and SoRA's both train with. Per step t, with
m, v the usual moving averages:

    p <- p - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
    p <- p - lr * weight_decay * p            (after the Adam step, on the updated p)

``torch.optim.AdamW`` (``adamw_torch``) divides by ``sqrt(v) / sqrt(1 - beta2^t) + eps``
instead, i.e. the authors' rule is torch's with eps replaced by ``eps / sqrt(1 - beta2^t)`` (about
32 x eps at t = 1), and it decays p before the Adam step. The two differ most for gradients of
the order of eps, which is where DCFT's N(0, 0.02^2)-initialised factors start.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

OPTIMIZERS = ("adamw_authors", "adamw_torch")


class AuthorsAdamW(torch.optim.Optimizer):
    """AdamW with transformers 4.4.2's update rule (module docstring), stepped with torch's
    ``_foreach`` kernels: one launch per operation for all of a group's tensors."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if not lr >= 0 or not eps >= 0 or not weight_decay >= 0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0: {lr}, {eps}, {weight_decay}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be in [0, 1): {betas}")
        super().__init__(
            params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _step_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        beta1, beta2 = group["betas"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            if p.grad.is_sparse:
                raise RuntimeError("adamw_authors does not support sparse gradients")
            if not state:
                state.update(
                    step=0,
                    exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                    exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format),
                )
            state["step"] += 1
        grads = [p.grad for p in params]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denominators, group["eps"])
        step_sizes = [
            -lr * math.sqrt(1.0 - beta2 ** s["step"]) / (1.0 - beta1 ** s["step"]) for s in states
        ]
        torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)
        if weight_decay > 0.0:
            torch._foreach_add_(params, params, alpha=-lr * weight_decay)


def build_optimizer(
    name: str,
    groups: list[dict[str, Any]],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
) -> torch.optim.Optimizer:
    """``trainer.optimizer`` over param groups that carry their own ``weight_decay``."""
    if name == "adamw_authors":
        return AuthorsAdamW(groups, lr=lr, betas=betas, eps=eps)
    if name == "adamw_torch":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    raise ValueError(f"unknown trainer.optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
