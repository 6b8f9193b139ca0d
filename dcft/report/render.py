"""Rendering of an aggregated table: a display grid per model block (Markdown, LaTeX) and a tidy
frame (CSV); the footnotes and warnings printed under it: dcft.report.notes."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean

import pandas as pd

from dcft.report.aggregate import OurRow, TableResult
from dcft.report.notes import failures, notes, warnings
from dcft.report.runs import TWIN_LABEL, model_for
from dcft.report.stats import CONFLICT, FAILED, MISSING, Stat, format_stat


def _num(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _hours(stat: Stat | None, per_hour: float = 1.0) -> str:
    """Training time, in hours (``per_hour`` = 60: minutes)."""
    if stat is None:
        return MISSING
    spread = "" if stat.n < 2 else f" ± {per_hour * stat.std:.2g}"
    return f"{per_hour * stat.mean:.3g}{spread} (n={stat.n})"


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


def _grid(
    rows: list[OurRow], averaged: bool, timed: bool, compared: bool = True
) -> tuple[list[str], list[list[str]]]:
    """Header and lines of one model block: per paper row a ``paper`` line, then per our row an
    ``ours`` and a ``Δ`` line (timed tables: ``ours h`` / ``paper h`` training hours too).
    Not ``compared`` (the CPU study: another model, another budget), the paper's lines stay as
    context but there is no Δ line, no average, only the tasks that have runs, and training
    time in minutes (``ours min``) without the paper's hours."""
    cells = list(dict.fromkeys(c for r in rows for c in r.paper.cells))
    if not compared:
        averaged = False
        cells = [c for c in cells if any(r.cell_runs.get(c.task) for r in rows)]
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
        by_label = {c.label: c for c in paper.cells if c in cells}
        tasks = {c.task: c.label for c in by_label.values()}
        if id(paper) not in done:
            done.add(id(paper))
            values = {label: _num(c.paper) for label, c in by_label.items()}
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
        if compared:
            lines.append(line(delta, "", "Δ", row.setting, ratio_text))
        if timed and not compared:
            minutes = {tasks[t]: _hours(row.hours.get(t), per_hour=60) for t in tasks}
            lines.append(line(minutes, "", "ours min", row.setting, ""))
        elif timed:
            hours = {tasks[t]: _hours(row.hours.get(t)) for t in tasks}
            hours["Avg."] = _num(row.average_hours(), 3)
            lines.append(line(hours, "", "ours h", row.setting, ""))
            printed = {tasks[t]: _num(paper.hours.get(t)) for t in tasks}
            printed["Avg."] = _num(paper.hours.get("avg"))
            lines.append(line(printed, "", "paper h", "", ""))
    return header, lines


def tidy(result: TableResult) -> pd.DataFrame:
    """One line per (our row, printed cell) plus an ``avg`` line for averaged tables; a
    ``nan_seeds`` column when some cell left out a seed whose score is NaN."""
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
                    "nan_seeds": " ".join(map(str, stat.dropped)) if stat else "",
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
        if result.spec.averaged:
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
    frame = pd.DataFrame.from_records(records)
    if "nan_seeds" in frame and not frame["nan_seeds"].fillna("").astype(bool).any():
        # Only when a seed was dropped: the column names the NaN seeds the means leave out.
        frame = frame.drop(columns="nan_seeds")
    return frame


def _title(result: TableResult) -> str:
    title = result.spec.title
    return f"{title} ({TWIN_LABEL})" if result.scale == "mini" else title


def to_markdown(result: TableResult) -> str:
    timed, averaged = result.spec.timed, result.spec.averaged
    parts = [f"# {_title(result)}", ""]
    for model, rows in _blocks(result).items():
        header, lines = _grid(rows, averaged, timed, compared=result.scale != "mini")
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
    timed, averaged = result.spec.timed, result.spec.averaged
    parts = [f"% {_title(result)}: generated by python -m dcft.report; do not edit"]
    for model, rows in _blocks(result).items():
        header, lines = _grid(rows, averaged, timed, compared=result.scale != "mini")
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
