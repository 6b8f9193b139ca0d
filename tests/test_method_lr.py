"""A method's learning rate comes from ``hparams.lr.<method>`` of the model's hparams file
(``${method_lr:}``), never DCFT's by default: a method without one is refused before anything
loads, naming the method, the model and the file to add it to. Every cell that resolved before
the fallback was removed keeps its rate: tests/data/learning_rates_2a8af22.json is the snapshot
of every (model, task, method config, hparams.source) cell, computed by :func:`cell_rates` from
the conf/ of commit 2a8af22 (the last with the ``oc.select`` fallback) before the change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from dcft.run.config import CONF_DIR

SNAPSHOT = Path(__file__).parent / "data" / "learning_rates_2a8af22.json"


def cell_rates(conf_dir: Path) -> dict[str, float]:
    """``model/task/method config/source`` -> trainer.learning_rate, for every hparams file and
    method config (``source``: paper, and scripts for DeBERTaV3-base, the one model whose files
    tell the two apart). A method config without its own baseline file for the model takes the
    rate of its method's name (method files set no rate), read off one composition per file."""
    methods = sorted(p.stem for p in (conf_dir / "method").glob("*.yaml"))
    rates = {}
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        names = {m: compose("config", overrides=[f"method={m}"]).method.name for m in methods}
        for path in sorted((conf_dir / "hparams").glob("*/*.yaml")):
            model, task = path.parent.name, path.stem
            sources = ("paper", "scripts") if model == "deberta-v3-base" else ("paper",)
            for source in sources:
                cell = [f"model={model}", f"task={task}"]
                cell += [f"hparams.source={source}"] if len(sources) > 1 else []
                base = compose("config", overrides=[*cell, "method=dcft"])
                for method in methods:
                    if (conf_dir / "baseline" / method / f"{model}.yaml").is_file():
                        cfg = compose("config", overrides=[*cell, f"method={method}"])
                    else:
                        cfg = base.copy()
                        with open_dict(cfg):
                            cfg.method.name = names[method]
                    rates[f"{model}/{task}/{method}/{source}"] = cfg.trainer.learning_rate
    return rates


def test_every_cell_keeps_the_rate_it_had_with_the_fallback():
    before = json.loads(SNAPSHOT.read_text())
    after = cell_rates(CONF_DIR)
    assert after.keys() == before.keys()
    changed = {cell: (before[cell], after[cell]) for cell in before if before[cell] != after[cell]}
    assert not changed
    # The snapshot spans every table's methods on every paper model.
    assert before["roberta-large/rte/lora-r8-qv/paper"] == 4e-4  # LoRA paper, Table 9
    assert before["deberta-v3-base/cola/lora/scripts"] == 8e-4  # DCFT's, from the script


def test_a_new_method_without_a_rate_is_refused_naming_method_model_and_file():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=roberta-large", "task=rte", "method=dcft"])
    with open_dict(cfg):
        cfg.method.name = "lntune"
    with pytest.raises(InterpolationResolutionError) as error:
        OmegaConf.to_container(cfg.trainer, resolve=True)
    line = str(error.value).splitlines()[0]
    assert "method 'lntune' on model 'roberta-large'" in line
    assert "add hparams.lr.lntune to conf/hparams/roberta-large/rte.yaml" in line


def test_the_command_line_refuses_it_in_one_line_before_loading_anything(tmp_path):
    """``~hparams.lr.dcft`` takes DCFT's rate out of MiniLM's file, as a method never given one."""
    argv = ["model=minilm", "task=cola", "method=dcft", "~hparams.lr.dcft"]
    argv += [f"results_dir={tmp_path / 'results'}", f"outputs_dir={tmp_path / 'outputs'}"]
    done = subprocess.run(
        [sys.executable, "-m", "dcft.train", *argv],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert "no learning rate for method 'dcft' on model 'minilm'" in line
    assert "conf/hparams/minilm/cola.yaml" in line
    assert not any(tmp_path.iterdir())  # no run folder, no record
