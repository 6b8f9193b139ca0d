"""``trainer.args.*``: any field of transformers' ``TrainingArguments`` the configs do not name,
set from the command line (``trainer.args.adam_beta2=0.98``, ``trainer.args.label_smoothing_factor=0.1``)
and applied last when the run's TrainingArguments are built. Non-empty, they are part of the run's
key (``dcft.run.identity``).

Refused, naming the valid fields: a name that is no TrainingArguments field, and a field dcft
sets itself (from a config key, which the error names, or because the harness depends on it).
Hydra refuses new keys without ``+``, so ``trainer.args.X=V`` on the command line is rewritten to
``++trainer.args.X=V`` (:func:`pass_through_overrides`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

PREFIX = "trainer.args."
# TrainingArguments fields dcft sets from a config key: set that key instead.
FROM_CONFIG = {
    "per_device_train_batch_size": "trainer.batch_size",
    "per_device_eval_batch_size": "trainer.eval_batch_size",
    "gradient_accumulation_steps": "trainer.gradient_accumulation_steps",
    "num_train_epochs": "trainer.num_epochs",
    "max_steps": "trainer.max_steps",
    "learning_rate": "trainer.learning_rate",
    "lr_scheduler_type": "trainer.lr_scheduler",
    "warmup_steps": "trainer.warmup_steps or trainer.warmup_ratio",
    "weight_decay": "trainer.weight_decay",
    "max_grad_norm": "trainer.max_grad_norm",
    "eval_strategy": "trainer.eval_strategy",
    "eval_steps": "trainer.eval_steps",
    "logging_steps": "trainer.logging_steps",
    "save_strategy": "trainer.save_checkpoints",
    "save_steps": "trainer.save_steps",
    "save_total_limit": "trainer.save_total_limit",
    "bf16": "trainer.precision",
    "fp16": "trainer.precision",
    "activation_checkpointing": "trainer.gradient_checkpointing",
    "gradient_checkpointing": "trainer.gradient_checkpointing",
    "optim": "trainer.optimizer",
    "dataloader_num_workers": "trainer.dataloader_workers",
    "seed": "seed",
    "output_dir": "run_dir",
    "report_to": "logger",
    "run_name": "logger.run_name",
}
# Fields the harness relies on (evaluation, resume, checkpoints, records): not settable.
HARNESS = (
    "activation_checkpointing_kwargs",
    "batch_eval_metrics",
    "eval_do_concat_batches",
    "ignore_data_skip",
    "include_for_metrics",
    "label_names",
    "logging_nan_inf_filter",
    "logging_strategy",
    "prediction_loss_only",
    "remove_unused_columns",
    "restore_callback_states_from_checkpoint",
    "resume_from_checkpoint",
    "save_only_model",
    "use_cpu",
)


@cache
def settable_fields() -> tuple[str, ...]:
    """TrainingArguments fields ``trainer.args`` may set, sorted."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    return tuple(sorted(names - set(FROM_CONFIG) - set(HARNESS)))


def pass_through_overrides(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides with ``trainer.args.X=V`` as ``++trainer.args.X=V`` (add or
    replace: the key is new to Hydra unless an experiment file set it)."""
    return [f"++{o}" if o.startswith(PREFIX) else o for o in overrides]


def _as_dict(args: Mapping[str, Any] | DictConfig | None) -> dict[str, Any]:
    if isinstance(args, DictConfig):
        return OmegaConf.to_container(args, resolve=True) or {}
    return dict(args or {})


def check_training_args(args: Mapping[str, Any] | DictConfig | None) -> dict[str, Any]:
    """The pass-through fields as a plain dict; a field dcft sets, an unknown one or a value
    TrainingArguments refuses raises ``ValueError`` naming it."""
    from transformers import TrainingArguments

    given = _as_dict(args)
    for name, value in given.items():
        if name in FROM_CONFIG:
            raise ValueError(
                f"{PREFIX}{name}: dcft sets it from {FROM_CONFIG[name]}; set that instead "
                f"(e.g. {FROM_CONFIG[name].split()[0]}={value})"
            )
        if name in HARNESS:
            raise ValueError(f"{PREFIX}{name}: dcft sets it itself (evaluation, resume, records)")
    unknown = sorted(set(given) - set(settable_fields()))
    if unknown:
        raise ValueError(
            f"unknown TrainingArguments field(s) {', '.join(PREFIX + n for n in unknown)}; "
            f"valid fields: {', '.join(settable_fields())}"
        )
    try:
        TrainingArguments(output_dir="unused", use_cpu=True, **given)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{PREFIX}*: {err}") from None
    return given


def build_training_arguments(args: Mapping[str, Any] | DictConfig | None, **settings: Any) -> Any:
    """``TrainingArguments(**settings)`` with the checked pass-through fields applied last."""
    from transformers import TrainingArguments

    return TrainingArguments(**{**settings, **check_training_args(args)})
