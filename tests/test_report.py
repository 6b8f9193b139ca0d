"""dcft.report: synthetic records in the real layout -> tables whose numbers we recompute here."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import dcft.run.records
from dcft.report.aggregate import build_table
from dcft.report.cli import main, report
from dcft.report.figures import study_curves
from dcft.report.render import tidy, to_latex, to_markdown
from dcft.report.runs import TWIN_LABEL, load_runs
from dcft.report.stats import MISSING
from dcft.report.study import render as study_summary
from dcft.report.tables import TABLES
from dcft.run.identity import RunIdentity, method_slug, resolved_options
from dcft.run.records import make_record, write_json

GLUE8 = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
METRIC = {"cola": "matthews_correlation", "stsb": "pearson"}
PNG = b"\x89PNG\r\n\x1a\n"


def write_run(
    root: Path,
    task: str,
    seed: int,
    score: float,
    *,
    method: str = "dcft",
    options: dict[str, Any] | None = None,
    model: str = "deberta-v3-base",
    experiment: str = "default",
    learning_rate: float = 1e-3,
    hours: float = 0.5,
    harness: str | None = None,
    params: int = 25_344,
    steps: tuple[int, ...] = (10,),
) -> Path:
    """One finished record at its real path; every eval split of the task scores ``score``
    (MNLI mismatched: score - 0.01); earlier steps score less."""
    options = options or {}
    config = {
        "model": {"name": model},
        "task": {"name": task},
        "method": {"name": method, "options": options},
        "trainer": {"learning_rate": learning_rate},
        "experiment": experiment,
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps({**config, "experiment": None}, sort_keys=True).encode())
    identity = RunIdentity(
        experiment=experiment,
        model=model,
        task=task,
        method=method,
        method_slug=method_slug(method, options),
        options=resolved_options(method, options),
        seed=seed,
        hparams_hash=digest.hexdigest()[:8],
    )
    if task.startswith("squad"):
        splits, names = {"validation": 0.0}, ("exact_match", "f1")
    elif task == "mnli":
        splits, names = {"validation_matched": 0.0, "validation_mismatched": -0.01}, ("accuracy",)
    else:
        splits, names = {"validation": 0.0}, (METRIC.get(task, "accuracy"),)
    evaluations = [
        {
            "step": step,
            "epoch": i + 1.0,
            "metrics": {
                s: {
                    "loss": 1.0 / (i + 1),
                    **{m: score + d - 0.1 * (len(steps) - 1 - i) for m in names},
                }
                for s, d in splits.items()
            },
        }
        for i, step in enumerate(steps)
    ]
    record = make_record(
        identity,
        config,
        "finished",
        evaluations=evaluations,
        best=evaluations[-1],
        last=evaluations[-1],
        parameters={
            "paper": params,
            "with_head": params + 1000,
            "head": 1000,
            "total": 184_000_000,
        },
        timing={"train_wall_time_s": hours * 3600},
    )
    if harness is not None:
        record["harness_version"] = harness
    return write_json(identity.record_path(root), record)


@pytest.fixture(autouse=True)
def _fast_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_record's environment probe (git, package versions) is irrelevant here and slow."""
    monkeypatch.setattr(dcft.run.records, "environment", dict)


