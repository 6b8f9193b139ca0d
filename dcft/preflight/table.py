"""The preflight of a table: every distinct setting of its sweep measured for a few optimiser
steps (dcft.preflight.probe), the full runs priced (dcft.preflight.projection), one table
printed and written to ``results/preflight/<table>-<device>.{md,csv}``.

The runs are the sweep's (``dcft.sweep.plan``), their configs resolved as ``dcft.train`` resolves
them (dcft.run.composer). The seeds of a setting share one measurement, and so do settings of
the same shape (model, task kind and labels, method and options, precision, batch split,
length, optimiser: what memory and step time depend on; the learning rate is not one). Nothing
is written under ``results_dir`` or the run folders and nothing is resumed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from dcft.data import get_task, load_task_data
from dcft.data.errors import DataUnavailableError
from dcft.data.tasks import TaskSpec
from dcft.preflight.probe import ERROR, OK, OOM, Measurement, device_memory, measure
from dcft.preflight.projection import (
    HOURS_COLUMN,
    PREFLIGHT_DIR,
    full_schedule,
    projected_seconds,
    report_paths,
    setting_key,
    wall_seconds,
)
from dcft.run.composer import Composer
from dcft.run.config import CONF_DIR
from dcft.run.models import repo_config_names
from dcft.run.runtime import resolve_precision
from dcft.sweep import PlannedRun, plan
from dcft.tools.params import audit_counts

GIB = 1024**3


@dataclass(frozen=True)
class Reduction:
    """What the preflight shrinks to fit a small machine (None: the run's own value)."""

    batch: int | None = None  # global training batch (accumulation 1) and evaluation batch
    seq: int | None = None  # task.max_length, capped
    steps: int = 2  # timed optimiser steps (after one warm-up step)

    def describe(self) -> str:
        parts = [f"{self.steps} timed optimiser step(s) after 1 warm-up step"]
        if self.batch:
            parts.append(f"batch {self.batch} (train and evaluation, no accumulation)")
        if self.seq:
            parts.append(f"sequence length at most {self.seq}")
        return "; ".join(parts)


@dataclass
class Setting:
    """One setting of the table (its seeds share it) and the config its preflight measures."""

    key: str
    label: str
    cfg: DictConfig  # the run's resolved config, reductions applied
    full: dict[str, Any]  # the run's resolved config as it will train
    seeds: list[int] = field(default_factory=list)
    model_note: str = ""


def _hub_cached(path: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(path, "config.json"), str)


def _model_for_preflight(model: dict[str, Any], random_init: bool) -> str:
    """Switch ``model`` to a random init of its architecture (the repo config of its name) when
    asked, or when it is on the Hub, offline and not cached; returns what was done."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    uncached = model["source"] == "hub" and offline and not _hub_cached(str(model["path"]))
    if model["source"] == "config":
        return "random init (repo config)"
    if not (random_init or uncached):
        return "pretrained"
    if model["name"] not in repo_config_names():
        return "pretrained (no config in dcft/model_configs to build at random)"
    model.update(source="config", path=model["name"])
    return "random init" + ("" if random_init else " (offline, not in the Hub cache)")


def _reduced(
    resolved: dict[str, Any], reduction: Reduction, random_init: bool, key: str = ""
) -> Setting:
    full = json.loads(json.dumps(resolved))
    full["trainer"]["precision"] = resolve_precision(full["trainer"]["precision"])
    cfg = json.loads(json.dumps(full))
    note = _model_for_preflight(cfg["model"], random_init)
    if reduction.batch:
        cfg["trainer"].update(
            batch_size=reduction.batch,
            gradient_accumulation_steps=1,
            eval_batch_size=reduction.batch,
        )
    if reduction.seq:
        cfg["task"]["max_length"] = min(int(cfg["task"]["max_length"]), reduction.seq)
    return Setting(key, _label(full), OmegaConf.create(cfg), full, model_note=note)


def settings_of(
    runs: Sequence[PlannedRun], reduction: Reduction, random_init: bool
) -> list[Setting]:
    """The distinct settings of ``runs`` in sweep order, each with its seeds."""
    found: dict[str, Setting] = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composer = Composer()
        for run in runs:
            key = setting_key(run.identity)
            if key not in found:
                resolved = composer.resolved(run.composed)
                found[key] = _reduced(resolved, reduction, random_init, key)
            found[key].seeds.append(run.identity.seed)
    return list(found.values())


def _label(full: Mapping[str, Any]) -> str:
    from dcft.run.identity import method_slug

    trainer = full["trainer"]
    slug = method_slug(full["method"]["name"], full["method"].get("options") or {})
    split = f"b{trainer['batch_size']}x{trainer['gradient_accumulation_steps']}"
    return f"{full['model']['name']} {full['task']['name']} {slug} {trainer['precision']} {split}"


def shape(cfg: DictConfig) -> str:
    """What a measurement depends on (settings with equal shapes share one)."""
    spec = get_task(cfg.task.name)
    trainer = cfg.trainer
    return json.dumps(
        {
            "model": [cfg.model.source, cfg.model.path, cfg.model.cls_dropout],
            "task": [spec.kind, spec.num_labels, cfg.task.max_length],
            "method": [cfg.method.name, OmegaConf.to_container(cfg.method.options, resolve=True)],
            "trainer": [
                trainer[k]
                for k in (
                    "precision",
                    "batch_size",
                    "gradient_accumulation_steps",
                    "eval_batch_size",
                    "gradient_checkpointing",
                    "optimizer",
                    "merged_eval",
                )
            ],
        },
        sort_keys=True,
    )


def _alternatives(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """What may fit when ``cfg`` runs out of memory: gradient checkpointing, then per-device
    batches halved by gradient accumulation (the global batch kept)."""
    trainer = cfg.trainer
    options = []
    if not trainer.gradient_checkpointing:
        options.append(("trainer.gradient_checkpointing=true", {"gradient_checkpointing": True}))
    accumulation = int(trainer.gradient_accumulation_steps)
    while int(trainer.batch_size) % (accumulation * 2) == 0 and len(options) < 3:
        accumulation *= 2
        per_device = int(trainer.batch_size) // accumulation
        text = (
            f"trainer.gradient_accumulation_steps={accumulation} (per-device batch {per_device}, "
            f"global {trainer.batch_size} kept)"
        )
        options.append((text, {"gradient_accumulation_steps": accumulation}))
    return [(text, OmegaConf.merge(cfg, {"trainer": change})) for text, change in options]


def _what_fits(cfg: DictConfig, steps: int) -> str:
    for text, candidate in _alternatives(cfg):
        if measure(candidate, steps).status == OK:
            return f"fits with {text}"
    return "nothing tried fits (gradient checkpointing, smaller per-device batches)"


def _audit_check(cfg: DictConfig, measured: Measurement) -> Measurement:
    """The trainable count (head excluded) against the parameter audit's on the repo config."""
    name = cfg.model.name
    if measured.status != OK or name not in repo_config_names():
        return measured
    options = OmegaConf.to_container(cfg.method.options, resolve=True) or {}
    audit = audit_counts(name, cfg.method.name, options)["paper"]
    if measured.trainable == audit:
        return measured
    reason = f"trainable parameters {measured.trainable:,} != the parameter audit's {audit:,}"
    return dataclasses.replace(measured, status=ERROR, reason=reason)


@dataclass
class Probe:
    measurement: Measurement
    index: int  # which measurement (settings of one shape share it)
    fits: str = ""


def _injected(label: str, injections: Mapping[str, str]) -> str | None:
    return next((kind for kind, part in injections.items() if part in label), None)


def probe_settings(
    settings: Sequence[Setting], steps: int, injections: Mapping[str, str]
) -> list[Probe]:
    """One measurement per shape (an injected fault applies to its cells' measurement alone)."""
    measured: dict[tuple[str, str | None], Probe] = {}
    probes = []
    bar = tqdm(settings, desc="preflight", unit="setting")
    for setting in bar:
        inject = _injected(setting.label, injections)
        key = (shape(setting.cfg), inject)
        if key not in measured:
            bar.set_postfix_str(setting.label)
            result = _audit_check(setting.cfg, measure(setting.cfg, steps, inject))
            fits = _what_fits(setting.cfg, steps) if result.status == OOM else ""
            measured[key] = Probe(result, len(measured) + 1, fits)
        probes.append(measured[key])
    return probes


@dataclass(frozen=True)
class Row:
    setting: Setting
    probe: Probe
    seconds: float | None  # projected per run
    schedule: str


_examples: dict[str, tuple[int, int, bool] | None] = {}


def _examples_of(full: Mapping[str, Any]) -> tuple[int, int, bool] | None:
    """(training examples, evaluation examples summed over the eval splits, whether they are
    the release's published sizes because the data is not here) the run uses."""
    data = full["data"]
    key = json.dumps([full["task"]["name"], data], sort_keys=True, default=str)
    if key not in _examples:
        spec = get_task(full["task"]["name"])
        try:
            loaded = load_task_data(
                spec.name,
                data_dir=data["dir"],
                max_train_samples=data["max_train_samples"],
                max_eval_samples=data["max_eval_samples"],
                seed=int(data["subset_seed"]),
                carve_train_from_eval=data["carve_train_from_eval"],
                holdout_from_train=data["holdout_from_train"],
            )
        except DataUnavailableError:
            _examples[key] = _published(spec, data)
        else:
            used = {s: c["used"] for s, c in loaded.provenance["examples"].items()}
            evals = sum(n for s, n in used.items() if s in spec.eval_splits)
            _examples[key] = (used.get("train", 0), evals, False)
    return _examples[key]


def _published(spec: TaskSpec, data: Mapping[str, Any]) -> tuple[int, int, bool] | None:
    """The release's sizes (``TaskSpec.published_sizes``) when the data is not here, bounded as
    the run would bound them; None when the run would carve or hold out splits (sizes unknown)."""
    sizes = dict(spec.published_sizes)
    if not sizes or data["carve_train_from_eval"] or data["holdout_from_train"]:
        return None
    cap_train, cap_eval = data["max_train_samples"], data["max_eval_samples"]
    train = min(sizes["train"], cap_train or sizes["train"])
    evals = sum(min(sizes[s], cap_eval or sizes[s]) for s in spec.eval_splits)
    return train, evals, True


def project(setting: Setting, probe: Probe) -> Row:
    m = probe.measurement
    examples = _examples_of(setting.full)
    if m.status != OK or examples is None:
        return Row(setting, probe, None, "no data here" if examples is None else "-")
    train, evals, published = examples
    schedule = full_schedule(setting.full["trainer"], train, evals)
    seconds = projected_seconds(schedule, m.step_s, m.eval_s_per_example)
    text = f"{schedule.optimizer_steps} steps, {schedule.evaluations} x {schedule.eval_examples}"
    text += " (published sizes: no data here)" if published else ""
    return Row(setting, probe, seconds, text)


COLUMNS = (
    "cell",
    "run",
    "seeds",
    "model",
    "measured",
    "status",
    "reason",
    "peak_gib",
    "device_gib",
    "step_s",
    "eval_ms_per_example",
    "schedule",
    HOURS_COLUMN,
    "projected_h_all_seeds",
)


def _csv_row(row: Row, device_bytes: int) -> dict[str, Any]:
    m = row.probe.measurement
    hours = row.seconds / 3600 if row.seconds is not None else None
    reason = "; ".join(r for r in (m.reason, row.probe.fits) if r)
    return {
        "cell": row.setting.label,
        "run": row.setting.key,
        "seeds": len(row.setting.seeds),
        "model": row.setting.model_note,
        "measured": f"#{row.probe.index}",
        "status": m.status,
        "reason": reason,
        "peak_gib": f"{m.peak_bytes / GIB:.2f}" if m.peak_bytes is not None else "",
        "device_gib": f"{device_bytes / GIB:.1f}",
        "step_s": f"{m.step_s:.3f}" if m.step_s is not None else "",
        "eval_ms_per_example": f"{m.eval_s_per_example * 1e3:.2f}" if m.eval_s_per_example else "",
        "schedule": row.schedule,
        HOURS_COLUMN: f"{hours:.3f}" if hours is not None else "",
        "projected_h_all_seeds": f"{hours * len(row.setting.seeds):.2f}" if hours else "",
    }


@dataclass(frozen=True)
class Totals:
    hours: float  # device-hours of every run with a projection
    runs: int  # runs with a projection
    missing: int  # runs without one (a failed cell, no data)
    wall_hours: float  # on ``gpus`` GPUs
    gpus: int


def totals(rows: Sequence[Row], gpus: int) -> Totals:
    durations = [r.seconds for r in rows if r.seconds is not None for _ in r.setting.seeds]
    missing = sum(len(r.setting.seeds) for r in rows if r.seconds is None)
    wall = wall_seconds(durations, gpus) / 3600 if durations else 0.0
    return Totals(sum(durations) / 3600, len(durations), missing, wall, gpus)


def render(
    title: str, rows: Sequence[Row], total: Totals, device: str, reduction: Reduction
) -> tuple[str, list[dict[str, Any]]]:
    """The markdown report and the CSV rows."""
    device_bytes = device_memory()
    records = [_csv_row(r, device_bytes) for r in rows]
    shown = [c for c in COLUMNS if c != "run"]
    lines = [
        f"# Preflight: {title} on {device}",
        "",
        f"Measured: {reduction.describe()}; every batch at the task's full (or capped) length.",
        "Step and evaluation times are this device's at these sizes: the projections are the",
        "full runs' optimiser steps and evaluations at the measured speeds, not rescaled to the",
        "runs' own batch or length when those were reduced. Settings sharing a `measured` number",
        "share one measurement (same shape). Peak memory is CUDA's max_memory_allocated, or on",
        "CPU the tensors allocated (resident parameters + the profiled peak of one step).",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in shown) + " |" for r in records]
    failed = sum(1 for r in rows if r.probe.measurement.status != OK)
    lines += [
        "",
        f"Total: {total.hours:.1f} device-hours for {total.runs} runs "
        f"({total.missing} runs without a projection; {failed} settings not ok).",
        f"Wall time with the gpus launcher on {total.gpus} GPU(s): {total.wall_hours:.1f} h.",
    ]
    return "\n".join(lines) + "\n", records


def write_report(
    table: str, device: str, markdown: str, records: list[dict[str, Any]], root: Path
) -> tuple[Path, Path]:
    md, path = report_paths(table, device, root)
    root.mkdir(parents=True, exist_ok=True)
    md.write_text(markdown)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(records)
    return md, path


def preflight(
    table: str,
    scale: str,
    overrides: Sequence[str],
    reduction: Reduction,
    *,
    random_init: bool = False,
    injections: Mapping[str, str] | None = None,
    gpus: int = 1,
    root: Path = PREFLIGHT_DIR,
) -> tuple[str, list[Row], Totals]:
    """Measure, project, print-ready report; writes ``<root>/<table>-<device>.{md,csv}``."""
    from dcft.preflight.projection import device_name

    runs = plan(table, scale, overrides)
    settings = settings_of(runs, reduction, random_init)
    probes = probe_settings(settings, reduction.steps, injections or {})
    rows = [project(s, p) for s, p in zip(settings, probes, strict=True)]
    total = totals(rows, gpus)
    device = device_name()
    markdown, records = render(f"{table} at {scale} scale", rows, total, device, reduction)
    write_report(table, device, markdown, records, root)
    return markdown, rows, total
