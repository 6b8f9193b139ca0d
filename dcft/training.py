"""Fine-tuning with transformers.Trainer, changed only where the methods need it.

- the loss gains the method's regulariser (``dcft.regularizer``); a NaN/inf training loss stops
  the run with ``NonFiniteLossError``;
- AdamW is built here so that the method's auxiliary parameters (SoRA's gates) stay out of it;
  their own optimiser steps right after every main step (``AuxiliaryOptimizerCallback``) and
  is saved in every checkpoint beside the main one;
- checkpoints are sealed by a manifest and rotated only after that (``dcft.checkpoints``); a
  PEFT run's checkpoint holds its trainable tensors only;
- evaluation runs the task's scorer on every eval split (GLUE metrics; SQuAD post-processing then
  EM/F1), optionally with the updates merged into the weights;
- ``StepTimer`` times every optimiser step.
Everything else (schedule, clipping, mixed precision, DDP, checkpoints) is the Trainer's own.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, speed_metrics

from dcft.checkpoints import (
    CheckpointClock,
    checkpoint_step,
    keep_newest,
    write_manifest,
)
from dcft.data import (
    get_task,
    postprocess_squad,
    tokenize_glue,
    tokenize_squad,
)
from dcft.methods import applied_method, merged, regularizer
from dcft.metrics import glue_metrics, squad_metrics
from dcft.runtime import resolve_precision, split_batch, world_size

EVAL_STRATEGIES = ("epoch", "steps")
AUXILIARY_STATE = "auxiliary_optimizer.pt"
# What a PEFT run's checkpoint holds instead of the whole model: its trainable tensors only.
TRAINABLE_STATE = "trainable.safetensors"
_SPEED_KEYS = ("runtime", "samples_per_second", "steps_per_second")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the runner records the run as failed."""


# ---------------------------------------------------------------------------------------------
# Data: raw splits -> model features, and the scorer that turns predictions into metrics.


@dataclass
class TaskData:
    """Tokenised train set, eval features per split (model inputs; extra columns are dropped by
    the Trainer) and, for SQuAD, the raw eval examples that post-processing needs."""

    train: datasets.Dataset
    eval: dict[str, datasets.Dataset]
    eval_examples: dict[str, datasets.Dataset] = field(default_factory=dict)


def prepare_data(
    task: DictConfig, raw: Mapping[str, datasets.Dataset], tokenizer: PreTrainedTokenizerBase
) -> TaskData:
    spec = get_task(task.name)
    evals = [s for s in spec.eval_splits if s in raw]
    if spec.kind == "glue":
        return TaskData(
            train=tokenize_glue(raw["train"], spec.name, tokenizer, task.max_length),
            eval={s: tokenize_glue(raw[s], spec.name, tokenizer, task.max_length) for s in evals},
        )
    window = {"max_length": task.max_length, "doc_stride": task.doc_stride}
    return TaskData(
        train=tokenize_squad(raw["train"], tokenizer, **window, train=True),
        eval={s: tokenize_squad(raw[s], tokenizer, **window, train=False) for s in evals},
        eval_examples={s: raw[s] for s in evals},
    )


