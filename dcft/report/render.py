"""Rendering of an aggregated table: a display grid per model block (Markdown, LaTeX), a tidy
frame (CSV), and the footnotes and warnings that say what the numbers are."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean

import pandas as pd

from dcft.report.aggregate import (
    AVERAGED_TABLES,
    CONFLICT,
    FAILED,
    MISSING,
    TABLE3_KERNEL,
    TABLE_TITLES,
    TASK_LABELS,
    TIMED_TABLES,
    TWIN_LABEL,
    TWIN_MODEL,
    TWIN_STANDS_FOR,
    OurRow,
    Stat,
    TableResult,
    format_stat,
    model_for,
)


def _num(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _hours(stat: Stat | None) -> str:
    if stat is None:
        return MISSING
    spread = "" if stat.n < 2 else f" ± {stat.std:.2g}"
    return f"{stat.mean:.3g}{spread} (n={stat.n})"


def _diff(ours: float | None, paper: float | None) -> float | None:
    return None if ours is None or paper is None else ours - paper


def _signed(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.2f}"


def _params_ours(row: OurRow) -> tuple[str, float | None]:
    """Our #Params text and the ratio ours / paper (percent of the model for Table 3)."""
    counts = row.params()
    if not counts:
        return MISSING, None
    text = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}-{counts[-1]:,}"
    count = fmean(counts)
    if row.paper.params_text.endswith("%"):
        totals = [r.params_total for r in row.runs if r.params_total]
        if not totals:
            return text, None
        percent = 100 * count / fmean(totals)
        return f"{text} ({percent:.3f}%)", percent / float(row.paper.params_text[:-1])
    paper = row.paper.params_paper()
    return text, None if not paper else count / paper


def _blocks(result: TableResult) -> dict[str, list[OurRow]]:
    blocks: dict[str, list[OurRow]] = {}
    for row in result.rows:
        blocks.setdefault(row.paper.model, []).append(row)
    return blocks


def _grid(rows: list[OurRow], averaged: bool, timed: bool) -> tuple[list[str], list[list[str]]]:
    """Header and lines of one model block: per paper row a ``paper`` line, then per our row an
    ``ours`` and a ``Δ`` line (Tables 4-5: ``ours h`` / ``paper h`` training hours too)."""
    cells = list(dict.fromkeys(c for r in rows for c in r.paper.cells))
    labels = list(dict.fromkeys(c.label for c in cells))
    header = ["Method", "Line", "Setting", "#Params", *labels]
    header += ["Avg."] if averaged else []
    header += ["Runs"]
    lines: list[list[str]] = []
    done: set[int] = set()  # ids of the paper rows already printed

    def line(values: dict[str, str], *lead: str) -> list[str]:
        body = [values.get(label, "") for label in labels]
        tail = [values.get("Avg.", MISSING)] if averaged else []
        return [*lead, *body, *tail, values.get("Runs", "")]

    for row in rows:
        paper = row.paper
        by_label = {c.label: c for c in paper.cells}
        tasks = {c.task: c.label for c in paper.cells}
        if id(paper) not in done:
            done.add(id(paper))
            values = {c.label: _num(c.paper) for c in paper.cells}
            values["Avg."] = _num(paper.avg)
            lines.append(line(values, paper.label, "paper", "", paper.params_text or MISSING))
        params, ratio = _params_ours(row)
        ours = {
            label: format_stat(row.cells.get(c))
            + (f" {CONFLICT}" if c.task in row.conflicted else "")
            + (f" {FAILED}{len(row.failed[c.task])}" if c.task in row.failed else "")
            for label, c in by_label.items()
        }
        ours["Avg."] = _num(row.average())
        ours["Runs"] = str(sum(len(runs) for runs in row.cell_runs.values()))
        lines.append(line(ours, "", "ours", row.setting, params))
        delta = {
            label: _signed(_diff(row.cells[c].mean if c in row.cells else None, c.paper))
            for label, c in by_label.items()
        }
        delta["Avg."] = _signed(_diff(row.average(), paper.avg))
        ratio_text = MISSING if ratio is None else f"x{ratio:.3f}"
        lines.append(line(delta, "", "Δ", row.setting, ratio_text))
        if timed:
            hours = {tasks[t]: _hours(row.hours.get(t)) for t in tasks}
            hours["Avg."] = _num(row.average_hours(), 3)
            lines.append(line(hours, "", "ours h", row.setting, ""))
            printed = {tasks[t]: _num(paper.hours.get(t)) for t in tasks}
            printed["Avg."] = _num(paper.hours.get("avg"))
            lines.append(line(printed, "", "paper h", "", ""))
    return header, lines


