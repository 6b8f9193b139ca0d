"""DCFT's structured path (``impl=auto``) equals the authors' computation, conv_transpose2d of
a^T b^T by C, and the Kronecker fast path: output, input gradient and every factor gradient, in
float64, for every kernel of Table 4 and every stride of Table 5, square and rectangular."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcft.methods.dcft import DcftLinear
from dcft.methods.dcft_ops import FusedDcftLinear

SCALE = 2.0
# (d, stride): Table 4's kernels at stride = kernel, Table 5's strides at d = 8, and a stride that
# does not divide the kernel.
TABLE4 = [(d, d) for d in (2, 4, 6, 8, 12)]
TABLE5 = [(8, s) for s in (4, 2, 1)]
# (n_in, n_out): square and both rectangular orientations; every d and stride above fits them.
SHAPES = [(48, 48), (24, 72), (72, 24)]


def make_layer(n_in: int, n_out: int, d: int, stride: int, impl: str, rank: int = 1) -> DcftLinear:
    torch.manual_seed(0)
    base = nn.Linear(n_in, n_out, dtype=torch.float64).requires_grad_(False)
    layer = DcftLinear(base, d, stride, rank=rank, scale=SCALE, init="lora", impl=impl)
    with torch.no_grad():
        for p in layer.factor_parameters():
            p.data = torch.randn(p.shape, dtype=torch.float64)
    return layer


def authors_forward(layer: DcftLinear, x, a, b, kernel) -> torch.Tensor:
    """y = x W^T + bias + s * x @ conv_transpose2d(a^T b^T, C, stride), as the authors' code."""
    feature = (a.T @ b.T)[None, None]
    delta_t = F.conv_transpose2d(feature, kernel[None, None], stride=layer.stride)[0, 0]
    return F.linear(x, layer.base.weight, layer.base.bias) + SCALE * x @ delta_t


def grads_of(layer: DcftLinear, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().clone().requires_grad_(True)
    out = layer(x)
    out.backward(grad)
    return out.detach(), [x.grad, *(p.grad for p in layer.factor_parameters())]


@pytest.mark.parametrize(("n_in", "n_out"), SHAPES)
@pytest.mark.parametrize(("d", "stride"), TABLE4 + TABLE5 + [(3, 2)])
def test_structured_equals_authors_conv_transpose_float64(n_in, n_out, d, stride):
    if (n_in - d) % stride or (n_out - d) % stride:
        n_in, n_out = n_in + 1, n_out + 1  # (3, 2): odd sides
    layer = make_layer(n_in, n_out, d, stride, "auto")
    assert layer.path == "structured" and layer.fused()
    x = torch.randn(3, 5, n_in, dtype=torch.float64)
    grad = torch.randn(3, 5, n_out, dtype=torch.float64)
    out, grads = grads_of(layer, x, grad)

    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *layer.factor_parameters())]
    expected = authors_forward(layer, *leaves)
    expected.backward(grad)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-10, atol=1e-10)
    for mine, theirs in zip(grads, [t.grad for t in leaves], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("n_in", "n_out"), SHAPES)
@pytest.mark.parametrize(("d", "rank"), [(d, 1) for d in (2, 4, 6, 8, 12)] + [(4, 2)])
def test_structured_equals_the_kronecker_fast_path(n_in, n_out, d, rank):
    structured = make_layer(n_in, n_out, d, d, "structured", rank)
    fast = make_layer(n_in, n_out, d, d, "fast", rank)
    x = torch.randn(2, 7, n_in, dtype=torch.float64)
    grad = torch.randn(2, 7, n_out, dtype=torch.float64)
    out, grads = grads_of(structured, x, grad)
    out_fast, grads_fast = grads_of(fast, x, grad)
    torch.testing.assert_close(out, out_fast, rtol=1e-10, atol=1e-10)
    for mine, theirs in zip(grads, grads_fast, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("with_base", [True, False])
@pytest.mark.parametrize(
    ("n_in", "n_out", "d", "stride", "rank", "relu"),
    [
        (16, 24, 8, 8, 1, False),
        (16, 24, 8, 4, 1, False),
        (24, 16, 8, 2, 2, False),
        (11, 13, 8, 1, 1, False),
        (12, 8, 4, 4, 2, True),
    ],
)
def test_fused_dcft_op_passes_gradcheck(n_in, n_out, d, stride, rank, relu, with_base):
    generator = torch.Generator().manual_seed(0)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_()

    h_in, h_out = (n_in - d) // stride + 1, (n_out - d) // stride + 1
    x = leaf(2, 3, n_in)
    weight, bias = (leaf(n_out, n_in), leaf(n_out)) if with_base else (None, None)
    a, b, kernel = leaf(rank, h_in), leaf(h_out, rank), leaf(d, d)
    torch.autograd.gradcheck(
        lambda *t: FusedDcftLinear.apply(*t, SCALE, stride, relu), (x, weight, bias, a, b, kernel)
    )


def test_structured_unfused_and_merged_forms_agree():
    layer = make_layer(24, 40, 8, 2, "auto")
    x = torch.randn(4, 24, dtype=torch.float64)
    fused = layer(x)
    layer.fuse = False
    torch.testing.assert_close(layer(x), fused)
    expected = layer.base(x) + x @ layer.delta_weight().T
    torch.testing.assert_close(fused, expected)
    layer.merge()
    torch.testing.assert_close(layer(x), fused)


def test_unknown_impl_and_relu_off_the_structured_stride_are_refused():
    base = nn.Linear(16, 16)
    with pytest.raises(ValueError, match="unknown DCFT impl 'dense'; valid: auto, structured"):
        DcftLinear(base, 8, 8, impl="dense")
    with pytest.raises(ValueError, match="mpc_n ReLU needs stride == kernel"):
        DcftLinear(base, 8, 4, constraint="mpc_n")
    with pytest.raises(ValueError, match="mpc_n ReLU needs stride == kernel"):
        DcftLinear(base, 8, 8, constraint="mpc_n", impl="reference")
