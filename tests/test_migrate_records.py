"""Upgrading schema-1 records (dcft.tools.migrate_records): a migrated record is the record a
fresh run of the same settings writes, at the same path; records whose data cannot be checked
are refused and left as they were."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dcft.run.identity import hparams_hash
from dcft.run.runner import run
from dcft.tools.migrate_records import main
from tests.conftest import FAST, REPO, compose_config, place, records

RTE_FILES = (("train", "glue/RTE/train.tsv"), ("validation", "glue/RTE/dev.tsv"))


def _file_fingerprint(data: Path) -> str:
    """Schema 1's data.fingerprint of RTE, written out here: the sha256 of each file, by split
    and relative path."""
    digest = hashlib.sha256()
    for split, name in RTE_FILES:
        sha = hashlib.sha256((data / name).read_bytes()).hexdigest()
        digest.update(f"{split}:{name}:{sha}\n".encode())
    return digest.hexdigest()[:16]


def _as_schema_1(record: dict, data: Path) -> dict:
    """``record`` as the code before schema 2 wrote it: no trainer.optimizer (torch's AdamW was
    the only one), the files' fingerprint, and the hash and run folder that follow from them."""
    old = copy.deepcopy(record)
    old["schema"] = "dcft-run/1"
    del old["config"]["trainer"]["optimizer"]
    old["config"]["data"]["fingerprint"] = _file_fingerprint(data)
    new_hash, old_hash = (
        record["identity"]["hparams_hash"],
        hparams_hash(OmegaConf.create(old["config"])),
    )
    assert old_hash != new_hash
    old["identity"]["hparams_hash"] = old_hash
    for holder, key in (
        (old["config"], "run_dir"),
        (old, "run_dir"),
        (old["adapter"], "path"),
        (old, "predictions_path"),
    ):
        holder[key] = holder[key].replace(f"seed0-{new_hash}", f"seed0-{old_hash}")
    return old


@pytest.fixture
def fresh_run(tmp_path, tiny_data) -> tuple[Path, dict]:
    """A tiny run trained with torch's AdamW, as every schema-1 record was."""
    cfg = compose_config(
        [
            "task=rte",
            "method=lora",
            *FAST,
            "trainer.optimizer=adamw_torch",
            *place(tmp_path, tiny_data),
        ]
    )
    assert run(cfg)["status"] == "finished"
    (path,) = records(tmp_path / "results")
    return path, json.loads(path.read_text())


def _downgrade(path: Path, record: dict, data: Path) -> tuple[Path, dict]:
    old = _as_schema_1(record, data)
    old_path = path.with_name(f"seed0-{old['identity']['hparams_hash']}.json")
    old_path.write_text(json.dumps(old, indent=2))
    path.unlink()
    Path(record["run_dir"]).rename(old["run_dir"])
    return old_path, old


def test_a_migrated_record_is_what_a_fresh_run_writes(fresh_run, tiny_data, capsys):
    path, fresh = fresh_run
    old_path, old = _downgrade(path, fresh, tiny_data)
    main([str(path.parents[3])])  # the results folder
    assert "1 upgraded, 0 already at dcft-run/2, 0 cannot be upgraded" in capsys.readouterr().out
    assert records(path.parents[3]) == [path] and not old_path.exists()
    migrated = json.loads(path.read_text())
    (entry,) = migrated.pop("migrated")
    assert migrated == fresh
    assert entry["changed"] == {
        "trainer.optimizer": [None, "adamw_torch"],
        "data.fingerprint": [
            old["config"]["data"]["fingerprint"],
            fresh["config"]["data"]["fingerprint"],
        ],
        "hparams_hash": [old["identity"]["hparams_hash"], fresh["identity"]["hparams_hash"]],
    }
    assert Path(fresh["adapter"]["path"]).is_file()  # the run folder follows its key
    assert not Path(old["run_dir"]).exists()
    main([str(path)])  # again: nothing to do
    assert "0 upgraded, 1 already at dcft-run/2" in capsys.readouterr().out
    assert json.loads(path.read_text())["migrated"] == [entry]


def test_a_record_whose_files_are_not_here_is_left_alone(fresh_run, tiny_data, tmp_path, capsys):
    path, fresh = fresh_run
    old_path, _ = _downgrade(path, fresh, tiny_data)
    before = old_path.read_bytes()
    other = tmp_path / "other"
    shutil.copytree(tiny_data / "glue" / "RTE", other / "glue" / "RTE")
    with (other / "glue" / "RTE" / "dev.tsv").open("a") as tsv:
        tsv.write("9999\tone more\tpair\tentailment\n")
    with pytest.raises(SystemExit, match="1"):
        main(["--data-dir", str(other), str(old_path)])
    out = capsys.readouterr().out
    assert f"not upgraded: {old_path}: the rte files in {other} are not those" in out
    assert old_path.read_bytes() == before and records(tmp_path / "results") == [old_path]


def test_the_committed_records_are_migrated(capsys):
    study = REPO / "results" / "study"
    committed = len(list(study.rglob("seed*-*.json")))
    main(["--dry-run", str(study)])
    assert (
        f"0 to upgrade, {committed} already at dcft-run/2, 0 cannot be upgraded"
        in capsys.readouterr().out
    )