TABLE_NOTES = {
    1: "RoBERTa-large prints one MNLI number; ours is validation_matched. LoRA / LoRA-FA rows "
    "match records by method name and model, split by method slug.",
    3: f"The paper does not state Table 3's DCFT kernel; ours is d={TABLE3_KERNEL} (0.04% of 184M "
    "fits d=2 better than d=8). Table 3 prints #Params as percentages.",
    4: "Training hours: kernel d with stride d runs DCFT's fast (Kronecker) path, which never "
    "builds the dense update; the paper's hours (RTX 2080 Ti, fp32, padded to the maximum "
    "length) timed the authors' dense update. Our hours are the records' GPU (environment."
    "gpu_name), fp32, dynamic padding.",
    5: "Training hours: every stride is run on the reference path (conv_transpose2d builds the "
    "dense update every step, as the authors' code does), so the four rows are timed on one "
    "implementation; d=8, s=8 on the fast path (Tables 1 and 4) shows as its own row where its "
    "records exist. The paper's hours: RTX 2080 Ti, fp32, padded to the maximum length; ours: "
    "the records' GPU (environment.gpu_name), fp32, dynamic padding.",
    6: "Targets match as sets of q, k, v, o, ffn_in, ffn_out; ALL = all six. The paper's Q,K,V,O "
    "row is compared twice: with q, k, v, o (12,288 parameters) and with q, k, v, o plus ffn_out "
    "(18,816, which the printed 18.4K fits in binary units). Why the paper counts 18.4K is "
    "unknown: the authors' code adapts no FFN matrix when given q, k, v, o (results/params.md).",
}


def notes(result: TableResult) -> list[str]:
    """The footnotes of one table: what the numbers are, the table's caveats, skipped records."""
    runset = result.runset
    out = []
    if result.scale == "mini":
        out.append(
            f"{TWIN_LABEL}. Records of model {TWIN_MODEL!r} stand in for {TWIN_STANDS_FOR}; the "
            "paper's numbers are shown beside them for orientation only."
        )
    out.append(
        f"ours: mean ± sample std (ddof=1) over seeds of each record's {runset.select!r} "
        "evaluation, n = seeds; GLUE scores x100, SQuAD as printed (0-100). "
        "Δ = ours - paper in the paper's units; missing cells are shown as "
        f"{MISSING} and never filled in."
    )
    out.append(
        "#Params: ours = the records' `parameters.paper` (adapter tensors, task head excluded); "
        "Δ line = ours / paper, with the paper's DCFT counts read in binary units "
        "(K = 1024, M = 1024^2; see results/params.md)."
    )
    if result.table in AVERAGED_TABLES:
        out.append(
            "Avg.: mean over the tasks, MNLI counted once as mean(m, mm) (the convention that "
            "reproduces the paper's averages); computed only when every cell is present."
        )
    if result.table in TIMED_TABLES:
        out.append(
            "ours h: hours of `timing.train_wall_time_s` (Trainer.train, in-training evaluation "
            "included), mean ± std over seeds; paper h: the printed training times."
        )
    if result.table in TABLE_NOTES:
        out.append(TABLE_NOTES[result.table])
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


