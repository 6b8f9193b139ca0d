"""Result records: identity, slug and hash, atomic writes, corrupt records, failed runs."""

from __future__ import annotations

import json
import math
import shutil
import signal

import pytest
from omegaconf import OmegaConf

import dcft.run.records
from dcft.run.checkpoints import PREEMPTION_SIGNALS
from dcft.run.identity import RunIdentity, hparams_hash, method_slug
from dcft.run.records import (
    CorruptRecordError,
    ForeignRecordError,
    make_record,
    read_record,
    summarize,
    write_json,
)
from dcft.run.runner import run
from tests.conftest import FAST, REPO, compose_config, place, records


@pytest.mark.parametrize(
    ("method", "options", "slug"),
    [
        ("dcft", {}, "dcft-k8-s8"),
        ("dcft", {"kernel": 2}, "dcft-k2-s2"),
        ("dcft", {"kernel": 8, "stride": 8}, "dcft-k8-s8"),
        ("dcft", {"stride": 4, "init": "lora"}, "dcft-k8-s4-init_lora"),
        ("dcft", {"alpha": 32.0, "gamma": 0.3}, "dcft-k8-s8"),
        ("dcft", {"init": "lora", "constraint": "none"}, "dcft-k8-s8-init_lora-constraint_none"),
        ("lora", {}, "lora-r1"),
        ("lora", {"r": 8, "targets": ["q", "v"]}, "lora-r8-targets_q_v"),
        ("hadapter", {}, "hadapter-m8"),
        ("bitfit", {}, "bitfit"),
        ("sora", {"xi": 1e-4}, "sora-r8-xi0.0001"),
    ],
)
def test_method_slug(method, options, slug):
    assert method_slug(method, options) == slug


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match=r"valid methods: .*dcft"):
        method_slug("no-such-method", {})


def test_hash_covers_hyperparameters_not_places():
    base = compose_config([])
    assert hparams_hash(base) == hparams_hash(compose_config([]))
    for same in (
        "results_dir=/elsewhere",
        "outputs_dir=/x",
        "logger=none",
        "trainer.logging_steps=1",
        "method.options.stride=8",
    ):
        assert hparams_hash(compose_config([same])) == hparams_hash(base), same
    assert hparams_hash(compose_config(["seed=1"])) == hparams_hash(base)  # seeds share it
    for different in (
        "trainer.learning_rate=0.5",
        "task.max_length=32",
        "model.cls_dropout=0.1",
        "method.options.init=lora",
        "data.max_train_samples=9",
        "model=tiny-roberta",
    ):
        assert hparams_hash(compose_config([different])) != hparams_hash(base), different


def test_hash_follows_the_data_content_not_its_place(tmp_path, tiny_data):
    """Three data folders used to share one key (and were averaged as seeds of one cell)."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data, copy)
    key = {
        d: hparams_hash(compose_config(["task=stsb", f"data.dir={d}"])) for d in (tiny_data, copy)
    }
    assert key[tiny_data] == key[copy]
    with (copy / "glue" / "STS-B" / "train.tsv").open("a") as handle:
        handle.write("extra\t\t\t\t\t\t\ta b\tc d\t1.0\n")
    changed = hparams_hash(compose_config(["task=stsb", f"data.dir={copy}"]))
    assert changed != key[tiny_data]
    hub = hparams_hash(compose_config(["task=stsb", "data.dir=null"]))
    assert hub not in (changed, key[tiny_data])


def test_record_path_is_keyed_by_identity(tmp_path):
    cfg = compose_config(
        ["model=tiny-deberta", "task=rte", "method=lora", "seed=3", *place(tmp_path, "d")]
    )
    identity = RunIdentity.from_config(cfg)
    path = identity.record_path(cfg.results_dir)
    expected = tmp_path / "results/tiny-deberta/rte/lora-r1" / f"seed3-{identity.hparams_hash}.json"
    assert path == expected
    # The experiment that asks for a run does not change where it lands: tables share runs.
    cfg.experiment = "table4"
    assert RunIdentity.from_config(cfg).record_path(cfg.results_dir) == path


def test_a_record_is_shared_by_every_table_that_lists_it(tmp_path):
    """Table 4's d = 8 is Table 1's DCFT: the second table reads the first one's record as its
    own (the experiment is not part of what makes a run), while another seed's is refused."""
    cfg = compose_config(["model=tiny-deberta", "task=rte", "method=dcft", *place(tmp_path, "d")])
    cfg.experiment = "table1"
    first = RunIdentity.from_config(cfg)
    path = write_json(first.record_path(cfg.results_dir), make_record(first, {}, "finished"))
    cfg.experiment = "table4"
    assert read_record(path, RunIdentity.from_config(cfg))["identity"]["experiment"] == "table1"
    cfg.seed = 1
    with pytest.raises(ForeignRecordError, match=r"\['seed'\]"):
        read_record(path, RunIdentity.from_config(cfg))


