"""The fused frozen-Linear + low-rank update op equals the unfused computation, values and grads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcft.methods.dcft import DcftLinear
from dcft.methods.layers import FusedLowRankLinear
from dcft.methods.lora import LoraFALinear, LoraLinear
from dcft.methods.sora import SoraLinear


class AsGiven:
    """Factors passed as they are; their gradients in closed form (the identity) or through
    autograd over ``build_factors``."""

    def __init__(self, closed_form_grads: bool) -> None:
        self.closed_form_grads = closed_form_grads

    def build_factors(self, down, up):
        return down, up

    def factor_grads(self, grad_down, grad_up):
        return grad_down, grad_up


def fused(x, weight, bias, down, up, relu, closed_form=True):
    return FusedLowRankLinear.apply(x, weight, bias, AsGiven(closed_form), relu, down, up)


def unfused(x, weight, bias, down, up, relu):
    hidden = x @ down.T
    return x @ weight.T + (0 if bias is None else bias) + (hidden.relu() if relu else hidden) @ up


def leaves(n_in: int, n_out: int, h: int, bias: bool, dtype: torch.dtype) -> list:
    generator = torch.Generator().manual_seed(0)
    shapes = [(2, 3, n_in), (n_out, n_in), (n_out,) if bias else None, (h, n_in), (h, n_out)]
    return [
        None if s is None else torch.randn(s, generator=generator, dtype=dtype).requires_grad_()
        for s in shapes
    ]


@pytest.mark.parametrize("closed_form", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_op_passes_gradcheck_on_every_input(relu, bias, closed_form):
    x, weight, b, down, up = leaves(6, 5, 3, bias, torch.float64)
    torch.autograd.gradcheck(lambda *t: fused(*t, relu, closed_form), (x, weight, b, down, up))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("n_in", "n_out", "h"), [(16, 32, 1), (32, 16, 8), (24, 24, 4)])
def test_fused_op_equals_unfused_float64(n_in, n_out, h, relu):
    fused_in = leaves(n_in, n_out, h, True, torch.float64)
    plain_in = [t.detach().clone().requires_grad_() for t in fused_in]
    out = fused(*fused_in, relu)
    plain = unfused(*plain_in, relu)
    torch.testing.assert_close(out, plain)
    grad = torch.randn_like(plain)
    out.backward(grad)
    plain.backward(grad)
    for mine, theirs in zip(fused_in, plain_in, strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad)


@pytest.mark.parametrize("closed_form", [True, False])
def test_frozen_weight_and_frozen_down_get_no_gradient(closed_form):
    x, weight, b, down, up = leaves(8, 4, 2, True, torch.float32)
    weight.requires_grad_(False)
    b.requires_grad_(False)
    down.requires_grad_(False)
    fused(x, weight, b, down, up, False, closed_form).sum().backward()
    assert weight.grad is None and b.grad is None and down.grad is None
    assert x.grad is not None and up.grad is not None


def test_cpu_autocast_runs_in_bf16_and_returns_grads_in_parameter_dtype():
    torch.manual_seed(0)
    layer = DcftLinear(nn.Linear(32, 64).requires_grad_(False), 4, 4, init="lora")
    with torch.no_grad():
        layer.dcft_b.normal_()
    x = torch.randn(3, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert layer.dcft_a.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    expected = layer.base(x) + layer.update(x)
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)


def make_layers() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    base = nn.Linear(16, 24).requires_grad_(False)
    layers = {
        "lora": LoraLinear(base, r=2, alpha=4),
        "lorafa": LoraLinear(base, r=2, alpha=4, freeze_a=True),
        "lorafa_peft": LoraFALinear(base, r=2, alpha=4, grad_scaling="peft"),
        "dcft_fast": DcftLinear(base, 4, 4, rank=2, init="lora", impl="fast"),
        "lora_mpc_n": LoraLinear(base, r=2, alpha=4, constraint="mpc_n"),
        "sora": SoraLinear(base, r=3, alpha=6),
        "dcft": DcftLinear(base, 4, 4, rank=2, init="lora"),
    }
    with torch.no_grad():
        for layer in layers.values():
            for name, p in layer.named_parameters():
                if name.endswith(("lora_B", "dcft_b")):
                    p.normal_()
    return layers


@pytest.mark.parametrize("name", list(make_layers()))
def test_every_low_rank_layer_runs_fused_and_matches_base_plus_update(name):
    layer = make_layers()[name]
    assert layer.fused()
    x = torch.randn(2, 5, 16, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_()
    out = layer(x)
    trainable = [p for p in layer.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.square().sum(), [x, *trainable])
    plain = layer.base(x_plain) + layer.update(x_plain)
    plain_grads = torch.autograd.grad(plain.square().sum(), [x_plain, *trainable])
    torch.testing.assert_close(out, plain)
    for mine, theirs in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)


def test_lora_dropout_trains_unfused_and_evaluates_fused():
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(16, 8).requires_grad_(False), r=2, alpha=2, dropout=0.5)
    assert not layer.fused()
    layer.eval()
    assert layer.fused()
    x = torch.randn(4, 16)
    torch.testing.assert_close(layer(x), layer.base(x) + layer.update(x))
