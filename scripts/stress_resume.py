"""Kill -9 stress test of resume, keyed to training progress: a tiny run is killed several times
while it trains, always after a sealed checkpoint, is resumed each time, and its final record
and output files must equal an uninterrupted run's exactly.

Each trial launches ``python -m dcft.train`` on a tiny random model (a checkpoint every 3
optimiser steps, the loss logged every 2, so that resumes fall between logged steps) and watches
its checkpoint folder. Each kill waits for a chosen checkpoint to be sealed, then either waits a
random fraction of a checkpoint interval (``interval``) or waits for the next checkpoint's folder
to appear unsealed (``write``: the kill lands while it is being written), and sends SIGKILL; the
same command then resumes the run. After the last kill the run is resumed to completion and
compared with the reference: every field of the record except those named in
``EXPECTED_TO_DIFFER`` (time stamps, wall times, the per-launch segments and resume counter,
the last process's peak memory), exactly (NaN equals NaN), and every file of the run and results
folders byte for byte except those named in ``FILES_EXPECTED_TO_DIFFER``.

    python scripts/stress_resume.py --trials 10                 # 3 kills a trial
    python scripts/stress_resume.py --trials 2 --kills 1 --seed 1 --workdir /tmp/stress

A trial in which no launch resumed from a checkpoint is reported as not a resume test. The last
lines say how many trials resumed and how many ended identical; the exit code is 0 only if every
trial did both.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import write_tiny_data  # noqa: E402  (the repo must be importable first)

SAVE_STEPS = 3
# Fields of a record that differ between two runs of one configuration, and why; every other
# field must be equal. A prefix names the field and everything under it.
EXPECTED_TO_DIFFER = {
    "created_at": "when the record was written",
    "timing.train_wall_time_s": "wall time",
    "timing.median_step_time_s": "wall time",
    "timing.train_samples_per_second": "wall time",
    "timing.segments": "one per launch: its steps and wall time (checked: the steps add up)",
    "timing.resumed_from_step": "resume counter: the checkpoint the last launch resumed from",
    "memory.bytes": "peak memory of the last launch's process",
}
# Files of the run folder that differ between two runs, and why; every other file of the run
# and results folders must be equal byte for byte (the record is compared field by field).
FILES_EXPECTED_TO_DIFFER = {
    "train.log": "the job's log: times, and the messages of every launch",
    ".hydra/hydra.yaml": "Hydra's runtime section: the launch's working directory",
}
RESUMED = re.compile(r"resuming from \S*checkpoint-(\d+)")


def overrides(data: Path, steps: int) -> list[str]:
    """DCFT on sst2: a checkpoint every SAVE_STEPS steps, the loss logged every 2 steps,
    evaluations every 10; relative results and outputs folders, so that every trial's config and
    record name the same paths."""
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
        f"trainer.save_steps={SAVE_STEPS}",
        "trainer.eval_steps=10",
        "trainer.logging_steps=2",
        "results_dir=results",
        "outputs_dir=outputs",
        f"data.dir={data}",
    ]


def start(where: Path, data: Path, steps: int, log: Path) -> subprocess.Popen:
    """Launch (or resume) the run under ``where``; one torch thread, as every launch of the
    test gets the same, so that a loaded machine slows the runs without oversubscribing it."""
    where.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    env.setdefault("OMP_NUM_THREADS", "1")
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dcft.train", *overrides(data, steps)],
            cwd=where,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def launched(where: Path, data: Path, steps: int, log: Path) -> Iterator[subprocess.Popen]:
    """``start``, and the launch killed if it still runs when the block is left (an error, ^C)."""
    proc = start(where, data, steps, log)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class CheckpointWatch:
    """The run's checkpoint folder under ``where`` (found once it exists), read cheaply."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.folder: Path | None = None

    def state(self) -> dict[int, bool]:
        """Checkpoint step -> sealed (its manifest written)."""
        if self.folder is None:
            found = list((self.where / "outputs").glob("runs/*/*/*/*/checkpoints"))
            if not found:
                return {}
            self.folder = found[0]
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return {}
        return {
            int(name.rsplit("-", 1)[1]): (self.folder / name / "manifest.json").exists()
            for name in names
            if name.startswith("checkpoint-") and name.rsplit("-", 1)[1].isdigit()
        }


@dataclass
class Kill:
    mode: str  # interval | write
    after: int  # the sealed checkpoint it waited for
    delay_s: float | None = None  # interval kills: the wait after that seal
    landed: bool = False
    sealed_then: int | None = None
    unsealed_then: list[int] = field(default_factory=list)

    def describe(self) -> str:
        where = (
            f"{self.delay_s:.2f} s after checkpoint-{self.after}"
            if self.mode == "interval"
            else f"during a checkpoint write after checkpoint-{self.after}"
        )
        if not self.landed:
            return f"{where}: the run had ended"
        writing = f", unsealed {self.unsealed_then}" if self.unsealed_then else ""
        return f"{where} (newest sealed {self.sealed_then}{writing})"


