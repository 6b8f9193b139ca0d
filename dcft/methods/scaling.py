"""Subspace scaling methods of arXiv 2407.05417.

SSL: ``W' = W D_in`` (one learned scale per input dimension); SSB: ``W' = D_out W D_in`` (input
and output scales). Scales start at 1, so the model starts as the pretrained one. The bias is
not scaled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LinearAdapter
from .registry import LowRankMethod, register


class ScaledLinear(LinearAdapter):
    def __init__(self, base: nn.Linear, scale_output: bool) -> None:
        super().__init__(base)
        factory = {"device": base.weight.device, "dtype": torch.float32}
        self.scale_in = nn.Parameter(torch.ones(base.in_features, **factory))
        self.scale_out = (
            nn.Parameter(torch.ones(base.out_features, **factory)) if scale_output else None
        )

    def _outer(self) -> torch.Tensor:
        outer = self.scale_in[None, :]
        return outer if self.scale_out is None else self.scale_out[:, None] * outer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        w = self.base.weight
        out = F.linear(x * self.scale_in.to(x.dtype), w)
        if self.scale_out is not None:
            out = out * self.scale_out.to(out.dtype)
        return out if self.base.bias is None else out + self.base.bias

    def delta_weight(self) -> torch.Tensor:
        w = self.base.weight.float()
        return w * self._outer() - w

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight.mul_(self._outer().to(self.base.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight.div_(self._outer().to(self.base.weight.dtype))
            self.merged = False


@register("ssl")
class ScaleLeft(LowRankMethod):
    """SSL: learned input-side scales on each target matrix."""

    scale_output = False

    def make_layer(self, name: str, base: nn.Linear) -> ScaledLinear:
        return ScaledLinear(base, self.scale_output)


@register("ssb")
class ScaleBoth(ScaleLeft):
    """SSB: learned input- and output-side scales on each target matrix."""

    scale_output = True
