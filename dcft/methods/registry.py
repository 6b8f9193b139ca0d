"""The method protocol and the name -> method registry.

A method is a small class: an ``Options`` dataclass (its hyperparameters, with defaults) and
``plan(model)``, the list of (site, new module) replacements it wants. ``apply_method`` builds the
whole plan before touching the model, so a bad option or shape leaves the model unchanged.
Adding a method is one file in this folder with a ``@register("name")`` class (its options, its
plan, and the facts declared below: display label, slug options, per-task strengths) plus one
conf/method/<name>.yaml; every module of this package is imported, so nothing else lists it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .constraints import stacked_constraint_terms
from .layers import AdapterModule, LinearAdapter
from .targets import Site, matrix_sites, validate_targets

METHODS: dict[str, type[Method]] = {}


def register(name: str):
    def decorate(cls: type[Method]) -> type[Method]:
        cls.name = name
        if "label" not in cls.__dict__:
            cls.label = name
        METHODS[name] = cls
        return cls

    return decorate


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


@dataclass
class MethodOptions:
    """Options shared by every method (none); subclasses add their own."""

    def __post_init__(self) -> None:
        pass

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class MatrixOptions(MethodOptions):
    """targets: which of q, k, v, o, ffn_in, ffn_out to adapt in every layer ("all" = six)."""

    targets: Any = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.targets = list(validate_targets(self.targets))


def build_options(method: type[Method], options: dict[str, Any]) -> MethodOptions:
    valid = [f.name for f in dataclasses.fields(method.Options)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method {method.name!r}; valid options: "
            f"{', '.join(valid) or '(none)'}"
        )
    return method.Options(**options)


class Method:
    """Base class: freezes the backbone, trains the head, adds nothing."""

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    # As the paper's tables print it (default: the registry name).
    label: ClassVar[str]
    # Options always shown in the run's slug, even at their default, with the prefix they get
    # there (("kernel", "k") -> dcft-k8); other options appear only when they differ from it.
    slug_options: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Strengths tuned per task like the learning rate (conf/hparams): kept out of the slug, so
    # one table row holds every task (the run's hash still tells them apart).
    tuned_per_task: ClassVar[tuple[str, ...]] = ("alpha", "gamma")
    # How the paper's #params counts the method, where that is not simply what trains.
    count_rule: ClassVar[str] = ""

    def __init__(self, options: MethodOptions) -> None:
        self.options = options

    def plan(self, model: nn.Module) -> list[tuple[Site, nn.Module]]:
        """The replacements to install; must not modify ``model``."""
        return []

    def trains_backbone_parameter(self, name: str) -> bool:
        """Whether the (pre-existing) backbone parameter ``name`` is trained."""
        return False

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        """The term added to the training loss, or None."""
        return None

    def auxiliary_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Trainable parameters the main optimiser must NOT update (their own optimiser does)."""
        return []

    def auxiliary_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer | None:
        """An optimiser the runner steps right after the main one (SoRA's proximal step)."""
        return None

    def pruned_parameter_count(self, model: nn.Module) -> int:
        """Trainable parameters that no longer take part (e.g. SoRA's zeroed gate ranks)."""
        return 0


class LowRankMethod(Method):
    """A method that wraps each target Linear in a ``LinearAdapter`` (LoRA family, DCFT, scaling)."""

    Options = MatrixOptions

    def make_layer(self, name: str, base: nn.Linear) -> LinearAdapter:
        raise NotImplementedError

    def plan(self, model: nn.Module) -> list[tuple[Site, nn.Module]]:
        return [(s, self.make_layer(s.name, s.module)) for s in matrix_sites(model, self.targets)]

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.options.targets)

    def regularizer(self, model: nn.Module) -> torch.Tensor | None:
        """gamma * the mean of every constrained factor's term over the model."""
        gamma = getattr(self.options, "gamma", 0.0)
        by_constraint: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for m in model.modules():
            if isinstance(m, AdapterModule) and (found := m.constrained_factors()) is not None:
                by_constraint.setdefault(found[0], []).append(found[1:])
        terms = [stacked_constraint_terms(c, pairs) for c, pairs in by_constraint.items()]
        terms = [t for t in terms if t.numel()]
        if not terms or gamma == 0:
            return None
        return gamma * torch.cat(terms).mean()