def kill_during(
    proc: subprocess.Popen,
    watch: CheckpointWatch,
    kill: Kill,
    interval_s: float,
    rng: random.Random,
) -> Kill:
    """SIGKILL ``proc`` once ``kill.after`` is sealed: a random moment of the next interval, or
    as soon as a newer checkpoint folder exists unsealed."""
    sealed_at = None
    while proc.poll() is None:
        seen = watch.state()
        if sealed_at is None and any(done and s >= kill.after for s, done in seen.items()):
            sealed_at = time.monotonic()
            kill.delay_s = rng.uniform(0, interval_s) if kill.mode == "interval" else None
        if sealed_at is not None:
            if kill.mode == "interval":
                due = time.monotonic() - sealed_at >= kill.delay_s
            else:
                due = any(not done and s > kill.after for s, done in seen.items())
            if due:
                proc.send_signal(signal.SIGKILL)
                break
        # Fast only while a checkpoint write is awaited.
        time.sleep(0.002 if sealed_at is not None and kill.mode == "write" else 0.02)
    kill.landed = proc.wait() == -signal.SIGKILL
    state = watch.state()
    kill.sealed_then = max((s for s, done in state.items() if done), default=None)
    kill.unsealed_then = sorted(s for s, done in state.items() if not done)
    return kill


def resumed_from(log: Path) -> int | None:
    found = RESUMED.search(log.read_text(errors="replace"))
    return int(found.group(1)) if found else None


def run_to_completion(where: Path, data: Path, steps: int, timeout: float, log: Path) -> None:
    with launched(where, data, steps, log) as proc:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"run under {where} did not finish within {timeout} s") from None
    if code != 0:
        raise RuntimeError(f"run under {where} failed:\n{log.read_text()[-3000:]}")


