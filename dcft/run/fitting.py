"""Settings -> TrainingArguments, fitting a model, and what a run reports from the Trainer's
log history.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from omegaconf import DictConfig
from torch import nn
from transformers import (
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainingArguments,
)

from dcft.data.features import TaskData
from dcft.data.scorer import Scorer
from dcft.methods import applied_method
from dcft.run.checkpoints import CheckpointClock, checkpoint_step
from dcft.run.runtime import resolve_precision, split_batch, world_size
from dcft.run.settings import evaluation_interval
from dcft.run.timing import StepTimer, total_timing
from dcft.run.trainer import AuxiliaryOptimizerCallback, DcftTrainer
from dcft.run.training_args import build_training_arguments

_SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second")

# ---------------------------------------------------------------------------------------------
# Settings, fitting, and what a run reports.


def training_arguments(
    trainer: DictConfig, output_dir: Path, seed: int, run_name: str
) -> TrainingArguments:
    precision = resolve_precision(trainer.precision)
    batch = split_batch(trainer.batch_size, world_size(), trainer.gradient_accumulation_steps)
    interval = evaluation_interval(trainer)
    if not trainer.save_checkpoints:
        save = {"save_strategy": "no"}
    elif trainer.save_steps:
        save = {"save_strategy": "steps", "save_steps": trainer.save_steps}
    else:
        save = {"save_strategy": trainer.eval_strategy, "save_steps": interval}
    return build_training_arguments(
        trainer.get("args"),
        output_dir=str(output_dir),
        per_device_train_batch_size=batch.per_device,
        per_device_eval_batch_size=trainer.eval_batch_size,
        gradient_accumulation_steps=trainer.gradient_accumulation_steps,
        num_train_epochs=trainer.num_epochs,
        max_steps=trainer.max_steps,
        learning_rate=trainer.learning_rate,
        lr_scheduler_type=trainer.lr_scheduler,
        warmup_steps=trainer.warmup_steps if trainer.warmup_steps > 0 else trainer.warmup_ratio,
        weight_decay=trainer.weight_decay,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        max_grad_norm=trainer.max_grad_norm,
        eval_strategy=trainer.eval_strategy,
        eval_steps=interval,
        logging_strategy="steps",
        logging_steps=trainer.logging_steps,
        logging_nan_inf_filter=False,
        save_total_limit=None,  # DcftTrainer rotates, after the new checkpoint is sealed
        **save,
        activation_checkpointing=bool(trainer.gradient_checkpointing),
        # Non-reentrant checkpointing also works when the inputs need no gradient (frozen
        # embeddings of every PEFT method).
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        seed=seed,
        dataloader_num_workers=trainer.dataloader_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without CUDA, torchrun's processes train together over gloo (DDP on CPU).
        use_cpu=not torch.cuda.is_available(),
        # W&B comes in as a callback (dcft.run.tracking), never by transformers' name lookup.
        report_to="none",
        run_name=run_name,
    )


def evaluations_from_history(
    log_history: Sequence[Mapping[str, Any]], splits: Sequence[str]
) -> list[dict[str, Any]]:
    """The Trainer's log history -> one entry per evaluation step:
    ``{"step", "epoch", "metrics": {split: {metric: value}}}`` (timing keys dropped)."""
    by_step: dict[int, dict[str, Any]] = {}
    ordered = sorted(splits, key=len, reverse=True)  # longest prefix first
    for entry in log_history:
        for key, value in entry.items():
            split = next((s for s in ordered if key.startswith(f"eval_{s}_")), None)
            if split is None:
                continue
            metric = key.removeprefix(f"eval_{split}_")
            if metric in _SPEED_KEYS:
                continue
            evaluation = by_step.setdefault(
                entry["step"], {"step": entry["step"], "epoch": entry.get("epoch"), "metrics": {}}
            )
            evaluation["metrics"].setdefault(split, {})[metric] = value
    return [by_step[step] for step in sorted(by_step)]


def loss_history(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The training loss the Trainer logged every ``logging_steps``: ``[{"step", "epoch",
    "loss"}]`` (the curves of the paper's Figure 3)."""
    return [
        {"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"]}
        for e in log_history
        if "loss" in e
    ]


