"""A killed run resumes from its last checkpoint and ends where an uninterrupted run ends; a
finished run is never trained again."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

import dcft.run.runner
from dcft.methods import apply_method
from dcft.run.checkpoints import last_complete_checkpoint, write_manifest
from dcft.run.identity import RunIdentity
from dcft.run.models import build_model
from dcft.run.runner import run
from dcft.run.trainer import AUXILIARY_STATE, TRAINABLE_STATE
from tests.conftest import compose_config, place, records

STEPS = ["trainer.max_steps=6", "trainer.eval_steps=2", "trainer.logging_steps=2"]


class Killed(Exception):
    pass


class KillAfterCheckpoint(TrainerCallback):
    """Dies right after the checkpoint of ``step`` is on disk, as a SIGKILL there would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed after step {self.step}")


METHODS = {
    "dcft": ["method=dcft", "method.options.init=lora"],
    # SoRA's gates have their own optimiser, whose state must survive the kill as well.
    "sora": ["method=sora", "method.options.l1_weight=0.1"],
}


def _overrides(where: Path, data: Path, method: str = "dcft") -> list[str]:
    return [
        "model=tiny-bert",
        "task=sst2",
        *METHODS[method],
        "logger=none",
        "trainer.batch_size=8",
        "trainer.eval_strategy=steps",
        "trainer.learning_rate=5e-3",
        *STEPS,
        *place(where, data),
    ]


def _same_outcome(resumed: dict, reference: dict) -> None:
    assert resumed["identity"] == reference["identity"]
    assert [e["step"] for e in resumed["evaluations"]] == [2, 4, 6]
    for got, want in zip(resumed["evaluations"], reference["evaluations"], strict=True):
        for name, value in want["metrics"]["validation"].items():
            assert got["metrics"]["validation"][name] == pytest.approx(value, abs=1e-4), name


@pytest.mark.parametrize("method", sorted(METHODS))
def test_killed_run_resumes_to_the_same_record(tmp_path, tiny_data, caplog, method):
    caplog.set_level(logging.INFO, logger="dcft")
    reference = run(compose_config(_overrides(tmp_path / "a", tiny_data, method)))

    cfg = compose_config(_overrides(tmp_path / "b", tiny_data, method))
    with pytest.raises(Killed):
        run(cfg, callbacks=[KillAfterCheckpoint(4)])
    assert not records(tmp_path / "b" / "results")
    checkpoint = Path(cfg.run_dir) / "checkpoints" / "checkpoint-4"
    assert checkpoint.is_dir()
    assert (checkpoint / AUXILIARY_STATE).exists() == (method == "sora")
    # A PEFT checkpoint holds the trainable tensors only, never the frozen backbone.
    assert not list(checkpoint.glob("model*.safetensors"))
    saved = load_file(checkpoint / TRAINABLE_STATE)
    model = build_model("config", "tiny-bert", num_labels=2)
    apply_method(model, method, **RunIdentity.from_config(cfg).options)
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(".attention.self.query.weight" in name for name in saved)

    resumed = run(compose_config(_overrides(tmp_path / "b", tiny_data, method)))
    assert "resuming from" in caplog.text
    timing = resumed["timing"]
    assert timing["resumed_from_step"] == 4
    assert timing["optimizer_steps"] == 6
    # Two segments (steps 1-4 up to the kill's checkpoint, then 5-6), and their times summed.
    assert [s["optimizer_steps"] for s in timing["segments"]] == [4, 2]
    assert all(s["wall_time_s"] > 0 for s in timing["segments"])
    assert timing["train_wall_time_s"] == pytest.approx(
        sum(s["wall_time_s"] for s in timing["segments"])
    )
    assert timing["train_samples_per_second"] > 0
    _same_outcome(resumed, reference)
    got, want = (load_file(r["adapter"]["path"]) for r in (resumed, reference))
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    assert not (Path(cfg.run_dir) / "checkpoints").exists()


def test_resume_between_logged_steps_logs_the_same_losses(tmp_path, tiny_data):
    """Fault: resumed from a checkpoint between two logged steps (checkpoint-3, the loss logged
    every 2 steps), the first logged loss covered one step instead of two (step 6: 0.850 against
    0.789 uninterrupted): 12 of 18 kill -9 resumes differed in `loss_history` alone. A checkpoint
    holds the loss summed since the last log: the resumed record's losses and evaluations are
    exactly the uninterrupted ones."""
    reference = run(
        compose_config([*_overrides(tmp_path / "a", tiny_data), "trainer.save_steps=3"])
    )
    argv = [*_overrides(tmp_path / "b", tiny_data), "trainer.save_steps=3"]
    with pytest.raises(Killed):
        run(compose_config(argv), callbacks=[KillAfterCheckpoint(3)])
    resumed = run(compose_config(argv))
    assert resumed["timing"]["resumed_from_step"] == 3
    assert [e["step"] for e in resumed["loss_history"]] == [2, 4, 6]
    assert resumed["loss_history"] == reference["loss_history"]
    assert resumed["evaluations"] == reference["evaluations"]


def _checkpoint(folder: Path, step: int, sealed: bool) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if sealed:
        write_manifest(path)
    return path


def test_resume_passes_over_checkpoints_cut_short(tmp_path):
    """A kill while checkpoint-12 is written leaves it without its manifest, which is written
    last: resume from checkpoint-4, the last sealed one."""
    assert last_complete_checkpoint(tmp_path / "absent") is None
    assert last_complete_checkpoint(tmp_path) is None
    whole = _checkpoint(tmp_path, 4, sealed=True)
    _checkpoint(tmp_path, 12, sealed=False)
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) == whole
    _checkpoint(tmp_path, 10, sealed=True)
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_finished_run_is_not_trained_again(tmp_path, tiny_data, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="dcft")
    cfg = compose_config(_overrides(tmp_path, tiny_data))
    first = run(cfg)
    (path,) = records(tmp_path / "results")
    before = path.read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(dcft.run.runner, "fit", no_training)
    again = run(compose_config(_overrides(tmp_path, tiny_data)))
    assert again == first
    assert path.read_bytes() == before
    assert f"record: {path}" in caplog.text
