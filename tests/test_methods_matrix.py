"""One matrix of checks over every method on tiny random models of every architecture.

Expected trainable tensors and parameter counts are written out independently of the library
(module paths per architecture, closed-form counts), so a wrong freeze or count fails here.
"""

from __future__ import annotations

import copy

import pytest
import torch

import dcft
from dcft.methods import METHODS

from .tiny_models import NUM_LABELS, TINY, tiny_inputs, tiny_model, tiny_shape

CASES = [
    ("head", {}),
    ("full", {}),
    ("bitfit", {}),
    ("hadapter", {"bottleneck": 4}),
    ("padapter", {"bottleneck": 4}),
    ("lora", {"r": 2, "alpha": 4}),
    ("lorafa", {"r": 2}),
    ("sora", {"r": 4}),
    ("dcft", {"kernel": 4}),
    ("dcft", {"kernel": 8, "init": "lora"}),
    ("dcft", {"kernel": 4, "stride": 2}),
    ("dcft", {"kernel": 6, "targets": ["q", "v", "ffn_out"]}),
    ("ssl", {}),
    ("ssb", {}),
]
MERGEABLE = {"lora", "lorafa", "sora", "dcft", "ssl", "ssb"}
IDS = [f"{m}-{'-'.join(f'{k}{v}' for k, v in o.items())}" for m, o in CASES]

MATRICES = {
    "tiny-deberta": {
        "q": "attention.self.query_proj",
        "k": "attention.self.key_proj",
        "v": "attention.self.value_proj",
    },
    "tiny-roberta": {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
    },
    "tiny-bert": {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
    },
}
for names in MATRICES.values():
    names.update(o="attention.output.dense", ffn_in="intermediate.dense", ffn_out="output.dense")
