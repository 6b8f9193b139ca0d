"""What the first GPU sweep depends on (issue 10): fp32 master weights whatever the checkpoint
stores, the precision and batch a run really used, the record's data provenance, trainable-only
PEFT checkpoints, summed timing over requeued segments, and data found on a user's machine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dcft.run.runtime
import dcft.train
from dcft.data import load_task_data
from dcft.data.errors import DataUnavailableError
from dcft.run.fitting import training_arguments
from dcft.run.models import build_model, minilm_path
from dcft.run.runner import run
from dcft.run.runtime import resolve_precision, split_batch
from tests.conftest import FAST, compose_config, fake_hub_cache, place, records, train_cli

REPO = Path(__file__).resolve().parents[1]
PAPER_EXPERIMENTS = ["table1-deberta-v3-base", "table2", "table4", "table5"]


def _fp16_checkpoint(folder: Path) -> Path:
    """A tiny DeBERTa-v2 checkpoint stored in fp16 with no dtype in its config, as the DeBERTa
    checkpoints on the Hub are."""
    model = build_model("config", "tiny-deberta", num_labels=2).half()
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    for key in ("dtype", "torch_dtype"):
        config.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm_path() / name).exists():
            shutil.copy(minilm_path() / name, folder / name)
    tensors = load_file(folder / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    return folder


@pytest.mark.parametrize("method", ["full", "dcft"])
def test_fp16_checkpoint_trains_with_fp32_master_weights(tmp_path, tiny_data, method):
    checkpoint = _fp16_checkpoint(tmp_path / "fp16-model")
    argv = [
        "task=sst2",
        f"method={method}",
        *FAST,
        "model=tiny-deberta",
        "model.source=local",
        f"model.path={checkpoint}",
        "trainer.learning_rate=1e-3",
        *place(tmp_path, tiny_data),
    ]
    train_cli(argv, cwd=REPO, timeout=600)
    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    assert record["status"] == "finished", record["failure_reason"]
    assert record["run_settings"]["precision"] == "fp32"
    saved = load_file(record["adapter"]["path"])
    assert saved and {t.dtype for t in saved.values()} == {torch.float32}


def test_precision_auto_never_picks_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # V100 / T4
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto") == "bf16"
    assert resolve_precision("fp16") == "fp16"  # only when asked for
    with pytest.raises(ValueError, match=r"unknown precision 'half'.*fp32"):
        resolve_precision("half")


@pytest.mark.parametrize("experiment", PAPER_EXPERIMENTS)
def test_paper_experiments_train_in_fp32(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.trainer.precision == "fp32"


def test_resolved_precision_is_part_of_the_run_key(monkeypatch):
    from dcft.run.identity import hparams_hash

    auto = compose_config(["trainer.precision=auto"])
    fp32 = compose_config(["trainer.precision=fp32"])
    bf16 = compose_config(["trainer.precision=bf16"])
    assert hparams_hash(auto) == hparams_hash(fp32)  # auto is fp32 on this CPU
    assert hparams_hash(bf16) != hparams_hash(fp32)
    monkeypatch.setattr(dcft.run.runtime, "resolve_precision", lambda p: "bf16")
    monkeypatch.setattr("dcft.run.identity.resolve_precision", lambda p: "bf16")
    assert hparams_hash(auto) == hparams_hash(bf16)  # the same config on a bf16 GPU


def test_global_batch_splits_over_processes(tmp_path, monkeypatch):
    assert split_batch(32, 4).per_device == 8
    assert split_batch(32, 2, 2).per_device == 8
    with pytest.raises(ValueError, match=r"batch_size=32.*3 process"):
        split_batch(32, 3)
    cfg = compose_config(["trainer.batch_size=32"])
    monkeypatch.setattr("dcft.run.fitting.world_size", lambda: 4)
    args = training_arguments(cfg.trainer, tmp_path, 0, "x")
    assert args.per_device_train_batch_size == 8
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert compose_config([]).processes == 4  # torchrun's count is in the run's key


def test_record_states_protocol_batch_and_data_provenance(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    record = run(compose_config(["task=rte", "method=lora", *FAST, *place(tmp_path, tiny_data)]))
    settings = record["run_settings"]
    assert settings["precision"] == "fp32"
    assert settings["batch"] == {
        "global_batch_size": 8,
        "per_device": 8,
        "processes": 1,
        "gradient_accumulation_steps": 1,
    }
    assert settings["evaluation"] == {
        "strategy": "steps",
        "every_steps": 2,
        "reported": "best",
        "also_recorded": "last",
    }
    assert record["environment"]["cuda_visible_devices"] == ""
    assert "gpu_name" in record["environment"]

    data = record["data"]
    assert data["source"] == "local" and data["dir"] == str(tiny_data.resolve())
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        (entry,) = data["files"][split]
        path = tiny_data / "glue" / "RTE" / name
        assert entry["path"] == str(path.relative_to(tiny_data))
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        rows = len(path.read_text().strip().splitlines()) - 1  # header
        assert data["examples"][split] == {"available": rows, "used": rows}
    assert data["warnings"] == []


def test_squad_v2_stand_in_warns_and_is_recorded(tmp_path, tiny_data):
    shutil.copytree(tiny_data / "squad", tmp_path / "squad")
    (tmp_path / "squad" / "v2.0").rename(tmp_path / "squad" / "v2.0-subset")
    with pytest.warns(UserWarning, match="NOT the official SQuAD v2.0 dev set"):
        loaded = load_task_data("squad_v2", tmp_path, max_eval_samples=5)
    assert loaded.provenance["stand_in"] == "v2.0-subset"
    assert "11873" in loaded.provenance["warnings"][0]
    assert loaded.provenance["examples"]["validation"]["used"] == 5


def test_without_local_data_a_run_loads_from_the_hub_cache(tmp_path, monkeypatch):
    import datasets

    revision = "0123456789abcdef0123456789abcdef01234567"
    fake_hub_cache(tmp_path / "hf", revision)
    monkeypatch.delenv("DCFT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    record = run(
        compose_config(
            [
                "task=rte",
                "method=bitfit",
                *FAST,
                "data.max_train_samples=16",
                "data.max_eval_samples=16",
                *place(tmp_path, "null"),
            ]
        )
    )
    assert record["status"] == "finished"
    data = record["data"]
    assert (data["source"], data["hub_id"], data["config"]) == ("hub", "nyu-mll/glue", "rte")
    assert data["revision"] == revision
    assert data["examples"]["train"] == {"available": 2490, "used": 16}


def test_no_local_data_and_no_hub_cache_is_a_clear_error(tmp_path, monkeypatch):
    import datasets

    monkeypatch.delenv("DCFT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty")
    with pytest.raises(DataUnavailableError, match=r"offline mode is on.*cache.*DCFT_DATA_DIR"):
        load_task_data("rte", data_dir="")


def test_make_dry_run_needs_no_local_data(tmp_path):
    """`make reproduce-table4 DRY_RUN=1` in a checkout with no ../shared and no DCFT_DATA_DIR."""
    checkout = tmp_path / "checkout"
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, checkout / name)
    venv = Path(sys.prefix)
    env = {k: v for k, v in os.environ.items() if k != "DCFT_DATA_DIR"}
    done = subprocess.run(
        ["make", "-o", f"{venv}/.runtime", "reproduce-table4", "DRY_RUN=1", f"VENV={venv}"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "180" in done.stdout  # 36 cells x 5 seeds listed
    assert not (tmp_path / "shared").exists()


def test_xxl_full_fine_tuning_recomputes_activations(tmp_path, tiny_data):
    full = compose_config(["model=deberta-v2-xxlarge", "task=cola", "method=full"])
    dcft = compose_config(["model=deberta-v2-xxlarge", "task=cola", "method=dcft"])
    assert full.trainer.gradient_checkpointing and not dcft.trainer.gradient_checkpointing
    assert training_arguments(full.trainer, tmp_path, 0, "x").activation_checkpointing
    # It trains, with frozen embeddings too (non-reentrant checkpointing).
    overrides = ["task=sst2", "method=lora", "trainer.gradient_checkpointing=true", *FAST]
    record = run(compose_config([*overrides, *place(tmp_path, tiny_data)]))
    assert record["status"] == "finished" and record["run_settings"]["gradient_checkpointing"]


def test_the_entry_point_returns_the_headline_score(tmp_path, tiny_data):
    """`dcft.train`'s job returns the run's reported dev score (what a Hydra sweeper such as
    Optuna maximises); a finished run asked again returns the same score without training."""
    cfg = compose_config(["task=rte", "method=lora", *FAST, *place(tmp_path, tiny_data)])
    score = dcft.train._job.__wrapped__(cfg)
    (path,) = records(tmp_path / "results")
    best = json.loads(path.read_text())["best"]["metrics"]["validation"]["accuracy"]
    assert score == best
    assert dcft.train._job.__wrapped__(cfg) == best