def seal_interval(where: Path, data: Path, steps: int, timeout: float) -> float:
    """The reference run, uninterrupted; returns the median time between its checkpoint seals
    (what an ``interval`` kill draws its delay from)."""
    log = where / "launch-0.log"
    watch, sealed = CheckpointWatch(where), {}
    deadline = time.monotonic() + timeout
    with launched(where, data, steps, log) as proc:
        while proc.poll() is None:
            for step, done in watch.state().items():
                if done and step not in sealed:
                    sealed[step] = time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the reference run did not finish within {timeout} s")
            time.sleep(0.02)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{log.read_text()[-3000:]}")
    times = [sealed[s] for s in sorted(sealed)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return median(gaps) if gaps else 0.5


# ---------------------------------------------------------------------------------------------
# The comparison.


def _named(path: str) -> bool:
    return any(path == key or path.startswith(f"{key}.") for key in EXPECTED_TO_DIFFER)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def record_differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Every field in which ``got`` differs from ``want`` (exactly; NaN equals NaN), except the
    fields named in EXPECTED_TO_DIFFER."""
    if path and _named(path):
        return []
    if isinstance(got, Mapping) and isinstance(want, Mapping):
        return [
            problem
            for key in sorted(set(got) | set(want))
            for problem in (
                record_differences(got[key], want[key], f"{path}.{key}".lstrip("."))
                if key in got and key in want
                else [f"{f'{path}.{key}'.lstrip('.')}: only in {'got' if key in got else 'want'}"]
            )
        ]
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} entries, {len(want)} expected"]
        return [
            p
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for p in record_differences(g, w, f"{path}[{i}]")
        ]
    return [] if _same(got, want) else [f"{path}: {got!r} != {want!r}"]


def output_files(where: Path) -> dict[str, bytes]:
    """Every file of the run's outputs and results folders but its record, by relative path."""
    records = set((where / "results").rglob("seed*.json"))
    files = [*(where / "outputs").rglob("*"), *(where / "results").rglob("*")]
    return {
        str(p.relative_to(where)): p.read_bytes()
        for p in sorted(files)
        if p.is_file() and p not in records
    }


def file_differences(got: Mapping[str, bytes], want: Mapping[str, bytes]) -> list[str]:
    """Files missing, extra or not byte-identical, except those in FILES_EXPECTED_TO_DIFFER."""
    problems = []
    for name in sorted(set(got) | set(want)):
        if any(name.endswith(f"/{exempt}") for exempt in FILES_EXPECTED_TO_DIFFER):
            continue
        if name not in got or name not in want:
            problems.append(f"file {name}: only in {'got' if name in got else 'want'}")
        elif got[name] != want[name]:
            problems.append(f"file {name}: differs")
    return problems


def timing_problems(record: Mapping[str, Any], steps: int) -> list[str]:
    """The fields that must differ, checked for consistency: the segments' steps add up to the
    run's, their wall times to its training time."""
    timing = record["timing"]
    segments = timing["segments"]
    problems = []
    if sum(s["optimizer_steps"] for s in segments) != steps:
        problems.append(f"timing: segment steps {[s['optimizer_steps'] for s in segments]}")
    total = sum(s["wall_time_s"] for s in segments)
    if not math.isclose(timing["train_wall_time_s"], total, rel_tol=1e-9):
        problems.append("timing: the training time is not the sum of the segments' times")
    return problems


def the_record(where: Path) -> dict[str, Any]:
    [path] = sorted((where / "results").rglob("seed*.json"))
    return json.loads(path.read_text())


def compare(trial: Path, reference: Path, steps: int) -> list[str]:
    """Every difference of the trial's finished run from the reference's."""
    got = the_record(trial)
    return [
        *record_differences(got, the_record(reference)),
        *file_differences(output_files(trial), output_files(reference)),
        *timing_problems(got, steps),
    ]


# ---------------------------------------------------------------------------------------------


def plan_kills(rng: random.Random, kills: int, steps: int) -> list[Kill]:
    """``kills`` kills after increasing checkpoints, leaving room for one interval after each,
    alternately (from a random start) inside an interval and during a write."""
    last = (steps - 1) // SAVE_STEPS * SAVE_STEPS - SAVE_STEPS
    steps_after = sorted(rng.sample(range(SAVE_STEPS, last + 1, SAVE_STEPS), kills))
    first = rng.randrange(2)
    return [Kill(("interval", "write")[(first + i) % 2], s) for i, s in enumerate(steps_after)]


def run_trial(
    where: Path, data: Path, args: argparse.Namespace, interval_s: float, rng: random.Random
) -> tuple[list[Kill], list[int]]:
    """The trial's kills and the checkpoint each later launch resumed from."""
    shutil.rmtree(where, ignore_errors=True)
    kills, resumes = [], []
    for launch, kill in enumerate(plan_kills(rng, args.kills, args.steps)):
        log = where / f"launch-{launch}.log"
        with launched(where, data, args.steps, log) as proc:
            kills.append(kill_during(proc, CheckpointWatch(where), kill, interval_s, rng))
        if launch:
            resumes.append(resumed_from(log))
    log = where / f"launch-{len(kills)}.log"
    run_to_completion(where, data, args.steps, args.timeout, log)
    resumes.append(resumed_from(log))
    return kills, [r for r in resumes if r is not None]


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials (default 10)")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill plan")
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per run")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the runs go (default: a temporary folder, deleted at the end)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="per launch to completion, s")
    args = parser.parse_args(argv)
    if not 1 <= args.kills <= (args.steps - 1) // SAVE_STEPS - 1:
        parser.error(f"--kills must be between 1 and {(args.steps - 1) // SAVE_STEPS - 1}")

    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="stress-resume-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    started = time.monotonic()
    print(f"machine: {machine()}", flush=True)
    try:
        data = write_tiny_data(workdir / "data")
        reference = workdir / "reference"
        shutil.rmtree(reference, ignore_errors=True)
        interval_s = seal_interval(reference, data, args.steps, args.timeout)
        print(f"reference run done; {interval_s:.2f} s between checkpoint seals", flush=True)
        identical = resumed = 0
        all_kills: list[Kill] = []
        for trial in range(args.trials):
            where = workdir / f"trial-{trial:03d}"
            kills, resumes = run_trial(where, data, args, interval_s, rng)
            problems = compare(where, reference, args.steps)
            all_kills += kills
            resumed += bool(resumes)
            identical += not problems
            verdict = "identical record and outputs" if not problems else "DIFFERENT: "
            verdict += "; ".join(problems[:5])
            kind = f"resumed from {resumes}" if resumes else "NOT A RESUME TEST (never resumed)"
            print(
                f"trial {trial}: kills {'; '.join(k.describe() for k in kills)}; {kind}; {verdict}",
                flush=True,
            )
        landed = [k for k in all_kills if k.landed]
        during_write = sum(bool(k.unsealed_then) for k in landed)
        minutes = (time.monotonic() - started) / 60
        print(
            f"{len(all_kills)} kills, {len(landed)} landed ({during_write} with a checkpoint "
            f"being written); {resumed}/{args.trials} trials resumed from a checkpoint; "
            f"{minutes:.1f} min; machine at the end: {machine()}",
            flush=True,
        )
        print(
            f"{identical}/{args.trials} identical records and outputs (every field but "
            f"{', '.join(EXPECTED_TO_DIFFER)}; every file but "
            f"{', '.join(FILES_EXPECTED_TO_DIFFER)})",
            flush=True,
        )
        return 0 if identical == resumed == args.trials else 1
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
