"""Bottleneck adapters ``f(u) = up(act(down(u)))``, placed as their reference code places them.

With h the sub-layer's output after its dropout, x the sub-layer's input and LN its pre-trained
LayerNorm (the sub-layer alone computes ``LN(h + x)``):

- Houlsby (after the attention output and after the FFN output of every layer):
  ``LN(h + f(h) + x)``. The adapter replaces the sub-layer's dropout, which it keeps and applies
  first. (adapter-hub/adapters @ 88f18eb: DoubleSeqBnConfig, adapter_config.py lines 321-335,
  original_ln_before=False; AdaLoRA @ d10f5eb NLU/.../deberta_v2/modeling_deberta_v2.py lines
  243-249 and 338-347 with adapter_type houlsby.)
- Pfeiffer (after the FFN output only): the adapter reads the normalised output ``LN(h + x)``, its
  residual is h, and LN is applied again with x: ``LN(h + f(LN(h + x)) + x)``. (adapters:
  SeqBnConfig, adapter_config.py lines 282-296, original_ln_before=True, residual_before_ln=True,
  original_ln_after=True, executed by methods/modeling.py ``Adapter.pre_forward`` lines 177-188,
  ``forward`` line 235, ``post_forward`` line 257; AdaLoRA's DebertaV2Output lines 338-347 with
  adapter_type pfeiffer, which the DCFT authors' code keeps.) The adapter wraps the FFN output
  sub-layer and runs its dense, dropout and LayerNorm itself.

``up`` starts at zero, so the model starts as the pretrained one.
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
    """Houlsby's placement: replaces a sub-layer's dropout ``base``; returns ``h + f(h)``."""

    def __init__(self, base: nn.Module, hidden: int, bottleneck: int, activation: str) -> None:
        super().__init__()
        self.base = base
        self.down = nn.Linear(hidden, bottleneck)
        self.up = nn.Linear(bottleneck, hidden)
        self.act = ACTIVATIONS[activation]()
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def bottleneck(self, u: torch.Tensor) -> torch.Tensor:
        """``f(u)``, computed in the adapter's dtype and returned in u's."""
        return self.up(self.act(self.down(u.to(self.down.weight.dtype)))).to(u.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)
        return h + self.bottleneck(h)


class PfeifferOutput(BottleneckAdapter):
    """Pfeiffer's placement: wraps the FFN output sub-layer ``base`` (dense, dropout, LayerNorm;
    the same in every supported architecture) and returns ``LN(h + f(LN(h + x)) + x)``."""

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        h = self.base.dropout(self.base.dense(hidden_states))
        norm = self.base.LayerNorm
        return norm(h + self.bottleneck(norm(h + input_tensor)) + input_tensor)


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
    label = "HAdapter"
    slug_options = (("bottleneck", "m"),)
    adapter: type[BottleneckAdapter] = BottleneckAdapter

    def sites(self, model: nn.Module) -> list[Site]:
        return adapter_sites(model, ("attention", "ffn"))

    def plan(self, model: nn.Module) -> list[tuple[Site, nn.Module]]:
        hidden = model.config.hidden_size
        o = self.options
        device = next(model.parameters()).device
        return [
            (s, self.adapter(s.module, hidden, o.bottleneck, o.activation).to(device))
            for s in self.sites(model)
        ]


@register("padapter")
class PfeifferAdapter(HoulsbyAdapter):
    """Pfeiffer et al. (2021); m = 16 gives the DCFT paper's 0.30M on DeBERTaV3-base."""

    Options = PfeifferOptions
    label = "PAdapter"
    adapter = PfeifferOutput

    def sites(self, model: nn.Module) -> list[Site]:
        """The FFN output sub-layers: the parents of the FFN output dropouts."""
        sites = []
        for dropout in adapter_sites(model, ("ffn",)):
            name = dropout.name.rpartition(".")[0]
            parent_name, _, attr = name.rpartition(".")
            sites.append(Site(name, model.get_submodule(parent_name), attr, dropout.parent))
        return sites
