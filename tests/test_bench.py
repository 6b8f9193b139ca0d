"""Smoke test of ``python -m dcft.tools.bench`` on tiny settings (no timing assertions)."""

from __future__ import annotations

import csv
from pathlib import Path

from dcft.tools import bench
from dcft.tools.bench_cases import CPU_TIME_ROWS, LAYER_CONFIGS, STEP_METHODS


def test_quick_bench_writes_report(tmp_path: Path) -> None:
    report = bench.main(
        [
            "--quick",
            "--device",
            "cpu",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert report == tmp_path / "cpu-quick.md"
    text = report.read_text()
    for heading in ("## TARGETS", "## Per adapted layer", "## Whole-model training step"):
        assert heading in text
    # 4 strides / frozen and d=8 / LoRA per layer; per model and precision 4 step-time, 2 memory
    # and (CPU) the 4 step-time ratios again in single-thread CPU time; the adapter file
    assert text.count("**MET**") + text.count("**NOT MET**") == 4 + 1 + 6 + 4 + 1
    for label in STEP_METHODS:
        assert f"| {label} |" in text
    cpu_table = text.split("### Single-thread CPU time of a step: tiny-deberta (fp32)")[1]
    for label in CPU_TIME_ROWS:
        assert f"| {label} |" in cpu_table.split("\n\n")[1]
    assert "step single-thread CPU time, DCFT d=8 / frozen floor" in text
    assert "## Whole-model training step: tiny-deberta (fp32)" in text
    assert "TF32 whole-model rows are measured on CUDA only: skipped" in text
    assert "LoRA r=1 / peft LoRA r=1" in text
    rows = list(csv.DictReader((tmp_path / "cpu-quick.csv").open()))
    sections = {r["section"] for r in rows}
    assert sections == {"layer", "step", "file", "target"}
    layer_configs = {r["config"] for r in rows if r["section"] == "layer"}
    assert len(layer_configs) == LAYER_CONFIGS == 15
    assert {"DCFT structured d=8 s=1", "DCFT reference d=8 s=1"} <= layer_configs
    peft_params = [
        r for r in rows if r["config"] == "peft LoRA r=1" and r["metric"] == "trainable_params"
    ]
    lora_params = [
        r for r in rows if r["config"] == "LoRA r=1" and r["metric"] == "trainable_params"
    ]
    assert peft_params[0]["median"] == lora_params[0]["median"] != "0"
    timed = ("seconds", "peak_bytes", "cpu_seconds_1_thread")
    assert all(float(r["median"]) > 0 for r in rows if r["metric"] in timed)
    cpu_rows = {r["config"] for r in rows if r["metric"] == "cpu_seconds_1_thread"}
    assert cpu_rows == set(CPU_TIME_ROWS)


def test_cli_defaults_follow_the_device() -> None:
    cpu = bench.parse_args(["--device", "cpu"])
    assert cpu.layer_tokens == (32, 128) and cpu.step_batch == (8, 128)
    assert cpu.models == ("deberta-v3-base", "minilm")
    assert cpu.out_dir == Path(__file__).resolve().parents[1] / "results" / "bench"
    cuda = bench.parse_args(["--device", "cuda", "--repeats", "4", "--batch", "16"])
    assert cuda.step_batch == (16, 128) and cuda.layer_repeats == cuda.step_repeats == 4
    assert "max_memory_allocated" in cuda.memory_method
    assert cuda.precisions == ("fp32", "tf32", "bf16") and cpu.precisions == ("fp32",)
    assert bench.parse_args(["--models", "minilm"]).models == ("minilm",)
    assert cpu.optimizer == "adamw_authors"  # conf/trainer/default.yaml: what runs train with
    assert bench.parse_args(["--optimizer", "adamw_torch"]).optimizer == "adamw_torch"
    assert cpu.cpu_time_repeats == 7 and cuda.cpu_time_repeats == 0
    assert cpu.step_labels("minilm") == [label for label in STEP_METHODS if "position" not in label]
    assert len(cpu.step_labels("deberta-v3-base")) == len(STEP_METHODS)
