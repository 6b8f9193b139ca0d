"""What ``dcft.tools.bench`` measures, and measuring it: the settings, the per-layer and
whole-model cases (warm-up, memory, then interleaved timing), and the adapter file sizes."""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
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
from dcft.methods.targets import TARGET_NAMES, matrix_sites
from dcft.optim import build_optimizer
from dcft.run.config import CONF_DIR
from dcft.run.models import build_model, repo_config
from dcft.tools.benchmark import Stats, live_bytes, peak_bytes_during, time_interleaved

KERNELS = (2, 4, 8)  # per layer, structured path at stride = kernel (Table 4)
STRIDES = (8, 4, 2, 1)  # per layer at d = 8, structured and reference path (Table 5)


def layer_label(impl: str, kernel: int, stride: int) -> str:
    return f"DCFT {impl} d={kernel} s={stride}"


# Per shape: label -> (impl, kernel, stride) of every DCFT row (the frozen Linear, LoRA r=1 and
# the unfused rows are added by layer_cases).
DCFT_LAYERS: dict[str, tuple[str, int, int]] = {
    **{layer_label("structured", d, d): ("structured", d, d) for d in KERNELS},
    **{layer_label("structured", 8, s): ("structured", 8, s) for s in STRIDES if s != 8},
    layer_label("fast", 8, 8): ("fast", 8, 8),
    **{layer_label("reference", 8, s): ("reference", 8, s) for s in STRIDES},
}
UNFUSED = ("LoRA r=1 unfused", f"{layer_label('structured', 8, 8)} unfused")
LAYER_CONFIGS = 2 + len(DCFT_LAYERS) + len(UNFUSED)
FLOOR, LORA, PEFT_LORA = "frozen floor", "LoRA r=1", "peft LoRA r=1"
# The floor with gradients through DeBERTa's relative-position branch (its position keys and
# queries are the q/k projections of the position embeddings): what adapting q or k adds to the
# floor before any update arithmetic. Only for backbones with relative attention.
FLOOR_POSITION = "frozen floor + position-branch gradients"
DCFT, DCFT_FAST, DCFT_REF = "DCFT d=8", "DCFT d=8 fast", "DCFT d=8 reference"
# label -> (method name, options); None is the frozen floor (only the head trains); PEFT_LORA is
# peft's LoRA on the same six matrices (``peft_lora``).
STEP_METHODS: dict[str, tuple[str, dict] | None] = {
    FLOOR: None,
    FLOOR_POSITION: ("position-gradients", {}),
    LORA: ("lora", {"r": 1}),
    PEFT_LORA: ("peft-lora", {"r": 1, "alpha": 2.0}),
    DCFT: ("dcft", {"kernel": 8}),
    DCFT_FAST: ("dcft", {"kernel": 8, "impl": "fast"}),
    DCFT_REF: ("dcft", {"kernel": 8, "impl": "reference"}),
    "BitFit": ("bitfit", {}),
    "full FT": ("full", {}),
}
# The rows the step targets compare, timed again in single-thread CPU time on CPU.
CPU_TIME_ROWS = (FLOOR, FLOOR_POSITION, LORA, PEFT_LORA, DCFT)
# Whole-step precisions: fp32 everywhere; on CUDA also TF32 matmuls and bf16 autocast.
PRECISIONS = {"cpu": ("fp32",), "cuda": ("fp32", "tf32", "bf16")}


def trainer_default(key: str) -> object:
    """A ``trainer.<key>`` default of the runs (conf/trainer/default.yaml)."""
    return OmegaConf.load(CONF_DIR / "trainer" / "default.yaml")[key]


def _relative(model: str) -> bool:
    return model != "minilm" and bool(getattr(repo_config(model), "relative_attention", False))


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
    optimizer: str = field(default_factory=lambda: trainer_default("optimizer"))
    # CPU only: rounds of CPU_TIME_ROWS timed again with 1 torch thread in this thread's CPU time,
    # which a second core's noise and the threads' waiting leave out (0: not measured)
    cpu_time_repeats: int = 0
    memory_method: str = field(init=False)

    @property
    def precisions(self) -> tuple[str, ...]:
        return PRECISIONS.get(self.device.type, ("fp32",))

    def repeats_for(self, model: str) -> int:
        """Timed steps for ``model``: MiniLM steps are ~8x cheaper, so it gets 3x the repeats."""
        return self.step_repeats * (3 if model == "minilm" else 1)

    def step_labels(self, model: str) -> list[str]:
        """The whole-step rows of ``model``: FLOOR_POSITION only with relative attention."""
        return [label for label in STEP_METHODS if label != FLOOR_POSITION or _relative(model)]

    def cpu_time_rows(self, model: str) -> list[str]:
        if self.device.type != "cpu" or not self.cpu_time_repeats:
            return []
        return [label for label in self.step_labels(model) if label in CPU_TIME_ROWS]

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
        for label, (impl, d, stride) in DCFT_LAYERS.items():
            layers[label] = DcftLinear(base, d, stride, impl=impl)
        unfused = (LoraLinear(base, 1, 2.0), DcftLinear(base, 8, 8))
        for label, layer in zip(UNFUSED, unfused, strict=True):
            layer.fuse = False
            layers[label] = layer
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
    precision: str = "fp32"

    def step(self) -> None:
        with precision_context(self.precision, self.batch["input_ids"].device):
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


@contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """fp32; tf32: fp32 with TF32 matmuls allowed (CUDA); bf16: bf16 autocast (CUDA)."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def load_backbone(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    if name == "minilm":
        return build_model("minilm", device=device)
    return build_model("config", name, device=device)


def peft_lora(model: nn.Module, r: int, alpha: float) -> nn.Module:
    """peft's LoRA (r, alpha, no dropout, as peft runs it: unfused) injected into the same six
    matrices of every layer, with the task head trainable as under the harness's methods."""
    from peft import LoraConfig, inject_adapter_in_model

    head = head_parameter_names(model)
    targets = [site.name for site in matrix_sites(model, TARGET_NAMES)]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets)
    model = inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_(name in head or "lora_" in name)
    return model


def prepare(model: nn.Module, method: tuple[str, dict] | None) -> nn.Module:
    """Apply ``method`` (None: train only the head) and make the word-embedding output require
    grad, so that input gradients flow down to the first layer under every method."""
    if method is None or method[0] == "position-gradients":
        head = head_parameter_names(model)
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
        if method is not None:
            position_norm(model).register_forward_hook(_require_grad)
    elif method[0] == "peft-lora":
        model = peft_lora(model, **method[1])
    else:
        apply_method(model, method[0], **method[1])
    model.get_input_embeddings().register_forward_hook(_require_grad)
    return model.train()


def _require_grad(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
    return output if output.requires_grad else output.requires_grad_()


def position_norm(model: nn.Module) -> nn.Module:
    """DeBERTa's LayerNorm over the relative-position embeddings, whose output every layer's
    attention projects into position keys and queries."""
    for module in model.modules():
        if hasattr(module, "rel_embeddings") and hasattr(module, "LayerNorm"):
            return module.LayerNorm
    raise ValueError(f"{type(model).__name__} has no normalised relative-position embeddings")


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
    for label in s.step_labels(name):
        method = STEP_METHODS[label]
        torch.manual_seed(0)
        model = prepare(copy.deepcopy(backbone), method)
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": trainable, "weight_decay": 0.0}]
        optimizer = build_optimizer(s.optimizer, groups, lr=1e-5, betas=(0.9, 0.999), eps=1e-6)
        cases.append(StepCase(label, model, optimizer, batch))
    return cases


def bench_model(s: Settings, name: str, bar: tqdm) -> tuple[list[dict], list[StepCase]]:
    """Per precision: warm-up steps per method (the first creates the AdamW state), the last one
    under the memory profiler; then timed rounds."""
    bar.set_description(f"{name}: building")
    cases = step_cases(s, name)
    rows = []
    for precision in s.precisions:
        bar.set_description(f"{name} {precision}: warm-up + memory")
        measured = []
        for case in cases:
            case.precision = precision
            for _ in range(s.step_warmup - 1):
                case.step()
                bar.update()
            during = peak_bytes_during(case.step, s.device)
            bar.update()
            state = case.state_bytes()
            measured.append(
                {
                    "model": name,
                    "precision": precision,
                    "config": case.label,
                    "params": count_parameters(case.model)["paper"],
                    "state": state,
                    "during": during,
                    "peak": state + during,
                }
            )
        bar.set_description(f"{name} {precision}: step timing")
        calls = {c.label: c.step for c in cases}
        timings = time_interleaved(calls, s.device, s.repeats_for(name), bar.update)
        cpu = cpu_times({label: calls[label] for label in s.cpu_time_rows(name)}, s, bar)
        for row in measured:
            row["time"] = timings[row["config"]]
            if row["config"] in cpu:
                row["cpu_time"] = cpu[row["config"]]
        rows += measured
    return rows, cases


def cpu_times(calls: dict[str, Callable[[], object]], s: Settings, bar: tqdm) -> dict[str, Stats]:
    """Each call's CPU time in this thread (``time.thread_time``) with 1 torch thread."""
    if not calls:
        return {}
    bar.set_description("single-thread CPU time")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return time_interleaved(calls, s.device, s.cpu_time_repeats, bar.update, time.thread_time)
    finally:
        torch.set_num_threads(threads)


def adapter_file_sizes(cases: list[StepCase], bar: tqdm) -> list[dict]:
    """Bytes of the safetensors file save_adapter writes (head included), and of the same
    tensors without the task head (the paper's parameter counting)."""
    bar.set_description("adapter files")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in (c for c in cases if c.label != FLOOR_POSITION):  # the floor's file
            model, path = case.model, Path(tmp) / "adapter.safetensors"
            head = head_parameter_names(model)
            if applied_method(model) is None:  # the floor's head, peft's LoRA and head
                state = {n: p for n, p in model.named_parameters() if p.requires_grad}
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