class Scorer:
    """Metrics of one eval split from the Trainer's predictions; keeps the last predictions of
    every split (JSON-ready) so the record's numbers can be recomputed independently."""

    def __init__(self, task: DictConfig, data: TaskData) -> None:
        self.task = task
        self.spec = get_task(task.name)
        self.data = data
        self.predictions: dict[str, dict[str, Any]] = {}

    def __call__(self, split: str, predictions: Any, label_ids: Any) -> dict[str, float]:
        if self.spec.kind == "glue":
            return self._glue(split, np.asarray(predictions), np.asarray(label_ids))
        return self._squad(split, predictions)

    def _glue(self, split: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        # float64 so that the saved predictions reproduce the metrics exactly
        preds = (
            logits.reshape(-1).astype(np.float64)
            if self.spec.is_regression
            else logits.argmax(axis=-1)
        )
        self.predictions[split] = {"predictions": preds.tolist(), "labels": labels.tolist()}
        return glue_metrics(self.spec.name, preds, labels, split=split)

    def _squad(self, split: str, logits: Sequence[np.ndarray]) -> dict[str, float]:
        start, end = logits
        version_2 = self.spec.name == "squad_v2"
        examples = self.data.eval_examples[split]
        threshold = self.task.null_score_diff_threshold
        answers = postprocess_squad(
            examples,
            self.data.eval[split],
            start,
            end,
            n_best_size=self.task.n_best_size,
            max_answer_length=self.task.max_answer_length,
            version_2=version_2,
            null_score_diff_threshold=threshold,
        )
        if not version_2:
            self.predictions[split] = {"predictions": answers.texts}
            return squad_metrics(answers.texts, examples)
        # The null-score differences are the official v2 script's na_probs: they give the best
        # thresholds, and at the threshold used for the answers they change no score.
        diffs = answers.null_score_diffs
        self.predictions[split] = {"predictions": answers.texts, "null_score_diffs": diffs}
        return squad_metrics(
            answers.texts, examples, version_2=True, na_probs=diffs, na_prob_thresh=threshold
        )


# ---------------------------------------------------------------------------------------------
# The Trainer subclass and its callbacks.


class DcftTrainer(Trainer):
    def __init__(
        self,
        *args: Any,
        scorer: Scorer,
        merged_eval: bool = False,
        auxiliary_optimizer: torch.optim.Optimizer | None = None,
        keep_checkpoints: int = 1,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.keep_checkpoints = keep_checkpoints
        self.scorer = scorer
        self.merged_eval = merged_eval
        self.auxiliary_optimizer = auxiliary_optimizer
        # Per-batch mean losses, divided by the accumulation steps by the Trainer: the regulariser
        # added in compute_loss is then scaled exactly like the task loss.
        self.model_accepts_loss_kwargs = False

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters minus the method's auxiliary ones; weight decay on
        everything but biases and LayerNorm tensors."""
        if self.optimizer is None:
            model = self.model if model is None else model
            method = applied_method(model)
            auxiliary = {id(p) for p in method.auxiliary_parameters(model)} if method else set()
            decay = set(self.get_decay_parameter_names(model))
            params = [
                (n, p)
                for n, p in model.named_parameters()
                if p.requires_grad and id(p) not in auxiliary
            ]
            groups = [
                {
                    "params": [p for n, p in params if n in decay],
                    "weight_decay": self.args.weight_decay,
                },
                {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
            ]
            self.optimizer = torch.optim.AdamW(
                [g for g in groups if g["params"]],
                lr=self.args.learning_rate,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
            )
        return self.optimizer

    @property
    def _saves_trainable_only(self) -> bool:
        """A PEFT run (some parameters frozen) checkpoints only what trains: the frozen backbone
        is reloaded from its source on resume (19 GB per checkpoint saved on DeBERTaV2-xxl)."""
        return any(not p.requires_grad for p in self.model.parameters())

    def _trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self._saves_trainable_only:
            super()._save(output_dir, state_dict)
            return
        if not self.args.should_save:
            return
        folder = Path(output_dir or self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {n: p.detach().cpu().contiguous() for n, p in self._trainable().items()}
        save_file(tensors, folder / TRAINABLE_STATE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None):
        path = Path(resume_from_checkpoint) / TRAINABLE_STATE
        if not self._saves_trainable_only:
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        if not path.is_file():
            raise FileNotFoundError(
                f"checkpoint {resume_from_checkpoint} has no {TRAINABLE_STATE} (the trainable "
                "state of a PEFT run); delete the checkpoint to start over"
            )
        saved = load_file(path)
        trainable = self._trainable()
        if set(saved) != set(trainable):
            raise ValueError(
                f"{path} holds other tensors than this run trains (missing: "
                f"{sorted(set(trainable) - set(saved))[:5]}, unexpected: "
                f"{sorted(set(saved) - set(trainable))[:5]}); it belongs to another run"
            )
        with torch.no_grad():
            for name, parameter in trainable.items():
                parameter.copy_(saved[name])

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """The auxiliary optimiser's state is written with the main one, i.e. before
        trainer_state.json, which the Trainer writes last and which marks a complete checkpoint."""
        super()._save_optimizer_and_scheduler(output_dir)
        if self.auxiliary_optimizer is not None and self.args.should_save:
            torch.save(self.auxiliary_optimizer.state_dict(), Path(output_dir) / AUXILIARY_STATE)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.auxiliary_optimizer is not None and checkpoint is not None:
            path = Path(checkpoint) / AUXILIARY_STATE
            if not path.exists():
                raise FileNotFoundError(
                    f"checkpoint {checkpoint} has no {AUXILIARY_STATE}, which the method's "
                    "auxiliary optimiser needs to resume; delete the checkpoint to start over"
                )
            self.auxiliary_optimizer.load_state_dict(torch.load(path, weights_only=True))

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if model.training:
            extra = regularizer(self.accelerator.unwrap_model(model))
            if extra is not None:
                loss = loss + extra
            self._check_finite(loss.detach())
        return (loss, outputs) if return_outputs else loss

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Every process learns whether any process's loss is NaN/inf (one all-reduce of a flag
        per rank), so all stop together and the main process records the reason; alone, a
        failing rank would exit and leave the others hanging in the next collective."""
        finite = bool(torch.isfinite(loss).all())
        bad_ranks = [] if finite else [self.args.process_index]
        if self.args.world_size > 1 and torch.distributed.is_initialized():
            flags = torch.zeros(self.args.world_size, device=loss.device)
            flags[self.args.process_index] = 0.0 if finite else 1.0
            torch.distributed.all_reduce(flags)
            bad_ranks = [rank for rank, flag in enumerate(flags.tolist()) if flag]
        if bad_ranks:
            where = f" on rank(s) {bad_ranks}" if self.args.world_size > 1 else ""
            value = "" if finite else f" {loss.float().mean().item()}"
            raise NonFiniteLossError(
                f"training loss is not finite{where} ({'this rank:' + value if value else 'nan/inf'}) "
                f"at optimiser step {self.state.global_step + 1} "
                f"(learning rate {self._get_learning_rate():.3g})"
            )

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's checkpoint, then its manifest (the mark of a complete checkpoint), then
        the rotation of older ones: never a moment without one complete checkpoint."""
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial))
            write_manifest(folder / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            keep_newest(folder, self.keep_checkpoints)

    def evaluate(
        self,
        eval_dataset: datasets.Dataset | dict[str, datasets.Dataset] | str | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """One split at a time (the base class loops over a dict and calls back here with
        ``metric_key_prefix = eval_<split>``); metrics come from the scorer, not
        ``compute_metrics``, because SQuAD has no labels to hand to it."""
        target = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(target, dict):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        split = metric_key_prefix.removeprefix("eval_")
        start = time.time()
        context = merged(self.model) if self.merged_eval else nullcontext()
        with context:
            output = self.evaluation_loop(
                self.get_eval_dataloader(target),
                description=f"Evaluation ({split})",
                prediction_loss_only=False,
                ignore_keys=ignore_keys,
                metric_key_prefix=metric_key_prefix,
            )
        metrics = dict(output.metrics)
        scores = self.scorer(split, output.predictions, output.label_ids)
        metrics.update({f"{metric_key_prefix}_{k}": v for k, v in scores.items()})
        batches = math.ceil(output.num_samples / self.args.eval_batch_size)
        metrics.update(speed_metrics(metric_key_prefix, start, output.num_samples, batches))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics


class StepTimer(TrainerCallback, ExportableState):
    """Wall time of the training and of every optimiser step (forward, backward, clip, step;
    evaluation excluded), per segment: a run killed and resumed trains in several segments, and
    each checkpoint carries the segments so far (trainer_state.json), so the record sums them.
    A segment's time runs from its start to its last checkpoint; work after that checkpoint is
    lost and redone (and timed) in the next segment."""

    def __init__(self, segments: Sequence[Mapping[str, Any]] = ()) -> None:
        self.segments = [dict(s) for s in segments]  # earlier segments, from the checkpoint
        self.times: list[float] = []
        self._started = time.perf_counter()
        self._start: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.times.append(self._now() - self._start)
            self._start = None

    def current_segment(self) -> dict[str, Any]:
        return {
            "wall_time_s": time.perf_counter() - self._started,
            "optimizer_steps": len(self.times),
            "median_step_time_s": statistics.median(self.times) if self.times else None,
        }

    def all_segments(self) -> list[dict[str, Any]]:
        return [*self.segments, self.current_segment()]

    def state(self) -> dict[str, Any]:
        return {"args": {"segments": self.all_segments()}, "attributes": {}}

    @staticmethod
    def segments_in(checkpoint: Path | None) -> list[dict[str, Any]]:
        """The segments a checkpoint recorded (none for a fresh start)."""
        if checkpoint is None:
            return []
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
        saved = (state.get("stateful_callbacks") or {}).get(StepTimer.__name__) or {}
        return list((saved.get("args") or {}).get("segments") or [])


def total_timing(segments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summed wall time and steps over segments; the median step time is the step-weighted
    median of the segments' medians (exact for one segment)."""
    timed = sorted(
        (s["median_step_time_s"], s["optimizer_steps"])
        for s in segments
        if s["median_step_time_s"] is not None
    )
    steps = sum(n for _, n in timed)
    median, seen = None, 0
    for value, n in timed:
        seen += n
        if seen * 2 >= steps:
            median = value
            break
    return {
        "train_wall_time_s": sum(s["wall_time_s"] for s in segments),
        "median_step_time_s": median,
        "segments": [dict(s) for s in segments],
    }


class AuxiliaryOptimizerCallback(TrainerCallback):
    """Steps the method's auxiliary optimiser (SoRA's SparseAdamW) right after each main
    optimiser step, i.e. once per accumulated batch, before the Trainer zeroes the gradients.

    Every param group follows the main schedule (as SoRA's gate scheduler does) unless it sets
    ``follow_schedule`` False: its rate is its base rate (``initial_lr``, recorded here before any
    step) times the main scheduler's current multiplier. The multiplier is read from the main
    scheduler, which the Trainer restores on resume, so nothing more is checkpointed.
    (``DcftTrainer`` saves and restores the optimiser's state with the checkpoints.)"""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def on_optimizer_step(self, args, state, control, lr_scheduler=None, **kwargs):
        last, base = lr_scheduler.get_last_lr()[0], lr_scheduler.base_lrs[0]
        multiplier = last / base if base > 0 else 1.0
        for group in self.optimizer.param_groups:
            if group.get("follow_schedule", True):
                group["lr"] = group["initial_lr"] * multiplier
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------
# Settings, fitting, and what a run reports.


def training_arguments(
    trainer: DictConfig, output_dir: Path, seed: int, report_to: list[str], run_name: str
) -> TrainingArguments:
    if trainer.eval_strategy not in EVAL_STRATEGIES:
        raise ValueError(
            f"unknown trainer.eval_strategy {trainer.eval_strategy!r}; "
            f"valid: {', '.join(EVAL_STRATEGIES)}"
        )
    if not 0 <= trainer.warmup_ratio < 1:
        raise ValueError(f"trainer.warmup_ratio must be in [0, 1), got {trainer.warmup_ratio}")
    precision = resolve_precision(trainer.precision)
    batch = split_batch(trainer.batch_size, world_size(), trainer.gradient_accumulation_steps)
    eval_steps = trainer.eval_steps or trainer.logging_steps
    if not trainer.save_checkpoints:
        save = {"save_strategy": "no"}
    elif trainer.save_steps:
        save = {"save_strategy": "steps", "save_steps": trainer.save_steps}
    else:
        save = {"save_strategy": trainer.eval_strategy, "save_steps": eval_steps}
    return TrainingArguments(
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
        eval_steps=eval_steps,
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
        report_to=report_to,
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


@dataclass
class FitResult:
    evaluations: list[dict[str, Any]]
    loss_history: list[dict[str, Any]]
    predictions: dict[str, dict[str, Any]]
    # total_timing() over every segment, plus optimizer_steps, samples/s, resumed_from_step
    timing: dict[str, Any]


def fit(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    cfg: DictConfig,
    *,
    output_dir: Path,
    report_to: list[str],
    run_name: str,
    resume_from: Path | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> FitResult:
    """Train ``model`` (a method already applied) and evaluate it on the schedule; evaluates once
    more at the end if the last step was not evaluated."""
    args = training_arguments(cfg.trainer, output_dir, int(cfg.seed), report_to, run_name)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer(StepTimer.segments_in(resume_from))
    method = applied_method(model)
    auxiliary = method.auxiliary_optimizer(model, args.learning_rate) if method else None
    extra: list[TrainerCallback] = [timer, *callbacks]
    if cfg.trainer.save_checkpoints:
        minutes = cfg.trainer.save_every_minutes
        extra.append(CheckpointClock(minutes * 60 if minutes else None))
    if auxiliary is not None:
        if args.fp16:
            raise ValueError(
                f"method {method.name!r} has an auxiliary optimiser, which does not see fp16 "
                "loss scaling: use trainer.precision=bf16 or fp32"
            )
        extra.append(AuxiliaryOptimizerCallback(auxiliary))
    scorer = Scorer(cfg.task, data)
    trainer = DcftTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        callbacks=extra,
        scorer=scorer,
        merged_eval=bool(cfg.trainer.merged_eval),
        auxiliary_optimizer=auxiliary,
        keep_checkpoints=cfg.trainer.save_total_limit,
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
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
        timing=timing,
    )
