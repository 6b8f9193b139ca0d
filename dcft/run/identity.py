"""What names a run: its method slug, the hash of every result-changing setting, and the
``RunIdentity`` from which its record path and W&B id derive (record layout: dcft.run.records).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dcft.methods.registry import build_options, get_method
from dcft.run.runtime import resolve_precision

# Top-level keys that name places or trackers, never the result; the seed has its own path
# field. `experiment` only names the sweep that asked for the run; `hparams` holds lookup tables
# (conf/hparams, conf/experiment) whose chosen values land in trainer.*, task.*, model.*,
# method.options.*, which are hashed.
_UNHASHED_KEYS = (
    "hydra",
    "retry_failed",
    "logger",
    "results_dir",
    "outputs_dir",
    "run_dir",
    "experiment",
    "hparams",
    "seed",
)
# Keys within groups that only change where things go or how much is printed.
_UNHASHED_NESTED = {
    "data": ("dir",),
    "trainer": (
        "logging_steps",
        "dataloader_workers",
        "save_checkpoints",
        "save_steps",
        "save_total_limit",
        "save_every_minutes",
        "predict",
    ),
}


def resolved_options(method: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The method's full option set as it will run (defaults filled in, e.g. stride = kernel)."""
    method_cls = get_method(method)
    return build_options(method_cls, dict(options)).to_dict()


def _default_options(method: str) -> dict[str, Any]:
    return resolved_options(method, {})


def _slug_part(key: str, value: Any, prefix: str | None) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "_".join(map(str, value))
    else:
        text = str(value)
    if prefix is not None:
        part = f"{prefix}{text}"
    elif isinstance(value, (str, list, tuple)):
        part = f"{key}_{text}"
    else:
        part = f"{key}{text}"
    return "".join(c if c.isalnum() or c in "._" else "_" for c in part)


def method_slug(method: str, options: Mapping[str, Any]) -> str:
    """``dcft-k8-s8``, ``lora-r1``, ``dcft-k8-s8-init_lora``: the method, its key options and
    every option that differs from the method's default, except per-task strengths."""
    resolved = resolved_options(method, options)
    defaults = _default_options(method)
    declared = get_method(method)
    prefixes = dict(declared.slug_options)
    keys = list(prefixes)
    keys += [
        k
        for k in resolved
        if k not in keys and k not in declared.tuned_per_task and resolved[k] != defaults.get(k)
    ]
    return "-".join([method, *(_slug_part(k, resolved[k], prefixes.get(k)) for k in keys)])


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` resolved, without the keys that name places or trackers and may not resolve
    outside a run (``hydra``, ``logger``, ``run_dir``)."""
    kept = [k for k in cfg if k not in ("hydra", "logger", "run_dir")]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, kept), resolve=True)


def hashed_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved settings that can change a run's result, the seed aside (what
    ``hparams_hash`` digests)."""
    return hashed_settings(_resolved(cfg))


def hashed_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """``hashed_config`` of an already resolved config (changed in place)."""
    for key in _UNHASHED_KEYS:
        resolved.pop(key, None)
    for group, keys in _UNHASHED_NESTED.items():
        for key in keys:
            resolved.get(group, {}).pop(key, None)
    trainer = resolved.get("trainer", {})
    if not trainer.get("args"):  # no pass-through fields: the key of a run from before them
        trainer.pop("args", None)
    if "precision" in trainer:
        trainer["precision"] = resolve_precision(trainer["precision"])
    method = resolved.get("method", {})
    if "name" in method:
        method["options"] = resolved_options(method["name"], method.get("options") or {})
    return resolved


def hparams_hash(cfg: DictConfig) -> str:
    return _digest(hashed_config(cfg))


def _digest(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def record_stem(seed: int, hparams_hash: str) -> str:
    """``seed0-0123abcd``: the name of a run's record (``.json``) and of its run folder."""
    return f"seed{seed}-{hparams_hash}"


def run_name(model: str, task: str, method_slug: str, seed: int) -> str:
    """``minilm-rte-dcft-k8-s8-seed0``: model, task, setting and seed (the W&B run name)."""
    return f"{model}-{task}-{method_slug}-seed{seed}"


@dataclass(frozen=True)
class RunIdentity:
    """Everything that names a run: its record path and its W&B id derive from this."""

    experiment: str
    model: str
    task: str
    method: str
    method_slug: str
    options: dict[str, Any]
    seed: int
    hparams_hash: str

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunIdentity:
        return cls.from_resolved(_resolved(cfg))

    @classmethod
    def from_resolved(cls, resolved: dict[str, Any]) -> RunIdentity:
        """The identity of a resolved config (as ``from_config`` resolves it; it is consumed)."""
        method = str(resolved["method"]["name"])
        options = resolved["method"].get("options") or {}
        return cls(
            experiment=str(resolved["experiment"]),
            model=str(resolved["model"]["name"]),
            task=str(resolved["task"]["name"]),
            method=method,
            method_slug=method_slug(method, options),
            options=resolved_options(method, options),
            seed=int(resolved["seed"]),
            hparams_hash=_digest(hashed_settings(resolved)),
        )

    @property
    def key(self) -> str:
        """``<model>/<task>/<method slug>/seed<N>-<hash8>``: where the run's record and run
        folder sit under ``results_dir`` and ``outputs_dir/runs`` (conf/config.yaml reads it
        as ``${run_key:}``)."""
        stem = record_stem(self.seed, self.hparams_hash)
        return f"{self.model}/{self.task}/{self.method_slug}/{stem}"

    def record_path(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / f"{self.key}.json"

    @property
    def run_name(self) -> str:
        """The W&B run name (:func:`run_name`; conf/logger/wandb.yaml reads it as
        ``${run_name:}``)."""
        return run_name(self.model, self.task, self.method_slug, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, recorded: Any) -> list[str]:
        """The identity fields in which ``recorded`` (a record's identity) names another run.
        The experiment is not one: it names the table that first asked for the run, and every
        table that lists the same run shares its record."""
        recorded = recorded if isinstance(recorded, dict) else {}
        return sorted(
            k for k, v in self.to_dict().items() if k != "experiment" and recorded.get(k) != v
        )
