"""Timing and memory helpers for ``dcft.tools.bench``.

Timing: the calls (warmed up by the caller) are repeated round-robin (the order rotates each
round), so that a slow phase of a shared machine hits every configuration alike; the device is
synchronised around each timed call (CUDA). Memory: the peak of tensor bytes allocated during
one call above what was allocated when it started (CUDA: ``max_memory_allocated``; CPU: the CPU
allocator's running total as the profiler records it with ``profile_memory=True``), to which the
caller adds the bytes of the tensors alive at the start (``live_bytes``).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile


@dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements (seconds or bytes)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return self._quartiles()[0]

    @property
    def q3(self) -> float:
        return self._quartiles()[2]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def _quartiles(self) -> list[float]:
        if len(self.samples) == 1:
            return [self.samples[0]] * 3
        return statistics.quantiles(self.samples, n=4, method="inclusive")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    calls: Mapping[str, Callable[[], object]],
    device: torch.device,
    repeats: int,
    tick: Callable[[], object] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Stats]:
    """Time of each (already warmed-up) call over ``repeats`` rounds in which every call runs
    once, in an order rotated by one each round: wall time, or ``clock``'s (``time.thread_time``:
    this thread's CPU time). ``tick`` runs after every call (progress)."""
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = clock()
            calls[name]()
            synchronize(device)
            samples[name].append(clock() - start)
            if tick is not None:
                tick()
    return {name: Stats(tuple(values)) for name, values in samples.items()}


def live_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[(tensor.device, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def peak_bytes_during(fn: Callable[[], object], device: torch.device) -> int:
    """Peak of tensor bytes allocated while ``fn()`` runs, above those allocated at its start.

    Tensors that exist before the call and are freed during it are not subtracted on CPU (the
    profiler only sees allocations made while it runs), so free them before, not inside."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(0, max((total for _, total in cpu_allocation_totals(prof)), default=0))


def cpu_allocation_totals(prof: profile) -> list[tuple[int, int]]:
    """(size, running total) of every CPU allocation (size > 0) and free (size < 0) recorded by a
    profiler run with ``profile_memory=True``, in time order; the total is relative to the start
    of the run (the allocator's counter is process-wide and keeps bytes of earlier runs whose
    frees it did not see). Reads the profiler's event tree (``torch._C._profiler``), as torch's
    own memory profiler does."""
    allocation = torch._C._profiler._EventType.Allocation
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == allocation and event.extra_fields.device.type == "cpu":
            fields = event.extra_fields
            events.append((event.start_time_ns, fields.alloc_size, fields.total_allocated))
    events.sort()
    if not events:
        return []
    _, first_size, first_total = events[0]
    start = first_total - first_size
    return [(size, total - start) for _, size, total in events]


def machine_info(device: torch.device) -> dict[str, str]:
    """CPU model, cores, torch threads, versions and (CUDA) the GPU."""
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "device": str(device),
        "cpu": cpu,
        "cpu cores (os.cpu_count)": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "load average (1/5/15 min) at the start": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info
