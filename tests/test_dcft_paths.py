"""DCFT's fast path == reference path == an independent dense computation, outputs and grads
(the structured path: tests/test_dcft_structured.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dcft.methods.dcft import DcftLinear, input_side


def make_layer(n_in: int, n_out: int, d: int, k: int, stride: int, impl: str, seed: int = 0):
    torch.manual_seed(seed)
    base = nn.Linear(n_in, n_out)
    base.requires_grad_(False)
    layer = DcftLinear(base, d, stride, rank=k, scale=2.0, init="lora", impl=impl)
    with torch.no_grad():
        layer.dcft_b.normal_()
    return layer


def loop_delta_transposed(a: np.ndarray, b: np.ndarray, c: np.ndarray, stride: int, shape):
    """Transposed convolution written out as the sum it is: out[i*s+u, j*s+v] += F[i,j] C[u,v]."""
    feature = a.T @ b.T
    d = c.shape[0]
    out = np.zeros(shape)
    for i in range(feature.shape[0]):
        for j in range(feature.shape[1]):
            out[i * stride : i * stride + d, j * stride : j * stride + d] += feature[i, j] * c
    return out


SHAPES = [(16, 32, 4, 1), (32, 16, 8, 1), (24, 48, 2, 2), (48, 96, 6, 3), (96, 48, 12, 1)]


@pytest.mark.parametrize(("n_in", "n_out", "d", "k"), SHAPES)
def test_fast_equals_reference_equals_kron(n_in, n_out, d, k):
    fast = make_layer(n_in, n_out, d, k, d, "fast")
    ref = make_layer(n_in, n_out, d, k, d, "reference")
    assert (fast.path, ref.path) == ("fast", "reference")
    x = torch.randn(2, 5, n_in, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    x_dense = x.detach().clone().requires_grad_(True)

    a = fast.dcft_a.detach().clone().requires_grad_(True)
    b = fast.dcft_b.detach().clone().requires_grad_(True)
    c = fast.dcft_kernel.detach().clone().requires_grad_(True)
    dense_delta_t = torch.kron(a.T @ b.T, c)
    dense = x_dense @ fast.base.weight.T + fast.base.bias + 2.0 * x_dense @ dense_delta_t

    out_fast, out_ref = fast(x), ref(x_ref)
    torch.testing.assert_close(out_fast, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_ref, dense, rtol=1e-5, atol=1e-5)

    grad = torch.randn_like(dense)
    out_fast.backward(grad)
    out_ref.backward(grad)
    dense.backward(grad)
    for mine, theirs in [
        (fast.dcft_a.grad, a.grad),
        (fast.dcft_b.grad, b.grad),
        (fast.dcft_kernel.grad, c.grad),
        (ref.dcft_a.grad, a.grad),
        (ref.dcft_b.grad, b.grad),
        (ref.dcft_kernel.grad, c.grad),
        (x.grad, x_dense.grad),
        (x_ref.grad, x_dense.grad),
    ]:
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("n_in", "n_out", "d", "k"), SHAPES)
def test_delta_weight_is_transposed_kron_in_linear_orientation(n_in, n_out, d, k):
    layer = make_layer(n_in, n_out, d, k, d, "fast")
    expected = 2.0 * torch.kron(layer.dcft_a.T @ layer.dcft_b.T, layer.dcft_kernel).T
    assert layer.delta_weight().shape == (n_out, n_in) == layer.base.weight.shape
    torch.testing.assert_close(layer.delta_weight(), expected)
    x = torch.randn(7, n_in)
    torch.testing.assert_close(layer.update(x), x @ layer.delta_weight().T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("n", "stride", "side"),
    [
        (768, 1, 761),
        (768, 2, 381),
        (768, 4, 191),
        (768, 8, 96),
        (3072, 1, 3065),
        (3072, 2, 1533),
        (3072, 4, 767),
        (3072, 8, 384),
    ],
)
def test_input_sides_as_notes_give(n, stride, side):
    assert input_side(n, 8, stride) == side


@pytest.mark.parametrize(
    ("n_in", "n_out", "d", "stride"),
    [(48, 96, 8, 1), (48, 96, 8, 2), (48, 96, 8, 4), (40, 24, 4, 2), (33, 21, 3, 2)],
)
@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_stride_below_kernel_matches_written_out_transposed_convolution(
    n_in, n_out, d, stride, impl
):
    layer = make_layer(n_in, n_out, d, 1, stride, impl)
    assert layer.dcft_a.shape == (1, (n_in - d) // stride + 1)
    assert layer.dcft_b.shape == ((n_out - d) // stride + 1, 1)
    expected = loop_delta_transposed(
        layer.dcft_a.detach().double().numpy(),
        layer.dcft_b.detach().double().numpy(),
        layer.dcft_kernel.detach().double().numpy(),
        stride,
        (n_in, n_out),
    )
    torch.testing.assert_close(
        layer.delta_transposed().double(), torch.from_numpy(expected), rtol=1e-5, atol=1e-6
    )
    x = torch.randn(4, n_in)
    torch.testing.assert_close(
        layer.update(x), 2.0 * x @ torch.from_numpy(expected).float(), rtol=1e-5, atol=1e-5
    )


def test_authors_init_is_small_and_nonzero():
    torch.manual_seed(0)
    layer = DcftLinear(nn.Linear(768, 768), 8, 8, init="authors")
    for p in (layer.dcft_a, layer.dcft_b, layer.dcft_kernel):
        assert abs(p.std().item() - 0.02) < 0.006
    delta = layer.delta_weight()
    assert 0 < delta.abs().mean().item() < 1e-3


def test_conv_transpose_and_kron_agree_on_the_identity_the_fast_path_uses():
    feature, kernel = torch.randn(5, 7), torch.randn(3, 3)
    conv = F.conv_transpose2d(feature[None, None], kernel[None, None], stride=3)[0, 0]
    torch.testing.assert_close(conv, torch.kron(feature, kernel))
