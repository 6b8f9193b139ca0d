"""Smoke-run one run of every experiment (the first job of its sweep) with the experiment's
settings and conf/hparams values intact, but a tiny random model of the same architecture,
the tiny local data files and two optimiser steps."""

from __future__ import annotations

import json

import pytest
from hydra import initialize_config_dir

from dcft.run.runner import run
from dcft.sweep import CONF_DIR, job_overrides
from tests.conftest import compose_config, place, records
from tests.test_experiments import ALL_EXPERIMENTS

TINY_TWIN = {
    "deberta-v3-base": "tiny-deberta",
    "deberta-v2-xxlarge": "tiny-deberta",
    "roberta-large": "tiny-roberta",
    "minilm": "tiny-bert",
}
SHRINK = [
    "logger=none",
    "trainer.max_steps=2",
    "trainer.batch_size=4",
    "trainer.eval_batch_size=8",
    "trainer.precision=fp32",
    "data.max_train_samples=8",
    "data.max_eval_samples=8",
    "task.max_length=64",
]


def first_job(experiment: str) -> list[str]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return job_overrides(experiment)[0]


@pytest.mark.parametrize("experiment", ALL_EXPERIMENTS)
def test_first_run_of_every_experiment_trains_and_records(experiment, tmp_path, tiny_data):
    job = first_job(experiment)
    paper_cfg = compose_config([f"experiment={experiment}", *job])
    tiny = TINY_TWIN[paper_cfg.model.name]
    cfg = compose_config(
        [
            f"experiment={experiment}",
            *job,
            "model.source=config",
            f"model.path={tiny}",
            *SHRINK,
            *(["task.doc_stride=16"] if paper_cfg.task.name.startswith("squad") else []),
            *place(tmp_path, tiny_data),
        ]
    )
    # The experiment's own settings survive the shrinking: same learning rate, same method.
    assert cfg.trainer.learning_rate == paper_cfg.trainer.learning_rate
    assert cfg.method == paper_cfg.method

    record = run(cfg)

    assert record["status"] == "finished"
    (path,) = records(tmp_path / "results")
    saved = json.loads(path.read_text())
    assert saved["identity"]["task"] == paper_cfg.task.name
    assert saved["identity"]["method"] == paper_cfg.method.name
    assert experiment.startswith(saved["config"]["experiment"])
    assert saved["timing"]["optimizer_steps"] == 2
