"""The keys of many planned runs (``dcft.sweep --dry-run``, the report's missing cells, the
learning-rate searches): each run's ``RunIdentity`` as ``dcft.train`` computes it, composed by
``Composer`` once per setting and spread over the machine's cores.

A setting is a run's overrides without its seed: its seeds share the composed tree and the
hash (``hparams_hash`` leaves the seed out), unless a value of the tree interpolates the seed,
when each seed is composed on its own. Composing is pure CPU work in Python (Hydra's defaults
lists, OmegaConf's resolution: ~30 ms a setting), so settings are split into contiguous chunks
composed by forked worker processes, which inherit the initialised Hydra and the composer's
caches. Off Linux (no ``fork``, or macOS, where forking a process that loaded system
frameworks is unsafe), on one core, or for few settings, the parent composes them itself. A
chunk that raises is composed again in the parent, so that errors surface with their own type
and message (a pickled exception can lose both).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from dcft.run.composer import Composer
from dcft.run.identity import RunIdentity

# Fewer settings than this are composed in the parent: forking costs more than it saves.
PARALLEL_FROM = 24
MAX_PROCESSES = 8


@dataclass(frozen=True)
class RunKey:
    """What a planned run's record path and status derive from."""

    identity: RunIdentity
    results_dir: str
    data: str  # data.fingerprint


def override_key(override: str) -> str:
    """The key an override sets: ``seed`` for ``seed=1``, ``+seed=1`` and ``~seed``."""
    return override.split("=", 1)[0].lstrip("+~")


def setting_of(job: Sequence[str]) -> tuple[tuple[str, ...], int | None]:
    """A job's setting (its overrides without ``seed=N``) and N; a job without a plain seed is
    its own setting, with seed None."""
    rest = tuple(o for o in job if override_key(o) != "seed")
    seeds = [o.split("=", 1)[1] for o in job if override_key(o) == "seed" and not o.startswith("~")]
    if seeds and seeds[-1].isdigit():
        return rest, int(seeds[-1])
    return tuple(job), None


Setting = tuple[tuple[str, ...], dict[int | None, list[str]]]  # its overrides; seed -> job


def _setting_keys(composer: Composer, setting: Setting) -> dict[int | None, RunKey]:
    """The key of each seed of one setting."""
    rest, jobs = setting
    if None in jobs or composer.interpolates(rest, "seed"):
        return {seed: _key(composer, job) for seed, job in jobs.items()}
    first = _key(composer, [*rest, f"seed={next(iter(jobs))}"])
    return {
        seed: dataclasses.replace(first, identity=dataclasses.replace(first.identity, seed=seed))
        for seed in jobs
    }


def _key(composer: Composer, overrides: Sequence[str]) -> RunKey:
    resolved = composer.resolved(overrides)
    results, data = str(resolved["results_dir"]), str(resolved["data"]["fingerprint"])
    return RunKey(RunIdentity.from_resolved(resolved), results, data)


# The work of the forked processes, set by the parent just before it forks (never pickled).
_shared: tuple[Composer, list[Setting]] | None = None


def _compose_chunk(bounds: tuple[int, int]) -> list[dict[int | None, RunKey]]:
    assert _shared is not None
    composer, settings = _shared
    return [_setting_keys(composer, setting) for setting in settings[slice(*bounds)]]


def _default_signals() -> None:
    """A forked worker inherits its parent's Python signal handlers; a run's preemption handler
    (dcft.run.checkpoints) or a test runner's would turn the pool's SIGTERM into a flag, and the
    parent would wait for the worker forever."""
    # dcft.run.checkpoints.PREEMPTION_SIGNALS and SIGINT (not imported: it loads transformers)
    for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def _processes(settings: int) -> int:
    if settings < PARALLEL_FROM or sys.platform != "linux":  # fork is safe there, not on macOS
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_PROCESSES, settings // (PARALLEL_FROM // 2)))


def run_keys(
    composer: Composer, jobs: Sequence[Sequence[str]], processes: int | None = None
) -> list[RunKey]:
    """The key of each job (its full overrides), in order. ``processes``: how many processes
    compose (default: the cores this process may use; 1 for few settings)."""
    grouped: dict[tuple[str, ...], dict[int | None, list[str]]] = {}
    for job in jobs:
        rest, seed = setting_of(job)
        grouped.setdefault(rest, {}).setdefault(seed, list(job))
    settings = list(grouped.items())
    composed = _compose_all(composer, settings, processes or _processes(len(settings)))
    keys = dict(zip(grouped, composed, strict=True))
    return [keys[rest][seed] for rest, seed in map(setting_of, jobs)]


def _compose_all(
    composer: Composer, settings: list[Setting], processes: int
) -> list[dict[int | None, RunKey]]:
    global _shared
    if processes <= 1:
        return [_setting_keys(composer, setting) for setting in settings]
    size = -(-len(settings) // processes)
    chunks = [(start, min(start + size, len(settings))) for start in range(0, len(settings), size)]
    _shared = (composer, settings)
    pool = multiprocessing.get_context("fork").Pool(len(chunks), initializer=_default_signals)
    try:
        composed = [keys for chunk in pool.map(_compose_chunk, chunks) for keys in chunk]
        pool.close()  # the workers exit on their own
        return composed
    except Exception:  # composed again here, to raise with its own type
        return [_setting_keys(composer, setting) for setting in settings]
    finally:
        pool.terminate()
        pool.join()
        _shared = None
