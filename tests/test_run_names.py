"""A run's folder, record path and W&B names are spelled once (dcft.run.identity): the config's
``run_dir``, Hydra's sweep subfolder and the W&B run name resolve to what RunIdentity says, and
the W&B artifact, the W&B report's record order and the record migration use its
``record_stem``. Expected names are written out here, not computed by the code under test."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from dcft.report.wandb_runs import _record_path
from dcft.run.config import CONF_DIR
from dcft.run.identity import RunIdentity, record_stem, run_name


def test_config_names_are_run_identitys():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["model=minilm", "task=rte", "method=dcft", "seed=3", "outputs_dir=out"],
            return_hydra_config=True,
        )
    identity = RunIdentity.from_config(cfg)
    stem = f"seed3-{identity.hparams_hash}"
    key = f"minilm/rte/{identity.method_slug}/{stem}"
    assert identity.method_slug == "dcft-k8-s8"
    assert cfg.run_dir == f"out/runs/{key}"
    assert cfg.hydra.sweep.subdir == key
    assert cfg.logger.run_name == identity.run_name == "minilm-rte-dcft-k8-s8-seed3"
    assert identity.record_path("results") == Path(f"results/{key}.json")


def test_record_readers_spell_the_stem_as_identity_does():
    identity = {"model": "m", "task": "t", "method_slug": "s", "seed": 2, "hparams_hash": "ab"}
    assert record_stem(2, "ab") == "seed2-ab"
    assert _record_path((Path("x"), {"identity": identity})) == ("m", "t", "s", "seed2-ab")
    assert run_name("m", "t", "s", 2) == "m-t-s-seed2"
