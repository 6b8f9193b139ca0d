"""A DCFT fast or structured layer allocates no n_in x n_out tensor and nothing token-sized
beyond what the frozen Linear itself allocates.

Three independent views of one forward + backward: every op output that owns new storage (a
TorchDispatchMode, backward included), the tensors autograd saves for backward
(saved_tensors_hooks), and the CPU allocator's peak (torch.profiler). Each check is shown to fail
on the reference path (dense Delta^T), on the unfused ``base(x) + update(x)`` and on a
broadcasting torch.matmul formulation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dcft.methods.dcft import DcftLinear
from dcft.methods.lora import LoraLinear
from dcft.tools.benchmark import peak_bytes_during

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


def make_dcft(impl: str, rank: int = 1, constraint: str = "orth", stride: int = D) -> DcftLinear:
    torch.manual_seed(0)
    base = nn.Linear(N_IN, N_OUT).requires_grad_(False)
    return DcftLinear(base, D, stride, rank=rank, impl=impl, constraint=constraint)


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


def test_the_frozen_linear_allocates_one_output_and_one_input_gradient():
    assert large_allocations(make_dcft("fast").base) == ONLY_OUTPUT_AND_GRAD_INPUT


@pytest.mark.parametrize(
    ("impl", "rank", "constraint", "stride"),
    [
        ("fast", 1, "orth", D),
        ("fast", 2, "orth", D),
        ("fast", 1, "mpc_n", D),
        ("structured", 1, "orth", D),
        ("structured", 2, "orth", D),
        ("structured", 1, "mpc_n", D),
        ("structured", 1, "orth", 2),
        ("structured", 1, "orth", 1),
    ],
)
def test_fast_layer_allocates_what_the_frozen_linear_allocates(
    impl: str, rank: int, constraint: str, stride: int
) -> None:
    layer = make_dcft(impl, rank, constraint, stride)
    assert large_allocations(layer, rank) == ONLY_OUTPUT_AND_GRAD_INPUT
    assert dense_allocations(layer) == []


def test_lora_layer_allocates_what_the_frozen_linear_allocates() -> None:
    lora = LoraLinear(make_dcft("fast").base, r=1, alpha=2.0)
    assert large_allocations(lora) == ONLY_OUTPUT_AND_GRAD_INPUT


def test_checks_fail_on_reference_unfused_and_broadcasting_paths() -> None:
    reference = make_dcft("reference")
    assert large_allocations(reference) != ONLY_OUTPUT_AND_GRAD_INPUT
    assert dense_allocations(reference)  # Delta^T and its gradient
    fast = make_dcft("fast")
    unfused = large_allocations(lambda x: fast.base(x) + fast.update(x))
    assert unfused[TOKENS * N_OUT] > 1 and unfused[TOKENS * N_IN] > 1
    broadcast = large_allocations(lambda x: fast.base(x) + broadcasting_update(fast, x))
    assert broadcast[TOKENS * N_IN] > 2  # copies of x besides the two input gradients


def saved_token_sized(layer: nn.Module) -> list[tuple[tuple[int, ...], bool]]:
    """(shape, is the input x) of each non-parameter tensor saved for backward with more than
    tokens x k*d elements."""
    x, _ = inputs()
    parameters = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage().data_ptr()
        if t.numel() > TOKENS * D and storage not in parameters:
            saved.append((tuple(t.shape), storage == x.untyped_storage().data_ptr()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return saved


@pytest.mark.parametrize(("impl", "stride"), [("fast", D), ("structured", D), ("structured", 2)])
def test_fast_layer_saves_only_the_input(impl: str, stride: int) -> None:
    assert saved_token_sized(make_dcft(impl, stride=stride)) == [((BATCH, SEQ, N_IN), True)]
    reference = saved_token_sized(make_dcft("reference"))
    assert ((N_IN, N_OUT), False) in reference


def test_fast_layer_peak_memory_is_the_frozen_peak_plus_small_tensors() -> None:
    """Peak bytes of layer forward + backward: the frozen Linear's peak plus at most a few
    tokens x k*d tensors and the small factors (4 bytes each element)."""
    budget = 4 * (4 * TOKENS * D + 4 * D * (N_IN + N_OUT))

    def peak(fn: Callable[[torch.Tensor], torch.Tensor]) -> int:
        x, grad = inputs()
        return peak_bytes_during(lambda: fn(x).backward(grad), torch.device("cpu"))

    fast = make_dcft("fast")
    frozen = peak(fast.base)
    assert peak(fast) <= frozen + budget
    assert peak(make_dcft("reference")) > frozen + budget
    assert peak(lambda x: fast.base(x) + fast.update(x)) > frozen + budget
