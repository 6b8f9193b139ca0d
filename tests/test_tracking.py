"""W&B: offline runs keep the run's identity, config, summary and artifact under the run folder,
tagged with every table that lists them; a NaN run ends failed; disabled / none write nothing;
modes and ids are resolved without the network; `make wandb-sync` hands the offline runs not synced
yet to `wandb sync` (dry run, offline)."""

from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import dcft.run.tracking
import dcft.run.trainer
from dcft.run.identity import RunIdentity, method_slug, resolved_options
from dcft.run.runner import run
from dcft.run.tracking import (
    Tracker,
    api_key_configured,
    record_summary,
    resolve_mode,
    run_tags,
    wandb_run_id,
)
from tests.conftest import FAST, REPO, compose_config, place

_BLOCK = 32768
NO_LOGGER = [o for o in FAST if not o.startswith("logger=")]
OFFLINE = ["task=rte", *NO_LOGGER, "logger=wandb", "logger.mode=offline"]


@pytest.fixture
def wandb_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wandb's own folders (artifact staging and cache, settings) inside the test's tmp folder."""
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_ARTIFACT_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))


@dataclass
class OfflineLog:
    """What an offline run's ``.wandb`` transaction log holds."""

    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    name: str = ""
    job_type: str = ""
    artifacts: list[tuple[str, str, list[str]]] = field(default_factory=list)
    exit_code: int | None = None


