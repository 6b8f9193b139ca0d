"""Where each method attaches: the six target matrices and the adapter sites, per architecture.

Targets are resolved as paths relative to each encoder layer, never by substring matching
(in every supported architecture ``attention.output.dense`` also ends with ``output.dense``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

TARGET_NAMES = ("q", "k", "v", "o", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class Architecture:
    """Relative paths (from one encoder layer) of the six matrices and the two adapter sites."""

    matrices: dict[str, str]
    attention_output_dropout: str
    ffn_output_dropout: str


_BERT_LIKE = Architecture(
    matrices={
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
    },
    attention_output_dropout="attention.output.dropout",
    ffn_output_dropout="output.dropout",
)

ARCHITECTURES: dict[str, Architecture] = {
    "deberta-v2": Architecture(
        matrices={
            "q": "attention.self.query_proj",
            "k": "attention.self.key_proj",
            "v": "attention.self.value_proj",
            "o": "attention.output.dense",
            "ffn_in": "intermediate.dense",
            "ffn_out": "output.dense",
        },
        attention_output_dropout="attention.output.dropout",
        ffn_output_dropout="output.dropout",
    ),
    "roberta": _BERT_LIKE,
    "bert": _BERT_LIKE,
}


def architecture_of(model: nn.Module) -> Architecture:
    """The architecture entry for ``model`` (DeBERTa-v3 reports model_type ``deberta-v2``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"unsupported architecture {model_type!r}; supported model_type values: "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder's transformer blocks, whether ``model`` is a backbone or a task model."""
    return list(model.base_model.encoder.layer)


def validate_targets(targets: list[str] | tuple[str, ...] | str) -> tuple[str, ...]:
    """Normalise a target list (``"all"`` means the six matrices) and reject unknown names."""
    if isinstance(targets, str):
        targets = TARGET_NAMES if targets == "all" else tuple(targets.split(","))
    targets = tuple(t.strip() for t in targets)
    unknown = [t for t in targets if t not in TARGET_NAMES]
    if unknown or not targets:
        raise ValueError(
            f"unknown target(s) {unknown or targets!r}; valid targets: {', '.join(TARGET_NAMES)} "
            "(or 'all')"
        )
    return tuple(t for t in TARGET_NAMES if t in targets)


@dataclass(frozen=True)
class Site:
    """One place to replace: ``parent.<attr>`` currently holds ``module``; ``name`` is its path."""

    name: str
    parent: nn.Module
    attr: str
    module: nn.Module

    def replace(self, new: nn.Module) -> None:
        setattr(self.parent, self.attr, new)


def _site(model: nn.Module, layer: nn.Module, layer_path: str, relative: str) -> Site:
    parent_path, _, attr = relative.rpartition(".")
    parent = layer.get_submodule(parent_path) if parent_path else layer
    return Site(f"{layer_path}.{relative}", parent, attr, getattr(parent, attr))


def _layer_paths(model: nn.Module) -> list[tuple[str, nn.Module]]:
    layers = encoder_layers(model)
    by_id = {id(m): n for n, m in model.named_modules()}
    return [(by_id[id(layer)], layer) for layer in layers]


def matrix_sites(model: nn.Module, targets: tuple[str, ...]) -> list[Site]:
    """The nn.Linear modules named by ``targets`` in every encoder layer."""
    arch = architecture_of(model)
    sites = [
        _site(model, layer, path, arch.matrices[t])
        for path, layer in _layer_paths(model)
        for t in targets
    ]
    for site in sites:
        if not isinstance(site.module, nn.Linear):
            raise TypeError(f"{site.name} is {type(site.module).__name__}, expected nn.Linear")
    return sites


def adapter_sites(model: nn.Module, placements: tuple[str, ...]) -> list[Site]:
    """The dropout modules after the attention output ("attention") and FFN output ("ffn")."""
    arch = architecture_of(model)
    paths = {"attention": arch.attention_output_dropout, "ffn": arch.ffn_output_dropout}
    return [
        _site(model, layer, path, paths[p])
        for path, layer in _layer_paths(model)
        for p in placements
    ]
