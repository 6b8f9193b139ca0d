"""The benchmark's performance targets and its report: ``<out_dir>/<device>.md`` (machine,
settings, TARGETS met / not met, the per-layer, whole-model and adapter-file tables) and the same
numbers in ``<device>.csv`` (``<device>-quick.*`` with ``--quick``)."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from dcft.run.models import repo_config
from dcft.tools.bench_cases import (
    CPU_TIME_ROWS,
    DCFT,
    DCFT_LAYERS,
    FLOOR,
    FLOOR_POSITION,
    LORA,
    PEFT_LORA,
    STRIDES,
    Settings,
    layer_label,
)
from dcft.tools.benchmark import Stats


@dataclass
class Target:
    name: str
    numerator: Stats | float
    denominator: Stats | float
    threshold: float

    @property
    def ratio(self) -> float:
        return _median(self.numerator) / _median(self.denominator)

    @property
    def met(self) -> bool:
        return self.ratio <= self.threshold

    def spread(self) -> str:
        """Ratio range from the quartiles of both timings (empty for exact quantities)."""
        if not isinstance(self.numerator, Stats) or not isinstance(self.denominator, Stats):
            return ""
        low = self.numerator.q1 / self.denominator.q3
        high = self.numerator.q3 / self.denominator.q1
        noisy = low <= self.threshold < high
        return f" (quartile range {low:.3f}-{high:.3f}{', within noise' if noisy else ''})"

    def line(self) -> str:
        verdict = "MET" if self.met else "NOT MET"
        return f"- {self.name}: {self.ratio:.3f} (target <= {self.threshold:.2f}){self.spread()}: **{verdict}**"


def _median(value: Stats | float) -> float:
    return value.median if isinstance(value, Stats) else value


def targets(s: Settings, layers: list[dict], steps: list[dict], files: list[dict]) -> list[Target]:
    """The performance targets: per layer at the intermediate shape, then per model and
    precision, then the first model's adapter file."""
    config = repo_config(s.layer_config)
    shape = (config.hidden_size, config.intermediate_size)
    layer = {r["config"]: r["time"] for r in layers if r["shape"] == shape}
    where = f"per layer fwd+bwd {shape[0]}x{shape[1]}"
    result = [
        Target(
            f"{where}, {layer_label('structured', 8, stride)} / frozen Linear",
            layer[layer_label("structured", 8, stride)],
            layer["frozen Linear"],
            1.50,
        )
        for stride in STRIDES
    ]
    structured = layer_label("structured", 8, 8)
    result.append(Target(f"{where}, {structured} / LoRA r=1", layer[structured], layer[LORA], 1.00))
    for model in s.models:
        for precision in s.precisions:
            row = {
                r["config"]: r for r in steps if r["model"] == model and r["precision"] == precision
            }
            what = f"{model} ({precision})"
            for numerator, denominator, metric, threshold in STEP_TARGETS:
                if metric in row[numerator] and metric in row[denominator]:
                    result.append(
                        Target(
                            f"{what} {METRIC_NAMES[metric]}, {numerator} / {denominator}",
                            row[numerator][metric],
                            row[denominator][metric],
                            threshold,
                        )
                    )
    size = {r["config"]: r for r in files}
    result.append(
        Target(
            f"{s.models[0]} adapter file (head excluded), DCFT d=8 / LoRA r=1",
            size[DCFT]["without_head"],
            size[LORA]["without_head"],
            0.20,
        )
    )
    return result


# (numerator, denominator, metric, threshold) per model and precision; the step-time targets
# again in single-thread CPU time where it was measured (CPU).
_TIME_TARGETS = (
    (DCFT, LORA, 1.00),
    (DCFT, FLOOR, 1.10),
    (LORA, FLOOR, 1.08),
    (LORA, PEFT_LORA, 0.85),
)
STEP_TARGETS = (
    *((n, d, "time", t) for n, d, t in _TIME_TARGETS),
    (LORA, PEFT_LORA, "peak", 1.00),
    (DCFT, LORA, "peak", 1.00),
    *((n, d, "cpu_time", t) for n, d, t in _TIME_TARGETS),
)
METRIC_NAMES = {
    "time": "step time",
    "peak": "peak memory",
    "cpu_time": "step single-thread CPU time",
}


def report_stem(s: Settings) -> str:
    """``cpu``, or the GPU's name on CUDA (``nvidia-a100-sxm4-80gb``); ``-quick`` with --quick."""
    name = "cpu"
    if s.device.type == "cuda":
        name = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(s.device).lower()).strip("-")
    return name + ("-quick" if s.quick else "")


