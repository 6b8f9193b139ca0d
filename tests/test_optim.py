"""The authors' AdamW (dcft.optim) against an independent transcription of transformers 4.4.2's
``AdamW.step`` (optimization.py), and the choice of optimiser reaching the trainer."""

from __future__ import annotations

import copy as copy_module
import math

import pytest
import torch
from torch import nn

from dcft.optim import OPTIMIZERS, AuthorsAdamW, build_optimizer

LR, BETAS, EPS, DECAY = 1e-2, (0.9, 0.999), 1e-8, 0.1


def transformers_442_step(params, states, lr, betas, eps, weight_decay) -> None:
    """transformers 4.4.2 AdamW.step, line by line, for one param group (correct_bias=True)."""
    for p in params:
        grad = p.grad.data
        state = states.setdefault(id(p), {})
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p.data)
            state["exp_avg_sq"] = torch.zeros_like(p.data)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = betas
        state["step"] += 1
        exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        denom = exp_avg_sq.sqrt().add_(eps)
        step_size = lr
        bias_correction1 = 1.0 - beta1 ** state["step"]
        bias_correction2 = 1.0 - beta2 ** state["step"]
        step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
        p.data.addcdiv_(exp_avg, denom, value=-step_size)
        if weight_decay > 0.0:
            p.data.add_(p.data, alpha=-lr * weight_decay)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    # A DCFT-like factor: N(0, 0.02^2) scaled down so that its gradients sit near eps.
    model.register_parameter("tiny", nn.Parameter(torch.randn(4) * 1e-9))
    return model.double()


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(8, 6, generator=generator, dtype=torch.float64)
    # The tiny parameter's gradient is 1e-9 * tiny-ish: far below eps = 1e-8.
    return model(x).pow(2).mean() + 1e-9 * (model.tiny * x[0, :4]).sum()


def _groups(model: nn.Module, decay: float) -> list[dict]:
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    others = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    return [{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]


def _train(model: nn.Module, step_fn, steps: int = 6) -> None:
    for step in range(steps):
        model.zero_grad()
        _loss(model, step).backward()
        step_fn()


def _run_transcription(decay: float) -> nn.Module:
    model = _model()
    states: dict = {}
    groups = _groups(model, decay)

    def step_fn() -> None:
        with torch.no_grad():
            for group in groups:
                transformers_442_step(
                    group["params"], states, LR, BETAS, EPS, group["weight_decay"]
                )

    _train(model, step_fn)
    return model


def _run_optimizer(name: str, decay: float) -> nn.Module:
    model = _model()
    optimizer = build_optimizer(name, _groups(model, decay), lr=LR, betas=BETAS, eps=EPS)
    _train(model, optimizer.step)
    return model


@pytest.mark.parametrize("decay", [0.0, DECAY])
def test_authors_adamw_equals_transformers_442(decay: float) -> None:
    expected = _run_transcription(decay)
    ours = _run_optimizer("adamw_authors", decay)
    for (name, a), b in zip(expected.named_parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=0, msg=name)


def test_torch_adamw_differs_from_the_authors_rule() -> None:
    """The choice is real: with weight decay, and on a parameter whose gradient is below eps,
    torch's rule lands elsewhere."""
    expected = _run_transcription(DECAY)
    torch_model = _run_optimizer("adamw_torch", DECAY)
    start = dict(_model().named_parameters())
    ours = dict(torch_model.named_parameters())
    for name, a in expected.named_parameters():
        if name.endswith("weight"):  # decayed: torch decays before the Adam step, 4.4.2 after
            moved = (a - start[name]).abs().max()
            assert (a - ours[name]).abs().max() > 1e-4 * moved, name
    start = _model()
    tiny_authors = expected.tiny - start.tiny
    tiny_torch = torch_model.tiny - start.tiny
    # eps dominates the denominator there: the authors' step is a fraction of torch's.
    assert (tiny_authors.abs() < 0.5 * tiny_torch.abs()).all()


def test_state_dict_round_trip_resumes_exactly() -> None:
    """A checkpoint's optimiser state resumes the same trajectory."""
    model = _model()
    optimizer = AuthorsAdamW(_groups(model, DECAY), lr=LR, eps=EPS)
    _train(model, optimizer.step, steps=3)
    copy = _model()
    copy.load_state_dict(model.state_dict())
    resumed = AuthorsAdamW(_groups(copy, DECAY), lr=LR, eps=EPS)
    resumed.load_state_dict(copy_module.deepcopy(optimizer.state_dict()))  # as saved to disk
    for m, o in ((model, optimizer), (copy, resumed)):
        m.zero_grad()
        _loss(m, 3).backward()
        o.step()
    for a, b in zip(model.parameters(), copy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_optimizer_named_with_choices() -> None:
    with pytest.raises(ValueError, match="adamw_authors, adamw_torch"):
        build_optimizer("sgd", _groups(_model(), 0.0), lr=LR, betas=BETAS, eps=EPS)
    assert OPTIMIZERS == ("adamw_authors", "adamw_torch")
