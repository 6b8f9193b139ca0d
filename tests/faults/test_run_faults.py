"""Faults around one run, injected on purpose: concurrent launches of the same run, stale and
live locks, a foreign record, a NaN on one rank of a torchrun launch, damaged checkpoints,
unwritable results, a failed final write, settings under which nothing trains, failed runs,
file permissions and SIGTERM. Each test names the fault it reproduces and checks the outcome the
harness promises (dcft/train.py, dcft/run_lock.py, dcft/checkpoints.py, dcft/results.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file

import dcft.run.run_lock
import dcft.run.runner
import dcft.run.trainer
import dcft.train
from dcft.methods.api import save_tensors
from dcft.run.checkpoints import MANIFEST, damage
from dcft.run.identity import RunIdentity
from dcft.run.records import (
    ForeignRecordError,
    lock_path,
    make_record,
    read_record,
    run_folder_lock,
    write_json,
)
from dcft.run.run_lock import Owner, RunLockedError, run_lock
from dcft.run.runner import PENDING_RECORD, run
from dcft.run.trainer import TRAINABLE_STATE
from tests.conftest import FAST, REPO, compose_config, place, records
from tests.test_resume import KillAfterCheckpoint, Killed

ENV = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
TRAIN = [sys.executable, "-m", "dcft.train"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
HOST = socket.gethostname()


def overrides(where: Path, data: Path, *extra: str) -> list[str]:
    """FAST on sst2 with DCFT, results and outputs under ``where``; ``extra`` replaces any FAST
    setting of the same key (Hydra refuses a key given twice)."""
    keys = {e.split("=", 1)[0] for e in extra}
    fast = [o for o in FAST if o.split("=", 1)[0] not in keys]
    return ["task=sst2", "method=dcft", *fast, *place(where, data), *extra]


def record_path_of(argv: list[str]) -> Path:
    cfg = compose_config(argv)
    return RunIdentity.from_config(cfg).record_path(cfg.results_dir)


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    """``argv`` in its own process group, so that a hung launch is killed with its children."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[str, str]:
    """stdout and stderr of ``proc``; fails the test if it has not ended within ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{proc.args[:4]} hung for {timeout} s:\n{out[-2000:]}\n{err[-3000:]}")
    return out, err


def never_trains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to build a model or train fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("this run must not train")

    monkeypatch.setattr(dcft.run.runner, "build_model", refuse)
    monkeypatch.setattr(dcft.run.runner, "fit", refuse)


def nan_regularizer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inject a NaN into every training loss (through the method's regulariser)."""
    monkeypatch.setattr(dcft.run.trainer, "regularizer", lambda model: torch.tensor(float("nan")))


# ---------------------------------------------------------------------------------------------
# 1-3: one trainer per run.


