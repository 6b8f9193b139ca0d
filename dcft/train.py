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

from dcft.data import get_task, load_task_data
from dcft.distributed import is_main_process, process_rank
from dcft.gpu_pool import claim_gpu
from dcft.methods import apply_method, count_parameters, save_adapter
from dcft.metrics import main_metric
from dcft.models import build_model, load_tokenizer
from dcft.results import (
    RunIdentity,
    hparams_hash,
    make_record,
    method_slug,
    read_record,
    summarize,
    write_json,
)
from dcft.runtime import resolve_precision, split_batch, world_size
from dcft.tracking import tracking
from dcft.training import (
    NonFiniteLossError,
    fit,
    last_complete_checkpoint,
    peak_memory,
    prepare_data,
)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# conf/hydra/launcher/gpus.yaml: parallel joblib workers, each claims its own GPU.
GPU_POOL_LAUNCHER = "gpus"


def _slug_resolver(*, _root_: DictConfig) -> str:
    options = OmegaConf.to_container(_root_.method.options, resolve=True) or {}
    return method_slug(_root_.method.name, options)


def _hash_resolver(*, _root_: DictConfig) -> str:
    return hparams_hash(_root_)


# ${method_slug:} and ${run_hash:} name run folders in conf/ (hydra.run.dir, logger names).
OmegaConf.register_new_resolver("method_slug", _slug_resolver, replace=True)
OmegaConf.register_new_resolver("run_hash", _hash_resolver, replace=True)


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


def run(cfg: DictConfig, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any] | None:
    """Train, evaluate and record one run; returns its record (the existing one if finished),
    or None in the non-main processes of a multi-GPU run, which write nothing."""
    if int(cfg.processes) != world_size():
        raise ValueError(
            f"processes={cfg.processes} but this launch runs {world_size()} process(es) "
            "(WORLD_SIZE); leave `processes` unset: it is read from torchrun / accelerate"
        )
    cfg.trainer.precision = resolve_precision(cfg.trainer.precision)
    identity = RunIdentity.from_config(cfg)
    record_path = identity.record_path(cfg.results_dir)
    existing = read_record(record_path)
    if existing is not None and existing["status"] == "finished":
        _log(f"already finished, nothing to train; record: {record_path}")
        return existing

    run_dir = Path(cfg.run_dir)
    checkpoints = run_dir / "checkpoints"
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
    )
    data = prepare_data(cfg.task, raw.splits, tokenizer)
    settings = run_settings(cfg)

    with tracking(cfg.logger, identity, config, run_dir) as tracker:
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
            write_json(record_path, record)
            shutil.rmtree(checkpoints, ignore_errors=True)
            _log(f"FAILED: {err}; record: {record_path}")
            return record

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
        write_json(record_path, record)
        tracker.summarize(
            {
                f"best/{metric}": best["metrics"][metric_split][metric] if best else None,
                "parameters/paper": parameters["paper"],
            }
        )
    shutil.rmtree(checkpoints, ignore_errors=True)
    score = best["metrics"][metric_split][metric] if best else float("nan")
    _log(f"finished: best {metric_split} {metric} {score:.4f}; record: {record_path}")
    return record


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if HydraConfig.get().runtime.choices.get("hydra/launcher") == GPU_POOL_LAUNCHER:
        gpu = claim_gpu()
        if gpu is not None:
            _log(f"worker uses GPU {gpu}")
    run(cfg)


if __name__ == "__main__":
    main()
