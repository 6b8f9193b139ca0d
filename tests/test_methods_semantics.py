"""Each method's forward and regulariser against an independent computation, and bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

import dcft
from dcft.methods.adapters import BottleneckAdapter
from dcft.methods.constraints import CONSTRAINTS, constraint_terms, stacked_constraint_terms
from dcft.methods.dcft import DcftLinear
from dcft.methods.lora import LoraLinear
from dcft.methods.scaling import ScaledLinear
from dcft.methods.sora import SoraLinear, SparseAdamW

from .test_methods_matrix import perturb_adapters
from .tiny_models import TINY, tiny_inputs, tiny_model

PEFT_TARGETS = (
    r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense"
    r"|intermediate\.dense|output\.dense)$"
)


@pytest.mark.parametrize("arch", ["tiny-roberta", "tiny-bert"])
def test_lora_matches_peft_on_the_same_weights(arch):
    base = tiny_model(arch)
    theirs = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=PEFT_TARGETS),
    )
    ours = dcft.apply_method(copy.deepcopy(base), "lora", r=2, alpha=4)
    torch.manual_seed(3)
    peft_layers = {n: m for n, m in theirs.named_modules() if hasattr(m, "lora_A") and m.lora_A}
    assert len(peft_layers) == len(dcft.methods.adapter_layers(ours)) == 12
    with torch.no_grad():
        for name, layer in peft_layers.items():
            layer.lora_B["default"].weight.normal_()
            mine = ours.get_submodule(name.removeprefix("base_model.model."))
            mine.lora_A.copy_(layer.lora_A["default"].weight)
            mine.lora_B.copy_(layer.lora_B["default"].weight)
            theirs_head = dict(theirs.named_parameters())
        for n, p in ours.named_parameters():
            if n.startswith("classifier"):
                p.copy_(theirs_head[f"base_model.model.{n}"])
    inputs = tiny_inputs()
    torch.testing.assert_close(ours(**inputs).logits, theirs(**inputs).logits, rtol=1e-5, atol=1e-6)
    adapter_params = sum(p.numel() for n, p in theirs.named_parameters() if "lora_" in n)
    assert dcft.count_parameters(ours)["paper"] == adapter_params


def test_lora_init_matches_peft_distribution():
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(64, 32), r=4, alpha=8)
    assert torch.all(layer.lora_B == 0)
    bound = 1 / np.sqrt(64)
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.8 * bound


def test_adapter_forward_is_residual_bottleneck():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(nn.Identity(), hidden=16, bottleneck=4, activation="relu")
    with torch.no_grad():
        adapter.up.weight.normal_()
    h = torch.randn(3, 16)
    w1, b1, w2, b2 = adapter.down.weight, adapter.down.bias, adapter.up.weight, adapter.up.bias
    expected = (
        h
        + np.maximum(h.numpy() @ w1.detach().numpy().T + b1.detach().numpy(), 0)
        @ (w2.detach().numpy().T)
        + b2.detach().numpy()
    )
    torch.testing.assert_close(adapter(h), torch.as_tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("scale_output", [False, True])
def test_scaling_multiplies_the_weight(scale_output):
    torch.manual_seed(0)
    layer = ScaledLinear(nn.Linear(6, 5), scale_output)
    with torch.no_grad():
        layer.scale_in.uniform_(0.5, 1.5)
        if scale_output:
            layer.scale_out.uniform_(0.5, 1.5)
    w = layer.base.weight.detach() * layer.scale_in[None, :].detach()
    if scale_output:
        w = layer.scale_out[:, None].detach() * w
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), x @ w.T + layer.base.bias)


def test_sora_gate_and_proximal_step():
    torch.manual_seed(0)
    layer = SoraLinear(nn.Linear(8, 6), r=4, alpha=8)
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_gate.copy_(torch.tensor([1.0, -2.0, 0.0, 0.5]))
    x = torch.randn(3, 8)
    expected = ((x @ layer.lora_A.T) * layer.lora_gate) @ layer.lora_B.T * 2.0
    torch.testing.assert_close(layer.update(x), expected)
    assert layer.pruned_parameter_count() == 8 + 6 + 1
    gate = nn.Parameter(torch.tensor([1.0, -1.0, 1e-4, -1e-4]))
    optimizer = SparseAdamW([gate], lr=0.0, xi=1e-3)
    gate.grad = torch.zeros(4)
    optimizer.step()
    assert gate.tolist() == pytest.approx([1.0 - 1e-3, -1.0 + 1e-3, 0.0, 0.0])


def test_sora_count_drops_zeroed_ranks():
    model = dcft.apply_method(tiny_model("tiny-bert"), "sora", r=4)
    full = dcft.count_parameters(model)["paper"]
    layer = dcft.methods.adapter_layers(model)[0]
    with torch.no_grad():
        layer.lora_gate[:2] = 0
    assert dcft.count_parameters(model)["paper"] == full - 2 * (48 + 48 + 1)
    method = dcft.methods.applied_method(model)
    assert len(method.auxiliary_parameters(model)) == 12
    assert isinstance(method.auxiliary_optimizer(model, lr=1e-3), SparseAdamW)


def reference_constraint(name: str, a: np.ndarray, b: np.ndarray) -> list[float]:
    ga, gb = a @ a.T, b.T @ b
    eye = np.eye(ga.shape[0])
    if name == "orth":
        return [np.sqrt(((ga - eye) ** 2).sum()), np.sqrt(((gb - eye) ** 2).sum())]
    if name in ("orth_sq", "mpc_o"):
        return [((ga - eye) ** 2).sum(), ((gb - eye) ** 2).sum()]
    off = gb - np.diag(np.diag(gb))
    return [((ga - eye) ** 2).sum(), (off**2).sum()]


@pytest.mark.parametrize("method", ["lora", "dcft"])
@pytest.mark.parametrize("constraint", ["orth", "orth_sq", "mpc_o", "mpc_d"])
def test_regulariser_is_gamma_times_mean_over_factors(method, constraint):
    options = {"r": 3} if method == "lora" else {"kernel": 4, "rank": 2}
    model = dcft.apply_method(
        tiny_model("tiny-deberta"), method, constraint=constraint, gamma=0.3, **options
    )
    perturb_adapters(model)
    terms = []
    for layer in dcft.methods.adapter_layers(model):
        a, b = (layer.lora_A, layer.lora_B) if method == "lora" else (layer.dcft_a, layer.dcft_b)
        terms += reference_constraint(
            constraint, a.detach().double().numpy(), b.detach().double().numpy()
        )
    assert len(terms) == 2 * 12
    value = dcft.regularizer(model)
    assert value.requires_grad
    assert value.item() == pytest.approx(0.3 * np.mean(terms), rel=1e-5)


def test_no_constraint_means_no_regulariser():
    assert dcft.regularizer(dcft.apply_method(tiny_model("tiny-bert"), "lora")) is None
    assert dcft.regularizer(tiny_model("tiny-bert")) is None


def test_authors_default_is_unsquared_orth_with_gamma_point_one():
    model = dcft.apply_method(tiny_model("tiny-bert"), "dcft", kernel=4)
    layer = dcft.methods.adapter_layers(model)[0]
    a, b = layer.dcft_a.detach().double(), layer.dcft_b.detach().double()
    # k = 1: | ||a||^2 - 1 | for a and for b (NOTES.md)
    first = [abs((a**2).sum().item() - 1), abs((b**2).sum().item() - 1)]
    terms = constraint_terms(*layer.constrained_factors())
    assert [t.item() for t in terms] == pytest.approx(first, rel=1e-5)
    assert dcft.methods.applied_method(model).options.gamma == 0.1


@pytest.mark.parametrize("method", ["lora", "dcft"])
def test_mpc_n_puts_a_relu_between_the_factors(method):
    torch.manual_seed(0)
    base = nn.Linear(16, 8)
    if method == "lora":
        layer = LoraLinear(base, r=2, alpha=2, constraint="mpc_n")
        with torch.no_grad():
            layer.lora_B.normal_()
        x = torch.randn(5, 16)
        expected = torch.relu(x @ layer.lora_A.T) @ layer.lora_B.T
    else:
        layer = DcftLinear(base, 4, 4, constraint="mpc_n", scale=1.0)
        x = torch.randn(5, 16)
        hidden = torch.relu(torch.einsum("kp,tpu->tku", layer.dcft_a, x.reshape(5, 4, 4)))
        mixed = hidden @ layer.dcft_kernel
        expected = torch.einsum("qk,tkv->tqv", layer.dcft_b, mixed).reshape(5, 8)
    torch.testing.assert_close(layer.update(x), expected)
    with pytest.raises(ValueError, match="non-linear"):
        layer.delta_weight()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: dcft.apply_method(m, "dora"), r"unknown method 'dora'; valid methods: .*dcft"),
        (
            lambda m: dcft.apply_method(m, "lora", targets=["q", "x"]),
            r"unknown target.*'x'.*ffn_in",
        ),
        (
            lambda m: dcft.apply_method(m, "dcft", kernal=4),
            r"unknown option.*kernal.*valid options",
        ),
        (lambda m: dcft.apply_method(m, "dcft", kernel=4, stride=8), r"stride 8 > kernel 4"),
        (
            lambda m: dcft.apply_method(m, "dcft", kernel=5),
            r"kernel 5 / stride 5 does not fit bert\.encoder\.layer\.0\.attention\.self\.query "
            r"\(Linear 48 -> 48\)",
        ),
        (
            lambda m: dcft.apply_method(m, "dcft", kernel=8, stride=3),
            r"kernel 8 / stride 3 does not fit .*in_features=48",
        ),
        (lambda m: dcft.apply_method(m, "dcft", init="zeros"), r"unknown DCFT init 'zeros'"),
        (lambda m: dcft.apply_method(m, "lora", constraint="orth2"), r"valid constraints: none"),
    ],
)
def test_bad_input_names_the_choices_and_changes_nothing(call, message):
    model = tiny_model("tiny-bert")
    modules = [(n, type(m)) for n, m in model.named_modules()]
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    with pytest.raises(ValueError, match=message):
        call(model)
    assert [(n, type(m)) for n, m in model.named_modules()] == modules
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
    assert dcft.methods.applied_method(model) is None


def test_unknown_architecture_names_the_supported_ones():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(
        ValueError, match=r"unsupported architecture 'gpt2'.*bert, deberta-v2, roberta"
    ):
        dcft.apply_method(model, "lora")


def test_second_method_and_mismatched_adapter_are_refused(tmp_path):
    model = dcft.apply_method(tiny_model("tiny-bert"), "lora")
    with pytest.raises(ValueError, match="already has method 'lora'"):
        dcft.apply_method(model, "dcft")
    path = dcft.save_adapter(model, tmp_path / "lora.safetensors")
    other = dcft.apply_method(tiny_model("tiny-bert"), "dcft", kernel=4)
    with pytest.raises(ValueError, match="holds method 'lora'"):
        dcft.load_adapter(other, path)


@pytest.mark.parametrize("arch", TINY)
def test_qa_models_keep_qa_outputs_as_the_head(arch):
    model = dcft.apply_method(tiny_model(arch, task_kind="qa"), "dcft", kernel=4)
    head = {n for n, p in model.named_parameters() if p.requires_grad and "dcft_" not in n}
    assert head == {"qa_outputs.weight", "qa_outputs.bias"}
    assert dcft.count_parameters(model)["head"] == 48 * 2 + 2


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_stacked_terms_equal_the_terms_pair_by_pair(constraint):
    generator = torch.Generator().manual_seed(0)
    shapes = [((2, 6), (5, 2)), ((2, 6), (9, 2)), ((2, 4), (5, 2)), ((2, 6), (5, 2))]
    pairs = [
        (torch.randn(a, generator=generator), torch.randn(b, generator=generator))
        for a, b in shapes
    ]
    one_by_one = [t for a, b in pairs for t in constraint_terms(constraint, a, b)]
    stacked = stacked_constraint_terms(constraint, pairs)
    assert stacked.numel() == len(one_by_one) == (0 if constraint in ("none", "mpc_n") else 8)
    if one_by_one:
        expected = torch.stack(one_by_one).sort().values
        torch.testing.assert_close(stacked.sort().values, expected)
