"""The footnotes and warnings printed under a table: what the numbers are, the table's own
caveats (its file's ``notes``), and every record skipped, failed or kept apart."""

from __future__ import annotations

from dcft.report.aggregate import TableResult
from dcft.report.rows import TASK_LABELS
from dcft.report.runs import TWIN_LABEL, TWIN_MODEL, TWIN_STANDS_FOR
from dcft.report.stats import CONFLICT, FAILED, MISSING


def notes(result: TableResult) -> list[str]:
    """The footnotes of one table: what the numbers are, the table's caveats, skipped records."""
    runset = result.runset
    out = []
    compared = result.scale != "mini"
    if not compared:
        out.append(
            f"{TWIN_LABEL}. Records of model {TWIN_MODEL!r} stand in for {TWIN_STANDS_FOR}; the "
            "paper's numbers are shown beside them for orientation only: no difference, no "
            "average, only the tasks that were run."
        )
    out.append(
        f"ours: mean ± sample std (ddof=1) over seeds of each record's {runset.select!r} "
        "evaluation, n = seeds; GLUE scores x100, SQuAD as printed (0-100). "
        + ("Δ = ours - paper in the paper's units; " if compared else "")
        + f"missing cells are shown as {MISSING} and never filled in."
    )
    out.append(
        "#Params: ours = the records' `parameters.paper` (adapter tensors, task head excluded)"
        + (
            "; Δ line = ours / paper, with the paper's DCFT counts read in binary units "
            "(K = 1024, M = 1024^2; see results/params.md)."
            if compared
            else "."
        )
    )
    if result.spec.timed and not compared:
        out.append(
            "ours min: minutes of `timing.train_wall_time_s` (Trainer.train, in-training "
            f"evaluation included), mean ± std over seeds; {timed_on(result)}."
        )
    if result.spec.averaged and compared:
        out.append(
            "Avg.: mean over the tasks, MNLI counted once as mean(m, mm) (the convention that "
            "reproduces the paper's averages); computed only when every cell is present."
        )
    if result.spec.timed and compared:
        out.append(
            "ours h: hours of `timing.train_wall_time_s` (Trainer.train, in-training evaluation "
            f"included), mean ± std over seeds; {timed_on(result)}; paper h: the printed "
            "training times."
        )
    out += result.spec.notes
    out += data_caveats(result)
    if any(row.failed for row in result.rows):
        out.append(
            f"{FAILED}k: k runs of this cell failed (NaN loss, ...) and are not averaged; each is "
            "listed under 'Failed runs' with its reason."
        )
    if any(r.conflicted for r in result.rows):
        out.append(
            f"{CONFLICT}: records with other settings exist for this cell; the largest group is "
            "shown and the others are listed under Warnings (never averaged in)."
        )
    versions = sorted({r.harness for r in result.rows if r.show_harness})
    if versions:
        out.append(
            f"Records of harness versions {', '.join(versions)} are kept in separate rows "
            "(Setting @version), never averaged together."
        )
    if result.matched == 0:
        out.append(
            f"No result records matched this table ({len(runset.runs)} usable records read from "
            f"{runset.runs_dir}): every cell is missing."
        )
    out.append(
        f"Records: {runset.read} files read from {runset.runs_dir}, {result.matched} used here; "
        f"{len(runset.failed)} failed runs, {len(runset.duplicates)} duplicates of an "
        f"(hparams_hash, seed) skipped; {len(runset.corrupt)} unreadable"
        + (": " + ", ".join(str(p) for p, _ in runset.corrupt) if runset.corrupt else "")
        + "."
    )
    return out


def timed_on(result: TableResult) -> str:
    """Where our times were measured, read from the table's records: their device (the GPU's
    name, or the CPU and its cores) and training precision."""
    runs = [run for row in result.rows for runs in row.cell_runs.values() for run in runs]
    devices, precisions = set(), set()
    for run in runs:
        environment = run.record.get("environment") or {}
        cores = environment.get("cpu_count")
        cpu = f"CPU ({cores} cores)" if cores else "CPU"
        devices.add(environment.get("gpu_name") or cpu)
        trainer = (run.record.get("config") or {}).get("trainer") or {}
        precisions.add(str(trainer.get("precision", "precision not recorded")))
    if not runs:
        return "no records timed"
    return (
        f"timed on {', '.join(sorted(devices))}, {', '.join(sorted(precisions))}, dynamic padding"
    )


def failures(result: TableResult) -> list[str]:
    """Every failed run of a cell in this table, with its reason and record."""
    return [
        f"{row.paper.label} / {TASK_LABELS.get(task, task)} / {row.setting} / seed {run.seed}: "
        f"{run.record.get('failure_reason') or 'no reason recorded'} ({run.path})"
        for row in result.rows
        for task, runs in row.failed.items()
        for run in runs
    ]


def data_caveats(result: TableResult) -> list[str]:
    """Cells scored on a stand-in dev set (e.g. SQuAD v2.0's subset): named, never silent."""
    stand_ins = {
        (run.task, (run.record.get("data") or {}).get("stand_in"))
        for row in result.rows
        for runs in row.cell_runs.values()
        for run in runs
        if (run.record.get("data") or {}).get("stand_in")
    }
    return [
        f"{TASK_LABELS.get(task, task)}: scored on the stand-in dev set {folder!r}, not the "
        "official one; not comparable to the paper's numbers."
        for task, folder in sorted(stand_ins)
    ]


def warnings(result: TableResult) -> list[str]:
    """Per cell with records of several settings (beyond the seed): the group shown and each
    group kept apart, with its score, seeds, hashes and files."""
    out = []
    for c in result.conflicts:
        seeds = ", ".join(str(r.seed) for r in c.runs)
        hashes = ", ".join(sorted({r.hparams_hash for r in c.runs}))
        files = ", ".join(str(r.path) for r in c.runs)
        out.append(
            ("shown" if c.shown else "kept apart")
            + f": {c.row} / {TASK_LABELS.get(c.task, c.task)} / {c.slug}: settings {c.settings}, "
            f"{c.score} (seeds {seeds}; hparams_hash {hashes}; harness "
            f"{', '.join(sorted({r.harness_version for r in c.runs}))}): {files}"
        )
    return out
