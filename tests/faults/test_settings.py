"""Settings refused before anything is loaded (dcft.run.settings): keys that no config file
declares (a `+` override Hydra itself suggests for a typo), and counts, intervals, rates and
decays under which the Trainer would silently do something else. Each case names the probe of
issue 26 it reproduces."""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir

from dcft.run.config import CONF_DIR
from dcft.run.runner import run
from dcft.run.settings import check_settings, declared_keys
from tests.conftest import compose_config, records
from tests.faults.test_run_faults import never_trains, overrides

UNKNOWN_KEYS = {
    # Hydra refuses trainer.lerning_rate=1e-3 and suggests the `+` form, which trained on the
    # default learning rate.
    "trainer": ("+trainer.lerning_rate=1e-3", "trainer.lerning_rate", "learning_rate"),
    "data": ("+data.max_train=16", "data.max_train", "max_train_samples"),
    "model": ("+model.dropout=0.1", "model.dropout", "cls_dropout"),
    "task": ("+task.max_len=32", "task.max_len", "max_length"),
    "method.options": ("+method.options.kernal=4", "kernal", "kernel"),
}


@pytest.mark.parametrize("group", sorted(UNKNOWN_KEYS))
def test_unknown_key_is_refused_naming_the_valid_ones(tmp_path, tiny_data, monkeypatch, group):
    """Fault: a key nothing reads, added with `+`. Refused before any model is built, naming the
    key and the group's valid keys; no record."""
    setting, named, valid = UNKNOWN_KEYS[group]
    never_trains(monkeypatch)
    with pytest.raises(ValueError) as info:
        run(compose_config(overrides(tmp_path, tiny_data, setting)))
    message = str(info.value)
    assert named in message and valid in message, message
    assert not records(tmp_path)


def test_declared_keys_are_read_from_the_config_files():
    """The valid keys are what the group's files declare (a task's own file where it has one:
    SQuAD's post-processing keys are valid for SQuAD, not for SST-2)."""
    assert {"learning_rate", "max_steps", "eval_steps"} <= declared_keys("trainer")
    assert {"dir", "max_train_samples", "fingerprint"} <= declared_keys("data")
    assert declared_keys("model") == {"name", "source", "path", "cls_dropout"}
    assert "doc_stride" in declared_keys("task", "squad_v2")
    assert "doc_stride" not in declared_keys("task", "sst2")
    with pytest.raises(ValueError, match=r"task\.doc_stride"):
        check_settings(compose_config(["task=sst2", "+task.doc_stride=64"]))
    check_settings(compose_config(["task=squad_v2", "task.doc_stride=64"]))


NUMBERS = {
    # id: (override, the key the error names); the probes first.
    "max_steps-negative": ("trainer.max_steps=-5", "trainer.max_steps"),  # trained 3 epochs
    "eval_steps-zero": ("trainer.eval_steps=0", "trainer.eval_steps"),  # every logging step
    "weight_decay-negative": ("trainer.weight_decay=-0.01", "trainer.weight_decay"),
    "learning_rate-inf": ("trainer.learning_rate=inf", "trainer.learning_rate"),
    "learning_rate-nan": ("trainer.learning_rate=nan", "trainer.learning_rate"),
    "logging_steps-zero": ("trainer.logging_steps=0", "trainer.logging_steps"),
    "save_steps-zero": ("trainer.save_steps=0", "trainer.save_steps"),
    "save_every_minutes-negative": ("trainer.save_every_minutes=-5", "trainer.save_every_minutes"),
    "warmup_steps-negative": ("trainer.warmup_steps=-10", "trainer.warmup_steps"),
    "warmup_ratio-one": ("trainer.warmup_ratio=1.0", "trainer.warmup_ratio"),
    "accumulation-zero": ("trainer.gradient_accumulation_steps=0", "gradient_accumulation_steps"),
    "eval_batch-zero": ("trainer.eval_batch_size=0", "trainer.eval_batch_size"),
    "max_grad_norm-negative": ("trainer.max_grad_norm=-1", "trainer.max_grad_norm"),
    "num_epochs-inf": ("trainer.num_epochs=inf", "trainer.num_epochs"),
    "max_steps-fraction": ("trainer.max_steps=2.5", "trainer.max_steps"),
    "max_train_samples-zero": ("data.max_train_samples=0", "data.max_train_samples"),
    "eval_strategy-unknown": ("trainer.eval_strategy=sometimes", "trainer.eval_strategy"),
}


@pytest.mark.parametrize("case", sorted(NUMBERS))
def test_number_the_trainer_would_misread_is_refused(tmp_path, tiny_data, monkeypatch, case):
    """Fault: a negative or zero count, interval or decay, a non-finite rate. Each was trained
    (or evaluated) as something else; refused before any model is built, naming the key."""
    setting, key = NUMBERS[case]
    never_trains(monkeypatch)
    with pytest.raises(ValueError, match=re.escape(key)):
        run(compose_config(overrides(tmp_path, tiny_data, setting)))
    assert not records(tmp_path)


def test_the_study_settings_pass():
    """Every MiniLM budget of the CPU study passes (the paper's experiments are checked in
    tests/test_hparams.py, where each of their runs is composed)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path in sorted((CONF_DIR / "hparams" / "minilm").glob("*.yaml")):
            check_settings(compose("config", overrides=["model=minilm", f"task={path.stem}"]))
