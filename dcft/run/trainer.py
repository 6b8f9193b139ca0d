"""Fine-tuning with transformers.Trainer, changed only where the methods need it.

- the loss gains the method's regulariser (``dcft.regularizer``); a NaN/inf training loss stops
  the run with ``NonFiniteLossError``;
- the optimiser (``trainer.optimizer``: the authors' AdamW or torch's, ``dcft.optim``) is built
  here so that the method's auxiliary parameters (SoRA's gates) stay out of it;
  their own optimiser steps right after every main step (``AuxiliaryOptimizerCallback``) and
  is saved in every checkpoint beside the main one;
- checkpoints are sealed by a manifest and rotated only after that (``dcft.run.checkpoints``); a
  PEFT run's checkpoint holds its trainable tensors only; every file gets the umask's
  permissions; a failed write names the checkpoint and the free space;
- a checkpoint also holds the training loss summed since the last logged step, so that a resumed
  run logs the same averages on the same steps as an uninterrupted one (``loss_history``);
- evaluation runs the task's scorer on every eval split (GLUE metrics; SQuAD post-processing then
  EM/F1), optionally with the updates merged into the weights;
- ``StepTimer`` times every optimiser step.
Everything else (schedule, clipping, mixed precision, DDP, checkpoints) is the Trainer's own.

"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import (
    Trainer,
    TrainerCallback,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, speed_metrics

from dcft.data.scorer import Scorer
from dcft.files import follow_umask, storage_error
from dcft.methods import applied_method, merged, regularizer
from dcft.methods.api import save_tensors
from dcft.optim import build_optimizer
from dcft.run.checkpoints import keep_newest, write_manifest
from dcft.run.records import write_json

AUXILIARY_STATE = "auxiliary_optimizer.pt"
# What a PEFT run's checkpoint holds instead of the whole model: its trainable tensors only.
TRAINABLE_STATE = "trainable.safetensors"
# Per process: the training loss summed since the last logged step, and that step.
LOSS_SINCE_LOG = "loss_since_log-{rank}.json"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the runner records the run as failed."""


class DcftTrainer(Trainer):
    def __init__(
        self,
        *args: Any,
        scorer: Scorer | None,
        merged_eval: bool = False,
        auxiliary_optimizer: torch.optim.Optimizer | None = None,
        optimizer_name: str = "adamw_authors",
        keep_checkpoints: int = 1,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.keep_checkpoints = keep_checkpoints
        self.scorer = scorer
        self.merged_eval = merged_eval
        self.auxiliary_optimizer = auxiliary_optimizer
        self.optimizer_name = optimizer_name
        # Per-batch mean losses, divided by the accumulation steps by the Trainer: the regulariser
        # added in compute_loss is then scaled exactly like the task loss.
        self.model_accepts_loss_kwargs = False
        self.resumed_from: Path | None = None
        self.add_callback(_RestoreLossSinceLog(self))

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """``trainer.optimizer`` over the trainable parameters minus the method's auxiliary ones;
        weight decay on everything but biases and LayerNorm tensors."""
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
            self.optimizer = build_optimizer(
                self.optimizer_name,
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
        save_tensors(tensors, folder / TRAINABLE_STATE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None):
        self.resumed_from = Path(resume_from_checkpoint)
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
        """The Trainer's checkpoint plus the loss since the last log, then its manifest (the mark
        of a complete checkpoint), then the rotation of older ones: never a moment without one
        complete checkpoint. A failed write (full disk, file-size or quota limit) names the
        checkpoint and the free space; the partial checkpoint is never sealed."""
        runs = Path(self._get_output_dir(trial=trial))
        folder = runs / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        try:
            write_json(
                folder / LOSS_SINCE_LOG.format(rank=self.args.process_index), self._loss_since_log()
            )
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                follow_umask(folder)
                write_manifest(folder)
        except (OSError, RuntimeError, SafetensorError) as err:
            raise storage_error(folder, err, what="checkpoint") from err
        if self.args.should_save:
            keep_newest(runs, self.keep_checkpoints)

    def _loss_since_log(self) -> dict[str, Any]:
        """This process's training loss summed since the last logged step (a float32, exact in
        JSON), and that step."""
        return {"loss_sum": self._tr_loss.item(), "logged_step": self._globalstep_last_logged}

    def restore_loss_since_log(self) -> None:
        """On resume, before the first step: what the checkpoint's steps had summed since their
        last log, so that the next logged average covers the same steps as uninterrupted."""
        path = None
        if self.resumed_from is not None:
            path = self.resumed_from / LOSS_SINCE_LOG.format(rank=self.args.process_index)
        if path is None or not path.is_file():
            return
        saved = json.loads(path.read_text())
        self._tr_loss.fill_(saved["loss_sum"])
        self._globalstep_last_logged = saved["logged_step"]

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


class _RestoreLossSinceLog(TrainerCallback):
    """Calls ``DcftTrainer.restore_loss_since_log`` when training begins: after the Trainer has
    reset its loss sum, before the first step."""

    def __init__(self, trainer: DcftTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.restore_loss_since_log()


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
