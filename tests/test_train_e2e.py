"""The Hydra entry point end to end on every task, and the config tree itself."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import TrainerCallback

import dcft.run.runner
import dcft.run.trainer
from dcft.data import get_task, load_raw_splits
from dcft.methods import METHODS, adapter_layers
from dcft.run.identity import RunIdentity, resolved_options
from tests.conftest import (
    CONF_DIR,
    FAST,
    GLUE_TASKS,
    SQUAD_TASKS,
    compose_config,
    place,
    records,
    train_cli,
)

SQUAD_FAST = ["task.max_length=64", "task.doc_stride=16"]


def _run_task(hydra_main, tmp_path: Path, tiny_data: Path, task: str) -> dict:
    extra = SQUAD_FAST if task in SQUAD_TASKS else []
    hydra_main([f"task={task}", "method=dcft", *FAST, *extra, *place(tmp_path, tiny_data)])
    (path,) = records(tmp_path / "results")
    return json.loads(path.read_text())


@pytest.mark.parametrize("task", GLUE_TASKS + SQUAD_TASKS)
def test_every_task_trains_evaluates_and_records(hydra_main, tmp_path, tiny_data, task):
    record = _run_task(hydra_main, tmp_path, tiny_data, task)
    spec = get_task(task)

    assert record["status"] == "finished" and record["failure_reason"] is None
    identity = record["identity"]
    assert (identity["model"], identity["task"], identity["method"]) == ("tiny-bert", task, "dcft")
    assert identity["method_slug"] == "dcft-k8-s8"
    assert [e["step"] for e in record["evaluations"]] == [2, 4]
    for evaluation in record["evaluations"]:
        assert set(evaluation["metrics"]) == set(spec.eval_splits)  # MNLI: both dev sets
        assert spec.metric in evaluation["metrics"][spec.eval_splits[0]]
    assert record["last"] == record["evaluations"][-1]
    assert record["best"] in record["evaluations"]
    assert record["main_metric"] == {"name": spec.metric, "split": spec.eval_splits[0]}
    assert record["parameters"]["paper"] > 0
    assert record["parameters"]["with_head"] > record["parameters"]["paper"]
    timing = record["timing"]
    assert timing["optimizer_steps"] == 4 and timing["median_step_time_s"] > 0
    assert timing["train_wall_time_s"] > 0 and record["memory"]["bytes"] > 0
    adapter = Path(record["adapter"]["path"])
    assert (
        adapter.suffix == ".safetensors"
        and adapter.stat().st_size == record["adapter"]["size_bytes"]
    )
    assert {"torch", "transformers", "datasets", "dcft"} <= set(record["environment"]["packages"])
    assert record["environment"]["device"] == "cpu"
    assert record["config"]["task"]["name"] == task
    assert not (Path(record["run_dir"]) / "checkpoints").exists()  # deleted once finished
    assert (Path(record["run_dir"]) / ".hydra" / "config.yaml").exists()  # Hydra's run dir

    _check_metrics_recomputed(record, tiny_data)


def _check_metrics_recomputed(record: dict, data_dir: Path) -> None:
    """The record's last metrics equal an independent computation from the saved predictions
    (scikit-learn / scipy for GLUE; the official SQuAD rules, re-implemented here)."""
    task = record["identity"]["task"]
    saved = json.loads(Path(record["predictions_path"]).read_text())
    last = record["last"]["metrics"]
    for split, values in last.items():
        if task in SQUAD_TASKS:
            raw = load_raw_splits(task, data_dir=data_dir, splits=[split])[split]
            expected = _squad_scores(saved[split]["predictions"], raw, task == "squad_v2")
        else:
            expected = _glue_scores(task, saved[split]["predictions"], saved[split]["labels"])
        for name, value in expected.items():
            assert values[name] == pytest.approx(value, abs=1e-9, nan_ok=True), (split, name)


def _glue_scores(task: str, preds: list, labels: list) -> dict[str, float]:
    if task == "stsb":
        return {"pearson": pearsonr(preds, labels)[0], "spearman": spearmanr(preds, labels)[0]}
    if task == "cola":
        return {"matthews_correlation": matthews_corrcoef(labels, preds)}
    scores = {"accuracy": accuracy_score(labels, preds)}
    if task in ("mrpc", "qqp"):
        scores["f1"] = f1_score(labels, preds)
    return scores


def _norm(text: str) -> list[str]:
    text = re.sub(r"[^\w\s]", "", text.lower())
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def _squad_scores(predictions: dict, raw, version_2: bool) -> dict[str, float]:
    exact, f1 = [], []
    for ex in raw:
        golds = [g for g in ex["answers"]["text"] if _norm(g)] or [""]
        pred = _norm(predictions[ex["id"]])
        exact.append(max(float(pred == _norm(g)) for g in golds))
        f1s = []
        for gold in map(_norm, golds):
            common = sum(min(pred.count(t), gold.count(t)) for t in set(pred))
            if not pred or not gold:
                f1s.append(float(pred == gold))
            else:
                p, r = common / len(pred), common / len(gold)
                f1s.append(0.0 if common == 0 else 2 * p * r / (p + r))
        f1.append(max(f1s))
    return {"exact_match": 100 * float(np.mean(exact)), "f1": 100 * float(np.mean(f1))}


@pytest.mark.slow
def test_command_line_entry_point(tmp_path, tiny_data):
    """`python -m dcft.train ...` as a user types it: exit 0, record written, Hydra run dir =
    the record's identity."""
    argv = ["task=rte", "method=lora", *FAST, *place(tmp_path, tiny_data)]
    done = train_cli(argv, cwd=tmp_path)
    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    assert path.parent.name == "lora-r1"
    expected_run_dir = tmp_path / "outputs/runs/tiny-bert/rte/lora-r1" / path.stem
    assert Path(record["run_dir"]) == expected_run_dir
    assert "record:" in done.stdout


