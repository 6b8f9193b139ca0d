"""The shared shape of every layer a method inserts.

``AdapterModule`` marks modules that own adapter state (saved by ``save_adapter``). A
``LinearAdapter`` wraps one frozen ``nn.Linear`` (``self.base``) and adds a learned update;
low-rank methods express it as ``update(x)`` and ``delta_weight()`` in nn.Linear's
(out_features, in_features) orientation, so merging is ``weight += delta_weight()``.
"""

from __future__ import annotations

import torch
from torch import nn


class AdapterModule(nn.Module):
    """A module added by a method; its parameters outside ``base`` are adapter state."""

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if not n.startswith("base.")}

    def regularizer_terms(self) -> list[torch.Tensor]:
        """Per-tensor penalty terms; the method averages them over the model."""
        return []


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
