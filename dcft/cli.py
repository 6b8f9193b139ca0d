"""What every command line does with bad input: one line on stderr naming the input and the valid
choices, and argparse's exit code 2, never a traceback (``dcft.train``, ``dcft.sweep``,
``dcft.report``, ``dcft.score``, ``dcft.export``, ``dcft.tools.params``, ``dcft.tools.bench``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

USAGE_ERROR = 2


def fail(prog: str, message: str) -> NoReturn:
    """``PROG: error: MESSAGE`` on stderr, its lines joined into one, then exit 2."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    sys.stderr.write(f"{prog}: error: {line}\n")
    raise SystemExit(USAGE_ERROR)


def positive_int(value: str) -> int:
    """An argparse ``type``: a whole number >= 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return number


class OneLineParser(argparse.ArgumentParser):
    """argparse without the usage block on errors: one line, exit 2. Unknown options are answered
    with the valid ones."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            options = sorted(o for o in self._option_string_actions if o.startswith("--"))
            message += f"; valid options: {', '.join(options)}"
        fail(self.prog, message)


def _hydra_message(error: Exception) -> str:
    """One line from a Hydra composition error: what it could not do, why, and the valid
    options of a config group when Hydra lists them."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf import DictConfig

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if isinstance(error, OverrideParseException):
        return f"cannot parse the override {error.override!r}: {text}"
    cause = error.__cause__
    if cause is not None:
        reason = str(cause).strip().splitlines()
        if reason:
            text = f"{text.rstrip('.')}: {reason[0]}"
        parent = getattr(cause, "parent_node", None)
        if isinstance(parent, DictConfig):
            text += f"; valid keys there: {', '.join(map(str, parent))}"
    if isinstance(error, MissingConfigException) and error.options:
        text += f"; valid choices: {', '.join(error.options)}"
    return text


@contextmanager
def hydra_errors(prog: str) -> Iterator[None]:
    """Hydra's errors about the command line (an unknown group option or key, an override it
    cannot parse, a value a config resolver refuses) as one line and exit 2; every other error as Python reports it. Hydra only
    lets them through when ``HYDRA_FULL_ERROR`` is set, so it is set for the block."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import InterpolationResolutionError

    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except CompactHydraException as error:
        fail(prog, _hydra_message(error))
    except InterpolationResolutionError as error:  # a resolver refused a value (method options)
        fail(prog, str(error).splitlines()[0])
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


@contextmanager
def input_errors(prog: str, *kinds: type[BaseException]) -> Iterator[None]:
    """Errors of ``kinds`` (bad settings or files, each naming what is wrong) as one line and
    exit 2."""
    try:
        yield
    except kinds as error:
        fail(prog, str(error))