# --------------------------------------------------------------------------------------------
# The config tree.

GROUPS = {
    "model": [
        "deberta-v3-base",
        "roberta-large",
        "deberta-v2-xxlarge",
        "minilm",
        "tiny-deberta",
        "tiny-roberta",
        "tiny-bert",
    ],
    "task": [*GLUE_TASKS, *SQUAD_TASKS],
    "method": [
        "full",
        "bitfit",
        "hadapter",
        "padapter",
        "lora",
        "lorafa",
        "sora",
        "dcft",
        "ssl",
        "ssb",
        "head",
    ],
    "trainer": ["default"],
    "logger": ["wandb", "none"],
}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_group_option_composes_and_resolves(group):
    for option in GROUPS[group]:
        cfg = compose_config([f"{group}={option}"])
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved[group].get("name", option) == option
        assert re.fullmatch(r"outputs/runs/[\w.-]+/\w+/[\w.-]+/seed0-[0-9a-f]{8}", cfg.run_dir)


def test_method_yaml_defaults_match_the_method_library():
    """conf/method/<name>.yaml spells out the library's defaults; variants (e.g. dcft-k2, which
    extend a base file) compose to a registered method with valid options."""
    for path in sorted((CONF_DIR / "method").glob("*.yaml")):
        method = OmegaConf.to_container(
            compose_config([f"method={path.stem}"]).method, resolve=True
        )
        fields = {f.name: f.default for f in dataclasses.fields(METHODS[method["name"]].Options)}
        if path.stem == method["name"]:
            assert method["options"] == fields, path.name
        else:
            resolved_options(method["name"], method["options"])  # raises on a bad option


def test_unknown_group_option_lists_the_valid_ones():
    with pytest.raises(MissingConfigException) as err:
        compose_config(["model=no-such-model"])
    assert "tiny-bert" in str(err.value) and "deberta-v3-base" in str(err.value)


