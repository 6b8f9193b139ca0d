"""Exceptions raised by the data layer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

FIX_HINT = (
    "Point DCFT_DATA_DIR (or the data.dir setting) at a folder laid out like shared/data "
    "(glue/<TASK>/*.tsv, glue_parquet/<config>/<split>/*.parquet, squad/v1.1/, squad/v2.0*/), "
    "or leave it unset to download from the Hugging Face Hub."
)


class DataUnavailableError(FileNotFoundError):
    """A task's split cannot be obtained: no local file for it, or the Hub is unreachable."""


def missing_split_error(
    task: str, split: str, data_dir: Path, looked_at: Sequence[Path]
) -> DataUnavailableError:
    paths = "\n".join(f"  - {p}" for p in looked_at)
    return DataUnavailableError(
        f"no local data for task {task!r}, split {split!r} under {data_dir}. Looked at:\n"
        f"{paths}\n{FIX_HINT}"
    )


class DataFormatError(ValueError):
    """A local data file is malformed; the message names the file and, when known, the line."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