def precision_line(s: Settings) -> str:
    if s.device.type == "cuda":
        return (
            "- Precision: every whole-model step is timed in fp32, in fp32 with TF32 matmuls "
            "allowed (`tf32`) and under bf16 autocast (`bf16`); targets per precision."
        )
    return (
        "- Precision: fp32. The bf16-autocast and TF32 whole-model rows are measured on CUDA "
        "only: skipped on this CPU run."
    )


def cpu_time_line(s: Settings) -> list[str]:
    if not any(s.cpu_time_rows(m) for m in s.models):
        return []
    return [
        f"- Single-thread CPU time: after the wall-time rounds, {', '.join(CPU_TIME_ROWS)} are "
        f"timed again, {s.cpu_time_repeats} interleaved rounds, with 1 torch thread, in the CPU "
        "time of the timing thread (`time.thread_time`): the step's work, without the second "
        "core's share of noise and without threads waiting for each other. The wall-time targets "
        "are the issue's; the CPU-time ones are the same ratios in this second measure."
    ]


def _ms(stats: Stats) -> str:
    return f"{stats.median * 1e3:.1f}"


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f}"


def _spread_ms(stats: Stats) -> str:
    return (
        f"{stats.q1 * 1e3:.1f}-{stats.q3 * 1e3:.1f} | {stats.min * 1e3:.1f}-{stats.max * 1e3:.1f}"
    )


