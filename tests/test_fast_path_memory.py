"""DCFT's fast path allocates no n_in x n_out tensor and nothing token-sized beyond LoRA's needs.

Three independent views of one forward + backward: every op output that owns new storage (a
TorchDispatchMode, backward included), the tensors autograd saves for backward
(saved_tensors_hooks), and the CPU allocator's peak (torch.profiler). Each check is shown to fail
on the reference path (dense Delta^T) and on a broadcasting torch.matmul formulation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dcft.benchmark import peak_bytes_during
from dcft.methods.dcft import DcftLinear
from dcft.methods.lora import LoraLinear

# tokens > n_in, n_out, so the small factors (n x k*d) stay below the token-sized hidden (T x k*d)
BATCH, SEQ, N_IN, N_OUT, D = 4, 128, 128, 256, 8
TOKENS = BATCH * SEQ


class AllocationRecorder(TorchDispatchMode):
    """Shapes of every op output whose storage is not one of the op's inputs' (new memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.shapes.append((str(func), tuple(t.shape)))
        return out


def make_dcft(impl: str, rank: int = 1, constraint: str = "orth") -> DcftLinear:
    torch.manual_seed(0)
    base = nn.Linear(N_IN, N_OUT).requires_grad_(False)
    return DcftLinear(base, D, D, rank=rank, impl=impl, constraint=constraint)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, SEQ, N_IN, generator=generator).requires_grad_(True)
    return x, torch.randn(BATCH, SEQ, N_OUT, generator=generator)


def broadcasting_update(layer: DcftLinear, x: torch.Tensor) -> torch.Tensor:
    """The previous fast path: torch.matmul broadcasting (k x H) @ (T, H, d) is computed on a
    transposed copy of x (tokens x n_in), forward and backward."""
    blocks = x.reshape(-1, N_IN // D, D)
    mixed = torch.matmul(torch.matmul(layer.dcft_a, blocks), layer.dcft_kernel)
    return torch.matmul(layer.dcft_b, mixed).reshape(*x.shape[:-1], N_OUT) * layer.scale


def large_allocations(fn: Callable[[torch.Tensor], torch.Tensor], rank: int = 1) -> Counter:
    """Element counts of new tensors larger than the (tokens x k*d) hidden, forward + backward."""
    x, grad = inputs()
    with AllocationRecorder() as recorder:
        fn(x).backward(grad)
    return Counter(
        n for _, shape in recorder.shapes if (n := torch.Size(shape).numel()) > TOKENS * rank * D
    )


def dense_allocations(fn: Callable[[torch.Tensor], torch.Tensor]) -> list[tuple[str, tuple]]:
    x, grad = inputs()
    with AllocationRecorder() as recorder:
        fn(x).backward(grad)
    return [(op, s) for op, s in recorder.shapes if sorted(s[-2:]) == sorted((N_IN, N_OUT))]


ONLY_OUTPUT_AND_GRAD_INPUT = Counter({TOKENS * N_OUT: 1, TOKENS * N_IN: 1})


@pytest.mark.parametrize(("rank", "constraint"), [(1, "orth"), (2, "orth"), (1, "mpc_n")])
def test_fast_update_allocates_only_output_and_grad_input(rank: int, constraint: str) -> None:
    layer = make_dcft("fast", rank, constraint)
    assert large_allocations(layer.update, rank) == ONLY_OUTPUT_AND_GRAD_INPUT
    assert dense_allocations(layer.update) == []


def test_checks_fail_on_reference_and_broadcasting_paths() -> None:
    reference = make_dcft("reference")
    assert large_allocations(reference.update) != ONLY_OUTPUT_AND_GRAD_INPUT
    assert dense_allocations(reference.update)  # Delta^T and its gradient
    fast = make_dcft("fast")
    broadcast = large_allocations(lambda x: broadcasting_update(fast, x))
    assert broadcast != ONLY_OUTPUT_AND_GRAD_INPUT
    assert broadcast[TOKENS * N_IN] > 1  # copies of x besides the input gradient


def test_fast_layer_allocates_nothing_large_beyond_the_lora_layer() -> None:
    fast = make_dcft("fast")
    lora = large_allocations(LoraLinear(fast.base, r=1, alpha=2.0))
    assert not large_allocations(fast) - lora
    assert large_allocations(make_dcft("reference")) - lora


def saved_token_sized(layer: nn.Module) -> list[tuple[tuple[int, ...], bool]]:
    """(shape, is the input x) of each tensor saved for backward with more than tokens x k*d
    elements."""
    x, _ = inputs()
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.numel() > TOKENS * D:
            same = t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
            saved.append((tuple(t.shape), same))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer.update(x)
    return saved


def test_fast_path_saves_only_the_input() -> None:
    assert saved_token_sized(make_dcft("fast")) == [((BATCH, SEQ, N_IN), True)]
    reference = saved_token_sized(make_dcft("reference"))
    assert ((N_IN, N_OUT), False) in reference


def test_fast_path_peak_memory_is_output_plus_grad_input() -> None:
    """Peak bytes of update forward + backward: the output and the input gradient (4 bytes
    each element), plus at most a few tokens x k*d tensors and the small factors."""
    budget = 4 * (TOKENS * (N_IN + N_OUT) + 4 * TOKENS * D + 2 * D * (N_IN + N_OUT))

    def peak(layer: DcftLinear) -> int:
        x, grad = inputs()
        return peak_bytes_during(lambda: layer.update(x).backward(grad), torch.device("cpu"))

    assert peak(make_dcft("fast")) <= budget
    assert peak(make_dcft("reference")) > budget
