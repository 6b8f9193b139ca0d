"""Bottleneck adapters: Houlsby (after the attention output and after the FFN output of every
layer) and Pfeiffer (after the FFN output only).

Each adapter sits where adapter-transformers puts it: on the sub-layer's output after its dropout,
before the residual sum and LayerNorm: ``h + up(act(down(h)))``. ``up`` starts at zero, so the
model starts as the pretrained one. The adapter replaces the sub-layer's dropout module, which it
keeps and applies first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import AdapterModule
from .registry import Method, MethodOptions, register
from .targets import Site, adapter_sites

ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class BottleneckAdapter(AdapterModule):
    def __init__(self, dropout: nn.Module, hidden: int, bottleneck: int, activation: str) -> None:
        super().__init__()
        self.base = dropout
        self.down = nn.Linear(hidden, bottleneck)
        self.up = nn.Linear(bottleneck, hidden)
        self.act = ACTIVATIONS[activation]()
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)
        return h + self.up(self.act(self.down(h.to(self.down.weight.dtype)))).to(h.dtype)


@dataclass
class AdapterOptions(MethodOptions):
    """bottleneck: the adapter width m; activation: relu | swish | gelu | tanh."""

    bottleneck: int = 8
    activation: str = "swish"

    def __post_init__(self) -> None:
        if self.bottleneck < 1:
            raise ValueError(f"adapter bottleneck must be >= 1, got {self.bottleneck}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )


@dataclass
class PfeifferOptions(AdapterOptions):
    bottleneck: int = 16
    activation: str = "relu"


@register("hadapter")
class HoulsbyAdapter(Method):
    """Houlsby et al. (2019); m = 8 gives the DCFT paper's 0.31M on DeBERTaV3-base."""

    Options = AdapterOptions
    placements: tuple[str, ...] = ("attention", "ffn")

    def plan(self, model: nn.Module) -> list[tuple[Site, nn.Module]]:
        hidden = model.config.hidden_size
        o = self.options
        return [
            (s, BottleneckAdapter(s.module, hidden, o.bottleneck, o.activation).to(_device(model)))
            for s in adapter_sites(model, self.placements)
        ]


@register("padapter")
class PfeifferAdapter(HoulsbyAdapter):
    """Pfeiffer et al. (2021); m = 16 gives the DCFT paper's 0.30M on DeBERTaV3-base."""

    Options = PfeifferOptions
    placements = ("ffn",)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
