"""One preflight measurement: the run's model and method (``build_run_model``), its Trainer
(``make_trainer``: optimiser, precision, batch split, auxiliary optimiser) trained for a few
optimiser steps on batches of the task's full length, and one evaluation batch.

The batches are random token ids padded to nothing, i.e. every example at ``task.max_length``:
the worst case of the run's memory and time (real batches are padded to their longest example).
One optimiser step warms up first (on CPU it is the one whose memory is measured, with the
profiler of dcft.tools.benchmark; on CUDA the peak is ``max_memory_allocated`` over all steps),
then ``steps`` are timed by the runner's ``StepTimer``. Out of memory, a NaN/inf loss and any
other error end the measurement with a status and a one-line reason; the memory is freed.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import ProgressCallback, TrainerCallback, default_data_collator

from dcft.data import get_task
from dcft.methods import count_parameters
from dcft.preflight.cli import INJECTIONS
from dcft.run.fitting import make_trainer, training_arguments
from dcft.run.identity import resolved_options
from dcft.run.runner import build_run_model
from dcft.run.runtime import split_batch, world_size
from dcft.run.timing import StepTimer
from dcft.run.trainer import NonFiniteLossError
from dcft.tools.benchmark import live_bytes, peak_bytes_during, synchronize

OK, OOM, NAN, ERROR = "ok", "out of memory", "NaN", "error"
FIRST_TOKEN = 5  # random ids start above the special tokens


@dataclass(frozen=True)
class Measurement:
    status: str
    reason: str = ""
    peak_bytes: int | None = None
    step_s: float | None = None
    eval_s_per_example: float | None = None
    trainable: int | None = None  # count_parameters(model)["paper"]


class _InjectedOutOfMemory(TrainerCallback):
    """``--inject oom=...``: the first optimiser step raises the error CUDA raises."""

    def on_step_begin(self, args, state, control, **kwargs):
        raise torch.OutOfMemoryError("injected by --inject oom=... (no memory was exhausted)")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _batches(cfg: DictConfig, vocab: int, rows: int, seed: int) -> datasets.Dataset:
    """``rows`` examples of ``task.max_length`` random tokens with labels of the task's kind."""
    spec = get_task(cfg.task.name)
    length = int(cfg.task.max_length)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_TOKEN, vocab, (rows, length), generator=generator)
    columns: dict[str, Any] = {"input_ids": ids.tolist(), "attention_mask": [[1] * length] * rows}
    if spec.kind == "squad":
        for name in ("start_positions", "end_positions"):
            columns[name] = torch.randint(0, length, (rows,), generator=generator).tolist()
    elif spec.num_labels == 1:
        columns["labels"] = torch.rand(rows, generator=generator).mul(5).tolist()
    else:
        columns["labels"] = torch.randint(0, spec.num_labels, (rows,), generator=generator).tolist()
    return datasets.Dataset.from_dict(columns)


def _trainer(
    model: torch.nn.Module,
    cfg: DictConfig,
    out: Path,
    data: datasets.Dataset,
    max_steps: int,
    callbacks: Sequence[TrainerCallback] = (),
) -> Any:
    """The run's Trainer over ``data`` for ``max_steps`` steps, without evaluations, checkpoints
    or its own progress bar (the preflight's shows where it is)."""
    trainer_cfg = OmegaConf.merge(
        cfg.trainer, {"max_steps": max_steps, "eval_strategy": "no", "save_checkpoints": False}
    )
    args = training_arguments(trainer_cfg, out, int(cfg.seed), "preflight")
    trainer = make_trainer(
        model,
        args,
        trainer_cfg,
        train=data,
        evaluation=None,
        data_collator=default_data_collator,
        callbacks=callbacks,
    )
    trainer.remove_callback(ProgressCallback)
    return trainer


def _train(
    model: torch.nn.Module, cfg: DictConfig, steps: int, out: Path, extra: list
) -> list[float]:
    """``steps`` optimiser steps of the run's Trainer; the step times (s)."""
    split = split_batch(
        int(cfg.trainer.batch_size), world_size(), int(cfg.trainer.gradient_accumulation_steps)
    )
    rows = split.per_device * split.gradient_accumulation_steps * steps
    data = _batches(cfg, model.config.vocab_size, rows, int(cfg.seed))
    timer = StepTimer()
    _trainer(model, cfg, out, data, steps, [timer, *extra]).train()
    return timer.times


def _evaluation_s_per_example(model: torch.nn.Module, cfg: DictConfig, out: Path) -> float:
    """Seconds per example of one evaluation batch (``trainer.eval_batch_size`` examples)."""
    rows = int(cfg.trainer.eval_batch_size)
    data = _batches(cfg, model.config.vocab_size, rows, int(cfg.seed) + 1)
    trainer = _trainer(model, cfg, out, data, 1)
    device = trainer.args.device
    synchronize(device)
    start = time.perf_counter()
    trainer.predict(data)
    synchronize(device)
    return (time.perf_counter() - start) / rows


def _measure(cfg: DictConfig, steps: int, inject: str | None, out: Path) -> Measurement:
    options = OmegaConf.to_container(cfg.method.options, resolve=True) or {}
    model = build_run_model(cfg, resolved_options(cfg.method.name, options))
    if inject == "nan":
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
    extra = [_InjectedOutOfMemory()] if inject == "oom" else []
    trainable = count_parameters(model)["paper"]
    cuda = torch.cuda.is_available()
    peak = 0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        _train(model, cfg, 1, out, extra)
    else:
        resident = live_bytes([*model.parameters(), *model.buffers()])
        warm = peak_bytes_during(lambda: _train(model, cfg, 1, out, extra), torch.device("cpu"))
        peak = resident + warm
    times = _train(model, cfg, steps, out, extra)
    eval_s = _evaluation_s_per_example(model, cfg, out)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
    return Measurement(OK, "", peak, statistics.median(times), eval_s, trainable)


def measure(cfg: DictConfig, steps: int, inject: str | None = None) -> Measurement:
    """Measure the run ``cfg`` (resolved, reductions applied) over ``steps`` timed optimiser
    steps; ``inject`` (``oom`` / ``nan``) makes the cell fail as a real one would."""
    if inject not in (None, *INJECTIONS):
        raise ValueError(f"unknown injection {inject!r}; valid: {', '.join(INJECTIONS)}")
    try:
        with tempfile.TemporaryDirectory(prefix="dcft-preflight-") as out:
            return _measure(cfg, steps, inject, Path(out))
    except torch.OutOfMemoryError as err:
        return Measurement(OOM, _one_line(err))
    except NonFiniteLossError as err:
        return Measurement(NAN, _one_line(err))
    except Exception as err:  # any failure is the cell's row; the table goes on
        return Measurement(ERROR, f"{type(err).__name__}: {_one_line(err)}")
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def device_memory() -> int:
    """Bytes of the device's memory: the GPU's, or the machine's RAM."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
