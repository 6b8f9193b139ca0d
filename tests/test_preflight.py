"""The preflight (issue 24): every distinct setting of a table measured for a few steps with the
runner's model and Trainer, injected faults reported in their own rows while the other cells go
on, the full runs priced as an independent count says, nothing written where runs are kept; the
dry run reads the projection back. Slow: the real architectures of the three paper models."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dcft.preflight.probe import NAN, OK, OOM, measure
from dcft.preflight.projection import (
    full_schedule,
    projected_hours,
    read_projections,
    report_paths,
    setting_key,
    wall_seconds,
)
from dcft.preflight.table import Reduction, _audit_check, _reduced, preflight
from dcft.sweep import main, plan
from dcft.sweep_summary import summary
from tests.conftest import compose_config

GIB = 1024**3
N_TRAIN, N_EVAL = 48, 24  # tests.conftest.write_tiny_data's RTE


@pytest.fixture
def table(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Three settings of Table 4's mini sweep on a tiny model, two seeds each, in a folder of
    their own (results_dir and outputs_dir there, the preflight's files under ``preflight``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DCFT_DATA_DIR", str(tiny_data))
    overrides = [
        "model=tiny-deberta",
        "task=rte",
        "method=full,dcft-k2,dcft-k4",
        "seed=range(0,2)",
        "trainer.eval_strategy=steps",
        "trainer.eval_steps=4",
        f"results_dir={tmp_path / 'results'}",
        f"outputs_dir={tmp_path / 'outputs'}",
    ]
    return overrides, tmp_path


def test_table_reports_ok_oom_and_nan_rows_and_prices_the_rest(table) -> None:
    overrides, tmp_path = table
    root = tmp_path / "preflight"
    markdown, rows, total = preflight(
        "table4",
        "mini",
        overrides,
        Reduction(batch=2, seq=16, steps=1),
        injections={"oom": " full ", "nan": "dcft-k2"},
        gpus=2,
        root=root,
    )
    status = {row.setting.label.split()[2]: row for row in rows}
    assert [row.probe.measurement.status for row in rows] == [OOM, NAN, OK], [
        row.probe.measurement.reason for row in rows
    ]
    oom, nan, ok = status["full"], status["dcft-k2-s2"], status["dcft-k4-s4"]
    assert "injected" in oom.probe.measurement.reason
    assert oom.probe.fits == "fits with trainer.gradient_checkpointing=true"
    assert "not finite" in nan.probe.measurement.reason
    assert [len(row.setting.seeds) for row in rows] == [2, 2, 2]

    # The full run, counted independently: 48 examples in batches of 32 = 2 steps an epoch,
    # 3 epochs = 6 steps; evaluations at step 4 and once more after the last step (6).
    m = ok.probe.measurement
    assert m.peak_bytes > 0 and m.step_s > 0 and m.eval_s_per_example > 0
    expected = 6 * m.step_s + 2 * N_EVAL * m.eval_s_per_example
    assert ok.seconds == pytest.approx(expected)
    assert total.runs == 2 and total.missing == 4
    assert total.hours == pytest.approx(2 * expected / 3600)
    assert total.wall_hours == pytest.approx(expected / 3600)  # one seed on each of 2 GPUs

    md, path = report_paths("table4", "cpu", root)
    assert md.read_text() == markdown
    with path.open() as f:
        written = list(csv.DictReader(f))
    assert [r["status"] for r in written] == [OOM, NAN, OK]
    assert all("\n" not in r["reason"] for r in written)
    assert read_projections("table4", "cpu", root) == {
        ok.setting.key: pytest.approx(expected / 3600, abs=1e-3)
    }
    # Nothing where runs are kept: no record, no run folder.
    assert not (tmp_path / "results").exists() and not (tmp_path / "outputs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preflight"]


def test_full_schedule_counts_as_the_trainer_does() -> None:
    # SST-2 on DeBERTaV3-base (conf/hparams): 67,349 sentences, batch 32, 24 epochs, every 3000
    # steps: 2,105 batches an epoch, 50,520 steps, evaluations at 3000 ... 48000 and the last.
    trainer = {
        "batch_size": 32,
        "gradient_accumulation_steps": 1,
        "max_steps": -1,
        "num_epochs": 24,
        "eval_strategy": "steps",
        "eval_steps": 3000,
        "logging_steps": 10,
    }
    schedule = full_schedule(trainer, 67349, 872)
    assert (schedule.optimizer_steps, schedule.evaluations) == (50520, 17)
    # Accumulation 4 over 2 processes: per-device batch 4, 8,419 batches -> 2,104 updates.
    split = full_schedule({**trainer, "gradient_accumulation_steps": 4}, 67349, 872, processes=2)
    assert split.optimizer_steps == 24 * 2104
    by_epoch = full_schedule({**trainer, "eval_strategy": "epoch", "max_steps": 100}, 10, 5)
    assert (by_epoch.optimizer_steps, by_epoch.evaluations) == (100, 24)


def test_wall_time_hands_each_run_to_the_first_free_gpu() -> None:
    assert wall_seconds([3, 3, 3, 3], 2) == 6
    assert wall_seconds([5, 1, 1, 1], 2) == 5
    assert wall_seconds([1, 1, 1, 5], 2) == 6
    assert wall_seconds([2, 2], 1) == 4


def test_dry_run_shows_the_projected_hours(table, capsys) -> None:
    overrides, _ = table
    runs = plan("table4", "mini", overrides)
    key = setting_key(runs[0].identity)
    root = Path("results/preflight")  # the dry run reads the working folder's
    _, path = report_paths("table4", "cpu", root)
    root.mkdir(parents=True)
    path.write_text(f"run,projected_h_per_run\n{key},1.5\nother/run,\n")
    assert projected_hours("table4") == {key: 1.5}
    text = summary("t", runs, list_runs=True, hours=projected_hours("table4"))
    assert text.count("~1.50 h") == 2  # its two seeds
    assert "3.0 h for 2 of the 6 runs not finished or running" in text
    main(["table4", "--scale", "mini", "--dry-run", *overrides])
    assert "3.0 h for 2 of the 6 runs" in capsys.readouterr().out


def test_bad_injection_names_the_valid_kinds(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["table4", "--preflight", "--inject", "boom=sst2"])
    assert "KIND one of oom, nan" in capsys.readouterr().err


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "method", "needs_gib"),
    [
        ("deberta-v3-base", "full", 3),
        ("roberta-large", "dcft", 3),
        # 1.5B parameters, ~6 GB in fp32: a PEFT method only (full fine-tuning would need ~24 GB)
        ("deberta-v2-xxlarge", "dcft", 9),
    ],
)
def test_paper_architectures_run_a_step(model, method, needs_gib, tiny_data, monkeypatch) -> None:
    available = _available_bytes()
    if available < needs_gib * GIB:
        pytest.skip(f"{model} needs ~{needs_gib} GiB free; {available / GIB:.1f} GiB available")
    monkeypatch.setenv("DCFT_DATA_DIR", str(tiny_data))
    cfg = compose_config([f"model={model}", "task=rte", f"method={method}", "logger=none"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    setting = _reduced(resolved, Reduction(batch=1, seq=16, steps=1), random_init=True)
    assert setting.cfg.model.source == "config" and setting.model_note == "random init"
    result = _audit_check(setting.cfg, measure(setting.cfg, 1))
    assert result.status == OK, result.reason
    assert math.isfinite(result.step_s) and result.peak_bytes > 0


def test_a_task_without_data_here_is_priced_by_the_releases_sizes() -> None:
    """QNLI's training set is not in the shared folder: the run is priced by the release's
    104,743 training and 5,463 dev examples, bounded as the run bounds them."""
    from dcft.data import get_task
    from dcft.preflight.table import _published

    data = {
        "max_train_samples": None,
        "max_eval_samples": None,
        "carve_train_from_eval": None,
        "holdout_from_train": None,
    }
    qnli = get_task("qnli")
    assert _published(qnli, data) == (104_743, 5_463, True)
    assert _published(qnli, {**data, "max_train_samples": 1000}) == (1000, 5_463, True)
    mnli = get_task("mnli")
    assert _published(mnli, {**data, "max_eval_samples": 5000}) == (392_702, 10_000, True)
    assert _published(qnli, {**data, "holdout_from_train": 0.15}) is None
