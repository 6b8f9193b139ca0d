"""LoRA and LoRA-FA adapters in peft's format, loadable with ``PeftModel.from_pretrained(base,
folder)`` on the same backbone: ``adapter_config.json`` (a ``LoraConfig``) and
``adapter_model.safetensors`` with peft's tensor names (``base_model.model.<layer>.lora_A.weight``,
``lora_B.weight``, and the trained task head under its own names as ``modules_to_save``).

Written without importing peft (it is not a runtime dependency); tests load the files with
peft. LoRA-FA is plain LoRA to peft (its frozen A is saved like a trained one). LoRA with the
non-linear ``mpc_n`` constraint has no peft counterpart.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from .api import applied_method, head_parameter_names, save_tensors
from .lora import LoraLinear

PEFT_METHODS = ("lora", "lorafa")
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."


def peft_compatible(model: nn.Module) -> bool:
    """Whether the applied method is one peft's LoRA can load."""
    method = applied_method(model)
    return (
        method is not None
        and method.name in PEFT_METHODS
        and method.options.to_dict().get("constraint") != "mpc_n"
    )


def head_modules(model: nn.Module) -> list[str]:
    """The fewest modules whose parameters are exactly the trained head (``classifier``,
    BERT's ``bert.pooler``, ...): peft's ``modules_to_save``."""
    head = head_parameter_names(model)
    modules = dict(model.named_modules())

    def all_head(name: str) -> bool:
        names = [f"{name}.{n}" for n, _ in modules[name].named_parameters()]
        return bool(names) and all(n in head for n in names)

    chosen = set()
    for parameter in head:
        parts = parameter.split(".")[:-1]
        prefixes = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
        chosen.add(next(name for name in prefixes if all_head(name)))
    return sorted(chosen)


def save_peft_adapter(
    model: nn.Module, folder: str | Path, base_model_name_or_path: str | None = None
) -> Path:
    """Write the applied LoRA / LoRA-FA adapter and the trained head in peft's format."""
    if not peft_compatible(model):
        method = applied_method(model)
        raise ValueError(
            f"method {getattr(method, 'name', None)!r} has no peft format; "
            f"valid: {', '.join(PEFT_METHODS)} (without the mpc_n constraint)"
        )
    options = applied_method(model).options
    layers = {n: m for n, m in model.named_modules() if isinstance(m, LoraLinear)}
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{_PREFIX}{name}.lora_A.weight"] = layer.lora_A
        tensors[f"{_PREFIX}{name}.lora_B.weight"] = layer.lora_B
    parameters = dict(model.named_parameters())
    tensors.update({f"{_PREFIX}{n}": parameters[n] for n in head_parameter_names(model)})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(
        {n: t.detach().cpu().contiguous().clone() for n, t in tensors.items()},
        folder / WEIGHTS_FILE,
        {"format": "pt"},
    )
    config = {
        "peft_type": "LORA",
        "task_type": "QUESTION_ANS" if hasattr(model, "qa_outputs") else "SEQ_CLS",
        "base_model_name_or_path": base_model_name_or_path,
        "r": options.r,
        "lora_alpha": options.alpha,
        "lora_dropout": options.dropout,
        "target_modules": sorted(layers),
        "modules_to_save": head_modules(model),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return folder
