"""notebooks/delta_w.ipynb runs top to bottom on adapters laid out as real runs leave them."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

import dcft
from dcft.run.identity import RunIdentity, method_slug, resolved_options
from dcft.run.models import build_model
from dcft.run.records import make_record, write_json
from dcft.run.runner import run
from dcft.tools.study_adapters import copy_update
from tests.conftest import SHARED_DATA, compose_config, place

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "delta_w.ipynb"
# (method, options): several DCFT kernels and strides (tiny-bert: 48 -> 96) and LoRA.
SETTINGS = (
    ("dcft", {"kernel": 2}),
    ("dcft", {"kernel": 6}),
    ("dcft", {"kernel": 8}),
    ("dcft", {"kernel": 8, "stride": 4}),
    ("dcft", {"kernel": 8, "stride": 2}),
    ("lora", {"r": 2}),
)


def write_adapters(tmp_path: Path) -> Path:
    """Adapters at ``outputs/<exp>/<model>/<task>/<slug>/seed0-<hash>/adapter.safetensors`` and
    their records at ``results/runs/...json`` (whose ``adapter.path`` names the file), as
    dcft.train writes them; returns the results folder."""
    runs = tmp_path / "results" / "runs"
    for i, (method, options) in enumerate(SETTINGS):
        torch.manual_seed(i)
        model = build_model("config", "tiny-bert", task_kind="classification", num_labels=2)
        dcft.apply_method(model, method, **options)
        with torch.no_grad():  # stand-in for training: move every adapter tensor off its init
            for name, param in model.named_parameters():
                if param.requires_grad and ("dcft_" in name or "lora_" in name):
                    param.add_(0.05 * torch.randn_like(param))
        identity = RunIdentity(
            experiment="default",
            model="tiny-bert",
            task="sst2",
            method=method,
            method_slug=method_slug(method, options),
            options=resolved_options(method, options),
            seed=0,
            hparams_hash=f"{i:08x}",
        )
        run_dir = (
            tmp_path / "outputs" / "default" / "tiny-bert" / "sst2" / identity.method_slug
            / f"seed0-{identity.hparams_hash}"
        )  # fmt: skip
        adapter = dcft.save_adapter(model, run_dir / "adapter.safetensors")
        record = make_record(
            identity,
            {"seed": 0},
            "finished",
            adapter={"path": str(adapter), "size_bytes": adapter.stat().st_size},
            run_dir=str(run_dir),
        )
        write_json(identity.record_path(runs), record)
    (runs / "broken.json").write_text("{", encoding="utf-8")  # skipped, not fatal
    return runs


def run_notebook(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DCFT_NOTEBOOK_RUNS", str(folder))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # as Jupyter runs it
    )
    client.execute()
    assert time.perf_counter() - start < 60
    return "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


@pytest.mark.slow
def test_notebook_runs_on_trained_adapters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = run_notebook(write_adapters(tmp_path), monkeypatch)
    assert "Found 6 adapters (5 DCFT, 1 LoRA)" in text
    for name in ("DCFT d=2 s=2", "DCFT d=6 s=6", "DCFT d=8 s=4", "DCFT d=8 s=2", "lora r=2"):
        assert name in text
    assert "Spectrum finding: " in text and "not computed" not in text
    assert "numerical rank    8 of 48" in text  # s = d = 8: rank(F ⊗ C) <= d


@pytest.mark.slow
def test_notebook_says_when_no_adapters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = run_notebook(tmp_path, monkeypatch)
    assert "No DCFT/LoRA adapters found" in text
    assert "Spectrum finding: not computed (no DCFT adapters found)." in text


# Jobs of the mini sweeps (conf/experiment/mini-table*.yaml) on real RTE, cut to a few steps.
MINI_JOBS = (
    ("mini-table4", ["method=dcft-k2"]),
    ("mini-table4", ["method=dcft"]),
    ("mini-table5", ["method=dcft", "method.options.stride=4"]),
    ("mini-table1", ["method=lora"]),
)


@pytest.mark.slow
def test_notebook_runs_on_adapters_of_the_mini_sweeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make reproduce-tableN SCALE=mini` leaves (MiniLM, real data), a few steps each."""
    for experiment, job in MINI_JOBS:
        cfg = compose_config(
            [
                f"experiment={experiment}",
                "task=rte",
                "seed=0",
                *job,
                "logger=none",
                "trainer.max_steps=3",
                "trainer.eval_steps=3",
                "data.max_train_samples=96",
                "data.max_eval_samples=32",
                *place(tmp_path, SHARED_DATA),
            ]
        )
        assert run(cfg)["status"] == "finished"
    text = run_notebook(tmp_path / "results", monkeypatch)
    assert "Found 4 adapters (3 DCFT, 1 LoRA)" in text
    for name in ("DCFT d=2 s=2", "DCFT d=8 s=8", "DCFT d=8 s=4", "lora r=1"):
        assert name in text
    assert "Spectrum finding: " in text and "not computed" not in text


def test_committed_notebook_shows_its_plots_on_the_committed_adapters() -> None:
    """The notebook is committed executed (its figures visible without running it) on the
    study's committed adapters: it lists exactly those files."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
    listed = outputs[0]["text"]
    committed = sorted((NOTEBOOK.parents[1] / "results/study/adapters").rglob("*.safetensors"))
    assert committed
    assert f"Found {len(committed)} adapters" in listed
    for path in committed:
        assert f"{path.parent.name}/{path.name}" in listed


def test_study_adapter_copies_keep_the_update_only(tmp_path: Path) -> None:
    """The committed copies hold the update's tensors, method and options, not the head."""
    model = build_model("config", "tiny-bert", task_kind="classification", num_labels=2)
    dcft.apply_method(model, "dcft", kernel=8)
    full = dcft.save_adapter(model, tmp_path / "adapter.safetensors")
    copy = copy_update(full, tmp_path / "copy.safetensors")
    original, slim = dcft.read_adapter(full), dcft.read_adapter(copy)
    assert (slim.method, slim.options) == (original.method, original.options)
    kept = {n for n in original.tensors if n.rsplit(".", 1)[-1].startswith("dcft_")}
    assert set(slim.tensors) == kept and kept < set(original.tensors)
    for name in kept:
        assert torch.equal(slim.tensors[name], original.tensors[name])
