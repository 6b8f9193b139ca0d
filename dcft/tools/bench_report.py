"""The benchmark's performance targets and its report: ``<out_dir>/<device>.md`` (machine,
settings, TARGETS met / not met, the per-layer, whole-model and adapter-file tables) and the same
numbers in ``<device>.csv`` (``<device>-quick.*`` with ``--quick``)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from dcft.run.models import repo_config
from dcft.tools.bench_cases import DCFT_FAST, FLOOR, LORA, Settings
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
    """The performance targets: per layer at the intermediate shape, then per model, then the
    first model's adapter file."""
    config = repo_config(s.layer_config)
    shape = (config.hidden_size, config.intermediate_size)
    layer = {r["config"]: r["time"] for r in layers if r["shape"] == shape}
    result = [
        Target(
            f"per layer fwd+bwd {shape[0]}x{shape[1]}, DCFT fast / DCFT reference (d=8)",
            layer["DCFT fast d=8"],
            layer["DCFT reference d=8"],
            0.55,
        )
    ]
    for model in s.models:
        row = {r["config"]: r for r in steps if r["model"] == model}
        result += [
            Target(
                f"{model} step time, DCFT d=8 / LoRA r=1",
                row[DCFT_FAST]["time"],
                row[LORA]["time"],
                1.00,
            ),
            Target(
                f"{model} step time, DCFT d=8 / frozen floor",
                row[DCFT_FAST]["time"],
                row[FLOOR]["time"],
                1.10,
            ),
            Target(
                f"{model} peak memory, DCFT d=8 / LoRA r=1",
                row[DCFT_FAST]["peak"],
                row[LORA]["peak"],
                1.00,
            ),
        ]
    size = {r["config"]: r for r in files}
    result.append(
        Target(
            f"{s.models[0]} adapter file (head excluded), DCFT d=8 / LoRA r=1",
            size[DCFT_FAST]["without_head"],
            size[LORA]["without_head"],
            0.20,
        )
    )
    return result


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
    stem = s.device.type + ("-quick" if s.quick else "")
    lines = [
        f"# Benchmark: {s.device.type.upper()}",
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
        "train mode (dropout on), forward + backward + AdamW step (+ DCFT's regulariser); "
        "the word-embedding output requires grad under every method, so input gradients reach "
        f"the first layer; {s.step_warmup} warm-up steps (the last one under the memory profiler) "
        f"+ {s.step_repeats} timed steps ({s.repeats_for('minilm')} for minilm), round-robin over "
        "methods, all methods alive in one process.",
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
        "same d | peak MB above inputs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in layers:
        same = {r["config"]: r for r in layers if r["shape"] == row["shape"]}
        frozen = same["frozen Linear"]["time"].median
        ref = same.get(row["config"].replace("fast", "reference"))
        has_ref = "fast" in row["config"] and ref is not None
        vs_ref = f"{row['time'].median / ref['time'].median:.2f}" if has_ref else ""
        lines.append(
            f"| {row['shape'][0]}x{row['shape'][1]} | {row['config']} | {_ms(row['time'])} | "
            f"{_spread_ms(row['time'])} | {row['time'].median / frozen:.2f} | {vs_ref} | "
            f"{_mb(row['peak'])} |"
        )
    for model in s.models:
        rows = [r for r in steps if r["model"] == model]
        by = {r["config"]: r for r in rows}
        lines += [
            "",
            f"## Whole-model training step: {model}",
            "",
            "| method | trainable (head excl.) | median ms | IQR ms | min-max ms | / floor | / LoRA "
            "| peak MB | / floor | / LoRA | MB alive at start | MB above start |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            t, floor, lora = r["time"].median, by[FLOOR]["time"].median, by[LORA]["time"].median
            lines.append(
                f"| {r['config']} | {r['params']:,} | {_ms(r['time'])} | {_spread_ms(r['time'])} "
                f"| {t / floor:.3f} | {t / lora:.3f} | {_mb(r['peak'])} | "
                f"{r['peak'] / by[FLOOR]['peak']:.3f} | {r['peak'] / by[LORA]['peak']:.3f} | "
                f"{_mb(r['state'])} | {_mb(r['during'])} |"
            )
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
            out.writerow(["step", r["model"], r["config"], "seconds", *_stats(r["time"])])
            out.writerow(["step", r["model"], r["config"], "peak_bytes", r["peak"]])
            out.writerow(["step", r["model"], r["config"], "trainable_params", r["params"]])
        for r in files:
            out.writerow(["file", "", r["config"], "bytes_with_head", r["with_head"]])
            out.writerow(["file", "", r["config"], "bytes_without_head", r["without_head"]])
        for g in goals:
            out.writerow(["target", g.name, f"<= {g.threshold}", "ratio", f"{g.ratio:.4f}"])


def _stats(stats: Stats) -> list[float]:
    return [stats.median, stats.q1, stats.q3, stats.min, stats.max]