def test_atomic_write_leaves_old_record_or_none(tmp_path, monkeypatch):
    path = tmp_path / "runs" / "seed0-abc.json"

    def dump_half_then_die(obj, handle, **kwargs):
        handle.write('{"status": "fini')
        raise KeyboardInterrupt

    monkeypatch.setattr(dcft.run.records.json, "dump", dump_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"status": "finished"})
    assert list(path.parent.iterdir()) == []  # no record, no temp file

    monkeypatch.undo()
    write_json(path, {"status": "finished", "n": 1})
    monkeypatch.setattr(dcft.run.records.json, "dump", dump_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"status": "finished", "n": 2})
    assert json.loads(path.read_text()) == {"status": "finished", "n": 1}
    assert list(path.parent.iterdir()) == [path]


def test_corrupt_record_is_named_and_left_untouched(tmp_path, tiny_data):
    cfg = compose_config(["task=rte", *FAST, *place(tmp_path, tiny_data)])
    path = RunIdentity.from_config(cfg).record_path(cfg.results_dir)
    path.parent.mkdir(parents=True)
    path.write_text('{"status": "finished", "evalua')
    with pytest.raises(CorruptRecordError, match=str(path)):
        run(cfg)
    assert path.read_text() == '{"status": "finished", "evalua'
    path.write_text('{"something": "else"}')
    with pytest.raises(CorruptRecordError, match="not a dcft run record"):
        read_record(path)


def test_nan_loss_is_recorded_as_failed(tmp_path, tiny_data):
    cfg = compose_config(
        [
            "task=sst2",
            *FAST,
            "trainer.learning_rate=1e30",
            "trainer.save_checkpoints=true",
            *place(tmp_path, tiny_data),
        ]
    )
    before = {signum: signal.getsignal(signum) for signum in PREEMPTION_SIGNALS}
    record = run(cfg)
    # the failed run's preemption handlers are gone (they once outlived it and swallowed SIGTERM)
    assert {signum: signal.getsignal(signum) for signum in PREEMPTION_SIGNALS} == before
    assert record["status"] == "failed"
    assert "training loss is" in record["failure_reason"]
    assert any(word in record["failure_reason"] for word in ("nan", "inf"))
    (path,) = records(tmp_path / "results")
    assert json.loads(path.read_text()) == record
    assert "evaluations" not in record and record["parameters"]["paper"] > 0
    assert not list((tmp_path / "outputs").rglob("checkpoint-*"))


def test_summarize_best_and_last():
    evals = [
        {"step": 1, "metrics": {"validation": {"accuracy": 0.5}}},
        {"step": 2, "metrics": {"validation": {"accuracy": 0.7}}},
        {"step": 3, "metrics": {"validation": {"accuracy": 0.7}}},
        {"step": 4, "metrics": {"validation": {"accuracy": 0.6}}},
    ]
    best, last = summarize(evals, "validation", "accuracy")
    assert best["step"] == 2 and last["step"] == 4
    assert summarize([], "validation", "accuracy") == (None, None)


def test_records_hold_no_secrets(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-123")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_456")
    cfg = compose_config(["task=rte", *FAST, *place(tmp_path, tiny_data)])
    run(cfg)
    (path,) = records(tmp_path / "results")
    text = path.read_text()
    assert "secret-key-123" not in text and "hf_secret_456" not in text


def test_nan_evaluation_never_becomes_best():
    """A constant prediction gives STS-B Pearson NaN; coming first, it used to win max()."""

    def evaluation(step: int, value: float) -> dict:
        return {"step": step, "metrics": {"validation": {"pearson": value}}}

    evaluations = [evaluation(2, math.nan), evaluation(4, 0.3), evaluation(6, 0.1)]
    best, last = summarize(evaluations, "validation", "pearson")
    assert best["step"] == 4 and last["step"] == 6
    best, last = summarize([evaluation(2, math.nan)], "validation", "pearson")
    assert best is None and last["step"] == 2


COMMITTED = sorted((REPO / "results").rglob("seed*-*.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "results")))
def test_committed_records_keep_their_keys(path):
    """Every committed record still lies where today's code would write it: its slug and hash
    recomputed from its own config equal its identity and its file name (a change in how runs
    are keyed would orphan the committed study)."""
    record = json.loads(path.read_text())
    identity = record["identity"]
    assert hparams_hash(OmegaConf.create(record["config"])) == identity["hparams_hash"]
    assert method_slug(identity["method"], identity["options"]) == identity["method_slug"]
    assert path.name == f"seed{identity['seed']}-{identity['hparams_hash']}.json"
    assert path.parent.name == identity["method_slug"]