PREFIX = {"tiny-deberta": "deberta", "tiny-roberta": "roberta", "tiny-bert": "bert"}
HEAD = {
    "tiny-deberta": [
        "pooler.dense.weight",
        "pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ],
    "tiny-roberta": [
        "classifier.dense.weight",
        "classifier.dense.bias",
        "classifier.out_proj.weight",
        "classifier.out_proj.bias",
    ],
    "tiny-bert": [
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ],
}
ADAPTER_TENSORS = {
    "lora": ["lora_A", "lora_B"],
    "lorafa": ["lora_B"],
    "sora": ["lora_A", "lora_B", "lora_gate"],
    "dcft": ["dcft_a", "dcft_b", "dcft_kernel"],
    "ssl": ["scale_in"],
    "ssb": ["scale_in", "scale_out"],
}
ALL = ("q", "k", "v", "o", "ffn_in", "ffn_out")


def matrix_shapes(arch: str) -> dict[str, tuple[int, int]]:
    h, i, _ = tiny_shape(arch)
    return {"q": (h, h), "k": (h, h), "v": (h, h), "o": (h, h), "ffn_in": (h, i), "ffn_out": (i, h)}


def expected_trainable(arch: str, method: str, options: dict, model_before) -> set[str]:
    """Names that must require grad, from the architecture's module paths."""
    _, _, layers = tiny_shape(arch)
    names = set(HEAD[arch])
    backbone = [n for n, _ in model_before.named_parameters() if n not in names]
    if method == "head":
        return names
    if method == "full":
        return names | set(backbone)
    if method == "bitfit":
        return names | {n for n in backbone if n.endswith(".bias")}
    base = f"{PREFIX[arch]}.encoder.layer"
    if method in ("hadapter", "padapter"):
        # Houlsby replaces the sub-layers' dropouts; Pfeiffer wraps the FFN output sub-layer.
        sites = (
            ["output.dropout", "attention.output.dropout"] if method == "hadapter" else ["output"]
        )
        return names | {
            f"{base}.{i}.{s}.{p}.{w}"
            for i in range(layers)
            for s in sites
            for p in ("down", "up")
            for w in ("weight", "bias")
        }
    targets = options.get("targets", ALL)
    return names | {
        f"{base}.{i}.{MATRICES[arch][t]}.{tensor}"
        for i in range(layers)
        for t in targets
        for tensor in ADAPTER_TENSORS[method]
    }


def expected_count(arch: str, method: str, options: dict, model_before) -> int:
    """The paper's count (head excluded), from closed-form formulas."""
    h, inter, layers = tiny_shape(arch)
    shapes = matrix_shapes(arch)
    targets = options.get("targets", ALL)
    if method == "head":
        return 0
    if method == "full":
        head = h * h + h + h * NUM_LABELS + NUM_LABELS
        return sum(p.numel() for p in model_before.parameters()) - head
    if method == "bitfit":
        per_layer = 4 * h + inter + h + 2 * h
        return layers * per_layer + h + (h if arch == "tiny-deberta" else 0)
    if method in ("hadapter", "padapter"):
        m = options["bottleneck"]
        sites = 2 if method == "hadapter" else 1
        return layers * sites * (2 * h * m + m + h)
    per_matrix = {
        "lora": lambda n_in, n_out: options["r"] * (n_in + n_out),
        "lorafa": lambda n_in, n_out: options["r"] * n_out,
        "sora": lambda n_in, n_out: options["r"] * (n_in + n_out + 1),
        "ssl": lambda n_in, n_out: n_in,
        "ssb": lambda n_in, n_out: n_in + n_out,
    }
    if method == "dcft":
        d, s = options["kernel"], options.get("stride", options["kernel"])
        return layers * sum(
            (n_in - d) // s + 1 + (n_out - d) // s + 1 + d * d
            for n_in, n_out in (shapes[t] for t in targets)
        )
    return layers * sum(per_matrix[method](*shapes[t]) for t in targets)


def perturb_adapters(model, seed: int = 5) -> None:
    """Give every adapter tensor and the head non-trivial values (B = 0 at init hides bugs)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, dcft.methods.layers.AdapterModule):
                for p in module.adapter_parameters().values():
                    p.add_(0.05 * torch.randn(p.shape, generator=generator))


def test_every_method_is_covered():
    assert {m for m, _ in CASES} == set(METHODS)


@pytest.mark.parametrize("arch", TINY)
@pytest.mark.parametrize(("method", "options"), CASES, ids=IDS)
class TestMethodMatrix:
    def test_exactly_the_intended_tensors_train(self, arch, method, options):
        model = tiny_model(arch)
        expected = expected_trainable(arch, method, options, copy.deepcopy(model))
        dcft.apply_method(model, method, **options)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == expected

    def test_count_matches_independent_formula(self, arch, method, options):
        model = tiny_model(arch)
        expected = expected_count(arch, method, options, copy.deepcopy(model))
        dcft.apply_method(model, method, **options)
        counts = dcft.count_parameters(model)
        h = tiny_shape(arch)[0]
        assert counts["paper"] == expected
        assert counts["with_head"] == expected + h * h + h + h * NUM_LABELS + NUM_LABELS

    def test_one_step_changes_exactly_the_trainable_tensors(self, arch, method, options):
        model = dcft.apply_method(tiny_model(arch), method, **options)
        perturb_adapters(model)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        loss = model(**tiny_inputs(), labels=torch.tensor([0, 1, 2])).loss
        loss.backward()
        optimizer.step()
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert changed == {n for n, p in model.named_parameters() if p.requires_grad}

    def test_save_then_load_onto_fresh_backbone_reproduces_outputs(
        self, arch, method, options, tmp_path
    ):
        model = dcft.apply_method(tiny_model(arch, seed=0), method, **options)
        perturb_adapters(model)
        with torch.no_grad():
            for p in model.classifier.parameters():
                p.add_(0.1)
        path = dcft.save_adapter(model, tmp_path / "adapter.safetensors")
        fresh = dcft.load_adapter(tiny_model(arch, seed=0), path)
        inputs = tiny_inputs()
        torch.testing.assert_close(fresh(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
        if method != "full":
            backbone_bytes = sum(p.numel() * 4 for p in model.parameters())
            assert path.stat().st_size < backbone_bytes / 4

    def test_merged_equals_unmerged(self, arch, method, options):
        model = dcft.apply_method(tiny_model(arch), method, **options)
        perturb_adapters(model)
        inputs = tiny_inputs()
        with torch.no_grad():
            unmerged = model(**inputs).logits
            if method not in MERGEABLE:
                assert dcft.methods.adapter_layers(model) == [] or method == "full"
                return
            weights = {n: p.clone() for n, p in model.named_parameters()}
            with dcft.methods.merged(model):
                merged = model(**inputs).logits
            restored = model(**inputs).logits
        torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)
        torch.testing.assert_close(restored, unmerged, rtol=0, atol=1e-5)
        for n, p in model.named_parameters():
            torch.testing.assert_close(p, weights[n], rtol=0, atol=1e-6)
