"""``trainer.args.*``: any TrainingArguments field the configs do not name, from the command line
to the Trainer, in the run's key; fields dcft sets and unknown names are refused, naming the
valid ones."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from transformers import TrainerCallback, TrainingArguments

from dcft.run.fitting import training_arguments
from dcft.run.identity import hparams_hash
from dcft.run.runner import run
from dcft.run.training_args import check_training_args, pass_through_overrides, settable_fields
from tests.conftest import FAST, REPO, compose_config, place

# The committed study record of MRPC DCFT d=8 seed 0 (its file name carries its key).
(STUDY_RECORD,) = (REPO / "results/study/runs/minilm/mrpc/dcft-k8-s8").glob("seed0-*.json")


def test_command_line_fields_become_add_or_replace_overrides():
    given = ["task=rte", "trainer.args.adam_beta2=0.98", "+trainer.args.x=1", "seed=1"]
    assert pass_through_overrides(given) == [
        "task=rte",
        "++trainer.args.adam_beta2=0.98",
        "+trainer.args.x=1",
        "seed=1",
    ]


def test_fields_reach_the_training_arguments_and_nothing_else_moves(tmp_path):
    plain = training_arguments(compose_config([]).trainer, tmp_path, 0, "x")
    overrides = pass_through_overrides(
        ["trainer.args.adam_beta2=0.98", "trainer.args.label_smoothing_factor=0.1"]
    )
    args = training_arguments(compose_config(overrides).trainer, tmp_path, 0, "x")
    assert (args.adam_beta2, args.label_smoothing_factor) == (0.98, 0.1)
    assert TrainingArguments(output_dir="x").adam_beta2 == 0.999  # not transformers' default
    changed = {k for k, v in args.to_dict().items() if plain.to_dict()[k] != v}
    assert changed == {"adam_beta2", "label_smoothing_factor"}


def test_pass_through_fields_are_in_the_runs_key_and_absent_ones_change_no_key():
    """A committed study record, trained before trainer.args existed, keeps its key; a field set
    makes another run."""
    record = json.loads(STUDY_RECORD.read_text())
    cfg = OmegaConf.create(record["config"])
    assert "args" not in cfg.trainer
    cfg.trainer.args = {}
    assert hparams_hash(cfg) == record["identity"]["hparams_hash"]
    cfg.trainer.args = {"adam_beta2": 0.98}
    other = hparams_hash(cfg)
    cfg.trainer.args = {"adam_beta2": 0.99}
    assert len({other, hparams_hash(cfg), record["identity"]["hparams_hash"]}) == 3


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ({"lr_scheduler_type": "cosine"}, ["trainer.lr_scheduler", "trainer.lr_scheduler=cosine"]),
        ({"learning_rate": 1e-3}, ["trainer.learning_rate"]),
        ({"remove_unused_columns": False}, ["remove_unused_columns", "dcft sets it itself"]),
        ({"adam_betta2": 0.9}, ["trainer.args.adam_betta2", "adam_beta2, adam_epsilon"]),
        ({"debug": "bogus"}, ["trainer.args", "bogus", "underflow_overflow"]),
    ],
)
def test_refused_fields_name_what_to_set(args, names):
    with pytest.raises(ValueError) as err:
        check_training_args(args)
    for name in names:
        assert name in str(err.value)


def test_every_settable_field_is_a_training_argument_dcft_leaves_alone():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(settable_fields()) < fields
    assert {"adam_beta2", "label_smoothing_factor", "lr_scheduler_kwargs"} <= set(settable_fields())
    assert not {"learning_rate", "output_dir", "seed", "optim"} & set(settable_fields())


class _Betas(TrainerCallback):
    def __init__(self) -> None:
        self.betas: list[tuple[float, float]] = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.betas.append(tuple(optimizer.param_groups[0]["betas"]))


@pytest.mark.slow
def test_a_run_trains_with_the_field_and_records_it(tmp_path, tiny_data):
    """From the command-line form to the optimiser of a tiny run and its record."""
    argv = ["task=rte", "trainer.args.adam_beta2=0.5", *FAST, *place(tmp_path, tiny_data)]
    betas = _Betas()
    record = run(compose_config(pass_through_overrides(argv)), callbacks=[betas])
    assert record["config"]["trainer"]["args"] == {"adam_beta2": 0.5}
    assert betas.betas and set(betas.betas) == {(0.9, 0.5)}
