"""Speed, memory and adapter-size benchmark of DCFT against its baselines, in one process.

Per adapted layer (DeBERTaV3-base shapes): forward + backward of the frozen Linear (input requires
grad, as inside a network), LoRA r=1, DCFT on the structured path (the default) for d in 2, 4, 8
at stride d and for strides 4, 2, 1 at d=8, the Kronecker fast path at d=8, the reference path
(the authors' dense update) at d=8 for every stride, and LoRA r=1 and structured DCFT d=8 unfused
(``base(x) + update(x)`` as separate ops, what the fusion saves). Whole-model training step
(DeBERTaV3-base shape with random weights, and the pretrained MiniLM): frozen floor (head only;
input gradients flow to the first layer; on DeBERTa also with gradients through the
relative-position branch), LoRA r=1, peft's LoRA r=1, DCFT d=8 (default, fast and reference path),
BitFit, full FT; on CUDA in fp32, TF32 and bf16 autocast; on CPU the targets' rows again in
single-thread CPU time. Adapter file sizes via
``save_adapter``. Writes results/bench/<device>.{md,csv} (on CUDA <device> is the GPU's name)
with a TARGETS section.

    python -m dcft.tools.bench              # CPU here, CUDA where present (~22 min on 2 cores)
    python -m dcft.tools.bench --quick --out-dir /tmp/bench   # tiny shapes, seconds (smoke test)
    python -m dcft.tools.bench --models minilm --repeats 1 --out-dir /tmp/bench  # real shapes, short

The cases and their measurement are in ``bench_cases``, the targets and the files in
``bench_report``, the timing and memory primitives in ``benchmark``.
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "KINETO_LOG_LEVEL", "5"
)  # before torch: silence the profiler's start/stop lines

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from dcft.cli import OneLineParser, positive_int
from dcft.optim import OPTIMIZERS
from dcft.tools.bench_cases import (
    LAYER_CONFIGS,
    STEP_METHODS,
    Settings,
    adapter_file_sizes,
    bench_layers,
    bench_model,
    trainer_default,
)
from dcft.tools.bench_report import targets, write_report
from dcft.tools.benchmark import machine_info

# The checkout (dcft/tools/bench.py -> parents[2]), so that the default folder does not depend on
# the working directory.
ROOT = Path(__file__).resolve().parents[2]
DEVICES = ("auto", "cpu", "cuda")


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = OneLineParser(prog="python -m dcft.tools.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default="auto", choices=DEVICES, help="auto (CUDA if present), cpu, cuda"
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes and models (smoke test)")
    parser.add_argument("--repeats", type=positive_int, help="timed repeats per configuration")
    parser.add_argument(
        "--warmup",
        type=positive_int,
        help="untimed warm-up calls per configuration, the last one under the memory profiler "
        "(at least 1 per layer, 2 per step)",
    )
    parser.add_argument("--batch", type=positive_int, help="whole-model batch size")
    parser.add_argument("--seq", type=positive_int, help="whole-model sequence length")
    parser.add_argument(
        "--models", help="comma-separated whole-model backbones (default: deberta-v3-base,minilm)"
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=trainer_default("optimizer"),
        help="the whole-model step's optimiser (default: the runs' trainer.optimizer)",
    )
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
            cpu_time_repeats=2,
        )
    else:
        settings = dict(
            layer_config="deberta-v3-base",
            layer_tokens=(32, 128),
            models=("deberta-v3-base", "minilm"),
            step_batch=(32, 128) if cuda else (8, 128),
            layer_repeats=10 if cuda else 5,
            # 3 timed CPU steps left the whole-step ratios' IQRs 0.13-0.45 wide (2026-12-03)
            step_repeats=10 if cuda else 7,
            layer_warmup=3 if cuda else 1,
            step_warmup=3 if cuda else 2,
            cpu_time_repeats=0 if cuda else 7,
        )
    if args.repeats is not None:
        settings["layer_repeats"] = settings["step_repeats"] = args.repeats
        settings["cpu_time_repeats"] = 0 if cuda else args.repeats
    if args.warmup is not None:
        settings["layer_warmup"] = max(1, args.warmup)
        settings["step_warmup"] = max(2, args.warmup)
    if args.models:
        settings["models"] = tuple(m.strip() for m in args.models.split(","))
    batch, seq = settings["step_batch"]
    settings["step_batch"] = (args.batch or batch, args.seq or seq)
    return Settings(
        device=device,
        quick=args.quick,
        out_dir=args.out_dir,
        optimizer=args.optimizer,
        **settings,
    )


@contextmanager
def progress(s: Settings) -> Iterator[tqdm]:
    """One bar over every call: layer cases (3 shapes), model steps per precision, adapter files."""
    n_layer = 3 * LAYER_CONFIGS
    total = n_layer * (s.layer_warmup + s.layer_repeats)
    steps = sum(len(s.step_labels(m)) * (s.step_warmup + s.repeats_for(m)) for m in s.models)
    total += steps * len(s.precisions) + len(STEP_METHODS) - 1  # adapter files
    total += sum(len(s.cpu_time_rows(m)) * s.cpu_time_repeats for m in s.models)
    with tqdm(total=total, unit="call", dynamic_ncols=True) as bar:
        yield bar


def run(s: Settings) -> Path:
    """Measure everything ``s`` asks for and write the report; return the ``.md`` path."""
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
