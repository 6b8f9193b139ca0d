"""Our results beside the paper's: every table of specs/table/ as Markdown, LaTeX and CSV,
plus Figures 2-3.

``python -m dcft.report [--runs results/runs] [--out results/tables] [--tables 1 2 ...]`` reads
result records only (it never trains) and writes ``table{N}.{md,tex,csv}`` and
``figure{2,3}.png`` into ``--out``; ``--from-wandb ENTITY/PROJECT`` reads the runs' W&B summaries
and config instead (dcft.report.wandb_runs). What a table holds: dcft.report.tables; how records
become cells: dcft.report.aggregate; how cells are printed: dcft.report.render; the figures:
dcft.report.figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dcft.cli import OneLineParser
from dcft.report.aggregate import build_table
from dcft.report.render import write_table
from dcft.report.runs import (
    SCALES,
    SELECTS,
    TWIN_MODEL,
    TWIN_STANDS_FOR,
    RunSet,
    detect_scale,
    load_runs,
)
from dcft.report.tables import TABLES
from dcft.report.wandb_runs import load_wandb_runs

# ---------------------------------------------------------------------------------------------
# CLI.


def report(
    runset: RunSet,
    out: str | Path,
    tables: Sequence[int] = TABLES,
    scale: str = "auto",
    figures: bool = True,
) -> list[Path]:
    """Write the tables (and figures) from ``runset`` into ``out``; returns the paths."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    scale = detect_scale(runset) if scale == "auto" else scale
    written = []
    for table in tables:
        written += write_table(build_table(table, runset, scale), out)
    if figures:
        from dcft.report.figures import write_figures

        written += write_figures(runset, out, scale)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = OneLineParser(
        prog="python -m dcft.report",
        description="The paper's tables (specs/table/) and Figures 2-3 from result records, "
        "beside the paper's numbers (reads records only; never trains).",
    )
    parser.add_argument("--runs", default="results/runs", help="folder of run records (*.json)")
    parser.add_argument("--out", default="results/tables", help="where tables and figures go")
    parser.add_argument("--tables", nargs="+", type=int, choices=TABLES, default=list(TABLES))
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="auto",
        help=f"mini: the {TWIN_MODEL} CPU twin stands in for {TWIN_STANDS_FOR}; auto: mini when "
        "the records hold MiniLM runs and none of a paper model",
    )
    parser.add_argument(
        "--select", choices=SELECTS, default="best", help="which evaluation of each record"
    )
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    parser.add_argument(
        "--from-wandb",
        metavar="ENTITY/PROJECT",
        help="read the runs' W&B summaries and config instead of --runs (tables only: the "
        "figures need the records' curves)",
    )
    args = parser.parse_args(argv)
    if not args.from_wandb and not Path(args.runs).is_dir():
        parser.error(f"--runs {args.runs}: no such folder (the records a sweep writes)")
    skipped: list[str] = []
    if args.from_wandb:
        runset, skipped = load_wandb_runs(args.from_wandb, args.select)
    else:
        runset = load_runs(args.runs, args.select)
    figures = not (args.no_figures or args.from_wandb)
    paths = report(runset, args.out, args.tables, args.scale, figures)
    print(
        f"{len(runset.runs)} usable records, {len(runset.failed)} failed, "
        f"{len(runset.duplicates)} duplicates, {len(runset.corrupt)} unreadable in "
        f"{runset.runs_dir}"
    )
    for name in skipped:
        print(f"skipped W&B run {name}: no record (not finished)")
    for path, reason in runset.corrupt:
        print(f"skipped {path}: {reason}")
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