def write_report(
    s: Settings,
    machine: dict[str, str],
    layers: list[dict],
    steps: list[dict],
    files: list[dict],
    goals: list[Target],
    runtime: float,
) -> Path:
    """Write ``<device>[-quick].{md,csv}`` into ``s.out_dir``; return the ``.md`` path."""
    s.out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(s)
    adamw = f"the optimiser runs train with, `trainer.optimizer={s.optimizer}` (dcft/optim.py)"
    lines = [
        f"# Benchmark: {machine.get('gpu', s.device.type.upper())}",
        "",
        "Written by `python -m dcft.tools.bench`.",
        "",
    ]
    lines += ["| machine | |", "|---|---|"]
    machine = {
        **machine,
        "load average (1/5/15 min) at the end": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    lines += [
        "",
        "## Settings",
        "",
        f"- Per layer: input of {s.layer_tokens[0]} x {s.layer_tokens[1]} = "
        f"{s.layer_tokens[0] * s.layer_tokens[1]} tokens (fp32), shapes from `{s.layer_config}`; "
        "forward + backward (output gradient given), input requires grad, frozen weight; "
        f"{s.layer_warmup} warm-up call(s) (the last one under the memory profiler) + "
        f"{s.layer_repeats} timed repeats, round-robin over all rows.",
        f"- Whole model: batch {s.step_batch[0]} x {s.step_batch[1]} tokens, random token ids, "
        "train mode (dropout on), forward + backward + optimiser step (+ DCFT's regulariser); "
        "the word-embedding output requires grad under every method, so input gradients reach "
        f"the first layer; {s.step_warmup} warm-up steps (the last one under the memory profiler) "
        f"+ {s.step_repeats} timed steps ({s.repeats_for('minilm')} for minilm), round-robin over "
        f"methods, all methods alive in one process; {adamw}. "
        f"`{DCFT}` is the default path (impl=auto: structured), `{FLOOR}` trains the head only, "
        f"`{PEFT_LORA}` is peft's LoRA (r=1, alpha 2, no dropout, unfused as peft runs it) on "
        "the same six matrices with the same head.",
        f"- `{FLOOR_POSITION}` (DeBERTa): the floor with gradients through the relative-position "
        "branch (each layer's position keys and queries are its k and q projections of the "
        "position embeddings), which any method adapting q or k runs; nothing else trains.",
        *cpu_time_line(s),
        precision_line(s),
        f"- Peak memory: {s.memory_method}.",
        "- Spread: interquartile range (q1-q3) and min-max of the timed repeats.",
        "",
        "## TARGETS",
        "",
        *(g.line() for g in goals),
        "",
        "## Per adapted layer (forward + backward)",
        "",
        "| shape (in x out) | config | median ms | IQR ms | min-max ms | / frozen | / reference "
        "same d, s | peak MB above inputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in layers:
        same = {r["config"]: r for r in layers if r["shape"] == row["shape"]}
        frozen = same["frozen Linear"]["time"].median
        ref = same.get(reference_of(row["config"]))
        vs_ref = f"{row['time'].median / ref['time'].median:.2f}" if ref else ""
        lines.append(
            f"| {row['shape'][0]}x{row['shape'][1]} | {row['config']} | {_ms(row['time'])} | "
            f"{_spread_ms(row['time'])} | {row['time'].median / frozen:.2f} | {vs_ref} | "
            f"{_mb(row['peak'])} |"
        )
    for model in s.models:
        for precision in s.precisions:
            rows = [r for r in steps if r["model"] == model and r["precision"] == precision]
            lines += ["", f"## Whole-model training step: {model} ({precision})", ""]
            lines += step_table(rows)
            timed = [r for r in rows if "cpu_time" in r]
            if timed:
                lines += ["", f"### Single-thread CPU time of a step: {model} ({precision})", ""]
                lines += cpu_time_table(timed)
    lora_file = {r["config"]: r for r in files}[LORA]
    lines += [
        "",
        f"## Adapter file size ({s.models[0]}, safetensors via save_adapter)",
        "",
        "| method | bytes (head included) | bytes (head excluded) | / LoRA (head excl.) |",
        "|---|---|---|---|",
    ]
    for r in files:
        ratio = r["without_head"] / lora_file["without_head"]
        lines.append(
            f"| {r['config']} | {r['with_head']:,} | {r['without_head']:,} | {ratio:.3f} |"
        )
    lines += ["", f"Benchmark runtime: {runtime:.0f} s.", ""]
    md = s.out_dir / f"{stem}.md"
    md.write_text("\n".join(lines))
    write_csv(s.out_dir / f"{stem}.csv", layers, steps, files, goals)
    return md


def reference_of(label: str) -> str | None:
    """The reference-path row with the same d and stride as a structured or fast DCFT row."""
    if label not in DCFT_LAYERS or DCFT_LAYERS[label][0] == "reference":
        return None
    _, d, stride = DCFT_LAYERS[label]
    return layer_label("reference", d, stride)


def step_table(rows: list[dict]) -> list[str]:
    """One model's whole-step rows at one precision, with ratios to the floor, LoRA and peft."""
    by = {r["config"]: r for r in rows}
    lines = [
        "| method | trainable (head excl.) | median ms | IQR ms | min-max ms | / floor | / LoRA "
        "| / peft LoRA | peak MB | / floor | / LoRA | / peft LoRA | MB alive at start "
        "| MB above start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        time_ratios = [r["time"].median / by[c]["time"].median for c in (FLOOR, LORA, PEFT_LORA)]
        peak_ratios = [r["peak"] / by[c]["peak"] for c in (FLOOR, LORA, PEFT_LORA)]
        lines.append(
            f"| {r['config']} | {r['params']:,} | {_ms(r['time'])} | {_spread_ms(r['time'])} | "
            + " | ".join(f"{v:.3f}" for v in time_ratios)
            + f" | {_mb(r['peak'])} | "
            + " | ".join(f"{v:.3f}" for v in peak_ratios)
            + f" | {_mb(r['state'])} | {_mb(r['during'])} |"
        )
    return lines


def cpu_time_table(rows: list[dict]) -> list[str]:
    by = {r["config"]: r["cpu_time"].median for r in rows}
    columns = [c for c in (FLOOR, FLOOR_POSITION, LORA, PEFT_LORA) if c in by]
    lines = [
        "| method | median ms | IQR ms | min-max ms | "
        + " | ".join(f"/ {c}" for c in columns)
        + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for r in rows:
        ratios = " | ".join(f"{r['cpu_time'].median / by[c]:.3f}" for c in columns)
        lines.append(
            f"| {r['config']} | {_ms(r['cpu_time'])} | {_spread_ms(r['cpu_time'])} | {ratios} |"
        )
    return lines


def write_csv(
    path: Path, layers: list[dict], steps: list[dict], files: list[dict], goals: list[Target]
) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["section", "subject", "config", "metric", "median", "q1", "q3", "min", "max"])
        for r in layers:
            subject = f"{r['shape'][0]}x{r['shape'][1]}"
            out.writerow(["layer", subject, r["config"], "seconds", *_stats(r["time"])])
            out.writerow(["layer", subject, r["config"], "peak_bytes", r["peak"]])
        for r in steps:
            subject = f"{r['model']} ({r['precision']})"
            out.writerow(["step", subject, r["config"], "seconds", *_stats(r["time"])])
            if "cpu_time" in r:
                cpu = _stats(r["cpu_time"])
                out.writerow(["step", subject, r["config"], "cpu_seconds_1_thread", *cpu])
            out.writerow(["step", subject, r["config"], "peak_bytes", r["peak"]])
            out.writerow(["step", subject, r["config"], "trainable_params", r["params"]])
        for r in files:
            out.writerow(["file", "", r["config"], "bytes_with_head", r["with_head"]])
            out.writerow(["file", "", r["config"], "bytes_without_head", r["without_head"]])
        for g in goals:
            out.writerow(["target", g.name, f"<= {g.threshold}", "ratio", f"{g.ratio:.4f}"])


def _stats(stats: Stats) -> list[float]:
    return [stats.median, stats.q1, stats.q3, stats.min, stats.max]
