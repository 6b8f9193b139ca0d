"""Speed, memory and adapter-size benchmark of DCFT against its baselines, in one process.

Per adapted layer (DeBERTaV3-base shapes): forward + backward of the frozen Linear (input requires
grad, as inside a network), LoRA r=1, DCFT fast and DCFT reference for d in 2, 4, 8, and LoRA r=1
and DCFT fast d=8 unfused (``base(x) + update(x)`` as separate ops, what the fusion saves). Whole-model
training step (DeBERTaV3-base shape with random weights, and the pretrained MiniLM): frozen floor
(head only; input gradients flow to the first layer), LoRA r=1, DCFT d=8 fast and reference,
BitFit, full FT. Adapter file sizes via ``save_adapter``. Writes results/bench/<device>.{md,csv}
with a TARGETS section.

    python scripts/bench.py                 # CPU here, CUDA where present (~3 min on 2 cores)
    python scripts/bench.py --quick --out-dir /tmp/bench   # tiny shapes, seconds (smoke test)
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "KINETO_LOG_LEVEL", "5"
)  # before torch: silence the profiler's start/stop lines

import argparse
import copy
import csv
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from dcft.methods import (
    adapter_state,
    applied_method,
    apply_method,
    count_parameters,
    head_parameter_names,
    regularizer,
    save_adapter,
)
from dcft.methods.dcft import DcftLinear
from dcft.methods.lora import LoraLinear
from dcft.run.models import build_model, repo_config
from dcft.tools.benchmark import (
    Stats,
    live_bytes,
    machine_info,
    peak_bytes_during,
    time_interleaved,
)

ROOT = Path(__file__).resolve().parents[1]
KERNELS = (2, 4, 8)
FLOOR, LORA, DCFT_FAST, DCFT_REF = "frozen floor", "LoRA r=1", "DCFT d=8 fast", "DCFT d=8 reference"
# label -> (method name, options); None is the frozen floor (only the head trains).
STEP_METHODS: dict[str, tuple[str, dict] | None] = {
    FLOOR: None,
    LORA: ("lora", {"r": 1}),
    DCFT_FAST: ("dcft", {"kernel": 8, "impl": "fast"}),
    DCFT_REF: ("dcft", {"kernel": 8, "impl": "reference"}),
    "BitFit": ("bitfit", {}),
    "full FT": ("full", {}),
}


@dataclass
class Settings:
    device: torch.device
    quick: bool
    layer_config: str  # repo config whose (hidden, intermediate) give the layer shapes
    layer_tokens: tuple[int, int]  # (batch, sequence) of the per-layer input
    models: tuple[str, ...]  # repo config names, or "minilm"
    step_batch: tuple[int, int]  # (batch, sequence) of the whole-model step
    layer_repeats: int
    step_repeats: int
    layer_warmup: int
    step_warmup: int
    out_dir: Path
    memory_method: str = field(init=False)

    def repeats_for(self, model: str) -> int:
        """Timed steps for ``model``: MiniLM steps are ~8x cheaper, so it gets 3x the repeats."""
        return self.step_repeats * (3 if model == "minilm" else 1)

    def __post_init__(self) -> None:
        self.memory_method = (
            "torch.cuda.max_memory_allocated during the step minus memory_allocated at its start"
            if self.device.type == "cuda"
            else "peak of the CPU allocator's running total of tensor bytes during the step "
            "(torch.profiler, profile_memory=True; allocation events of the event tree)"
        ) + (
            ", plus the bytes alive at its start (all parameters, AdamW state, the batch; "
            "gradients are freed at the end of each step)"
        )


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and models (smoke test)")
    parser.add_argument("--repeats", type=int, help="timed repeats per configuration")
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed warm-up calls per configuration, the last one under the memory profiler "
        "(at least 1 per layer, 2 per step)",
    )
    parser.add_argument("--batch", type=int, help="whole-model batch size")
    parser.add_argument("--seq", type=int, help="whole-model sequence length")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    if args.quick:
        settings = dict(
            layer_config="tiny-deberta",
            layer_tokens=(4, 64),
            models=("tiny-deberta",),
            step_batch=(4, 32),
            layer_repeats=2,
            step_repeats=2,
            layer_warmup=1,
            step_warmup=2,
        )
    else:
        settings = dict(
            layer_config="deberta-v3-base",
            layer_tokens=(32, 128),
            models=("deberta-v3-base", "minilm"),
            step_batch=(32, 128) if cuda else (8, 128),
            layer_repeats=10 if cuda else 5,
            step_repeats=10 if cuda else 3,
            layer_warmup=3 if cuda else 1,
            step_warmup=3 if cuda else 2,
        )
    if args.repeats is not None:
        settings["layer_repeats"] = settings["step_repeats"] = args.repeats
    if args.warmup is not None:
        settings["layer_warmup"] = max(1, args.warmup)
        settings["step_warmup"] = max(2, args.warmup)
    batch, seq = settings["step_batch"]
    settings["step_batch"] = (args.batch or batch, args.seq or seq)
    return Settings(device=device, quick=args.quick, out_dir=args.out_dir, **settings)


# ----------------------------------------------------------------------------- per layer


@dataclass
class LayerCase:
    shape: tuple[int, int]
    label: str
    layer: nn.Module
    x: torch.Tensor
    grad: torch.Tensor

    def reset(self) -> None:
        self.x.grad = None
        for p in self.layer.parameters():
            p.grad = None

    def run(self) -> None:
        self.layer(self.x).backward(self.grad)

    def call(self) -> None:
        self.reset()
        self.run()


def layer_cases(s: Settings) -> list[LayerCase]:
    config = repo_config(s.layer_config)
    hidden, inner = config.hidden_size, config.intermediate_size
    cases = []
    for n_in, n_out in ((hidden, hidden), (hidden, inner), (inner, hidden)):
        torch.manual_seed(0)
        base = nn.Linear(n_in, n_out, device=s.device).requires_grad_(False)
        x = torch.randn(*s.layer_tokens, n_in, device=s.device, requires_grad=True)
        grad = torch.randn(*s.layer_tokens, n_out, device=s.device)
        layers: dict[str, nn.Module] = {"frozen Linear": base, "LoRA r=1": LoraLinear(base, 1, 2.0)}
        for impl in ("fast", "reference"):
            for d in KERNELS:
                layers[f"DCFT {impl} d={d}"] = DcftLinear(base, d, d, impl=impl)
        unfused = {"LoRA r=1": LoraLinear(base, 1, 2.0), "DCFT fast d=8": DcftLinear(base, 8, 8)}
        for label, layer in unfused.items():
            layer.fuse = False
            layers[f"{label} unfused"] = layer
        cases += [LayerCase((n_in, n_out), label, m, x, grad) for label, m in layers.items()]
    return cases


def bench_layers(s: Settings, bar: tqdm) -> list[dict]:
    """Warm-up calls per case, the last one under the memory profiler; then timed rounds."""
    cases = layer_cases(s)
    bar.set_description("per-layer warm-up + memory")
    peaks = []
    for case in cases:
        for _ in range(s.layer_warmup - 1):
            case.call()
            bar.update()
        case.reset()
        peaks.append(peak_bytes_during(case.run, s.device))
        bar.update()
    bar.set_description("per-layer timing")
    calls = {str(i): c.call for i, c in enumerate(cases)}
    timings = time_interleaved(calls, s.device, s.layer_repeats, bar.update)
    return [
        {"shape": c.shape, "config": c.label, "time": timings[str(i)], "peak": peaks[i]}
        for i, c in enumerate(cases)
    ]


# ----------------------------------------------------------------------------- whole model


@dataclass
class StepCase:
    label: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    batch: dict[str, torch.Tensor]

    def step(self) -> None:
        loss = self.model(**self.batch).loss
        reg = regularizer(self.model)
        if reg is not None:
            loss = loss + reg
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_bytes(self) -> int:
        tensors = list(self.model.parameters()) + list(self.batch.values())
        for state in self.optimizer.state.values():
            tensors += [t for t in state.values() if isinstance(t, torch.Tensor)]
        return live_bytes(tensors)


def load_backbone(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    if name == "minilm":
        return build_model("minilm", device=device)
    return build_model("config", name, device=device)


def prepare(model: nn.Module, method: tuple[str, dict] | None) -> nn.Module:
    """Apply ``method`` (None: train only the head) and make the word-embedding output require
    grad, so that input gradients flow down to the first layer under every method."""
    if method is None:
        head = head_parameter_names(model)
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
    else:
        apply_method(model, method[0], **method[1])

    def require_grad(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        return output if output.requires_grad else output.requires_grad_()

    model.get_input_embeddings().register_forward_hook(require_grad)
    return model.train()


def step_cases(s: Settings, name: str) -> list[StepCase]:
    backbone = load_backbone(name, s.device)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, s.step_batch, generator=generator).to(s.device)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.randint(0, 2, (s.step_batch[0],), generator=generator).to(s.device),
    }
    cases = []
    for label, method in STEP_METHODS.items():
        torch.manual_seed(0)
        model = prepare(copy.deepcopy(backbone), method)
        trainable = [p for p in model.parameters() if p.requires_grad]
        cases.append(StepCase(label, model, torch.optim.AdamW(trainable, lr=1e-5), batch))
    return cases


def bench_model(s: Settings, name: str, bar: tqdm) -> tuple[list[dict], list[StepCase]]:
    """Warm-up steps per method (the first creates the AdamW state), the last one under the
    memory profiler; then timed rounds."""
    bar.set_description(f"{name}: building")
    cases = step_cases(s, name)
    bar.set_description(f"{name}: warm-up + memory")
    rows = []
    for case in cases:
        for _ in range(s.step_warmup - 1):
            case.step()
            bar.update()
        during = peak_bytes_during(case.step, s.device)
        bar.update()
        state = case.state_bytes()
        rows.append(
            {
                "model": name,
                "config": case.label,
                "params": count_parameters(case.model)["paper"],
                "state": state,
                "during": during,
                "peak": state + during,
            }
        )
    bar.set_description(f"{name}: step timing")
    calls = {c.label: c.step for c in cases}
    timings = time_interleaved(calls, s.device, s.repeats_for(name), bar.update)
    for row in rows:
        row["time"] = timings[row["config"]]
    return rows, cases


def adapter_file_sizes(cases: list[StepCase], bar: tqdm) -> list[dict]:
    """Bytes of the safetensors file save_adapter writes (head included), and of the same
    tensors without the task head (the paper's parameter counting)."""
    bar.set_description("adapter files")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            model, path = case.model, Path(tmp) / "adapter.safetensors"
            head = head_parameter_names(model)
            if applied_method(model) is None:
                state = {n: p for n, p in model.named_parameters() if n in head}
                save_file({n: t.detach().cpu().contiguous() for n, t in state.items()}, str(path))
            else:
                save_adapter(model, path)
                state = adapter_state(model)
            with_head = path.stat().st_size
            body = {n: t.detach().cpu().contiguous() for n, t in state.items() if n not in head}
            without_head = 0
            if body:
                save_file(body, str(path))
                without_head = path.stat().st_size
            rows.append(
                {"config": case.label, "with_head": with_head, "without_head": without_head}
            )
            bar.update()
    return rows


# ----------------------------------------------------------------------------- report


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
    s.out_dir.mkdir(parents=True, exist_ok=True)
    stem = s.device.type + ("-quick" if s.quick else "")
    lines = [f"# Benchmark: {s.device.type.upper()}", "", "Written by `scripts/bench.py`.", ""]
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


@contextmanager
def progress(s: Settings) -> Iterator[tqdm]:
    n_layer = 3 * (2 + 2 * len(KERNELS))
    n_step = len(STEP_METHODS)
    total = n_layer * (s.layer_warmup + s.layer_repeats)
    total += sum(n_step * (s.step_warmup + s.repeats_for(m)) for m in s.models) + n_step
    with tqdm(total=total, unit="call", dynamic_ncols=True) as bar:
        yield bar


def run(s: Settings) -> Path:
    start, machine = time.perf_counter(), machine_info(s.device)
    with progress(s) as bar:
        layers = bench_layers(s, bar)
        steps, files = [], []
        for name in s.models:
            rows, cases = bench_model(s, name, bar)
            steps += rows
            if name == s.models[0]:
                files = adapter_file_sizes(cases, bar)
            del cases
    goals = targets(s, layers, steps, files)
    return write_report(s, machine, layers, steps, files, goals, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> Path:
    report = run(parse_args(argv))
    print(f"wrote {report}")
    return report


if __name__ == "__main__":
    main()
