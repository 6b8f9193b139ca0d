"""Where the Hydra configs live (:data:`CONF_DIR`), where the specs that are not run settings
live (:data:`SPECS_DIR`: the paper's tables, the studies' searches) and the resolvers they use (``${method_slug:}``,
``${run_key:}``, ``${run_name:}``, ``${data_fingerprint:}``, ``${task_spec:KEY}``,
``${method_lr:}``, ``${seeds:SCALE}``); importing this module registers them. It imports neither torch nor
transformers (the resolvers import what they need when first called), so that
``python -m dcft.train --help`` answers at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

_PACKAGE = Path(__file__).resolve().parent.parent


def _shipped(name: str, marker: str) -> Path:
    """``dcft/<name>/`` in an installed package (the wheel ships the checkout's top-level
    ``<name>/`` there as package data ``dcft.<name>``), else the checkout's ``<name>/``; the
    installed one is recognised by its ``marker`` file or folder."""
    installed = _PACKAGE / name
    return installed if (installed / marker).exists() else _PACKAGE.parent / name


# The Hydra configs: every folder here is a config group ``python -m dcft.train --help`` offers.
CONF_DIR = _shipped("conf", "config.yaml")
# What is no run setting, so no config group: the paper's tables (``table/tableN.yaml``,
# dcft.report.tables) and the studies' learning-rate searches (``study/``, dcft.tools.lr_search).
SPECS_DIR = _shipped("specs", "table")


def _slug_resolver(*, _root_: DictConfig) -> str:
    from dcft.run.identity import method_slug

    options = OmegaConf.to_container(_root_.method.options, resolve=True) or {}
    return method_slug(_root_.method.name, options)


def _run_key_resolver(*, _root_: DictConfig) -> str:
    from dcft.run.identity import RunIdentity

    return RunIdentity.from_config(_root_).key


def _run_name_resolver(*, _root_: DictConfig) -> str:
    from dcft.run.identity import RunIdentity

    return RunIdentity.from_config(_root_).run_name


def _data_resolver(*, _root_: DictConfig) -> str:
    from dcft.data.custom import CUSTOM
    from dcft.data.fingerprint import custom_fingerprint, data_fingerprint

    if _root_.task.name == CUSTOM:  # its spec comes from its files: known after composition
        return custom_fingerprint(_root_.task)
    return data_fingerprint(_root_.task.name, _root_.data.dir)


def _task_spec_resolver(key: str, *, _root_: DictConfig) -> Any:
    from dcft.data.tasks import get_task

    return getattr(get_task(_root_.task.name), key)


# How many seeds a table's sweep trains per setting at each scale (seeds 0..N-1): the paper's
# five, the CPU study's three. The one place they are written: the experiments' sweeper params
# read them as ``${seeds:paper}`` and dcft.sweep's row sweeps through ``seed_range``.
SEEDS = {"paper": 5, "mini": 3}


def seed_range(scale: str) -> str:
    """``range(0,5)``: the seeds of ``scale`` as a Hydra sweep; an unknown scale names the
    valid ones."""
    if scale not in SEEDS:
        raise ValueError(f"unknown scale {scale!r} for seeds; valid: {', '.join(SEEDS)}")
    return f"range(0,{SEEDS[scale]})"


class MissingLearningRateError(ValueError):
    """A model's hparams file gives no learning rate for the method being run."""


def _method_lr_resolver(*, _root_: DictConfig) -> Any:
    """``hparams.lr.<method>`` of the model's hparams file; a method without one is refused
    (never DCFT's rate by default), naming the method, the model and the file to add it to."""
    method, model, task = _root_.method.name, _root_.model.name, _root_.task.name
    rates = _root_.hparams.get("lr") or {}
    if method not in rates:
        raise MissingLearningRateError(
            f"no learning rate for method {method!r} on model {model!r}: add hparams.lr.{method} "
            f"to conf/hparams/{model}/{task}.yaml (methods with a rate there: "
            f"{', '.join(sorted(rates))})"
        )
    return rates[method]


# ${method_slug:} groups a setting's runs in W&B (conf/logger/wandb.yaml);
# ${data_fingerprint:} puts the task's examples (not the files' bytes) into the run's key.
OmegaConf.register_new_resolver("method_slug", _slug_resolver, replace=True)
# ${run_key:} (model/task/slug/seed<N>-<hash8>) and ${run_name:}: RunIdentity's, the one place
# a run's folder, record path and W&B name are spelled.
OmegaConf.register_new_resolver("run_key", _run_key_resolver, replace=True)
OmegaConf.register_new_resolver("run_name", _run_name_resolver, replace=True)
OmegaConf.register_new_resolver("data_fingerprint", _data_resolver, replace=True)
# ${task_spec:max_length} in conf/task: the value of ${task.name}'s TaskSpec (dcft.data.tasks),
# the one place a task's facts are declared.
OmegaConf.register_new_resolver("task_spec", _task_spec_resolver, replace=True)
# ${method_lr:} in conf/hparams: the method's learning rate for the model, or a clear error.
OmegaConf.register_new_resolver("method_lr", _method_lr_resolver, replace=True)
# ${seeds:paper} in conf/experiment: the sweep of the scale's seeds (SEEDS).
OmegaConf.register_new_resolver("seeds", seed_range, replace=True)


def method_config_slugs(names: Sequence[str]) -> dict[str, str]:
    """Each method config (``conf/method/<name>.yaml``, e.g. ``dcft-init-lora``) -> the slug its
    runs carry in their records (``dcft-k8-s8-init_lora``), composed with the config's defaults."""
    from hydra import compose, initialize_config_dir

    from dcft.run.identity import method_slug

    slugs = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name in names:
            method = compose("config", overrides=[f"method={name}"]).method
            options = OmegaConf.to_container(method.options, resolve=True) or {}
            slugs[name] = method_slug(method.name, options)
    return slugs
