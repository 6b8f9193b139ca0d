"""SoRA, the Pfeiffer adapter and LoRA-FA against their authors' reference code, each reference
written out here independently of the library (sources cited per test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback, get_linear_schedule_with_warmup

import dcft
import dcft.run.runner
from dcft.methods import adapter_layers, applied_method
from dcft.methods.sora import SparseAdamW
from dcft.run.trainer import AuxiliaryOptimizerCallback
from tests.conftest import FAST, compose_config, place

from .tiny_models import TINY, tiny_inputs, tiny_model

# ---------------------------------------------------------------------------------------------
# SoRA: TsinghuaC3I/SoRA @ c275ac237b68b888a918cf9dad36d3827e46f616


def test_sora_l1_term_is_the_glue_scripts():
    """src/trainer.py compute_loss (lines 400-407) adds
    ``sparse_lambda * sum over gates of sum|g| / total gate count`` to the loss, and
    scripts/run_glue_sora_no_schedule.sh passes ``--sparse_lambda 10``."""
    model = dcft.apply_method(tiny_model("tiny-bert"), "sora")
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in adapter_layers(model):
            layer.lora_gate.normal_()
    total, count = 0.0, 0
    for name, p in model.named_parameters():
        if "lora_gate" in name:
            total += p.detach().abs().sum().item()
            count += p.numel()
    assert count == 12 * 8
    assert dcft.regularizer(model).item() == pytest.approx(10 * total / count, rel=1e-6)


def sora_reference_step(
    p: torch.Tensor, grad: torch.Tensor, state: dict, lr: float, xi: float
) -> torch.Tensor:
    """One ``SparseAdamW.step`` of src/sparse_optimizer.py on one tensor, as written there: the
    optimiser is built with lr and sparse_lambda only (run_glue.py line 618), so transformers'
    AdamW defaults hold: betas (0.9, 0.999), eps 1e-6, weight_decay 0, correct_bias True."""
    beta1, beta2, eps = 0.9, 0.999, 1e-6
    p = p.clone()
    state["step"] += 1
    state["exp_avg"].mul_(beta1).add_(grad, alpha=1.0 - beta1)  # lines 84-89
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = state["exp_avg_sq"].sqrt().add_(eps)  # line 90
    step_size = lr  # lines 92-96
    step_size = step_size * math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
    p.add_(torch.div(state["exp_avg"], denom) * (-step_size))  # lines 109-113
    p[p > xi] -= xi  # lines 116-119: three masks, in this order
    p[p < -xi] += xi
    p[abs(p) < xi] = 0.0
    return p


def test_sora_gate_update_matches_the_reference_step_by_step():
    """576 gates (DeBERTaV3-base: 12 layers x 6 matrices x r 8), three steps. Gates between xi and
    2 xi end at zero under SoRA's masks (a plain soft threshold keeps them), and tiny gradients
    make eps 1e-6 matter."""
    xi, lr = 3e-4, 1e-4
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(576, generator=generator) * 3 * xi
    grads = [torch.randn(576, generator=generator) * 1e-2 for _ in range(3)]
    for g in grads:
        g[:100] *= 1e-5
    gate = nn.Parameter(start.clone())
    optimizer = SparseAdamW([gate], lr=lr, xi=xi)
    reference = start.clone()
    state = {"step": 0, "exp_avg": torch.zeros(576), "exp_avg_sq": torch.zeros(576)}
    for g in grads:
        gate.grad = g.clone()
        optimizer.step()
        reference = sora_reference_step(reference, g, state, lr, xi)
        assert torch.equal(gate.detach() == 0, reference == 0)
        torch.testing.assert_close(gate.detach(), reference, rtol=1e-6, atol=1e-10)
    zeros = int((reference == 0).sum())
    soft = torch.sign(start) * torch.clamp(start.abs() - xi, min=0)
    assert zeros > int((soft == 0).sum())


def test_sora_variants():
    """threshold=soft is the plain proximal step; gate_schedule=constant keeps the gate rate."""
    model = dcft.apply_method(
        tiny_model("tiny-bert"), "sora", threshold="soft", gate_schedule="constant", gate_lr=0.0
    )
    optimizer = applied_method(model).auxiliary_optimizer(model, lr=1e-3)
    assert optimizer.param_groups[0]["lr"] == 0.0
    assert optimizer.param_groups[0]["follow_schedule"] is False
    gates = applied_method(model).auxiliary_parameters(model)
    with torch.no_grad():
        gates[0].copy_(torch.tensor([1.0, -1.0, 4e-4, 5e-4, -5e-4, 1e-4, 0.0, 2.0]))
    for g in gates:
        g.grad = torch.zeros_like(g)
    optimizer.step()
    expected = [1.0 - 3e-4, -1.0 + 3e-4, 1e-4, 2e-4, -2e-4, 0.0, 0.0, 2.0 - 3e-4]
    assert gates[0].tolist() == pytest.approx(expected, rel=1e-6, abs=1e-9)


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """transformers' get_linear_schedule_with_warmup multiplier, which SoRA's run_glue.py (lines
    619-621) gives the gate optimiser over the same steps as the main one."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / (total - warmup))


