"""One fine-tuning run from a Hydra config: ``python -m dcft.train model=minilm task=sst2
method=dcft seed=0 [overrides]`` (see conf/config.yaml), or ``run(cfg)`` from Python.

A run whose record says ``finished`` is not trained again; a run killed midway resumes from its
last checkpoint in its (deterministic) run folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback, set_seed

from dcft.checkpoints import PreemptedError, last_complete_checkpoint
from dcft.data import data_fingerprint, get_task, load_task_data
from dcft.distributed import is_main_process, process_rank
from dcft.gpu_pool import claim_gpu
from dcft.methods import apply_method, count_parameters, save_adapter
from dcft.metrics import main_metric
from dcft.models import build_model, load_tokenizer
from dcft.results import (
    RunIdentity,
    ensure_writable,
    hparams_hash,
    lock_path,
    make_record,
    method_slug,
    read_record,
    remove_orphan_temporaries,
    summarize,
    write_json,
)
from dcft.run_lock import RunLockedError, run_lock
from dcft.runtime import resolve_precision, split_batch, world_size
from dcft.tracking import tracking
from dcft.training import (
    NonFiniteLossError,
    fit,
    peak_memory,
    prepare_data,
)

# The finished record, kept in the run folder until it is written to the results folder.
PENDING_RECORD = "record.json"
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# conf/hydra/launcher/gpus.yaml: parallel joblib workers, each claims its own GPU.
GPU_POOL_LAUNCHER = "gpus"


def _slug_resolver(*, _root_: DictConfig) -> str:
    options = OmegaConf.to_container(_root_.method.options, resolve=True) or {}
    return method_slug(_root_.method.name, options)


def _hash_resolver(*, _root_: DictConfig) -> str:
    return hparams_hash(_root_)


def _data_resolver(*, _root_: DictConfig) -> str:
    return data_fingerprint(_root_.task.name, _root_.data.dir)


# ${method_slug:} and ${run_hash:} name run folders in conf/ (hydra.run.dir, logger names);
# ${data_fingerprint:} puts the content of the data files into the run's key.
OmegaConf.register_new_resolver("method_slug", _slug_resolver, replace=True)
OmegaConf.register_new_resolver("run_hash", _hash_resolver, replace=True)
OmegaConf.register_new_resolver("data_fingerprint", _data_resolver, replace=True)


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
            "every_steps": trainer.eval_steps if trainer.eval_strategy == "steps" else None,
            "reported": "best",
            "also_recorded": "last",
        },
    }


def _log(message: str) -> None:
    print(f"[dcft] {message}", flush=True)


def check_settings(cfg: DictConfig) -> None:
    """Refuse, before anything is loaded, settings under which nothing would train (they would
    otherwise end as "finished" records) or that do not match this launch."""
    trainer = cfg.trainer
    numbers = {
        "seed": cfg.seed,
        "trainer.learning_rate": trainer.learning_rate,
        "trainer.num_epochs": trainer.num_epochs,
        "trainer.max_steps": trainer.max_steps,
        "trainer.batch_size": trainer.batch_size,
    }
    for key, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
    if not isinstance(cfg.seed, int) or not 0 <= cfg.seed < 2**32:
        raise ValueError(f"seed must be a whole number in [0, 2**32), got {cfg.seed!r}")
    if not trainer.learning_rate > 0:
        raise ValueError(f"trainer.learning_rate must be > 0, got {trainer.learning_rate}")
    if trainer.max_steps == 0 or (trainer.max_steps < 0 and not trainer.num_epochs > 0):
        raise ValueError(
            f"nothing would train: trainer.max_steps={trainer.max_steps}, "
            f"trainer.num_epochs={trainer.num_epochs} (set max_steps > 0, or max_steps=-1 and "
            "num_epochs > 0)"
        )
    if int(cfg.processes) != world_size():
        raise ValueError(
            f"processes={cfg.processes} but this launch runs {world_size()} process(es) "
            "(WORLD_SIZE); leave `processes` unset: it is read from torchrun / accelerate"
        )
    split_batch(trainer.batch_size, world_size(), trainer.gradient_accumulation_steps)


def run(cfg: DictConfig, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any] | None:
    """Train, evaluate and record one run; returns its record (the existing one if finished, or
    failed and ``retry_failed`` is off), or None when another process holds the run and in the
    non-main processes of a multi-GPU run, which write nothing."""
    check_settings(cfg)
    cfg.trainer.precision = resolve_precision(cfg.trainer.precision)
    identity = RunIdentity.from_config(cfg)
    record_path = identity.record_path(cfg.results_dir)
    done = _existing_record(cfg, identity, record_path)
    if done is not None:
        return done
    try:
        with run_lock(lock_path(record_path)):
            return _existing_record(cfg, identity, record_path) or _train(
                cfg, identity, record_path, callbacks
            )
    except RunLockedError as err:
        _log(f"skipped: {err}")
        return None


def _existing_record(
    cfg: DictConfig, identity: RunIdentity, record_path: Path
) -> dict[str, Any] | None:
    existing = read_record(record_path, identity)
    if existing is None:
        return None
    if existing["status"] == "finished":
        _log(f"already finished, nothing to train; record: {record_path}")
        return existing
    if not cfg.retry_failed:
        _log(
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
) -> dict[str, Any] | None:
    run_dir = Path(cfg.run_dir)
    checkpoints = run_dir / "checkpoints"
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
            _log(f"trained before, record not written then; writing it now: {record_path}")
            return _publish(kept, record_path, checkpoints)

    resume_from = last_complete_checkpoint(checkpoints)
    if resume_from is not None:
        _log(f"resuming from {resume_from}")
    config = OmegaConf.to_container(cfg, resolve=True)
    spec = get_task(cfg.task.name)

    set_seed(int(cfg.seed))
    model = build_model(
        cfg.model.source,
        cfg.model.path,
        task_kind="qa" if spec.kind == "squad" else "classification",
        num_labels=spec.num_labels,
        cls_dropout=cfg.model.cls_dropout,
    )
    apply_method(model, cfg.method.name, **identity.options)
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
    settings = run_settings(cfg)

    with tracking(cfg.logger, identity, config, run_dir, data=raw.provenance) as tracker:
        try:
            result = fit(
                model,
                tokenizer,
                data,
                cfg,
                output_dir=checkpoints,
                report_to=tracker.report_to,
                run_name=f"{identity.method_slug}-seed{identity.seed}",
                resume_from=resume_from,
                callbacks=callbacks,
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
            _log(f"FAILED: {err}")
            return _publish(record, record_path, checkpoints)

        if not is_main_process():
            _log(f"process {process_rank()} done; the main process writes the record")
            return None
        adapter = save_adapter(model, run_dir / "adapter.safetensors")
        predictions = write_json(run_dir / "predictions.json", result.predictions)
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
            adapter={"path": str(adapter), "size_bytes": adapter.stat().st_size},
            predictions_path=str(predictions),
            run_dir=str(run_dir),
        )
        tracker.log_record(record)
    score = best["metrics"][metric_split][metric] if best else float("nan")
    _log(f"finished: best {metric_split} {metric} {score:.4f}")
    return _publish(record, record_path, checkpoints)


def _publish(record: dict[str, Any], record_path: Path, checkpoints: Path) -> dict[str, Any]:
    """Keep the record in the run folder first (if the results folder cannot take it, a rerun
    writes that one instead of training again), write it where the tables read it, then drop
    what only a resume needed."""
    pending = checkpoints.parent / PENDING_RECORD
    if not pending.exists():
        write_json(pending, record)
    write_json(record_path, record)
    _log(f"record: {record_path}")
    shutil.rmtree(checkpoints, ignore_errors=True)
    (checkpoints.parent / PENDING_RECORD).unlink(missing_ok=True)
    return record


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if HydraConfig.get().runtime.choices.get("hydra/launcher") == GPU_POOL_LAUNCHER:
        gpu = claim_gpu()
        if gpu is not None:
            _log(f"worker uses GPU {gpu}")
    try:
        run(cfg)
    except PreemptedError as err:
        _log(f"stopped: {err}")
        if callable(err.previous_handler):
            err.previous_handler(err.signum, None)  # e.g. submitit's requeue
        raise SystemExit(128 + err.signum) from None


if __name__ == "__main__":
    main()