@pytest.fixture
def scores() -> pd.DataFrame:
    """DCFT d=8 on the 8 GLUE tasks x 3 seeds (DeBERTaV3-base): what the table must average."""
    rng = np.random.default_rng(0)
    rows = [
        {
            "task": t,
            "seed": s,
            "score": float(rng.uniform(0.5, 0.9)),
            "hours": float(rng.uniform(0.1, 2)),
        }
        for t in GLUE8
        for s in range(3)
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def runs_dir(tmp_path: Path, scores: pd.DataFrame) -> Path:
    root = tmp_path / "runs"
    for row in scores.itertuples():
        write_run(root, row.task, row.seed, row.score, options={"kernel": 8}, hours=row.hours)
    return root


def _ours(frame: pd.DataFrame, slug: str, model: str = "deberta-v3-base") -> pd.DataFrame:
    return frame[(frame.method_slug == slug) & (frame.model == model)]


def test_mean_std_and_avg_match_pandas(runs_dir: Path, scores: pd.DataFrame) -> None:
    frame = tidy(build_table(1, load_runs(runs_dir)))
    ours = _ours(frame, "dcft-k8-s8").set_index(["task", "split"])
    expected = scores.assign(value=scores.score * 100).groupby("task")["value"].agg(["mean", "std"])
    for task in GLUE8:
        split = "validation_matched" if task == "mnli" else "validation"
        row = ours.loc[(task, split)]
        assert row["n"] == 3 and row["seeds"] == "0 1 2"
        assert row["mean"] == pytest.approx(expected.loc[task, "mean"], abs=1e-9)
        assert row["std"] == pytest.approx(expected.loc[task, "std"], abs=1e-9)
        assert row["diff"] == pytest.approx(row["mean"] - row["paper"], abs=1e-9)
        hours = scores[scores.task == task].hours
        assert row["hours_mean"] == pytest.approx(hours.mean(), abs=1e-9)
    mismatched = ours.loc[("mnli", "validation_mismatched")]
    assert mismatched["mean"] == pytest.approx(expected.loc["mnli", "mean"] - 1, abs=1e-9)
    # The paper's Avg.: 8 tasks, MNLI once as mean(m, mm) = m - 0.5.
    per_task = expected["mean"].copy()
    per_task["mnli"] -= 0.5
    assert ours.loc[("avg", "")]["mean"] == pytest.approx(per_task.mean(), abs=1e-9)
    assert ours["params_ratio"].iloc[0] == pytest.approx(25_344 / (0.024 * 1024**2))
    # The same runs serve Table 4 (d=8) and Table 6 (ALL) and Table 5 (s=8), whatever experiment.
    for table in (4, 5, 6):
        other = tidy(build_table(table, load_runs(runs_dir)))
        assert set(other[other.method_slug == "dcft-k8-s8"].n) == {3}


def test_markdown_cells_and_missing(runs_dir: Path, scores: pd.DataFrame) -> None:
    write_run(runs_dir, "cola", 0, 0.6, method="lora", params=165_888)
    md = to_markdown(build_table(1, load_runs(runs_dir)))
    cola = scores[scores.task == "cola"].score * 100
    assert f"{cola.mean():.2f} ± {cola.std():.2f} (n=3)" in md
    lora = next(line for line in md.splitlines() if "| ours | lora-r1 |" in line)
    cells = [c.strip() for c in lora.strip("|").split("|")]
    assert cells[4] == "60.00 (n=1)"  # CoLA, one seed: no std
    assert cells[5:] == [MISSING] * 8 + [MISSING, "1"]  # 8 missing tasks, Avg. missing, 1 run
    frame = tidy(build_table(1, load_runs(runs_dir)))
    lora = _ours(frame, "lora-r1")
    assert (
        lora[lora.task == "sst2"]["mean"].isna().all() and (lora[lora.task == "sst2"].n == 0).all()
    )
    # Rows with no records at all render as missing, never filled.
    bitfit = next(line for line in md.splitlines() if line.startswith("|  | ours | — |"))
    assert set(c.strip() for c in bitfit.strip("|").split("|")[3:-1]) == {MISSING}


def test_corrupt_and_failed_records_are_named_and_counted(runs_dir: Path, tmp_path: Path) -> None:
    bad = runs_dir / "broken.json"
    bad.write_text("{ not json", encoding="utf-8")
    failed = json.loads(next(runs_dir.rglob("seed0-*.json")).read_text())
    failed["status"], failed["identity"]["seed"] = "failed", 9
    write_json(runs_dir / "failed" / "seed9.json", failed)
    runset = load_runs(runs_dir)
    assert [p for p, _ in runset.corrupt] == [bad] and len(runset.failed) == 1
    out = tmp_path / "tables"
    report(runset, out, TABLES, figures=False)
    for table in TABLES:
        md = (out / f"table{table}.md").read_text()
        assert "1 failed runs" in md and f"1 unreadable: {bad}" in md
        assert "broken.json" in (out / f"table{table}.tex").read_text()


def test_harness_versions_kept_apart(runs_dir: Path) -> None:
    for seed in (0, 1):
        write_run(runs_dir, "rte", seed + 10, 0.1, options={"kernel": 8}, harness="0.0.9")
    result = build_table(1, load_runs(runs_dir))
    frame = tidy(result)
    rte = frame[
        (frame.task == "rte") & (frame.model == "deberta-v3-base") & (frame.row == "DCFT∆ (d=8)")
    ]
    assert sorted(zip(rte.harness_version, rte.n, strict=True)) == [("0.0.9", 2), ("0.1.0", 3)]
    old = rte[rte.harness_version == "0.0.9"].iloc[0]
    assert old["mean"] == pytest.approx(10.0)
    md = to_markdown(result)
    assert "dcft-k8-s8 @0.0.9" in md and "harness versions 0.0.9, 0.1.0" in md


def test_differing_settings_kept_apart(runs_dir: Path, scores: pd.DataFrame) -> None:
    path = write_run(runs_dir, "rte", 0, 0.05, options={"kernel": 8}, learning_rate=5e-4)
    result = build_table(1, load_runs(runs_dir))
    rte = _ours(tidy(result), "dcft-k8-s8").set_index("task").loc["rte"]
    expected = scores[scores.task == "rte"].score * 100
    assert rte["n"] == 3 and rte["conflict"]
    assert rte["mean"] == pytest.approx(expected.mean())
    md = to_markdown(result)
    assert "## Warnings: records kept apart" in md and str(path) in md
    assert "kept apart: DCFT∆ (d=8) / RTE / dcft-k8-s8: settings" in md
    assert "RTE accuracy 5.00 (n=1)" in md and " ‡" in md


def test_duplicates_across_experiments_counted_once(runs_dir: Path) -> None:
    source = next(runs_dir.rglob("seed0-*.json"))
    copy = runs_dir / "table4-copy" / source.relative_to(runs_dir)
    copy.parent.mkdir(parents=True)
    shutil.copy(source, copy)
    runset = load_runs(runs_dir)
    assert runset.duplicates == [copy] and len(runset.runs) == 24


def test_no_records_renders_all_missing(tmp_path: Path) -> None:
    out = tmp_path / "tables"
    paths = report(load_runs(tmp_path / "none"), out, TABLES)
    assert {p.name for p in paths} >= {
        f"table{t}.{e}" for t in TABLES for e in ("md", "tex", "csv")
    }
    for table in TABLES:
        md = (out / f"table{table}.md").read_text()
        assert "No result records matched this table" in md
        ours = [line for line in md.splitlines() if "| ours |" in line]
        assert ours and all(MISSING in line and "±" not in line for line in ours)
        assert pd.read_csv(out / f"table{table}.csv")["n"].eq(0).all()
    for name in ("figure2.png", "figure3.png"):
        assert (out / name).read_bytes().startswith(PNG)


def test_squad_targets_and_strides_match_their_rows(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root, "squad_v1", seed, 80.0 + seed, options={"kernel": 2})
        write_run(root, "squad_v1", seed, 70.0, options={"kernel": 8})  # not Table 3's kernel
        write_run(root, "cola", seed, 0.5, options={"kernel": 8, "targets": ["q", "k"]})
        write_run(root, "cola", seed, 0.6, options={"kernel": 8, "stride": 2})
    runset = load_runs(root)
    t3 = tidy(build_table(3, runset))
    em = t3[(t3.method == "dcft") & (t3.metric == "exact_match") & (t3.task == "squad_v1")]
    assert list(em.method_slug) == ["dcft-k2-s2"] and em["mean"].iloc[0] == pytest.approx(80.5)
    assert "not state Table 3's DCFT kernel" in to_markdown(build_table(3, runset))
    t6 = tidy(build_table(6, runset))
    cola = t6[(t6.task == "cola") & (t6.n > 0)]
    assert list(cola.row) == ["DCFT Q,K"] and cola["mean"].iloc[0] == pytest.approx(50.0)
    t5 = tidy(build_table(5, runset))
    cola = t5[(t5.task == "cola") & (t5.n > 0)]
    assert list(cola.row) == ["DCFT d=8, s=2"] and cola["mean"].iloc[0] == pytest.approx(60.0)


def test_table6_qkvo_row_is_compared_with_both_target_sets(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    qkvo = ["q", "k", "v", "o"]
    write_run(root, "rte", 0, 0.80, options={"kernel": 8, "targets": qkvo}, params=12_288)
    ffn = [*qkvo, "ffn_out"]
    write_run(root, "rte", 0, 0.85, options={"kernel": 8, "targets": ffn}, params=18_816)
    result = build_table(6, load_runs(root))
    rte = tidy(result).query("task == 'rte'").set_index("row")
    assert list(rte.index) == [
        "DCFT Q,K",
        "DCFT Q,V",
        "DCFT Q,K,V",
        "DCFT Q,K,V,O",
        "DCFT Q,K,V,O,FFN_OUT",
        "DCFT ALL",
    ]
    for row, params, mean in (
        ("DCFT Q,K,V,O", "12,288", 80.0),
        ("DCFT Q,K,V,O,FFN_OUT", "18,816", 85.0),
    ):
        assert rte.loc[row, "params_ours"] == params and rte.loc[row, "mean"] == pytest.approx(mean)
        assert rte.loc[row, "params_paper"] == "18.4k" and rte.loc[row, "paper"] == 85.92
    md = to_markdown(result)
    assert "| DCFT Q,K,V,O,FFN_OUT | paper |  | 18.4k | 68.37 | 89.95 | 91.50 | 85.92 |" in md
    assert "Why the paper counts 18.4K is unknown" in md


def test_mini_scale_and_figures(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in (0, 1):
        for task in ("cola", "rte", "mrpc", "sst2"):
            kw = {"model": "minilm", "steps": (5, 10, 15), "hours": 0.01 * (seed + 1)}
            write_run(root, task, seed, 0.7, options={"kernel": 8}, **kw)
            write_run(root, task, seed, 0.6, method="lora", params=165_888, **kw)
    out = tmp_path / "tables"
    main(["--runs", str(root), "--out", str(out), "--tables", "1", "4"])
    md = (out / "table1.md").read_text()
    assert TWIN_LABEL in md and "## deberta-v3-base (ours: minilm)" in md
    assert "| DCFT∆ (d=8) | paper |  | 0.024M | 71.07 |" in md  # the paper's numbers stay beside
    assert "70.00 ± 0.00 (n=2)" in md
    # Another model and budget: no Δ line, no average, only the tasks run, time in minutes.
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header == "| Method | Line | Setting | #Params | CoLA | SST-2 | MRPC | RTE | Runs |"
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert not any("| Δ |" in line or "Avg." in line for line in table_lines)
    t4_md = (out / "table4.md").read_text()
    assert "| ours min | dcft-k8-s8 |  | 0.9 ± 0.42 (n=2) |" in t4_md  # 0.01 h and 0.02 h
    assert "paper h" not in t4_md
    t4 = pd.read_csv(out / "table4.csv")
    cola = t4[(t4.task == "cola") & (t4.method_slug == "dcft-k8-s8")].iloc[0]
    assert cola["hours_mean"] == pytest.approx(0.015) and cola["hours_paper"] == pytest.approx(0.54)
    assert (out / "table4.tex").read_text().count(r"\begin{tabular}") == 1
    for name in ("figure2.png", "figure3.png"):
        assert (out / name).read_bytes().startswith(PNG)
    assert not (out / "table2.md").exists()


def test_timed_tables_say_where_the_times_were_measured(tmp_path: Path) -> None:
    """The time notes of Tables 4-5 name the records' device and precision: the GPU of a
    paper-scale run, the CPU of the study's twin (never "GPU" or "hours" for CPU minutes)."""
    machines = {"deberta-v3-base": {"gpu_name": "NVIDIA A100"}, "minilm": {"cpu_count": 2}}
    for model, environment in machines.items():
        path = write_run(tmp_path / model, "cola", 0, 0.7, options={"kernel": 8}, model=model)
        record = json.loads(path.read_text())
        record["environment"] = environment
        record["config"]["trainer"]["precision"] = "fp32"
        path.write_text(json.dumps(record))
    report(load_runs(tmp_path / "deberta-v3-base"), tmp_path / "paper", [4], "paper", False)
    report(load_runs(tmp_path / "minilm"), tmp_path / "mini", [4], "mini", False)
    paper = (tmp_path / "paper" / "table4.md").read_text()
    mini = (tmp_path / "mini" / "table4.md").read_text()
    assert "mean ± std over seeds; timed on NVIDIA A100, fp32, dynamic padding; paper h:" in paper
    assert "- ours min: minutes of `timing.train_wall_time_s`" in mini
    assert "mean ± std over seeds; timed on CPU (2 cores), fp32, dynamic padding." in mini
    assert "GPU" not in mini and "Our hours" not in mini


def test_study_figure3_names_its_band_and_draws_head_only_and_the_majority_class(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    rows = (("dcft", {"kernel": 8}, 0.70), ("lora", {"r": 1}, 0.75), ("head", {}, 0.60))
    for seed in (0, 1):
        for method, options, score in rows:
            kw = {"model": "minilm", "steps": (20, 40, 60), "method": method, "options": options}
            write_run(root, "sst2", seed, score + 0.01 * seed, **kw)
    majority = tmp_path / "majority.json"
    majority.write_text(json.dumps({"sst2": 0.5092 * 100}))
    figure = study_curves(load_runs(root), majority)
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert texts == [
        "DCFT (d=8): mean ± std over 2 seeds",
        "LoRA (r=1): mean ± std over 2 seeds",
        "Head only (frozen backbone): mean ± std over 2 seeds",
        "majority class of the dev set (50.92)",
        "one seed's value",
    ]
    accuracy = figure.axes[0]
    assert accuracy.get_ylim()[0] < 50.92 < 60 < accuracy.get_ylim()[1]
    dots = [line for line in accuracy.get_lines() if line.get_linestyle() == "None"]
    assert sum(len(line.get_xdata()) for line in dots) == 3 * 2 * 3  # every seed's evaluations
    missing = study_curves(load_runs(root), tmp_path / "none.json")
    assert len(missing.legends[0].get_texts()) == 4  # no majority line without its file
    plt.close("all")


def test_mini_scale_shows_a_study_task_the_paper_has_no_column_for(tmp_path: Path) -> None:
    """The study runs Table 5's strides on SST-2, which the paper's Table 5 does not report: the
    column is there, with our runs and no paper number."""
    root = tmp_path / "runs"
    for seed in (0, 1):
        for task, score in (("sst2", 0.8), ("stsb", 0.5)):
            options = {"kernel": 8, "stride": 4, "impl": "reference"}
            write_run(root, task, seed, score, options=options, model="minilm", hours=0.01)
    result = build_table(5, load_runs(root), "mini")
    md = to_markdown(result)
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header == "| Method | Line | Setting | #Params | STS-B | SST-2 | Runs |"
    assert f"| DCFT d=8, s=4 | paper |  | 44.9k | 90.73 | {MISSING} |" in md
    assert (
        "| ours | dcft-k8-s4-impl_reference | 25,344 | 50.00 ± 0.00 (n=2) | 80.00 ± 0.00 (n=2) |"
        in md
    )
    sst2 = tidy(result).query("task == 'sst2'")
    assert sst2["paper"].isna().all() and sst2["mean"].tolist() == pytest.approx([80.0])


@pytest.mark.parametrize("select", ["best", "last"])
def test_a_seed_without_a_finite_score_is_named_in_every_table(tmp_path: Path, select) -> None:
    """Fault: a finished STS-B seed whose every evaluation scored Pearson NaN (a constant
    prediction) has no best evaluation (records.summarize); the tables of the best evaluation
    showed the cell as (n=2) without naming that seed (--select last named it). Every table
    (Markdown, LaTeX, CSV) and the study summary, cells and paired differences, names it."""
    root, finite = tmp_path / "runs", tmp_path / "finite"
    for seed, score in ((0, 0.5), (1, math.nan), (2, 0.7)):
        path = write_run(root, "stsb", seed, score, options={"kernel": 8}, model="minilm")
        for folder in (root, finite):
            write_run(folder, "stsb", seed, 0.6, method="lora", model="minilm")
        if math.isnan(score):
            record = json.loads(path.read_text())
            record["best"] = None
            path.write_text(json.dumps(record))

    result = build_table(1, load_runs(root, select), "mini")
    assert "60.00 ± 14.14 (n=2; NaN: seed 1)" in to_markdown(result)
    assert "(n=2; NaN: seed 1)" in to_latex(result)
    frame = tidy(result).query("task == 'stsb' and method_slug == 'dcft-k8-s8'")
    assert frame["nan_seeds"].tolist() == ["1"] and frame["n"].tolist() == [2]
    assert "nan_seeds" not in tidy(build_table(1, load_runs(finite, select), "mini"))

    majority = {"cola": 0.0, "sst2": 50.0, "mrpc": 68.0, "stsb": 0.0}
    summary = study_summary(load_runs(root, select).runs, majority, select)
    assert "| DCFT (d=8) | — | — | — | 60.00 ± 14.14 (n=2; NaN: seed 1) |" in summary
    # STS-B pairs: 50 - 60 and 70 - 60; half-width t(0.975, 1) * 14.14 / sqrt(2) = 127.06.
    stsb = "+0.00 [-127.06, +127.06] (n=2; NaN, left out: seed 1)"
    assert f"| DCFT (d=8) | LoRA (r=1) | — (n=0) | — (n=0) | — (n=0) | {stsb} |" in summary


def test_unknown_choices_are_named() -> None:
    with pytest.raises(ValueError, match="valid: 1, 2, 3, 4, 5, 6"):
        build_table(7, load_runs("/nonexistent"))
    with pytest.raises(ValueError, match="valid: best, last"):
        load_runs("/nonexistent", "median")