def test_gate_rate_follows_the_main_schedule_and_resumes():
    """Through the runner's callback with a real scheduler; a resume that restores the main
    scheduler and the gate optimiser from their state dicts continues at the same rates."""
    model = dcft.apply_method(tiny_model("tiny-bert"), "sora", r=2, gate_lr=2e-3)
    method = applied_method(model)
    gates = method.auxiliary_parameters(model)
    warmup, total = 2, 6

    def build():
        main = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
        schedule = get_linear_schedule_with_warmup(main, warmup, total)
        gate_optimizer = method.auxiliary_optimizer(model, lr=1e-3)
        return main, schedule, gate_optimizer, AuxiliaryOptimizerCallback(gate_optimizer)

    def run_steps(steps, main, schedule, gate_optimizer, callback):
        rates = []
        for _ in range(steps):
            for g in gates:
                g.grad = torch.zeros_like(g)
            main.step()
            callback.on_optimizer_step(None, None, None, lr_scheduler=schedule, optimizer=main)
            rates.append(gate_optimizer.param_groups[0]["lr"])
            schedule.step()
        return rates

    expected = [2e-3 * linear_warmup_decay(t, warmup, total) for t in range(total)]
    assert run_steps(total, *build()) == pytest.approx(expected)

    main, schedule, gate_optimizer, callback = build()
    first = run_steps(3, main, schedule, gate_optimizer, callback)
    saved = schedule.state_dict(), gate_optimizer.state_dict()
    main, schedule, gate_optimizer, callback = build()
    schedule.load_state_dict(saved[0])
    gate_optimizer.load_state_dict(saved[1])
    resumed = run_steps(total - 3, main, schedule, gate_optimizer, callback)
    assert first + resumed == pytest.approx(expected)


def test_gate_rate_in_a_real_run(tmp_path, tiny_data, monkeypatch):
    """The same inside the Trainer: warmup 2 of 4 steps, gate_lr 2e-3."""
    used = []
    real_step = SparseAdamW.step

    def recording_step(self, closure=None):
        used.append(self.param_groups[0]["lr"])
        return real_step(self, closure)

    monkeypatch.setattr(SparseAdamW, "step", recording_step)
    main_rates = []

    class MainRate(TrainerCallback):
        def on_optimizer_step(self, args, state, control, lr_scheduler=None, **kwargs):
            main_rates.append(lr_scheduler.get_last_lr()[0])

    overrides = [
        "task=rte",
        "method=sora",
        "method.options.gate_lr=2e-3",
        "trainer.warmup_steps=2",
        *FAST,
        *place(tmp_path, tiny_data),
    ]
    dcft.run.runner.run(compose_config(overrides), callbacks=[MainRate()])
    expected = [linear_warmup_decay(t, 2, 4) for t in range(4)]
    assert main_rates == pytest.approx([1e-3 * m for m in expected])
    assert used == pytest.approx([2e-3 * m for m in expected])


# ---------------------------------------------------------------------------------------------
# Pfeiffer adapter placement.


