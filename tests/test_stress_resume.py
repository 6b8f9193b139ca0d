"""scripts/stress_resume.py: its comparison fails on a difference in any field of the record it
does not name as expected to differ, and in any output file it does not name; and a short run of
the script itself kills a real run after a sealed checkpoint, resumes it and finds it identical
(the kill -9 test of resume)."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.stress_resume import (
    EXPECTED_TO_DIFFER,
    FILES_EXPECTED_TO_DIFFER,
    file_differences,
    main,
    output_files,
    record_differences,
)
from tests.conftest import REPO

# A real finished record: every field a run writes (loss history, evaluations, best, last, ...).
RECORD = sorted((REPO / "results" / "study" / "runs").rglob("seed*.json"))[0]


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}".lstrip("."))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def changed(value: Any) -> Any:
    """The smallest change of a leaf: the next float, one more, another string."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return 0.0 if math.isnan(value) else math.nextafter(value, math.inf)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return 0 if value is None else None


def set_leaf(record: dict, path: str, value: Any) -> None:
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    target = record
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


def is_named(path: str) -> bool:
    return any(re.match(rf"{re.escape(key)}($|[.\[])", path) for key in EXPECTED_TO_DIFFER)


def test_every_field_not_named_must_be_equal_exactly():
    """Each leaf of a real record changed by the least possible amount (the next float): the
    comparison names that field unless it is one of the fields named as expected to differ."""
    record = json.loads(RECORD.read_text())
    # The migration note's keys are dotted config paths, which this test's leaf paths cannot name.
    record.pop("migrated", None)
    compared = []
    for path, value in leaves(record):
        other = copy.deepcopy(record)
        set_leaf(other, path, changed(value))
        problems = record_differences(other, record)
        if is_named(path):
            assert problems == [], path
        else:
            assert len(problems) == 1 and problems[0].startswith(f"{path}:"), (path, problems)
            compared.append(path)
    for field in ("loss_history[3].loss", "best.step", "last.metrics", "evaluations[1]"):
        assert any(p.startswith(field) for p in compared), field
    assert "timing.optimizer_steps" in compared  # timing is named field by field, not whole

    shorter = copy.deepcopy(record)
    shorter["loss_history"].pop()
    extra = {**record, "note": 1}
    assert record_differences(shorter, record) == [
        f"loss_history: {len(record['loss_history']) - 1} entries, "
        f"{len(record['loss_history'])} expected"
    ]
    assert record_differences(extra, record) == ["note: only in got"]
    nan = {**record, "best": {**record["best"], "step": math.nan}}
    assert record_differences(nan, copy.deepcopy(nan)) == []  # NaN equals NaN


def _outputs(root: Path, adapter: bytes, log: str) -> Path:
    run = root / "outputs" / "runs" / "m" / "t" / "s" / "seed0-abc"
    (run / ".hydra").mkdir(parents=True)
    (run / "adapter.safetensors").write_bytes(adapter)
    (run / "predictions.json").write_text("{}")
    (run / "train.log").write_text(log)
    (run / ".hydra" / "hydra.yaml").write_text(f"cwd: {root}\n")
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    record = root / "results" / "m" / "t" / "s" / "seed0-abc.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"created_at": str(root)}))
    return run


def test_every_output_file_not_named_must_be_equal_byte_for_byte(tmp_path):
    """The run folder's files are compared byte for byte, except the job log and Hydra's
    runtime file (named); the record is compared field by field, not as a file."""
    _outputs(tmp_path / "a", b"\x00\x01", "launch 1")
    want = output_files(tmp_path / "a")
    run = _outputs(tmp_path / "b", b"\x00\x01", "launch 1, launch 2")
    assert "train.log" in FILES_EXPECTED_TO_DIFFER
    assert file_differences(output_files(tmp_path / "b"), want) == []
    (run / "adapter.safetensors").write_bytes(b"\x00\x02")
    (run / "extra.bin").write_bytes(b"")
    (run / ".hydra" / "config.yaml").unlink()
    assert file_differences(output_files(tmp_path / "b"), want) == [
        "file outputs/runs/m/t/s/seed0-abc/.hydra/config.yaml: only in want",
        "file outputs/runs/m/t/s/seed0-abc/adapter.safetensors: differs",
        "file outputs/runs/m/t/s/seed0-abc/extra.bin: only in got",
    ]


@pytest.mark.slow
def test_a_killed_and_resumed_run_is_identical(tmp_path, capsys):
    """The script on one trial: SIGKILL after a sealed checkpoint (3-step intervals over 12
    steps), resume, compare the whole record and every file with an uninterrupted run."""
    assert main(["--trials", "1", "--kills", "1", "--steps", "12", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1/1 trials resumed from a checkpoint" in out, out
    assert "1/1 identical records and outputs" in out, out
    assert re.search(r"trial 0: kills .*\(newest sealed \d+.*; resumed from \[\d+\]", out), out
