"""Applying a method to a model, counting what it trains, and saving/loading its state."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from dcft.files import new_file_mode

from .layers import AdapterModule, LinearAdapter
from .registry import Method, build_options, get_method
from .targets import architecture_of

ADAPTER_FORMAT = "dcft-adapter/1"


def save_tensors(
    tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """``safetensors.torch.save_file``, then its metadata in sorted order and the umask's
    permissions: safetensors creates its files 0600, which would hide adapters and checkpoints
    from the rest of a shared group, and writes the metadata in hash-map order, which changes
    from one call to the next: one state then always gives the same bytes."""
    path = Path(path)
    save_file(tensors, str(path), metadata=metadata)
    _sort_metadata(path)
    path.chmod(new_file_mode())
    return path


def _sort_metadata(path: Path) -> None:
    """Rewrite the header of the safetensors file ``path`` with its ``__metadata__`` keys sorted
    (in place: the same JSON, the same length, so the tensor data does not move)."""
    with path.open("r+b") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
        metadata = header.get("__metadata__")
        if not metadata or len(metadata) < 2:
            return
        header["__metadata__"] = dict(sorted(metadata.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # another encoding than safetensors': leave the file as it is
            return
        handle.seek(8)
        handle.write(text.ljust(size, b" "))


def applied_method(model: nn.Module) -> Method | None:
    """The method applied to ``model`` by ``apply_method``, or None."""
    return model.__dict__.get("dcft_method")


def apply_method(model: nn.Module, name: str, **options: Any) -> nn.Module:
    """Apply method ``name`` in place and return ``model``.

    Freezes the backbone except what the method trains, keeps the task head (classifier, pooler,
    QA outputs) trainable and inserts the method's layers. Every option and shape is checked
    before the model is touched, so an error leaves it unchanged.
    """
    method_cls = get_method(name)
    if applied_method(model) is not None:
        raise ValueError(f"model already has method {applied_method(model).name!r} applied")
    architecture_of(model)
    method = method_cls(build_options(method_cls, options))
    plan = method.plan(model)
    head = head_parameter_names(model)
    for param_name, param in model.named_parameters():
        param.requires_grad_(param_name in head or method.trains_backbone_parameter(param_name))
    for site, module in plan:
        site.replace(module)
    model.__dict__["dcft_method"] = method
    return model


def head_parameter_names(model: nn.Module) -> set[str]:
    """Task-head parameters: everything outside the backbone, plus a pooler inside it (BERT)."""
    prefix = f"{model.base_model_prefix}."
    is_task_model = model.base_model is not model
    return {
        n
        for n, _ in model.named_parameters()
        if (is_task_model and not n.startswith(prefix))
        or ".pooler." in n
        or n.startswith("pooler.")
    }


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters: ``paper`` (the paper's way: head excluded, SoRA's zeroed ranks
    subtracted), ``with_head``, ``head`` and ``total`` (every parameter of the model)."""
    head = head_parameter_names(model)
    trainable = [(n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]
    method = applied_method(model)
    pruned = method.pruned_parameter_count(model) if method else 0
    head_count = sum(k for n, k in trainable if n in head)
    paper = sum(k for n, k in trainable if n not in head) - pruned
    return {
        "paper": paper,
        "with_head": paper + head_count,
        "head": head_count,
        "total": sum(p.numel() for p in model.parameters()),
    }


def regularizer(model: nn.Module) -> torch.Tensor | None:
    """The applied method's loss term (e.g. DCFT's orthogonal regulariser), or None."""
    method = applied_method(model)
    return method.regularizer(model) if method else None


def adapter_layers(model: nn.Module) -> list[LinearAdapter]:
    return [m for m in model.modules() if isinstance(m, LinearAdapter)]


def merge(model: nn.Module) -> None:
    """Fold every mergeable update into its frozen weight."""
    for layer in adapter_layers(model):
        layer.merge()


def unmerge(model: nn.Module) -> None:
    for layer in adapter_layers(model):
        layer.unmerge()


@contextmanager
def merged(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate with every update folded into its weight; unmerged again on exit."""
    merge(model)
    try:
        yield model
    finally:
        unmerge(model)


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What ``save_adapter`` writes: every adapter tensor (trainable or frozen, e.g. LoRA-FA's A)
    and every trainable tensor (head, BitFit biases, ...); never the frozen backbone."""
    state = {n: p for n, p in model.named_parameters() if p.requires_grad}
    for module_name, module in model.named_modules():
        if isinstance(module, AdapterModule):
            state.update({f"{module_name}.{n}": p for n, p in module.adapter_parameters().items()})
    return state


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write the method's state (see ``adapter_state``) and its name/options as safetensors."""
    method = applied_method(model)
    if method is None:
        raise ValueError("no method applied to this model: call apply_method first")
    if any(layer.merged for layer in adapter_layers(model)):
        raise ValueError("model is merged: call unmerge(model) before saving its adapter")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        n: t.detach().to("cpu").contiguous().clone() for n, t in adapter_state(model).items()
    }
    metadata = {
        "format": ADAPTER_FORMAT,
        "method": method.name,
        "options": json.dumps(method.options.to_dict()),
    }
    return save_tensors(tensors, path, metadata)


@dataclass(frozen=True)
class SavedAdapter:
    """A saved adapter file's content: the method, its full options and the tensors."""

    method: str
    options: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def read_adapter(path: str | Path) -> SavedAdapter:
    """Read a file ``save_adapter`` wrote, without a model (e.g. to look at its Delta W)."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != ADAPTER_FORMAT:
            raise ValueError(
                f"{path} is not a dcft adapter file (format {metadata.get('format')!r})"
            )
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    return SavedAdapter(metadata["method"], json.loads(metadata["options"]), tensors)


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a saved adapter onto ``model``: applies the saved method first if none is applied."""
    path = Path(path)
    saved = read_adapter(path)
    name, options, tensors = saved.method, saved.options, saved.tensors
    method = applied_method(model)
    if method is None:
        apply_method(model, name, **options)
    elif method.name != name or method.options.to_dict() != options:
        raise ValueError(
            f"{path} holds method {name!r} {options}, but the model has {method.name!r} "
            f"{method.options.to_dict()}"
        )
    expected = adapter_state(model)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the model: missing {missing}, unexpected {unexpected}"
        )
    with torch.no_grad():
        for n, target in expected.items():
            target.copy_(tensors[n])
    return model
