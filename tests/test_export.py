"""Adapters others can load: LoRA / LoRA-FA in peft's format (PeftModel.from_pretrained gives the
same logits), and every mergeable method exported as a plain transformers model (same logits,
the run's dev predictions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from dcft.data import load_task_data, tokenize_glue
from dcft.export import plain_model
from dcft.files import new_file_mode
from dcft.methods import adapter_state, apply_method
from dcft.methods.layers import AdapterModule
from dcft.methods.peft_format import head_modules, save_peft_adapter
from dcft.run.models import build_model
from tests.conftest import FAST, REPO, place, records, train_cli

MERGEABLE = {
    "dcft": {},
    "lora": {"r": 2, "targets": "all"},
    "lorafa": {"r": 2},
    "sora": {},
    "ssl": {},
    "ssb": {},
    "bitfit": {},
    "head": {},
    "full": {},
}


def backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("config", "tiny-bert", num_labels=3).eval()


def trained(method: str, **options) -> torch.nn.Module:
    """tiny-bert with ``method`` applied and every tensor it saves moved off its init (a zero
    LoRA B would make any loader look right)."""
    model = apply_method(backbone(), method, **options)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in adapter_state(model).values():
            tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    return model.eval()


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(1000, 2000, (4, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def logits(model: torch.nn.Module) -> torch.Tensor:
    return model(**batch()).logits


def test_the_head_is_saved_as_its_modules():
    assert head_modules(trained("lora")) == ["bert.pooler", "classifier"]


@pytest.mark.parametrize("method", ["lora", "lorafa"])
def test_peft_loads_the_adapter_with_the_same_logits(method, tmp_path):
    model = trained(method, **MERGEABLE[method])
    folder = save_peft_adapter(model, tmp_path / "peft", "tiny-bert")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] == "SEQ_CLS"
    loaded = PeftModel.from_pretrained(backbone(), folder).eval()
    assert torch.allclose(logits(loaded), logits(model), atol=1e-5)
    assert not torch.allclose(logits(backbone()), logits(model), atol=1e-3)


def test_mpc_n_lora_has_no_peft_format(tmp_path):
    with pytest.raises(ValueError, match=r"no peft format; valid: lora, lorafa"):
        save_peft_adapter(trained("lora", constraint="mpc_n"), tmp_path)


@pytest.mark.parametrize("method", sorted(MERGEABLE))
def test_merged_plain_model_gives_the_same_logits(method):
    model = trained(method, **MERGEABLE[method])
    expected = logits(model)
    plain = plain_model(model)
    assert not any(isinstance(m, AdapterModule) for m in plain.modules())
    assert set(plain.state_dict()) == set(backbone().state_dict())
    assert torch.allclose(logits(plain), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("method", "options"), [("hadapter", {}), ("lora", {"constraint": "mpc_n"})]
)
def test_unmergeable_methods_are_refused(method, options):
    with pytest.raises(ValueError, match=r"cannot be merged|non-linear"):
        plain_model(trained(method, **options))


def _dev_predictions(model_dir: Path, tiny_data: Path, max_length: int) -> list[int]:
    """Class ids of the RTE dev set from the exported folder alone (plain transformers)."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dev = load_task_data("rte", tiny_data, splits=["validation"]).splits["validation"]
    features = tokenize_glue(dev, "rte", tokenizer, max_length).remove_columns("labels")
    collate = DataCollatorWithPadding(tokenizer)
    with torch.no_grad():
        out = model(**collate(list(features))).logits
    return out.argmax(-1).tolist()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dcft", "lora"])
def test_a_runs_export_gives_its_dev_predictions(method, tmp_path, tiny_data):
    train_cli(["task=rte", f"method={method}", *FAST, *place(tmp_path, tiny_data)], cwd=tmp_path)
    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "dcft.export", str(path), str(tmp_path / "export")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = json.loads((tmp_path / record["predictions_path"]).read_text())
    exported = _dev_predictions(
        tmp_path / "export", tiny_data, record["config"]["task"]["max_length"]
    )
    assert exported == predictions["validation"]["predictions"]
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "not_entailment"}
    exported_modes = {p.stat().st_mode & 0o777 for p in (tmp_path / "export").iterdir()}
    assert exported_modes == {new_file_mode()}  # the umask's, not safetensors' 0600
    assert ("peft_dir" in record["adapter"]) == (method == "lora")


def test_export_refuses_what_is_not_a_record(tmp_path):
    (tmp_path / "x.json").write_text("[]")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "dcft.export", str(tmp_path / "x.json"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "is not a run record" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
