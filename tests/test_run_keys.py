"""Planned runs' keys composed in forked processes (dcft.run.run_keys) are the keys composed in
one process, job for job; the processes really ran; an error in a chunk surfaces with its own
type and message; a setting's seeds share one composition."""

from __future__ import annotations

import multiprocessing
import signal

import pytest
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException

from dcft.run import run_keys
from dcft.run.composer import Composer
from dcft.run.config import CONF_DIR
from dcft.sweep import parts


@pytest.fixture
def jobs(tiny_data, monkeypatch, tmp_path):
    """Every job of mini Table 4 (more settings than run_keys.PARALLEL_FROM)."""
    monkeypatch.setenv("DCFT_DATA_DIR", str(tiny_data))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return [
            (*part.fixed(), *job)
            for part in parts("table4", "mini")
            for job in part.jobs([f"results_dir={tmp_path}"])
        ]


class _CountingContext:
    """multiprocessing's fork context, counting the chunks its pools map."""

    def __init__(self) -> None:
        self.chunks = 0
        self._fork = multiprocessing.get_context("fork")

    def Pool(self, processes: int, **options):
        pool = self._fork.Pool(processes, **options)
        mapped = pool.map

        def counting_map(function, chunks):
            self.chunks += len(chunks)
            return mapped(function, chunks)

        pool.map = counting_map
        return pool


@pytest.fixture
def forks(monkeypatch) -> _CountingContext:
    context = _CountingContext()
    monkeypatch.setattr(run_keys.multiprocessing, "get_context", lambda method: context)
    return context


def test_keys_composed_in_two_processes_are_the_keys_composed_in_one(jobs, forks):
    settings = {run_keys.setting_of(job)[0] for job in jobs}
    assert len(settings) >= run_keys.PARALLEL_FROM
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        alone = run_keys.run_keys(Composer(), jobs, processes=1)
        assert forks.chunks == 0
        forked = run_keys.run_keys(Composer(), jobs, processes=2)
    assert forks.chunks == 2
    assert forked == alone and len(forked) == len(jobs)
    assert len({key.identity.seed for key in forked}) == 3


def test_a_parent_that_catches_sigterm_still_gets_its_keys(jobs):
    """A process with a Python SIGTERM handler (a run's preemption handler, a test runner's)
    gets its keys and keeps no worker: the workers exit on the pool's close, not on SIGTERM
    (one forked from an xdist worker that catches SIGTERM once outlived the pool's terminate,
    and its parent waited for it forever; that race did not reproduce outside xdist)."""
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    previous_alarm = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(HANG_SECONDS)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            keys = run_keys.run_keys(Composer(), jobs, processes=2)
    except _Hung:
        pytest.fail(f"run_keys did not return within {HANG_SECONDS} s: a worker did not exit")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous_alarm)
        signal.signal(signal.SIGTERM, previous)
    assert len(keys) == len(jobs) and not caught
    assert multiprocessing.active_children() == []


HANG_SECONDS = 240


class _Hung(BaseException):
    """Not an Exception, so that run_keys' fallback cannot swallow it."""


def _hung(signum, frame):
    for child in multiprocessing.active_children():
        child.kill()
    raise _Hung


def test_an_error_in_a_forked_chunk_keeps_its_type_and_message(jobs, forks):
    bad = [*jobs[-1], "trainer.no_such_setting=1"]
    with (
        initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"),
        pytest.raises(ConfigCompositionException, match=r"trainer\.no_such_setting"),
    ):
        run_keys.run_keys(Composer(), [*jobs, bad], processes=2)
    assert forks.chunks == 2


def test_a_settings_seeds_share_one_composition(jobs, monkeypatch):
    composed = []
    resolved = Composer.resolved
    monkeypatch.setattr(
        Composer, "resolved", lambda self, o: composed.append(o) or resolved(self, o)
    )
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        keys = run_keys.run_keys(Composer(), jobs, processes=1)
    assert len(composed) == len(jobs) // 3
    assert len({key.identity.hparams_hash for key in keys}) == len(composed)


def test_a_job_without_a_plain_seed_is_its_own_setting():
    assert run_keys.setting_of(["task=rte", "seed=2"]) == (("task=rte",), 2)
    assert run_keys.setting_of(["task=rte", "~seed"]) == (("task=rte", "~seed"), None)
    assert run_keys.setting_of(["task=rte"]) == (("task=rte",), None)


def test_processes_follow_the_cores_and_the_work(monkeypatch):
    monkeypatch.setattr(run_keys.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert run_keys._processes(run_keys.PARALLEL_FROM - 1) == 1
    assert run_keys._processes(128) == 2
    monkeypatch.setattr(run_keys.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert run_keys._processes(128) == 1
    monkeypatch.setattr(run_keys.sys, "platform", "darwin")
    monkeypatch.setattr(run_keys.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert run_keys._processes(128) == 1