def peak_memory() -> dict[str, Any]:
    if torch.cuda.is_available():
        return {"kind": "cuda_max_memory_allocated", "bytes": torch.cuda.max_memory_allocated()}
    # Linux reports ru_maxrss in KiB.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"kind": "process_max_rss", "bytes": rss}


def make_trainer(
    model: nn.Module,
    args: TrainingArguments,
    trainer: DictConfig,
    *,
    train: datasets.Dataset,
    evaluation: Mapping[str, datasets.Dataset] | None,
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]],
    processing_class: PreTrainedTokenizerBase | None = None,
    scorer: Scorer | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> DcftTrainer:
    """The run's Trainer: its optimiser (``trainer.optimizer``), precision and batch (``args``)
    and the method's auxiliary optimiser stepped after each main step; what ``fit`` trains with
    and what the preflight (dcft.preflight) times. ``scorer`` None: ``evaluate`` is not called."""
    method = applied_method(model)
    auxiliary = method.auxiliary_optimizer(model, args.learning_rate) if method else None
    extra = list(callbacks)
    if auxiliary is not None:
        if args.fp16:
            raise ValueError(
                f"method {method.name!r} has an auxiliary optimiser, which does not see fp16 "
                "loss scaling: use trainer.precision=bf16 or fp32"
            )
        extra.append(AuxiliaryOptimizerCallback(auxiliary))
    return DcftTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=data_collator,
        processing_class=processing_class,
        callbacks=extra,
        scorer=scorer,
        merged_eval=bool(trainer.merged_eval),
        auxiliary_optimizer=auxiliary,
        optimizer_name=str(trainer.optimizer),
        keep_checkpoints=trainer.save_total_limit,
    )


@dataclass
class FitResult:
    evaluations: list[dict[str, Any]]
    loss_history: list[dict[str, Any]]
    predictions: dict[str, dict[str, Any]]
    # SQuAD: the n-best lists of the last evaluation, per split (dcft.data.scorer)
    nbest: dict[str, dict[str, Any]]
    # The final model's logits on each test split asked for (trainer.predict), in input order
    test_logits: dict[str, Any]
    # total_timing() over every segment, plus optimizer_steps, samples/s, resumed_from_step
    timing: dict[str, Any]


def fit(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    cfg: DictConfig,
    *,
    output_dir: Path,
    run_name: str,
    resume_from: Path | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    test: Mapping[str, datasets.Dataset] | None = None,
) -> FitResult:
    """Train ``model`` (a method already applied) and evaluate it on the schedule; evaluates once
    more at the end if the last step was not evaluated; then predicts ``test`` (unlabelled)."""
    args = training_arguments(cfg.trainer, output_dir, int(cfg.seed), run_name)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer(StepTimer.segments_in(resume_from))
    extra: list[TrainerCallback] = [timer, *callbacks]
    clock = None
    if cfg.trainer.save_checkpoints:
        minutes = cfg.trainer.save_every_minutes
        clock = CheckpointClock(minutes * 60 if minutes else None)
        extra.append(clock)
    scorer = Scorer(cfg.task, data)
    trainer = make_trainer(
        model,
        args,
        cfg.trainer,
        train=data.train,
        evaluation=data.eval,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        scorer=scorer,
        callbacks=extra,
    )
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if clock is not None:
            clock.restore()
    timing = total_timing(timer.all_segments())
    samples = (trainer.state.epoch or 0.0) * len(data.train)
    timing.update(
        optimizer_steps=trainer.state.global_step,
        train_samples_per_second=samples / timing["train_wall_time_s"],
        resumed_from_step=checkpoint_step(resume_from),
    )
    evaluations = evaluations_from_history(trainer.state.log_history, list(data.eval))
    evaluated_last = bool(evaluations) and evaluations[-1]["step"] == trainer.state.global_step
    if not evaluated_last or set(scorer.predictions) != set(data.eval):
        trainer.evaluate()
        evaluations = evaluations_from_history(trainer.state.log_history, list(data.eval))
    return FitResult(
        evaluations=evaluations,
        loss_history=loss_history(trainer.state.log_history),
        predictions=scorer.predictions,
        nbest=scorer.nbest,
        test_logits={s: trainer.predict(ds).predictions for s, ds in (test or {}).items()},
        timing=timing,
    )
