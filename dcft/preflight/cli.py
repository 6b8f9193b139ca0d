"""``dcft.sweep``'s preflight options, and the command they run (the heavy modules are imported
only when a preflight runs)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

# --inject KIND=CELL: the faults a cell can be made to raise (dcft.preflight.probe).
INJECTIONS = ("oom", "nan")


def _injection(text: str) -> tuple[str, str]:
    kind, _, part = text.partition("=")
    if kind not in INJECTIONS or not part:
        raise argparse.ArgumentTypeError(
            f"--inject {text!r}: expected KIND=CELL-SUBSTRING with KIND one of "
            f"{', '.join(INJECTIONS)} (e.g. oom=sst2)"
        )
    return kind, part


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def add_preflight_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("preflight (--preflight)")
    group.add_argument(
        "--preflight",
        action="store_true",
        help="train nothing for real: every distinct setting for a few steps, then the table's "
        "projected device-hours (results/preflight/<table>-<device>.{md,csv})",
    )
    group.add_argument(
        "--random-init", action="store_true", help="random init of each model's architecture"
    )
    group.add_argument("--batch", type=_positive, help="global batch (and eval batch) instead")
    group.add_argument("--seq", type=_positive, help="cap every task's sequence length")
    group.add_argument("--steps", type=_positive, default=2, help="timed optimiser steps")
    group.add_argument(
        "--gpus", type=_positive, default=1, help="the wall time on this many GPUs (gpus launcher)"
    )
    group.add_argument(
        "--inject",
        type=_injection,
        action="append",
        default=[],
        metavar="KIND=CELL",
        help="testing: oom=CELL raises torch.OutOfMemoryError, nan=CELL makes the loss NaN, in "
        "the cells whose label contains CELL",
    )


def run_preflight(
    tables: Sequence[str], scale: str, overrides: Sequence[str], args: argparse.Namespace
) -> None:
    from dcft.preflight.table import Reduction, preflight

    reduction = Reduction(args.batch, args.seq, args.steps)
    for table in tables:
        markdown, _, _ = preflight(
            table,
            scale,
            overrides,
            reduction,
            random_init=args.random_init,
            injections=dict(args.inject),
            gpus=args.gpus,
        )
        print(markdown, flush=True)