@pytest.mark.parametrize("arch", TINY)
def test_pfeiffer_output_is_the_reference_placement(arch):
    """Reference, with h = dropout(dense(hidden)) the FFN output, x the sub-layer input, LN the
    sub-layer's pre-trained LayerNorm and f = up(relu(down(.))):
        LN(h + f(LN(h + x)) + x)
    AdaLoRA @ d10f5eb NLU/src/transformers/models/deberta_v2/modeling_deberta_v2.py lines 338-347
    (DebertaV2Output, adapter_type pfeiffer: residual = h; hidden = LN(h + x);
    hidden = adapter(hidden) + residual; LN(hidden + x)), which the DCFT authors' code keeps; and
    adapter-hub/adapters @ 88f18eb SeqBnConfig (original_ln_before, residual_before_ln and
    original_ln_after all True): methods/modeling.py Adapter.pre_forward lines 177-188, forward
    line 235, post_forward line 257. Computed here with F.layer_norm from the sub-layer's tensors.
    """
    model = dcft.apply_method(tiny_model(arch), "padapter", bottleneck=4)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and (".down." in name or ".up." in name):
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    seen = []
    layers = model.base_model.encoder.layer
    hooks = [
        layer.output.register_forward_hook(lambda m, args, out: seen.append((m, args, out)))
        for layer in layers
    ]
    model(**tiny_inputs())
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(layers)
    for sublayer, (hidden, x), out in seen:
        modules = {n.rpartition(".")[2]: m for n, m in sublayer.named_modules()}
        dense, norm = modules["dense"], modules["LayerNorm"]
        adapter = next(m for m in sublayer.modules() if hasattr(m, "down"))

        def ln(t, norm=norm):
            return F.layer_norm(t, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

        def f(t, adapter=adapter):
            hidden_m = torch.relu(t @ adapter.down.weight.T + adapter.down.bias)
            return hidden_m @ adapter.up.weight.T + adapter.up.bias

        h = hidden @ dense.weight.T + dense.bias  # dropout: identity in eval mode
        expected = ln(h + f(ln(h + x)) + x)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert (expected - ln(h + x)).abs().max() > 1e-2  # the adapter does something


# ---------------------------------------------------------------------------------------------
# LoRA-FA: the LoRA-FA paper (arXiv 2308.03303) and peft's create_lorafa_optimizer
# (huggingface/peft @ 5d602fd, src/peft/optimizers/lorafa.py, LoraFAOptimizer.step).


def _lorafa_gradients(r: int, alpha: float, grad_scaling: str) -> list[tuple]:
    """(A, B's gradient) of every layer after one backward on the same weights and batch."""
    model = dcft.apply_method(
        tiny_model("tiny-bert"), "lorafa", r=r, alpha=alpha, grad_scaling=grad_scaling
    )
    torch.manual_seed(7)
    with torch.no_grad():
        for layer in adapter_layers(model):
            layer.lora_B.normal_()
    model(**tiny_inputs(), labels=torch.tensor([0, 1, 2])).loss.backward()
    layers = adapter_layers(model)
    assert all(layer.lora_A.grad is None for layer in layers)
    return [(layer.lora_A.detach(), layer.lora_B.grad) for layer in layers]


@pytest.mark.parametrize("r", [1, 16])
def test_lorafa_offers_the_paper_and_peft_gradients(r):
    """Default (the paper): B gets its plain gradient, A none. ``grad_scaling=peft``:
    ``grad_B = (1 / scaling^2) grad_B (A A^T + 1e-8 I)^+`` with scaling = alpha / r (peft's
    lorafa.py, the LoRA-FA block of LoraFAOptimizer.step), checked with numpy. For r = 1 that is
    the plain gradient times (r/alpha)^2 / |a|^2; for r = 16 the direction changes."""
    alpha = 2.0 * r
    plain = _lorafa_gradients(r, alpha, "none")
    rescaled = _lorafa_gradients(r, alpha, "peft")
    for (a, g), (a2, g_peft) in zip(plain, rescaled, strict=True):
        assert torch.equal(a, a2)
        a64, g64 = a.double().numpy(), g.double().numpy()
        expected = g64 @ np.linalg.pinv(a64 @ a64.T + 1e-8 * np.eye(r)) * (r / alpha) ** 2
        np.testing.assert_allclose(g_peft.numpy(), expected, rtol=1e-4, atol=1e-9)
        if r == 1:
            factor = (r / alpha) ** 2 / float((a64**2).sum())
            np.testing.assert_allclose(g_peft.numpy(), factor * g64, rtol=1e-4, atol=1e-9)
        else:
            assert float((g * g_peft).sum() / (g.norm() * g_peft.norm())) < 0.99