def tidy(result: TableResult) -> pd.DataFrame:
    """One line per (our row, printed cell) plus an ``avg`` line for Tables 1 and 4."""
    records = []
    for row in result.rows:
        params, ratio = _params_ours(row)
        base = {
            "table": result.table,
            "scale": result.scale,
            "model": row.paper.model,
            "row": row.paper.label,
            "method": row.paper.method,
            "variant": row.paper.variant,
            "method_slug": row.slug or "",
            "harness_version": row.harness or "",
            "params_ours": params if params != MISSING else "",
            "params_paper": row.paper.params_text,
            "params_ratio": ratio,
        }
        for cell in row.paper.cells:
            stat = row.cells.get(cell)
            hours = row.hours.get(cell.task)
            records.append(
                {
                    **base,
                    "task": cell.task,
                    "split": cell.split,
                    "metric": cell.metric,
                    "n": stat.n if stat else 0,
                    "seeds": " ".join(map(str, stat.seeds)) if stat else "",
                    "mean": stat.mean if stat else None,
                    "std": stat.std if stat else None,
                    "paper": cell.paper,
                    "diff": _diff(stat.mean if stat else None, cell.paper),
                    "hours_mean": hours.mean if hours else None,
                    "hours_std": hours.std if hours else None,
                    "hours_paper": row.paper.hours.get(cell.task),
                    "conflict": cell.task in row.conflicted,
                }
            )
        if result.table in AVERAGED_TABLES:
            avg = row.average()
            counts = [row.cells[c].n if c in row.cells else 0 for c in row.paper.cells]
            records.append(
                {
                    **base,
                    "task": "avg",
                    "split": "",
                    "metric": "avg",
                    "n": min(counts),
                    "mean": avg,
                    "paper": row.paper.avg,
                    "diff": _diff(avg, row.paper.avg),
                    "hours_mean": row.average_hours(),
                    "hours_paper": row.paper.hours.get("avg"),
                }
            )
    return pd.DataFrame.from_records(records)


def _title(result: TableResult) -> str:
    title = TABLE_TITLES[result.table]
    return f"{title} ({TWIN_LABEL})" if result.scale == "mini" else title


def to_markdown(result: TableResult) -> str:
    timed, averaged = result.table in TIMED_TABLES, result.table in AVERAGED_TABLES
    parts = [f"# {_title(result)}", ""]
    for model, rows in _blocks(result).items():
        header, lines = _grid(rows, averaged, timed)
        shown = model_for(model, result.scale)
        parts += [f"## {model}" + (f" (ours: {shown})" if shown != model else ""), ""]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
        parts += ["| " + " | ".join(v.replace("|", "/") for v in line) + " |" for line in lines]
        parts.append("")
    parts += [f"- {n}" for n in notes(result)]
    failed = failures(result)
    if failed:
        parts += ["", "## Failed runs", "", *(f"- {f}" for f in failed)]
    found = warnings(result)
    if found:
        parts += ["", "## Warnings: records kept apart", "", *(f"- {w}" for w in found)]
    return "\n".join(parts) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "∆": r"$^\Delta$",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "—": "---",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(result: TableResult) -> str:
    timed, averaged = result.table in TIMED_TABLES, result.table in AVERAGED_TABLES
    parts = [f"% {_title(result)}: generated by python -m dcft.report; do not edit"]
    for model, rows in _blocks(result).items():
        header, lines = _grid(rows, averaged, timed)
        parts += [
            r"\begin{table}[ht]",
            r"\centering\scriptsize",
            r"\begin{tabular}{lll" + "r" * (len(header) - 3) + "}",
            r"\toprule",
            " & ".join(tex_escape(h) for h in header) + r" \\",
            r"\midrule",
            *(" & ".join(tex_escape(v) for v in line) + r" \\" for line in lines),
            r"\bottomrule",
            r"\end{tabular}",
            r"\caption{" + tex_escape(f"{_title(result)}; {model}") + "}",
            r"\end{table}",
        ]
    parts += [r"\begin{itemize}\scriptsize"]
    parts += [r"\item " + tex_escape(n) for n in [*notes(result), *warnings(result)]]
    parts += [r"\end{itemize}"]
    return "\n".join(parts) + "\n"


def write_table(result: TableResult, out: str | Path) -> list[Path]:
    """``table{N}.md``, ``.tex`` and ``.csv`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"table{result.table}"
    paths = [stem.with_suffix(".md"), stem.with_suffix(".tex"), stem.with_suffix(".csv")]
    paths[0].write_text(to_markdown(result), encoding="utf-8")
    paths[1].write_text(to_latex(result), encoding="utf-8")
    tidy(result).to_csv(paths[2], index=False)
    return paths