def _records(path: Path) -> list[bytes]:
    """Records of a .wandb file: a 7-byte header, then LevelDB-log blocks of 32 KiB holding
    chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, out, pending = 7, [], b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            out.append(pending)
    return out


def _items(items) -> dict[str, Any]:
    return {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in items}


def read_log(run_dir: Path) -> OfflineLog:
    """The run's one offline log: config (as passed to wandb.init, plus any later update), final
    summary, tags, artifacts (name, type, files) and exit code."""
    from wandb.proto import wandb_internal_pb2 as pb

    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (path,) = offline.glob("run-*.wandb")
    log = OfflineLog()
    for data in _records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            log.config.update(_items(record.run.config.update))
            log.tags = list(record.run.tags)
            log.name, log.job_type = record.run.display_name, record.run.job_type
        elif kind == "config":
            log.config.update(_items(record.config.update))
        elif kind == "summary":
            log.summary.update(_items(record.summary.update))
        elif kind == "artifact":
            files = sorted(e.path for e in record.artifact.manifest.contents)
            log.artifacts.append((record.artifact.name, record.artifact.type, files))
        elif kind == "exit":
            log.exit_code = record.exit.exit_code
    log.config.pop("_wandb", None)
    return log


@pytest.mark.slow
def test_offline_run_holds_identity_summary_and_artifact(tmp_path, tiny_data, wandb_dirs):
    cfg = compose_config([*OFFLINE, *place(tmp_path, tiny_data)])
    record = run(cfg)
    identity = RunIdentity.from_config(cfg)
    run_dir = Path(record["run_dir"])
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    assert offline.name.endswith(wandb_run_id(identity))
    log = read_log(run_dir)

    # One `dcft` dict: none of the ~150 flat TrainingArguments / model-config keys of transformers'
    # WandbCallback.
    assert list(log.config) == ["dcft"]
    dcft = log.config["dcft"]
    assert dcft["identity"] == json.loads(json.dumps(record["identity"]))
    assert dcft["config"]["method"]["name"] == "dcft" and dcft["config"]["seed"] == 0
    assert dcft["harness_version"] == record["harness_version"]
    assert dcft["data"] == json.loads(json.dumps(record["data"]))
    assert log.tags == ["tiny-bert", "rte", "dcft", "dcft-k8-s8"]  # in no table
    # Named by model, task, setting and seed; every run's job is training.
    assert log.name == identity.run_name == "tiny-bert-rte-dcft-k8-s8-seed0"
    assert log.job_type == "train"

    summary, best = log.summary, record["best"]["metrics"]["validation"]["accuracy"]
    assert summary["eval/validation_accuracy"] == pytest.approx(
        record["last"]["metrics"]["validation"]["accuracy"]
    )
    assert summary["best/main"] == pytest.approx(100 * best)
    assert summary["best/accuracy"] == pytest.approx(best)
    assert summary["status"] == "finished" and summary["failure_reason"] is None
    assert summary["parameters/paper"] == record["parameters"]["paper"]
    assert summary["parameters/with_head"] == record["parameters"]["with_head"]
    timing = record["timing"]
    assert summary["timing/median_step_time_s"] == pytest.approx(timing["median_step_time_s"])
    assert summary["timing/train_samples_per_second"] == pytest.approx(
        timing["train_samples_per_second"]
    )
    assert summary["memory/peak_bytes"] == record["memory"]["bytes"]
    assert summary["adapter/size_bytes"] == record["adapter"]["size_bytes"] > 0

    name = f"tiny-bert-rte-dcft-k8-s8-seed0-{identity.hparams_hash}"
    assert log.artifacts == [(name, "dcft-run", ["adapter.safetensors", "record.json"])]
    assert log.exit_code == 0

    import wandb

    assert wandb.run is None  # finished: the next job of a multirun starts clean


@pytest.mark.slow
def test_nan_run_ends_failed_with_exit_code_1(tmp_path, tiny_data, wandb_dirs, monkeypatch):
    monkeypatch.setattr(dcft.run.trainer, "regularizer", lambda model: torch.tensor(float("nan")))
    cfg = compose_config([*OFFLINE, *place(tmp_path, tiny_data)])
    record = run(cfg)
    assert record["status"] == "failed"
    log = read_log(Path(cfg.run_dir))
    assert log.summary["status"] == "failed"
    assert log.summary["failure_reason"] == record["failure_reason"]
    assert log.exit_code == 1
    assert log.artifacts == []


@dataclass
class FakeRun:
    summary: dict[str, Any] = field(default_factory=dict)
    logged: list[Any] = field(default_factory=list)

    def log_artifact(self, artifact: Any) -> None:
        self.logged.append(artifact)


def _record(tmp_path: Path, task: str = "rte", metric: str = "accuracy") -> dict[str, Any]:
    adapter = tmp_path / "adapter.safetensors"
    adapter.write_bytes(b"adapter")
    scores = {"validation": {metric: 0.8, "loss": 0.5}}
    identity = {
        "model": "tiny-bert",
        "task": task,
        "method_slug": "dcft-k8-s8",
        "seed": 0,
        "hparams_hash": "0123abcd",
    }
    return {
        "status": "finished",
        "failure_reason": None,
        "identity": identity,
        "main_metric": {"name": metric, "split": "validation"},
        "best": {"step": 2, "metrics": scores},
        "last": {"step": 4, "metrics": scores},
        "parameters": {"paper": 10, "with_head": 20},
        "adapter": {"path": str(adapter), "size_bytes": 7},
    }


@pytest.mark.parametrize("artifacts", [True, False])
def test_record_artifact_only_when_asked(tmp_path, wandb_dirs, artifacts):
    tracker = Tracker(["x"], FakeRun(), artifacts)
    tracker.log_record(_record(tmp_path))
    assert tracker.run.summary["best/main"] == pytest.approx(80.0)
    assert len(tracker.run.logged) == int(artifacts)
    if artifacts:
        (artifact,) = tracker.run.logged
        assert artifact.type == "dcft-run"
        assert sorted(artifact.manifest.entries) == ["adapter.safetensors", "record.json"]


def test_squad_headline_is_not_scaled(tmp_path):
    summary = record_summary(_record(tmp_path, task="squad_v1", metric="f1"))
    assert summary["best/main"] == summary["best/f1"] == 0.8
    assert summary["last/step"] == 4 and summary["best/metrics"]["validation"]["loss"] == 0.5


@pytest.mark.parametrize("logger", [["logger=wandb", "logger.mode=disabled"], ["logger=none"]])
def test_disabled_or_none_writes_nothing(tmp_path, tiny_data, logger, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` would now fail
    record = run(compose_config(["task=rte", *NO_LOGGER, *logger, *place(tmp_path, tiny_data)]))
    assert record["status"] == "finished"
    assert not list(Path(record["run_dir"]).rglob("*wandb*"))


def test_mode_resolution_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert not api_key_configured()
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40)
    (tmp_path / ".netrc").chmod(0o600)
    assert resolve_mode("auto") == "online"
    assert resolve_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="valid modes: auto, online, offline, disabled"):
        resolve_mode("sometimes")


def test_run_id_is_deterministic_per_run_whichever_table_launched_it():
    a = RunIdentity.from_config(compose_config(["seed=1"]))
    b = dataclasses.replace(a, experiment="table4")
    c = RunIdentity.from_config(compose_config(["seed=2"]))
    assert wandb_run_id(a) == wandb_run_id(b) != wandb_run_id(c)


# ---------------------------------------------------------------------------------------------
# Tags: every table that lists the run.


def _identity(model: str, task: str, method: str = "dcft", **options: Any) -> RunIdentity:
    return RunIdentity(
        experiment="default",
        model=model,
        task=task,
        method=method,
        method_slug=method_slug(method, options),
        options=resolved_options(method, options),
        seed=0,
        hparams_hash="0123abcd",
    )


@pytest.mark.parametrize(
    ("identity", "tables"),
    [
        # DCFT d=8: Tables 1, 4 and 6 train it; Table 5 shows its fast path as a row of its own.
        (_identity("deberta-v3-base", "cola"), ["table1", "table4", "table5", "table6"]),
        (_identity("deberta-v3-base", "rte", targets=["q", "v"]), ["table6"]),
        (_identity("deberta-v3-base", "mrpc", stride=2, impl="reference"), ["table5"]),
        (
            _identity("deberta-v2-xxlarge", "qnli", "lora", r=16, alpha=16.0, targets=["q", "v"]),
            ["table2"],
        ),
        (_identity("roberta-large", "mnli", "lorafa", r=16), ["table1"]),
        (_identity("deberta-v3-base", "squad_v2", kernel=2), ["table3"]),
        # The CPU study: CoLA DCFT d=8 is trained by mini-table1 and mini-table4 and shown in
        # Tables 5 and 6 as well.
        (_identity("minilm", "cola"), ["table1", "table4", "table5", "table6"]),
        (_identity("tiny-bert", "rte"), []),
    ],
)
def test_tags_name_every_table_that_lists_the_run(identity, tables):
    from dcft.table_tags import tables_listing

    described = [identity.model, identity.task, identity.method, identity.method_slug]
    assert tables_listing(identity) == tables
    assert run_tags(identity, tables_listing(identity)) == [*tables, *dict.fromkeys(described)]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["table2", "table5", "table6", "mini-table5"])
def test_tag_sweeps_equal_hydra_composition(experiment, tmp_path, tiny_data):
    """dcft.table_tags reads the sweeps without composing each job; every job composed as Hydra
    composes it gives the same (model, task, method slug) set."""
    from hydra import initialize_config_dir

    from dcft.run.config import CONF_DIR
    from dcft.sweep import job_overrides
    from dcft.table_tags import sweep_keys

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        jobs = {
            tuple(o for o in job if not o.startswith("seed=")) for job in job_overrides(experiment)
        }
    composed = set()
    for job in jobs:
        identity = RunIdentity.from_config(
            compose_config([f"experiment={experiment}", *job, *place(tmp_path, tiny_data)])
        )
        composed.add((identity.model, identity.task, identity.method_slug))
    assert sweep_keys(experiment) == composed


# ---------------------------------------------------------------------------------------------
# make wandb-sync.


def _offline_run(outputs: Path, name: str, synced: bool = False) -> Path:
    folder = outputs / "runs" / name / "seed0-abc" / "wandb" / f"offline-run-20260101_000000-{name}"
    folder.mkdir(parents=True)
    (folder / f"run-{name}.wandb").write_bytes(b":W&B")
    if synced:
        (folder / f"run-{name}.wandb.synced").touch()
    return folder


def test_make_wandb_sync_hands_only_unsynced_offline_runs_to_wandb(tmp_path):
    """``make wandb-sync DRY_RUN=1``: wandb's own CLI, offline, lists the runs it would upload."""
    outputs = tmp_path / "outputs"
    first, second = _offline_run(outputs, "a"), _offline_run(outputs, "b")
    synced = _offline_run(outputs, "c", synced=True)
    venv = Path(sys.prefix)
    make = ["make", "-o", f"{venv}/.runtime", "wandb-sync", "DRY_RUN=1", f"VENV={venv}"]
    done = subprocess.run(
        [*make, f"OUTPUTS={outputs}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    said = done.stdout + done.stderr
    assert "Would sync 2 run(s)" in said and "Skipped 1 synced run(s)" in said
    assert str(first / "run-a.wandb") in said and str(second / "run-b.wandb") in said
    assert str(synced) not in said
