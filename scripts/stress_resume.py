"""Kill -9 stress test of resume: a tiny run killed at a random moment ends where an
uninterrupted run ends.

Each trial starts ``python -m dcft.train`` on a tiny random model (checkpoints every optimiser
step, so a kill often lands while one is written), sends SIGKILL after a random delay, runs the
same command again to completion and compares the final record with an uninterrupted reference
run: every evaluation's metrics (abs 1e-4) and every adapter tensor (rtol 1e-4, atol 1e-6). It
also checks the resumed timing: the segments' steps add up to the run's steps and their wall
times to its training time.

    python scripts/stress_resume.py                       # 20 trials, ~15 s of CPU each
    python scripts/stress_resume.py --trials 5 --seed 1 --workdir /tmp/stress

The last line says how many trials ended identical, e.g. ``20/20 identical``; the exit code is
0 only if all did.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import write_tiny_data  # noqa: E402  (the repo must be importable first)

METRIC_ABS = 1e-4
TENSOR_RTOL, TENSOR_ATOL = 1e-4, 1e-6


def overrides(where: Path, data: Path, steps: int) -> list[str]:
    """The run of tests/test_resume.py::test_sigkilled_process_resumes: DCFT on sst2, a
    checkpoint every step, evaluations at the middle and the end."""
    return [
        "model=tiny-bert",
        "task=sst2",
        "method=dcft",
        "method.options.init=lora",
        "logger=none",
        "trainer.batch_size=8",
        "trainer.eval_strategy=steps",
        "trainer.learning_rate=5e-3",
        f"trainer.max_steps={steps}",
        "trainer.save_steps=1",
        f"trainer.eval_steps={steps // 2}",
        "trainer.logging_steps=2",
        f"results_dir={where / 'results'}",
        f"outputs_dir={where / 'outputs'}",
        f"data.dir={data}",
    ]


def train_argv(where: Path, data: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "dcft.train", *overrides(where, data, steps)]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}


def run_to_completion(where: Path, data: Path, steps: int, timeout: float) -> dict[str, Any]:
    """Run (or resume) the run under ``where`` until it finishes; its record."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        train_argv(where, data, steps),
        cwd=where,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (where / "rerun.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"run under {where} failed:\n{done.stderr[-3000:]}")
    [path] = sorted((where / "results").rglob("seed*.json"))
    return json.loads(path.read_text())


def newest_sealed_step(where: Path) -> int | None:
    steps = [
        int(m.parent.name.rsplit("-", 1)[1])
        for m in (where / "outputs").rglob("checkpoints/checkpoint-*/manifest.json")
    ]
    return max(steps, default=None)


def kill_after(where: Path, data: Path, steps: int, delay_s: float) -> tuple[bool, int | None]:
    """Start the run under ``where`` and SIGKILL it after ``delay_s`` seconds. Returns whether
    the kill landed (the run had not ended by itself) and the newest sealed checkpoint then."""
    where.mkdir(parents=True, exist_ok=True)
    with (where / "killed.log").open("w") as log:
        proc = subprocess.Popen(
            train_argv(where, data, steps),
            cwd=where,
            env=environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            proc.wait(timeout=delay_s)
            return False, newest_sealed_step(where)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True, newest_sealed_step(where)


@dataclass
class Comparison:
    problems: list[str]
    max_metric_diff: float
    max_tensor_diff: float

    @property
    def identical(self) -> bool:
        return not self.problems


def compare(got: dict[str, Any], want: dict[str, Any], steps: int) -> Comparison:
    """Differences of ``got`` (a resumed record) from ``want`` (the reference)."""
    problems: list[str] = []
    if got["status"] != "finished":
        problems.append(f"status {got['status']}: {got.get('failure_reason')}")
        return Comparison(problems, math.inf, math.inf)
    got_steps = [e["step"] for e in got["evaluations"]]
    want_steps = [e["step"] for e in want["evaluations"]]
    if got_steps != want_steps:
        problems.append(f"evaluated at steps {got_steps}, reference at {want_steps}")
    metric_diff = 0.0
    for g, w in zip(got["evaluations"], want["evaluations"], strict=False):
        for split, metrics in w["metrics"].items():
            for name, value in metrics.items():
                other = g["metrics"].get(split, {}).get(name)
                if other is None:
                    problems.append(f"step {w['step']}: {split}/{name} missing")
                    continue
                diff = abs(other - value)
                if math.isnan(diff) and not (math.isnan(other) and math.isnan(value)):
                    diff = math.inf
                metric_diff = max(metric_diff, 0.0 if math.isnan(diff) else diff)
                if diff > METRIC_ABS:
                    problems.append(f"step {w['step']}: {split}/{name} {other} vs {value}")
    tensor_diff = 0.0
    got_tensors = load_file(got["adapter"]["path"])
    want_tensors = load_file(want["adapter"]["path"])
    if got_tensors.keys() != want_tensors.keys():
        problems.append("adapter tensors differ in names")
    for name in sorted(want_tensors.keys() & got_tensors.keys()):
        a, b = got_tensors[name].double(), want_tensors[name].double()
        tensor_diff = max(tensor_diff, (a - b).abs().max().item() if a.numel() else 0.0)
        if not torch.allclose(a, b, rtol=TENSOR_RTOL, atol=TENSOR_ATOL):
            problems.append(f"adapter tensor {name} differs")
    timing = got["timing"]
    segments = timing["segments"]
    if timing["optimizer_steps"] != steps:
        problems.append(f"timing: {timing['optimizer_steps']} optimiser steps, not {steps}")
    if sum(s["optimizer_steps"] for s in segments) != steps:
        problems.append(f"timing: segment steps {[s['optimizer_steps'] for s in segments]}")
    if not math.isclose(
        timing["train_wall_time_s"], sum(s["wall_time_s"] for s in segments), rel_tol=1e-9
    ):
        problems.append("timing: the training time is not the sum of the segments' times")
    return Comparison(problems, metric_diff, tensor_diff)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="kill -9 trials (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the runs go (default: a temporary folder, deleted at the end)",
    )
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per run")
    parser.add_argument(
        "--kill-between",
        type=float,
        nargs=2,
        default=(2.0, 12.0),
        metavar=("MIN_S", "MAX_S"),
        help="the kill comes after a uniform random delay in [MIN_S, MAX_S] s from the start",
    )
    parser.add_argument("--timeout", type=float, default=600, help="per uninterrupted run, s")
    args = parser.parse_args(argv)

    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stress-resume-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    started = time.monotonic()
    try:
        data = write_tiny_data(workdir / "data")
        print(f"workdir {workdir}; reference run ...", flush=True)
        reference = run_to_completion(workdir / "reference", data, args.steps, args.timeout)

        identical = landed = resumed = 0
        bar = tqdm(range(args.trials), desc="kill -9 trials", unit="trial")
        for trial in bar:
            where = workdir / f"trial-{trial:03d}"
            shutil.rmtree(where, ignore_errors=True)
            delay = rng.uniform(*args.kill_between)
            killed, sealed = kill_after(where, data, args.steps, delay)
            record = run_to_completion(where, data, args.steps, args.timeout)
            result = compare(record, reference, args.steps)
            landed += killed
            resumed += record["timing"]["resumed_from_step"] is not None
            identical += result.identical
            bar.set_postfix(identical=f"{identical}/{trial + 1}")
            status = "identical" if result.identical else "DIFFERENT: " + "; ".join(result.problems)
            tqdm.write(
                f"trial {trial}: kill at {delay:.1f} s "
                f"({'landed' if killed else 'run had ended'}; newest sealed checkpoint "
                f"{sealed}), resumed from {record['timing']['resumed_from_step']}, "
                f"max |d metric| {result.max_metric_diff:.2g}, "
                f"max |d tensor| {result.max_tensor_diff:.2g}: {status}"
            )
        bar.close()
        minutes = (time.monotonic() - started) / 60
        print(
            f"{landed}/{args.trials} kills landed before the run ended, {resumed} resumed from a "
            f"checkpoint; {minutes:.1f} min",
            flush=True,
        )
        print(f"{identical}/{args.trials} identical", flush=True)
        return 0 if identical == args.trials else 1
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
