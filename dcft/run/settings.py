"""A run's settings, checked before anything is loaded.

Two kinds of mistake would otherwise train something other than what the record says:
- a key the config files do not declare: Hydra refuses ``trainer.lerning_rate=1e-3`` but
  suggests ``+trainer.lerning_rate=1e-3``, which adds a key that nothing reads, and the run
  trains on the default rate. Every key under ``trainer.``, ``data.``, ``model.`` and ``task.``
  must be one that the group's config files declare (``method.options`` are checked against
  the method's declared options);
- a number under which the Trainer silently does something else: ``max_steps=-5`` trains the
  epochs, ``eval_steps=0`` evaluates every logging interval, a negative weight decay or an
  infinite learning rate trains. Counts and intervals must be whole numbers >= 1 (or their
  documented "off" value), decays and norms >= 0, rates finite and > 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dcft.run.config import CONF_DIR
from dcft.run.identity import resolved_options
from dcft.run.runtime import split_batch, world_size

EVAL_STRATEGIES = ("epoch", "steps")
# Groups whose keys must be declared in their config files (``data`` is declared in the root
# config file, the others in conf/<group>/*.yaml).
CHECKED_GROUPS = ("trainer", "data", "model", "task")
ROOT_CONFIG = "config.yaml"

# Whole numbers: (the smallest valid value, whether the key may also be null: off / all).
_WHOLE = {
    "trainer.batch_size": (1, False),
    "trainer.eval_batch_size": (1, False),
    "trainer.gradient_accumulation_steps": (1, False),
    "trainer.logging_steps": (1, False),
    "trainer.save_total_limit": (1, False),
    "trainer.warmup_steps": (0, False),
    "trainer.dataloader_workers": (0, False),
    "trainer.eval_steps": (1, True),
    "trainer.save_steps": (1, True),
    "data.max_train_samples": (1, True),
    "data.max_eval_samples": (1, True),
    "data.subset_seed": (0, False),
}
# Real numbers, finite: (lowest value, whether the lowest value itself is valid, may be null).
_REAL = {
    "trainer.learning_rate": (0.0, False, False),
    "trainer.num_epochs": (0.0, False, False),
    "trainer.weight_decay": (0.0, True, False),
    "trainer.max_grad_norm": (0.0, True, False),
    "trainer.warmup_ratio": (0.0, True, False),
    "trainer.save_every_minutes": (0.0, False, True),
}


def _group_files(group: str) -> list[Any]:
    if group == "data":
        return [OmegaConf.load(CONF_DIR / ROOT_CONFIG).data]
    return [OmegaConf.load(path) for path in sorted((CONF_DIR / group).glob("*.yaml"))]


@cache
def declared_keys(group: str, option: str | None = None) -> frozenset[str]:
    """The keys the config files declare under ``group``: those of ``conf/<group>/<option>.yaml``
    when ``option`` names a file (a task's own keys: SQuAD's ``doc_stride``, ...), else those
    of every file of the group; ``data``'s are in the root config."""
    path = CONF_DIR / group / f"{option}.yaml"
    files = [OmegaConf.load(path)] if option and path.is_file() else _group_files(group)
    return frozenset(k for f in files for k in f if k != "defaults")


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse a key under trainer., data., model., task. or method.options that no config file
    declares (the typo Hydra's ``+`` lets in), naming the valid keys."""
    for group in CHECKED_GROUPS:
        section = cfg.get(group)
        if not isinstance(section, DictConfig):
            continue
        valid = declared_keys(group, section.get("name") if group in ("model", "task") else None)
        unknown = sorted(set(section) - valid)
        if unknown:
            names = ", ".join(f"{group}.{k}" for k in unknown)
            raise ValueError(
                f"unknown key(s) {names}: no config file declares them, so nothing would read "
                f"them; valid keys under {group}.: {', '.join(sorted(valid))}"
            )
    resolved_options(cfg.method.name, OmegaConf.to_container(cfg.method.options) or {})


def _lookup(cfg: DictConfig, key: str) -> Any:
    group, name = key.split(".", 1)
    return cfg[group][name]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_whole(key: str, value: Any, minimum: int, nullable: bool) -> None:
    if value is None and nullable:
        return
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        also = " or null" if nullable else ""
        raise ValueError(f"{key} must be a whole number >= {minimum}{also}, got {value!r}")


def _check_real(key: str, value: Any, lowest: float, inclusive: bool, nullable: bool) -> None:
    if value is None and nullable:
        return
    valid = _is_number(value) and math.isfinite(value)
    if not (valid and (value >= lowest if inclusive else value > lowest)):
        bound = f"{'>=' if inclusive else '>'} {lowest:g}"
        also = " or null" if nullable else ""
        raise ValueError(f"{key} must be a finite number {bound}{also}, got {value!r}")


def check_numbers(cfg: DictConfig) -> None:
    """Refuse counts, intervals, rates and decays under which the Trainer would do something
    else than the settings say (or nothing at all), and a seed that is not numpy's."""
    seed = cfg.seed
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32):
        raise ValueError(f"seed must be a whole number in [0, 2**32), got {seed!r}")
    for key, (minimum, nullable) in _WHOLE.items():
        _check_whole(key, _lookup(cfg, key), minimum, nullable)
    for key, (lowest, inclusive, nullable) in _REAL.items():
        _check_real(key, _lookup(cfg, key), lowest, inclusive, nullable)
    trainer = cfg.trainer
    if trainer.warmup_ratio >= 1:
        raise ValueError(f"trainer.warmup_ratio must be in [0, 1), got {trainer.warmup_ratio}")
    max_steps = trainer.max_steps
    whole = isinstance(max_steps, int) and not isinstance(max_steps, bool)
    if not (whole and (max_steps == -1 or max_steps >= 1)):
        raise ValueError(
            f"trainer.max_steps must be a whole number >= 1, or -1 to train "
            f"trainer.num_epochs epochs; got {max_steps!r}"
        )
    if trainer.eval_strategy not in EVAL_STRATEGIES:
        raise ValueError(
            f"unknown trainer.eval_strategy {trainer.eval_strategy!r}; "
            f"valid: {', '.join(EVAL_STRATEGIES)}"
        )


def check_settings(cfg: DictConfig) -> None:
    """Refuse, before anything is loaded, keys that nothing reads, numbers under which the run
    would not train as its record says, and settings that do not match this launch."""
    check_known_keys(cfg)
    check_numbers(cfg)
    if int(cfg.processes) != world_size():
        raise ValueError(
            f"processes={cfg.processes} but this launch runs {world_size()} process(es) "
            "(WORLD_SIZE); leave `processes` unset: it is read from torchrun / accelerate"
        )
    trainer = cfg.trainer
    split_batch(trainer.batch_size, world_size(), trainer.gradient_accumulation_steps)


def evaluation_interval(trainer: Mapping[str, Any]) -> int | None:
    """Optimiser steps between evaluations: ``eval_steps``, or ``logging_steps`` when it is
    null; None when the run evaluates every epoch."""
    if trainer["eval_strategy"] != "steps":
        return None
    return trainer["eval_steps"] or trainer["logging_steps"]