@pytest.mark.parametrize(
    "key",
    [
        "trainer.max_steps",
        "trainer.num_epochs",
        "trainer.batch_size",
        "trainer.learning_rate",
        "data.max_train_samples",
        "data.max_eval_samples",
        "results_dir",
        "model.cls_dropout",
    ],
)
def test_documented_overrides_exist(key):
    cfg = compose_config([f"{key}=7"])
    assert OmegaConf.select(cfg, key) == 7
    conf_text = "\n".join(p.read_text() for p in CONF_DIR.rglob("*.yaml"))
    assert re.search(rf"#.*{re.escape(key)}=", conf_text), f"{key} is not documented in conf/"


def test_run_dir_and_record_share_the_identity(tmp_path):
    cfg = compose_config(["method=dcft", "method.options.kernel=2", *place(tmp_path, "x")])
    identity = RunIdentity.from_config(cfg)
    assert identity.method_slug == "dcft-k2-s2"
    assert cfg.run_dir.endswith(f"dcft-k2-s2/seed0-{identity.hparams_hash}")
    record = identity.record_path(cfg.results_dir)
    assert record.name == f"seed0-{identity.hparams_hash}.json"


@pytest.mark.parametrize("method", GROUPS["method"])
def test_every_method_trains(tmp_path, tiny_data, method):
    cfg = compose_config(["task=rte", f"method={method}", *FAST, *place(tmp_path, tiny_data)])
    record = dcft.run.runner.run(cfg)
    assert record["status"] == "finished"
    assert record["identity"]["method"] == method


def test_optimizer_excludes_auxiliary_parameters_and_steps_them(tmp_path, tiny_data):
    """SoRA: gates are outside the main AdamW, and their own optimiser moves them."""
    from dcft.methods import applied_method

    captured = {}

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            captured["main"] = {id(p) for g in optimizer.param_groups for p in g["params"]}
            captured["gates"] = [
                p.detach().clone() for p in applied_method(model).auxiliary_parameters(model)
            ]
            captured["model"] = model

    cfg = compose_config(["task=rte", "method=sora", *FAST, *place(tmp_path, tiny_data)])
    dcft.run.runner.run(cfg, callbacks=[Capture()])
    model = captured["model"]
    gates = applied_method(model).auxiliary_parameters(model)
    assert gates and not captured["main"] & {id(g) for g in gates}
    assert any(not torch.equal(g, g0) for g, g0 in zip(gates, captured["gates"], strict=True))


@pytest.mark.parametrize("method", ["dcft", "lora"])
def test_merged_evaluation_gives_the_same_metrics(tmp_path, tiny_data, method, monkeypatch):
    """trainer.merged_eval folds every update into its weight for evaluation only."""
    merged_during_eval = []
    real_merged = dcft.run.trainer.merged

    @contextlib.contextmanager
    def spy(model):
        with real_merged(model):
            merged_during_eval.append(all(m.merged for m in adapter_layers(model)))
            yield model

    monkeypatch.setattr(dcft.run.trainer, "merged", spy)
    evaluations, predictions = {}, {}
    for merged_eval in (False, True):
        cfg = compose_config(
            [
                "task=stsb",
                f"method={method}",
                *FAST,
                f"trainer.merged_eval={merged_eval}",
                *place(tmp_path / str(merged_eval), tiny_data),
            ]
        )
        record = dcft.run.runner.run(cfg)
        assert record["status"] == "finished"
        evaluations[merged_eval] = record["evaluations"]
        saved = json.loads(Path(record["predictions_path"]).read_text())
        predictions[merged_eval] = saved["validation"]["predictions"]
    assert merged_during_eval == [True, True]  # both evaluations of the merged_eval run only
    plain, merged = evaluations[False], evaluations[True]
    assert [e["step"] for e in plain] == [e["step"] for e in merged] == [2, 4]
    # Float rounding of W + delta only. The scores of random weights are near-constant, so their
    # rank correlations jump with 1e-6 changes: compare the predicted scores themselves.
    assert predictions[True] == pytest.approx(predictions[False], abs=1e-4)
