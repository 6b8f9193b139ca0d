"""W&B: offline runs keep the run's config and metrics under the run folder; disabled / none
write nothing; modes and ids are resolved without the network."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from dcft.results import RunIdentity
from dcft.tracking import api_key_configured, resolve_mode, wandb_run_id
from dcft.train import run
from tests.conftest import FAST, compose_config, place

_BLOCK = 32768
NO_LOGGER = [o for o in FAST if not o.startswith("logger=")]


@pytest.mark.slow
def test_offline_run_holds_config_and_metrics(tmp_path, tiny_data):
    cfg = compose_config(
        ["task=rte", *NO_LOGGER, "logger=wandb", "logger.mode=offline", *place(tmp_path, tiny_data)]
    )
    record = run(cfg)
    (offline,) = (Path(record["run_dir"]) / "wandb").glob("offline-run-*")
    run_id = wandb_run_id(RunIdentity.from_config(cfg))
    assert offline.name.endswith(run_id)
    (log,) = offline.glob(f"run-{run_id}.wandb")
    config, summary = _config_and_summary(log)

    assert config["method"]["name"] == "dcft"
    assert config["task"]["name"] == "rte"
    assert config["seed"] == 0
    accuracy = record["last"]["metrics"]["validation"]["accuracy"]
    assert summary["eval/validation_accuracy"] == pytest.approx(accuracy)
    assert summary["best/accuracy"] == pytest.approx(
        record["best"]["metrics"]["validation"]["accuracy"]
    )
    assert summary["parameters/paper"] == record["parameters"]["paper"]

    import wandb

    assert wandb.run is None  # finished: the next job of a multirun starts clean


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


def _config_and_summary(path: Path) -> tuple[dict, dict]:
    """Run config (as passed to wandb.init) and the final summary, from the offline log."""
    from wandb.proto import wandb_internal_pb2 as pb

    config, summary = {}, {}
    for data in _records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        items = {"run": lambda r: r.run.config.update, "summary": lambda r: r.summary.update}
        if kind in items:
            target = config if kind == "run" else summary
            for item in items[kind](record):
                key = "/".join(item.nested_key) or item.key
                target[key] = json.loads(item.value_json)
    return {k: v.get("value", v) if isinstance(v, dict) else v for k, v in config.items()}, summary


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


def test_run_id_is_deterministic_per_identity():
    a = RunIdentity.from_config(compose_config(["seed=1"]))
    b = RunIdentity.from_config(compose_config(["seed=1"]))
    c = RunIdentity.from_config(compose_config(["seed=2"]))
    assert wandb_run_id(a) == wandb_run_id(b) != wandb_run_id(c)