def test_two_processes_on_one_run_train_it_once(tmp_path, tiny_data):
    """Fault: the same run launched twice at once (two shells, two sweeps). Exactly one process
    trains; the other is skipped naming the holder's host and pid (or, had it started after the
    first finished, says it is already finished); one record; no FileNotFoundError from the two
    processes sharing the run folder."""
    argv = [*TRAIN, *overrides(tmp_path, tiny_data, "trainer.max_steps=30")]
    procs = [start(argv, tmp_path), start(argv, tmp_path)]
    outputs = [finish(p) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "FileNotFoundError" not in err, err[-3000:]

    trained = [i for i, (out, _) in enumerate(outputs) if "finished: best" in out]
    assert len(trained) == 1, [out[-1500:] for out, _ in outputs]
    (winner,) = trained
    other_out = outputs[1 - winner][0]
    holder = f"host {HOST}, pid {procs[winner].pid}"
    assert ("skipped: run is held by another process" in other_out and holder in other_out) or (
        "already finished, nothing to train" in other_out
    ), other_out[-1500:]
    assert len(records(tmp_path / "results")) == 1


def test_two_concurrent_sweeps_train_each_run_once(tmp_path, tiny_data):
    """Fault: the same sweep (a Hydra multirun over three seeds) launched twice at once. Each
    run is trained and its record written exactly once over both sweeps."""
    argv = [*TRAIN, "-m", *overrides(tmp_path, tiny_data, "seed=0,1,2")]
    procs = [start(argv, tmp_path), start(argv, tmp_path)]
    outputs = [finish(p, timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]

    stdout = "".join(out for out, _ in outputs)
    assert stdout.count("finished: best") == 3, stdout[-3000:]
    # The other sweep met each run held ("skipped") or done ("already finished").
    passed_over = stdout.count("skipped: run is held") + stdout.count("already finished,")
    assert passed_over == 3, stdout[-3000:]
    paths = records(tmp_path / "results")
    assert sorted(json.loads(p.read_text())["identity"]["seed"] for p in paths) == [0, 1, 2]


def write_lock(record_path: Path, pid: int, host: str = HOST) -> Path:
    """The lock of the run whose record is ``record_path``, as dcft.run_lock writes it, owned by
    ``pid`` on ``host``."""
    return write_owner(lock_path(record_path), pid, host)


def write_owner(lock: Path, pid: int, host: str = HOST) -> Path:
    """The lock file ``lock`` as dcft.run_lock writes it, owned by ``pid`` on ``host``."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    owner = Owner(host, pid, f"process:{host}/{pid}/0badc0de", "2026-01-01 00:00:00")
    lock.write_text(json.dumps(dataclasses.asdict(owner)))
    return lock


def test_lock_of_a_dead_process_is_taken_over(tmp_path, tiny_data, caplog):
    """Fault: a trainer killed with SIGKILL (or OOM-killed) leaves its lock behind. The lock's
    owner is a dead pid on this host, so the next launch takes it over and trains."""
    argv = overrides(tmp_path, tiny_data)
    record_path = record_path_of(argv)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = write_lock(record_path, dead.pid)

    record = run(compose_config(argv))
    assert record is not None and record["status"] == "finished"
    assert records(tmp_path / "results") == [record_path]
    assert f"took over the stale lock {lock}" in caplog.text
    assert f"pid {dead.pid}" in caplog.text
    assert not lock.exists()


def test_lock_of_a_live_process_makes_the_run_skip(tmp_path, tiny_data, caplog, monkeypatch):
    """Fault: a second launch while the run is held by a live process. It is skipped at once,
    naming the holder's host and pid; the holder's lock is left as it was."""
    caplog.set_level(logging.INFO, logger="dcft")
    argv = overrides(tmp_path, tiny_data)
    record_path = record_path_of(argv)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = write_lock(record_path, holder.pid)
        before = lock.read_bytes()
        never_trains(monkeypatch)
        assert run(compose_config(argv)) is None
        out = caplog.text
        assert "skipped: run is held by another process" in out
        assert f"host {HOST}, pid {holder.pid}" in out
        assert lock.read_bytes() == before
        assert not records(tmp_path / "results")
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("content", ["", '{"host": "h"', "\x00garbage\n", '{"pid": "1"}'])
def test_malformed_lock_is_named_and_taken_over(tmp_path, tiny_data, caplog, content):
    """Fault: an empty, truncated or garbage lock file (a copy tool, a full disk, an older
    harness). dcft links a whole lock into place, so no live dcft process holds such a file: the
    run names it as malformed, takes it over and trains (it used to skip with exit 0 as "held by
    host ?, pid -1" for 10 minutes)."""
    caplog.set_level(logging.INFO, logger="dcft")
    argv = overrides(tmp_path, tiny_data)
    lock = lock_path(record_path_of(argv))
    lock.parent.mkdir(parents=True)
    lock.write_text(content)

    record = run(compose_config(argv))
    assert record is not None and record["status"] == "finished"
    assert f"took over the stale lock {lock} (malformed lock, content {content!r})" in caplog.text
    assert not lock.exists()


def test_one_trainer_per_run_folder_whatever_the_results_folder(
    tmp_path, tiny_data, caplog, monkeypatch
):
    """Fault: two launches of one run with different results folders but the same outputs
    folder (two sweeps writing their records apart). Both used to train in the same run folder,
    over each other's checkpoints. The run folder has its own lock: the second launch is
    skipped, naming the holder and the lock."""
    caplog.set_level(logging.INFO, logger="dcft")
    first = overrides(tmp_path, tiny_data)
    second = [*first, f"results_dir={tmp_path / 'other-results'}"]
    run_dir = Path(compose_config(first).run_dir)
    assert Path(compose_config(second).run_dir) == run_dir
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        folder_lock = write_owner(run_folder_lock(run_dir), holder.pid)  # the first launch
        never_trains(monkeypatch)
        assert run(compose_config(second)) is None
        out = caplog.text
        assert f"skipped: run is held by another process (host {HOST}, pid {holder.pid}" in out
        assert str(folder_lock) in out
        assert not records(tmp_path)
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_another_host_is_stale_only_once_silent(tmp_path):
    """Fault: a host that died while training (its pid cannot be checked from here). Its lock
    holds the run while it is fresh, naming that host; once nobody has touched it for
    stale_after_s it is taken over."""
    lock = write_lock(tmp_path / "seed0-00000000.json", 4242, host="another-host")
    with pytest.raises(RunLockedError, match="host another-host, pid 4242"), run_lock(lock):
        pass
    silent = time.time() - 700
    os.utime(lock, (silent, silent))
    with run_lock(lock, stale_after_s=600) as me:
        assert json.loads(lock.read_text())["pid"] == me.pid == os.getpid()
    assert not lock.exists()


def test_two_takeovers_of_one_stale_lock_leave_one_owner(tmp_path, monkeypatch):
    """Fault: two launches (two sweeps restarted after a crash) find the same stale lock at the
    same moment. The first takes it over and holds the run; the second, which had judged the
    same dead owner stale a moment before, must then find the run held, not move the first
    one's fresh lock aside and train as well."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = write_lock(tmp_path / "seed0-00000000.json", dead.pid)
    first = contextlib.ExitStack()
    take_over = dcft.run.run_lock._take_over

    def first_launch_wins_meanwhile(path: Path, stale: Owner, stale_after_s: float) -> None:
        # The second launch has judged the dead owner stale; before its rename, the first
        # launch does the same, takes the lock over and holds the run.
        monkeypatch.setattr(dcft.run.run_lock, "_take_over", take_over)
        first.enter_context(run_lock(path))
        take_over(path, stale, stale_after_s)

    monkeypatch.setattr(dcft.run.run_lock, "_take_over", first_launch_wins_meanwhile)
    with first:
        held = f"host {HOST}, pid {os.getpid()}"
        with pytest.raises(RunLockedError, match=held), run_lock(lock):
            pytest.fail("both launches hold the run: the second moved the first one's lock")


# ---------------------------------------------------------------------------------------------
# 4: a record is trusted by what it says it is.


def test_foreign_record_is_refused(tmp_path, tiny_data, monkeypatch):
    """Fault: a finished record of run A copied to run B's path (a wrong `cp`, a sync tool).
    Running B raises ForeignRecordError naming the path, trains nothing and leaves the file
    untouched."""
    record_a = run(compose_config(overrides(tmp_path, tiny_data, "seed=0")))
    (path_a,) = records(tmp_path / "results")
    argv_b = overrides(tmp_path, tiny_data, "seed=1")
    path_b = record_path_of(argv_b)
    assert path_b != path_a and record_a["identity"]["seed"] == 0
    shutil.copy(path_a, path_b)
    before = path_b.read_bytes()

    never_trains(monkeypatch)
    with pytest.raises(ForeignRecordError) as info:
        run(compose_config(argv_b))
    assert str(path_b) in str(info.value)
    assert "seed" in str(info.value)
    assert path_b.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# 6: NaN on one rank of a torchrun launch.

NAN_ON_RANK_1 = '''\
"""dcft.train with a NaN injected into the training loss of rank 1 at optimiser step 2."""
import os

import torch

import dcft.train
import dcft.run.trainer

original = dcft.run.trainer.regularizer
calls = 0


def regularizer(model):
    global calls
    calls += 1  # once per optimiser step: one training batch per step, none in evaluation
    if os.environ.get("RANK") == "1" and calls == 2:
        return torch.tensor(float("nan"))
    return original(model)


dcft.run.trainer.regularizer = regularizer
dcft.train.main()
'''


def test_nan_on_rank_1_writes_one_failed_record(tmp_path, tiny_data):
    """Fault: the loss of one process of a 2-process gloo launch becomes NaN at step 2. Every
    rank learns it in the same step (an all-reduced flag), so both processes stop instead of
    hanging in the next collective, and rank 0 writes one failed record naming the non-finite
    loss and rank 1; the launch exits non-zero."""
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    argv = [*TORCHRUN, str(script), *overrides(tmp_path, tiny_data, "trainer.max_steps=6")]
    proc = start(argv, tmp_path)
    out, err = finish(proc, timeout=240)
    assert proc.returncode != 0, "a failed run must exit non-zero"
    assert "run failed: training loss is not finite on rank(s) [1]" in err, err[-3000:]

    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    assert record["status"] == "failed"
    reason = record["failure_reason"]
    assert "training loss is not finite on rank(s) [1]" in reason, reason
    assert "at optimiser step 2" in reason, reason
    assert f"failed: {reason}" in out, out[-3000:]
    assert "Connection closed" not in err, err[-3000:]


# ---------------------------------------------------------------------------------------------
# 7: damaged checkpoints.

KILLED_AT = ["trainer.max_steps=8", "trainer.save_total_limit=2"]


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """Per method (PEFT `dcft`, `full`): the checkpoints folder of a run killed right after it
    sealed checkpoint-6 (checkpoint-4 kept beside it, save_total_limit=2)."""
    kept = {}
    for method in ("dcft", "full"):
        where = tmp_path_factory.mktemp(f"killed-{method}")
        cfg = compose_config(overrides(where, tiny_data, f"method={method}", *KILLED_AT))
        with pytest.raises(Killed):
            run(cfg, callbacks=[KillAfterCheckpoint(6)])
        checkpoints = Path(cfg.run_dir) / "checkpoints"
        assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-4", "checkpoint-6"]
        assert all(damage(p) is None for p in checkpoints.iterdir())
        kept[method] = checkpoints
    return kept


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _sizes(name: str, folder: Path) -> str:
    written = json.loads((folder / MANIFEST).read_text())["files"][name]["bytes"]
    return f"{name} has {(folder / name).stat().st_size} bytes, {written} were written"


DAMAGES = {
    # id: (method, how, the reason the log gives)
    "trainable-truncated": (
        "dcft",
        lambda c: truncate(c / TRAINABLE_STATE),
        lambda c: _sizes(TRAINABLE_STATE, c),
    ),
    "model-truncated": (
        "full",
        lambda c: truncate(c / "model.safetensors"),
        lambda c: _sizes("model.safetensors", c),
    ),
    "optimizer-truncated": (
        "dcft",
        lambda c: truncate(c / "optimizer.pt"),
        lambda c: _sizes("optimizer.pt", c),
    ),
    "optimizer-bitflip": (
        "dcft",
        lambda c: flip_last_byte(c / "optimizer.pt"),
        lambda c: "optimizer.pt does not match the sha256 written with it",
    ),
    "trainer-state-emptied": (
        "dcft",
        lambda c: (c / "trainer_state.json").write_text("{}"),
        lambda c: _sizes("trainer_state.json", c),
    ),
    "rng-state-deleted": (
        "dcft",
        lambda c: (c / "rng_state.pth").unlink(),
        lambda c: "rng_state.pth is missing",
    ),
    "manifest-deleted": (
        "dcft",
        lambda c: (c / MANIFEST).unlink(),
        lambda c: f"no readable {MANIFEST} (the save did not finish)",
    ),
}


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_damaged_checkpoint_is_passed_over(tmp_path, tiny_data, killed_runs, caplog, kind):
    """Fault: the newest checkpoint (checkpoint-6) damaged after the kill: a truncated weight
    (PEFT trainable.safetensors / full model.safetensors) or optimiser file, a flipped byte, an
    emptied trainer_state.json, a deleted rng_state.pth or manifest.json. The rerun names the
    folder and the damage, resumes from checkpoint-4 and finishes."""
    caplog.set_level(logging.INFO, logger="dcft")
    method, hurt, reason = DAMAGES[kind]
    cfg = compose_config(overrides(tmp_path, tiny_data, f"method={method}", *KILLED_AT))
    checkpoints = Path(cfg.run_dir) / "checkpoints"
    shutil.copytree(killed_runs[method], checkpoints)
    newest = checkpoints / "checkpoint-6"
    hurt(newest)
    expected = reason(newest)

    record = run(cfg)
    out = caplog.text
    assert f"passing over checkpoint {newest}: {expected}" in out, out[-2000:]
    assert f"resuming from {checkpoints / 'checkpoint-4'}" in out
    assert record["status"] == "finished"
    assert record["timing"]["resumed_from_step"] == 4
    assert record["timing"]["optimizer_steps"] == 8


# ---------------------------------------------------------------------------------------------
# 8-9: where the record goes.


@pytest.mark.parametrize("blocked", ["results_dir", "outputs_dir"])
def test_unwritable_results_fail_before_training(tmp_path, tiny_data, monkeypatch, blocked):
    """Fault: a results (or outputs) folder that cannot be written: read-only, or (as root,
    whom chmod does not stop) under a path whose parent is a regular file. The run fails before
    any model is built, naming the path; nothing trained, no checkpoint."""
    if os.geteuid() == 0:
        parent = tmp_path / "a-regular-file"
        parent.write_text("not a folder\n")
    else:
        parent = tmp_path / "read-only"
        parent.mkdir()
        parent.chmod(0o500)
    target = parent / blocked
    argv = [*overrides(tmp_path, tiny_data), f"{blocked}={target}"]
    cfg = compose_config(argv)
    never_trains(monkeypatch)
    try:
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            run(cfg)
        assert time.monotonic() - started < 10
    finally:
        if parent.is_dir():
            parent.chmod(0o700)
    assert str(target) in str(info.value), str(info.value)
    assert not (Path(cfg.run_dir) / "checkpoints").exists()
    assert not records(tmp_path)


def test_failed_record_write_keeps_the_trained_state(tmp_path, tiny_data, monkeypatch, caplog):
    """Fault: the final record write fails (full disk, quota, lost mount) after training. The
    run folder keeps the finished record (record.json); the rerun writes it without training
    again."""
    caplog.set_level(logging.INFO, logger="dcft")
    argv = overrides(tmp_path, tiny_data)
    cfg = compose_config(argv)
    record_path = record_path_of(argv)
    pending = Path(cfg.run_dir) / PENDING_RECORD

    with monkeypatch.context() as patch:
        real = dcft.run.runner.write_json

        def full_disk(path: Path, record):
            if Path(path) == record_path:
                raise OSError(f"cannot write {path}: No space left on device")
            return real(path, record)

        patch.setattr(dcft.run.runner, "write_json", full_disk)
        with pytest.raises(OSError, match="No space left on device"):
            run(cfg)
    assert not record_path.exists()
    assert not lock_path(record_path).exists()
    kept = json.loads(pending.read_text())
    assert kept["status"] == "finished"
    caplog.clear()

    never_trains(monkeypatch)
    started = time.monotonic()
    record = run(compose_config(argv))
    assert time.monotonic() - started < 10
    out = caplog.text
    assert f"trained before, record not written then; writing it now: {record_path}" in out
    assert "finished:" not in out
    assert record == kept
    assert read_record(record_path) == kept
    assert not pending.exists()
    assert not (Path(cfg.run_dir) / "checkpoints").exists()


SLOW_PUBLISH_ON_RANK_0 = '''\
"""dcft.train whose rank 0 takes 5 s to write the record (a slow shared filesystem)."""
import os
import time

import dcft.run.runner
import dcft.train

publish = dcft.run.runner._publish


def slow_publish(*args, **kwargs):
    if os.environ.get("RANK") == "0":
        time.sleep(5)
    return publish(*args, **kwargs)


dcft.run.runner._publish = slow_publish
dcft.train.main()
'''


def test_kept_record_is_written_by_a_torchrun_launch(tmp_path, tiny_data, monkeypatch):
    """Fault: the final record write of a 2-process run failed, so its finished record waits in
    the run folder (record.json). Relaunched with torchrun, rank 0 writes it; rank 1 must not
    start training on its own (it would wait forever for rank 0 in DDP's first collective)."""
    argv = overrides(tmp_path, tiny_data)
    with monkeypatch.context() as patch:
        patch.setenv("WORLD_SIZE", "2")  # the 2-process run's key and folder
        cfg = compose_config(argv)
        identity = RunIdentity.from_config(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
        pending = write_json(
            Path(cfg.run_dir) / PENDING_RECORD, make_record(identity, config, "finished")
        )
    kept = json.loads(pending.read_text())
    record_path = identity.record_path(cfg.results_dir)
    script = tmp_path / "slow_publish.py"
    script.write_text(SLOW_PUBLISH_ON_RANK_0)

    proc = start([*TORCHRUN, str(script), *argv], tmp_path)
    out, err = finish(proc, timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert f"writing it now: {record_path}" in out
    assert "finished:" not in out
    assert read_record(record_path) == kept


# ---------------------------------------------------------------------------------------------
# 10-11: runs that would not train, and runs that failed.


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        (["trainer.learning_rate=0"], "trainer.learning_rate"),
        (["trainer.learning_rate=-1e-3"], "trainer.learning_rate"),
        (["trainer.max_steps=0"], "trainer.max_steps"),
        (["trainer.max_steps=-1", "trainer.num_epochs=0"], "trainer.num_epochs"),
        (["seed=abc"], "seed"),
        (["seed=-1"], "seed"),
        (["seed=1.5"], "seed"),
        (["trainer.batch_size=0"], "trainer.batch_size"),
    ],
    ids=[
        "lr0",
        "lr-negative",
        "max_steps0",
        "num_epochs0",
        "seed-abc",
        "seed-negative",
        "seed-fraction",
        "batch0",
    ],
)
def test_run_that_would_not_train_is_refused(tmp_path, tiny_data, monkeypatch, setting, key):
    """Fault: settings under which nothing trains (a zero learning rate, zero steps, epochs or
    batch) or that are not what they must be (a seed that is not an integer in numpy's range:
    -1 fails later in set_seed, 1.5 would run as seed 1 and take seed 1's record). They would
    otherwise end as "finished" records of an untrained model, or fail after loading. Refused up
    front, before any model is built, with a ValueError naming the key; no record."""
    never_trains(monkeypatch)
    with pytest.raises(ValueError, match=re.escape(key)):
        run(compose_config(overrides(tmp_path, tiny_data, *setting)))
    assert not records(tmp_path)


def test_failed_run_is_retried_only_when_asked(tmp_path, tiny_data, monkeypatch, caplog):
    """Fault: a run whose loss became NaN. Its failed record stays: the next invocation does not
    train it again (it says why and how to retry); retry_failed=true trains it, and the finished
    record replaces the failed one at the same path."""
    caplog.set_level(logging.INFO, logger="dcft")
    argv = overrides(tmp_path, tiny_data)
    with monkeypatch.context() as patch:
        nan_regularizer(patch)
        failed = run(compose_config(argv))
    assert failed["status"] == "failed"
    assert "training loss is not finite" in failed["failure_reason"]
    (path,) = records(tmp_path / "results")
    before = path.read_bytes()
    caplog.clear()

    with monkeypatch.context() as patch:
        never_trains(patch)
        again = run(compose_config(argv))
    assert again == failed
    assert path.read_bytes() == before
    out = caplog.text
    assert "not retried (retry_failed=true retries it)" in out
    assert failed["failure_reason"] in out

    retried = run(compose_config([*argv, "retry_failed=true"]))
    assert retried["status"] == "finished"
    assert records(tmp_path / "results") == [path]
    assert read_record(path)["status"] == "finished"


def test_leftovers_of_a_published_run_are_removed_on_the_next_visit(
    tmp_path, tiny_data, monkeypatch, caplog
):
    """Fault: a run killed after writing its record but before removing its checkpoints and the
    copy of the record kept in its run folder. The next visit found the record finished and
    left them there forever; now it removes them, without training."""
    caplog.set_level(logging.INFO, logger="dcft")
    argv = overrides(tmp_path, tiny_data)
    run(compose_config(argv))
    (path,) = records(tmp_path / "results")
    run_dir = Path(compose_config(argv).run_dir)
    left = run_dir / "checkpoints" / "checkpoint-4"
    left.mkdir(parents=True)
    (left / "optimizer.pt").write_bytes(b"state")
    shutil.copy(path, run_dir / PENDING_RECORD)

    never_trains(monkeypatch)
    again = run(compose_config(argv))
    assert again == read_record(path)
    assert not (run_dir / "checkpoints").exists()
    assert not (run_dir / PENDING_RECORD).exists()
    assert f"removed what the finished run left in {run_dir}" in caplog.text


NAN_ON_SEED_0 = '''\
"""dcft.train whose run of seed 0 fails with a non-finite loss (before training anything)."""
import dcft.run.runner
import dcft.train
from dcft.run.trainer import NonFiniteLossError

fit = dcft.run.runner.fit


def fit_or_fail(model, tokenizer, data, cfg, **kwargs):
    if cfg.seed == 0:
        raise NonFiniteLossError("training loss is not finite (nan) at optimiser step 1")
    return fit(model, tokenizer, data, cfg, **kwargs)


dcft.run.runner.fit = fit_or_fail
dcft.train.main()
'''


def test_nan_failed_run_exits_non_zero_and_the_sweep_goes_on(tmp_path, tiny_data):
    """Fault: a run whose loss became NaN exited 0, so a scheduler or a shell loop could not tell
    that it failed. In a multirun over seeds 0 and 1 where seed 0 fails, seed 1 still trains and
    the launch exits non-zero; launched again, the failed run (not retried) exits non-zero too,
    training nothing."""
    script = tmp_path / "nan_on_seed_0.py"
    script.write_text(NAN_ON_SEED_0)
    sweep = start(
        [sys.executable, str(script), "-m", *overrides(tmp_path, tiny_data, "seed=0,1")], tmp_path
    )
    out, err = finish(sweep)
    assert sweep.returncode == 1, err[-3000:]
    assert "run failed: training loss is not finite (nan) at optimiser step 1" in err, err[-3000:]
    statuses = {
        json.loads(p.read_text())["identity"]["seed"]: json.loads(p.read_text())["status"]
        for p in records(tmp_path / "results")
    }
    assert statuses == {0: "failed", 1: "finished"}

    again = start([*TRAIN, *overrides(tmp_path, tiny_data, "seed=0")], tmp_path)
    out, err = finish(again)
    assert again.returncode == 1, err[-3000:]
    assert "not retried (retry_failed=true retries it)" in out, out[-3000:]
    assert "run failed: training loss is not finite" in err, err[-3000:]


# ---------------------------------------------------------------------------------------------
# 12-13: permissions and preemption.


def test_records_get_the_umask_permissions(tmp_path, tiny_data):
    """Fault: records written 0600 (mkstemp's mode) and adapters written 0600 (safetensors'
    mode) are hidden from the rest of a shared group. They get the umask's permissions: 0644
    under umask 022, 0660 under 007."""
    previous = os.umask(0o022)
    try:
        record = run(compose_config(overrides(tmp_path, tiny_data)))
        (path,) = records(tmp_path / "results")
        assert path.stat().st_mode & 0o777 == 0o644
        assert Path(record["predictions_path"]).stat().st_mode & 0o777 == 0o644
        assert Path(record["adapter"]["path"]).stat().st_mode & 0o777 == 0o644
        os.umask(0o007)
        other = write_json(tmp_path / "group.json", {"status": "finished"})
        assert other.stat().st_mode & 0o777 == 0o660
        tensors = save_tensors({"t": torch.zeros(2)}, tmp_path / "group.safetensors")
        assert tensors.stat().st_mode & 0o777 == 0o660
    finally:
        os.umask(previous)


def test_the_same_adapter_gives_the_same_bytes(tmp_path):
    """Fault: safetensors writes the metadata (method, options, format) in hash-map order, which
    changes from one save to the next, so a resumed run's adapter differed in its bytes from the
    uninterrupted run's (same tensors; found by scripts/stress_resume.py). The metadata is
    written sorted: one state, one file (and one sha256)."""
    tensors = {"b": torch.ones(2, 3), "a": torch.arange(4.0)}
    metadata = {"method": "dcft", "options": '{"kernel": 8, "note": "é"}', "format": "x"}
    files = {
        save_tensors(tensors, tmp_path / f"{i}.safetensors", metadata).read_bytes()
        for i in range(8)
    }
    assert len(files) == 1
    (written,) = files
    size = int.from_bytes(written[:8], "little")
    header = json.loads(written[8 : 8 + size])
    assert list(header["__metadata__"]) == ["format", "method", "options"]
    loaded = load_file(tmp_path / "0.safetensors")
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    with safe_open(tmp_path / "0.safetensors", "pt") as handle:
        assert handle.metadata() == metadata


@pytest.mark.parametrize("umask", [0o022, 0o007])
def test_every_file_of_a_full_checkpoint_gets_the_umask(tmp_path, tiny_data, umask):
    """Fault: full fine-tuning checkpoints (model.safetensors, written by transformers through
    safetensors) were 0600 whatever the umask, hidden from a shared group. Every file the run
    writes, checkpoints of a killed full fine-tuning run included, gets 0666 & ~umask."""
    argv = overrides(tmp_path, tiny_data, "method=full")
    cfg = compose_config(argv)
    want = 0o666 & ~umask
    previous = os.umask(umask)
    try:
        with pytest.raises(Killed):
            run(cfg, callbacks=[KillAfterCheckpoint(2)])
        checkpoint = Path(cfg.run_dir) / "checkpoints" / "checkpoint-2"
        written = sorted(p for p in checkpoint.rglob("*") if p.is_file())
        assert checkpoint / "model.safetensors" in written
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
            p.name: oct(want) for p in written
        }
        run(compose_config(argv))
    finally:
        os.umask(previous)
    finished = sorted(p for p in tmp_path.rglob("*") if p.is_file() and "tiny_data" not in str(p))
    assert len(finished) >= 3  # record, adapter, predictions
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in finished} == {
        str(p): oct(want) for p in finished
    }


@pytest.mark.parametrize(("method", "limit"), [("full", 1_000_000), ("dcft", 30_000)])
def test_storage_error_while_checkpointing_names_the_path_and_free_space(
    tmp_path, tiny_data, method, limit
):
    """Fault: a full disk, quota or file-size limit while a checkpoint is written. It ended
    with `unexpected pos 38912 vs 38800` (torch.save of the optimiser) or `SafetensorError ...
    File too large` (a full model), naming no path. Reproduced with a file-size limit (the
    model file of full fine-tuning, the optimiser state of DCFT exceed it): the error names the
    checkpoint, the reason and the free space there, and the checkpoint is never sealed."""
    cfg = compose_config(overrides(tmp_path, tiny_data, f"method={method}"))
    checkpoint = Path(cfg.run_dir) / "checkpoints" / "checkpoint-2"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as info:
            run(cfg)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    message = str(info.value)
    assert message.startswith(f"cannot write checkpoint {checkpoint}: "), message
    assert re.search(r"; [0-9.]+ [KMG]iB free there$", message), message
    assert not (checkpoint / MANIFEST).exists()
    assert not records(tmp_path)


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path, tiny_data, caplog):
    """Fault: SIGTERM in the middle of training (a scheduler's preemption, `kill`). The run
    saves a sealed checkpoint at the step it reached, stops with exit code 128 + 15, and the
    rerun resumes from that step and finishes; its timing is the sum of the two segments (the
    signal-based variant of "resumed timing equals the sum of segments")."""
    caplog.set_level(logging.INFO, logger="dcft")
    steps = 30
    argv = overrides(tmp_path, tiny_data, f"trainer.max_steps={steps}", "trainer.eval_steps=5")
    checkpoints = Path(compose_config(argv).run_dir) / "checkpoints"
    proc = start([*TRAIN, *argv], tmp_path)
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob(f"checkpoint-*/{MANIFEST}")):
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = finish(proc)
            pytest.fail(f"no checkpoint before the run ended or timed out:\n{err[-3000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc, timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    found = re.search(r"stopped: SIGTERM received: checkpoint saved at step (\d+)", out)
    assert found, out[-2000:]
    reached = int(found.group(1))
    assert 0 < reached < steps
    saved = checkpoints / f"checkpoint-{reached}"
    assert (saved / MANIFEST).is_file() and damage(saved) is None
    assert not records(tmp_path / "results")

    record = run(compose_config(argv))
    assert f"resuming from {saved}" in caplog.text
    timing = record["timing"]
    assert record["status"] == "finished"
    assert timing["resumed_from_step"] == reached
    assert timing["optimizer_steps"] == steps
    assert [s["optimizer_steps"] for s in timing["segments"]] == [reached, steps - reached]
    assert timing["train_wall_time_s"] == pytest.approx(
        sum(s["wall_time_s"] for s in timing["segments"])
    )
