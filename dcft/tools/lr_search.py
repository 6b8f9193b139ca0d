"""The CPU studies' learning-rate searches: train every method x rate x task of a search file
(``specs/study/<search>.yaml``: ``lr_search`` for the short study, ``converge_lr_search`` for
the convergence study) through the runner on a held-out part of the training split, then pick each
method's rate by its mean held-out score over the tasks.

    python -m dcft.tools.lr_search              # train what is missing (finished runs are skipped)
    python -m dcft.tools.lr_search --dry-run    # runs finished, failed, running, to do
    python -m dcft.tools.lr_search --dry-run --list-runs   # and every run with its state
    python -m dcft.tools.lr_search --summarize  # the search's summary: every score, the choice
    python -m dcft.tools.lr_search --search converge_lr_search   # the convergence study's
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from omegaconf import OmegaConf

from dcft.data import get_task
from dcft.report.runs import load_runs
from dcft.run.config import SPECS_DIR, method_config_slugs
from dcft.sweep import Part, plan_parts
from dcft.sweep_summary import add_dry_run_arguments, summary

ROOT = Path(__file__).resolve().parents[2]
SEARCHES = sorted(p.stem for p in (SPECS_DIR / "study").glob("*.yaml"))
SEARCH_CONFIG = SPECS_DIR / "study" / "lr_search.yaml"


def load_search(path: Path = SEARCH_CONFIG) -> dict[str, Any]:
    search = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return {"name": path.stem, **search}


def grid_slugs(search: Mapping[str, Any]) -> dict[str, str]:
    """Each grid entry (a method config, e.g. ``dcft-init-lora``) -> the slug its runs carry."""
    return method_config_slugs(list(search["grid"]))


def overrides(search: Mapping[str, Any], method: str) -> list[str]:
    """One Hydra multirun per method: its rates x the search tasks, on the held-out split."""
    rates = ",".join(f"{rate:g}" for rate in search["grid"][method])
    return [
        f"experiment={search['experiment']}",
        f"method={method}",
        f"task={','.join(search['tasks'])}",
        f"trainer.learning_rate={rates}",
        f"seed={search['seed']}",
        f"data.holdout_from_train={search['holdout_from_train']}",
        f"data.max_eval_samples={search['max_eval_samples']}",
        f"results_dir={search['results_dir']}",
        "logger=none",
    ]


def parts(
    search: Mapping[str, Any], methods: Sequence[str] = (), extra: Sequence[str] = ()
) -> list[Part]:
    """The search's multiruns (one per method, all of them by default), as a table's sweep;
    ``extra`` Hydra overrides go to every run."""
    unknown = sorted(set(methods) - set(search["grid"]))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; the search has {list(search['grid'])}")
    return [
        Part(
            f"lr search: {method}",
            params=tuple(o.split("=", 1) for o in [*overrides(search, method), *extra]),
        )
        for method in methods or search["grid"]
    ]


def run_search(
    search: Mapping[str, Any],
    dry_run: bool = False,
    methods: Sequence[str] = (),
    extra: Sequence[str] = (),
    list_runs: bool = False,
) -> int:
    """Train the search's runs that have no record, one multirun per method; returns how many
    multiruns failed. ``dry_run``: print how many runs are finished, failed, running and to do
    instead, as ``dcft.sweep --dry-run`` does (``list_runs``: every run and its state too)."""
    searched = parts(search, methods, extra)
    if dry_run:
        with contextlib.chdir(ROOT):  # results_dir is relative to the checkout
            runs = plan_parts(searched)
        print(summary(f"learning-rate search {search['name']}", runs, list_runs))
        return 0
    failed = 0
    for part in searched:
        command = [sys.executable, "-m", "dcft.train", *part.arguments()]
        print("+", " ".join(command), flush=True)
        failed += subprocess.run(command, cwd=ROOT, check=False).returncode != 0
    return failed


@dataclass(frozen=True)
class Choice:
    method: str
    rate: float
    scores: dict[float, dict[str, float]]  # rate -> task -> held-out score (paper units)

    def mean(self, rate: float) -> float | None:
        by_task = self.scores.get(rate, {})
        return fmean(by_task.values()) if by_task else None

    @property
    def at_edge(self) -> bool:
        rates = sorted(self.scores)
        return len(rates) > 1 and self.rate in (rates[0], rates[-1])

    def settled(self, grid: Sequence[float], tasks: Sequence[str]) -> bool:
        """Every rate of ``grid`` has run on every task, and the choice is not at its edge
        (such a grid is extended first)."""
        ran = all(set(self.scores.get(rate, {})) == set(tasks) for rate in grid)
        return ran and not self.at_edge


def choose(search: Mapping[str, Any], results_dir: Path | None = None) -> list[Choice]:
    """Per method: the rate whose held-out score, averaged over every search task, is highest
    (only rates with a finite score on every task compete: a failed run, or a run that
    collapsed to a constant prediction, scores NaN and never wins)."""
    runset = load_runs(results_dir or ROOT / search["results_dir"])
    slugs = grid_slugs(search)
    choices = []
    for method in search["grid"]:
        scores: dict[float, dict[str, float]] = {}
        for run in (r for r in [*runset.runs, *runset.failed] if r.slug == slugs[method]):
            spec = get_task(run.task)
            value = run.scores.get(spec.eval_splits[0], {}).get(spec.metric, math.nan)
            rate = float(run.record["config"]["trainer"]["learning_rate"])
            scores.setdefault(rate, {})[run.task] = 100 * value
        complete = {
            r: s
            for r, s in scores.items()
            if set(s) == set(search["tasks"]) and all(map(math.isfinite, s.values()))
        }
        if complete:
            best = max(complete, key=lambda r: fmean(complete[r].values()))
            choices.append(Choice(method, best, scores))
    return choices


def _cell(value: float | None) -> str:
    """A held-out score; NaN (a failed run, or the undefined correlation of a constant
    prediction) and missing runs say so."""
    if value is None:
        return "not run"
    return f"{value:.2f}" if math.isfinite(value) else "NaN"


def summary_markdown(search: Mapping[str, Any], choices: Sequence[Choice]) -> str:
    tasks = list(search["tasks"])
    lines = [
        "# CPU study: learning-rate search",
        "",
        f"MiniLM-L6, seed {search['seed']}, the study's budget per task; scores on a fixed "
        f"{search['holdout_from_train']:.0%} of each TRAINING split held out from training "
        f"(at most {search['max_eval_samples']} examples), best evaluation, x100. The reported "
        "dev sets were not used. Chosen: the best mean over the tasks (**bold**); "
        f"{search['rates_used_in']} carries these rates. Config: specs/study/{search['name']}.yaml. "
        "NaN: a failed run, or one that collapsed to a constant prediction (its correlation is "
        "undefined); such a rate never wins.",
        "",
        "| method | rate | " + " | ".join(tasks) + " | mean | chosen |",
        "|---|---:|" + "---:|" * len(tasks) + "---:|---|",
    ]
    for choice in choices:
        for rate in sorted(choice.scores):
            cells = [_cell(choice.scores[rate].get(t)) for t in tasks]
            mean = choice.mean(rate)
            complete = len(choice.scores[rate]) == len(tasks) and math.isfinite(mean)
            mark = "**yes**" if rate == choice.rate else ""
            if rate == choice.rate and choice.at_edge:
                mark += " (edge of the grid)"
            mean_text = f"{mean:.2f}" if complete else "—"
            lines.append(
                f"| {choice.method} | {rate:g} | "
                + " | ".join(cells)
                + f" | {mean_text} | {mark} |"
            )
    return "\n".join(lines) + "\n"


def rates_yaml(search: Mapping[str, Any], choices: Sequence[Choice]) -> str:
    """The settled rate per method slug, as the study's experiment reads it
    (``hparams.<...>.lr.<slug>``): only :meth:`Choice.settled` choices (a choice's own scores are
    finite by :func:`choose`); unsettled methods are named in a comment and left out, so that
    their runs stop with an error naming the missing key while the settled ones can train."""
    slugs = grid_slugs(search)
    settled = {
        c.method: c.rate for c in choices if c.settled(search["grid"][c.method], search["tasks"])
    }
    waiting = [m for m in search["grid"] if m not in settled]
    lines = [
        f"# Written by python -m dcft.tools.lr_search --search {search['name']} --summarize from",
        f"# the search's records ({search['results_dir']}; {search['summary']}). Do not edit.",
        *(
            [
                f"# Not settled yet (a rate of the grid not run on every task, or the best at its edge): "
                f"{', '.join(waiting)}."
            ]
            if waiting
            else []
        ),
        *(f"{slugs[m]}: {settled[m]:g}" for m in search["grid"] if m in settled),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dry_run_arguments(parser)
    parser.add_argument("--summarize", action="store_true", help="write the search's summary")
    parser.add_argument("--methods", nargs="+", default=(), help="only these (default: all)")
    parser.add_argument("--search", default="lr_search", choices=SEARCHES, help="which search")
    parser.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    args = parser.parse_args(argv)
    search = load_search(SPECS_DIR / "study" / f"{args.search}.yaml")
    if args.summarize:
        summary = ROOT / search["summary"]
        summary.parent.mkdir(parents=True, exist_ok=True)
        choices = choose(search)
        summary.write_text(summary_markdown(search, choices))
        print(summary.read_text())
        if "rates_file" in search:
            rates = ROOT / search["rates_file"]
            rates.parent.mkdir(parents=True, exist_ok=True)
            rates.write_text(rates_yaml(search, choices))
            print(f"wrote {rates}:\n{rates.read_text()}")
    elif run_search(
        search, args.dry_run or args.list_runs, args.methods, args.extra, args.list_runs
    ):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
