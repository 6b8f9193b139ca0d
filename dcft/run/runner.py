"""One run from a composed config: refuse bad settings, skip what is finished, train under
a lock, and publish the record (``run(cfg)``; the command line is ``dcft.train``).

A run whose record says ``finished`` is not trained again; a run killed midway resumes from its
last checkpoint in its (deterministic) run folder.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn
from transformers import TrainerCallback, set_seed

from dcft.data import get_task, load_task_data
from dcft.data.custom import use_task_config
from dcft.data.features import prepare_data
from dcft.data.metrics import main_metric
from dcft.methods import apply_method, count_parameters, save_adapter
from dcft.methods.peft_format import peft_compatible, save_peft_adapter
from dcft.run.checkpoints import PreemptedError, last_complete_checkpoint
from dcft.run.distributed import is_main_process, process_rank
from dcft.run.fitting import fit, peak_memory
from dcft.run.identity import RunIdentity
from dcft.run.models import build_model, load_tokenizer
from dcft.run.predict import PREDICT_DIR, test_inputs, write_predictions
from dcft.run.records import (
    ensure_writable,
    lock_path,
    main_score,
    make_record,
    read_record,
    remove_orphan_temporaries,
    run_folder_lock,
    summarize,
    write_json,
)
from dcft.run.run_lock import RunLockedError, run_lock
from dcft.run.runtime import resolve_precision, split_batch, world_size
from dcft.run.settings import check_settings, evaluation_interval
from dcft.run.tracking import TableTags, tracking
from dcft.run.trainer import NonFiniteLossError

# The finished record, kept in the run folder until it is written to the results folder.
PENDING_RECORD = "record.json"
# The run folder's checkpoints, removed once the record is published.
CHECKPOINTS = "checkpoints"
# Progress and decisions go to the console and to Hydra's job log (<run dir>/<job>.log).
log = logging.getLogger("dcft")


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """How the run trained and what it reports, resolved for this launch: precision, the global
    batch and its split over processes, and the evaluation protocol (the paper's: evaluate every
    ``eval_steps`` steps and report the best evaluation; the last is recorded beside it)."""
    trainer = cfg.trainer
    return {
        "precision": resolve_precision(trainer.precision),
        "batch": split_batch(
            trainer.batch_size, world_size(), trainer.gradient_accumulation_steps
        ).to_dict(),
        "gradient_checkpointing": bool(trainer.gradient_checkpointing),
        "evaluation": {
            "strategy": trainer.eval_strategy,
            "every_steps": evaluation_interval(trainer),
            "reported": "best",
            "also_recorded": "last",
        },
    }


def run(
    cfg: DictConfig,
    callbacks: Sequence[TrainerCallback] = (),
    tables: TableTags | None = None,
) -> dict[str, Any] | None:
    """Train, evaluate and record one run; returns its record (the existing one if finished, or
    failed and ``retry_failed`` is off), or None when another process holds the run and in the
    non-main processes of a multi-GPU run, which write nothing. ``tables``: the tables that list
    the run, for its W&B tags (dcft.run.tracking).

    The run is held by two locks: one beside its record (launches sharing the results folder)
    and one in its run folder (launches sharing the outputs folder, whatever their results
    folder: the checkpoints are there)."""
    check_settings(cfg)
    use_task_config(cfg.task)
    cfg.trainer.precision = resolve_precision(cfg.trainer.precision)
    identity = RunIdentity.from_config(cfg)
    record_path = identity.record_path(cfg.results_dir)
    run_dir = Path(cfg.run_dir)
    done = _existing_record(cfg, identity, record_path)
    if done is not None:
        _clean_up_after(record_path, run_dir)
        return done
    try:
        with run_lock(lock_path(record_path)), run_lock(run_folder_lock(run_dir)):
            done = _existing_record(cfg, identity, record_path)
            if done is not None:
                _remove_leftovers(record_path, run_dir)
                return done
            return _train(cfg, identity, record_path, callbacks, tables)
    except RunLockedError as err:
        log.info(f"skipped: {err}")
        return None


def build_run_model(cfg: DictConfig, options: Mapping[str, Any]) -> nn.Module:
    """The run's model, seeded by ``cfg.seed``: the backbone and task head ``cfg.model`` names
    for ``cfg.task``, with ``cfg.method`` applied with its resolved ``options`` (what the runner
    trains and the preflight, dcft.preflight, measures)."""
    spec = get_task(cfg.task.name)
    set_seed(int(cfg.seed))
    model = build_model(
        cfg.model.source,
        cfg.model.path,
        task_kind="qa" if spec.kind == "squad" else "classification",
        num_labels=spec.num_labels,
        cls_dropout=cfg.model.cls_dropout,
    )
    apply_method(model, cfg.method.name, **options)
    return model


def _remove_leftovers(record_path: Path, run_dir: Path) -> None:
    """What only a resume needed: the checkpoints, and the kept copy of the published record."""
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    pending = run_dir / PENDING_RECORD
    with contextlib.suppress(OSError):
        if pending.read_bytes() == record_path.read_bytes():
            pending.unlink()


def _clean_up_after(record_path: Path, run_dir: Path) -> None:
    """A run killed between publishing its record and removing its checkpoints left them behind;
    the next visit removes them, under the run folder's lock (a launch training there keeps
    them)."""
    leftover = (run_dir / CHECKPOINTS).exists() or (run_dir / PENDING_RECORD).exists()
    if not leftover or not is_main_process():
        return
    try:
        with run_lock(run_folder_lock(run_dir)):
            _remove_leftovers(record_path, run_dir)
        log.info(f"removed what the finished run left in {run_dir}")
    except RunLockedError as err:
        log.info(f"left {run_dir} as it is: {err}")


def _existing_record(
    cfg: DictConfig, identity: RunIdentity, record_path: Path
) -> dict[str, Any] | None:
    existing = read_record(record_path, identity)
    if existing is None:
        return None
    if existing["status"] == "finished":
        log.info(f"already finished, nothing to train; record: {record_path}")
        return existing
    if not cfg.retry_failed:
        log.info(
            f"failed before ({existing['failure_reason']}); not retried (retry_failed=true "
            f"retries it); record: {record_path}"
        )
        return existing
    return None


def _train(
    cfg: DictConfig,
    identity: RunIdentity,
    record_path: Path,
    callbacks: Sequence[TrainerCallback],
    tables: TableTags | None,
) -> dict[str, Any] | None:
    run_dir = Path(cfg.run_dir)
    checkpoints = run_dir / CHECKPOINTS
    pending = run_dir / PENDING_RECORD
    if not is_main_process():
        # Rank 0 alone publishes a kept record; the other ranks must not start training (they
        # would wait forever for rank 0 in the process group). _publish writes the record
        # before it removes the kept one, so one of the two is always there.
        if read_record(pending, identity) or read_record(record_path, identity):
            return None
    else:
        remove_orphan_temporaries(record_path.parent)
        ensure_writable(record_path.parent, run_dir)
        kept = read_record(pending, identity)
        if kept is not None:
            log.info(f"trained before, record not written then; writing it now: {record_path}")
            return _publish(kept, record_path, checkpoints)

    resume_from = last_complete_checkpoint(checkpoints)
    if resume_from is not None:
        log.info(f"resuming from {resume_from}")
    config = OmegaConf.to_container(cfg, resolve=True)
    spec = get_task(cfg.task.name)

    model = build_run_model(cfg, identity.options)
    parameters = count_parameters(model)
    tokenizer = load_tokenizer(cfg.model.source, cfg.model.path)
    raw = load_task_data(
        spec.name,
        data_dir=cfg.data.dir,
        max_train_samples=cfg.data.max_train_samples,
        max_eval_samples=cfg.data.max_eval_samples,
        seed=int(cfg.data.subset_seed),
        carve_train_from_eval=cfg.data.carve_train_from_eval,
        holdout_from_train=cfg.data.holdout_from_train,
    )
    data = prepare_data(cfg.task, raw.splits, tokenizer)
    test = test_inputs(cfg, tokenizer)
    settings = run_settings(cfg)

    with tracking(
        cfg.logger, identity, config, run_dir, data=raw.provenance, tables=tables
    ) as tracker:
        try:
            result = fit(
                model,
                tokenizer,
                data,
                cfg,
                output_dir=checkpoints,
                run_name=identity.run_name,
                resume_from=resume_from,
                callbacks=[*callbacks, *tracker.callbacks],
                test=test.features if test else None,
            )
        except NonFiniteLossError as err:
            tracker.fail(str(err))
            if not is_main_process():
                return None
            record = make_record(
                identity,
                config,
                "failed",
                failure=str(err),
                parameters=parameters,
                run_settings=settings,
                data=raw.provenance,
            )
            log.error(f"failed: {err}")
            return _publish(record, record_path, checkpoints)

        if not is_main_process():
            log.info(f"process {process_rank()} done; the main process writes the record")
            return None
        adapter = save_adapter(model, run_dir / "adapter.safetensors")
        # LoRA / LoRA-FA: also in peft's format (PeftModel.from_pretrained(backbone, folder))
        peft = (
            save_peft_adapter(model, run_dir / "peft", cfg.model.path)
            if peft_compatible(model)
            else None
        )
        predictions = write_json(run_dir / "predictions.json", result.predictions)
        predicted = (
            write_predictions(run_dir / PREDICT_DIR, spec, data, result, test) if test else {}
        )
        metric_split = spec.eval_splits[0]
        metric = main_metric(spec.name)
        best, last = summarize(result.evaluations, metric_split, metric)
        record = make_record(
            identity,
            config,
            "finished",
            main_metric={"name": metric, "split": metric_split},
            evaluations=result.evaluations,
            loss_history=result.loss_history,
            best=best,
            last=last,
            parameters=parameters,
            run_settings=settings,
            data=raw.provenance,
            timing=result.timing,
            memory=peak_memory(),
            adapter={
                "path": str(adapter),
                "size_bytes": adapter.stat().st_size,
                **({"peft_dir": str(peft)} if peft else {}),
            },
            predictions_path=str(predictions),
            run_dir=str(run_dir),
            **({"predict": predicted} if predicted else {}),
        )
        tracker.log_record(record)
    score = main_score(record)
    score = float("nan") if score is None else score
    log.info(f"finished: best {metric_split} {metric} {score:.4f}")
    return _publish(record, record_path, checkpoints)


def _publish(record: dict[str, Any], record_path: Path, checkpoints: Path) -> dict[str, Any]:
    """Keep the record in the run folder first (if the results folder cannot take it, a rerun
    writes that one instead of training again), write it where the tables read it, then drop
    what only a resume needed."""
    pending = checkpoints.parent / PENDING_RECORD
    if not pending.exists():
        write_json(pending, record)
    write_json(record_path, record)
    log.info(f"record: {record_path}")
    _remove_leftovers(record_path, checkpoints.parent)
    return record


def headline_score(record: dict[str, Any] | None) -> float | None:
    """The record's reported (best) score on its main metric, None when nothing was scored."""
    score = main_score(record) if record else None
    return float(score) if isinstance(score, (int, float)) and math.isfinite(score) else None


class RunFailedError(RuntimeError):
    """The run's record says failed (its loss became NaN/inf, now or in an earlier launch that
    was not retried): ``python -m dcft.train`` exits non-zero, and a Hydra multirun goes on
    with its other runs, then exits non-zero."""


def run_job(cfg: DictConfig, tables: TableTags | None = None) -> float | None:
    """``python -m dcft.train``'s job: one run (``tables``: as for ``run``); returns its
    headline score, or raises
    ``RunFailedError`` when its record says failed. A preemption signal (SIGTERM/SIGUSR1) hands
    over to the previous handler (e.g. submitit's requeue) and exits with 128 + the signal
    number, its last checkpoint sealed."""
    try:
        record = run(cfg, tables=tables)
    except PreemptedError as err:
        log.warning(f"stopped: {err}")
        if callable(err.previous_handler):
            err.previous_handler(err.signum, None)
        raise SystemExit(128 + err.signum) from None
    if record is not None and record["status"] == "failed":
        raise RunFailedError(
            f"run failed: {record['failure_reason']} (retry_failed=true trains it again)"
        )
    return headline_score(record)
