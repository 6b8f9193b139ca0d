"""Exceptions raised by the data layer, and the UTF-8 file reader that reports bad bytes."""

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
    """A local data file is malformed; the message names the file and, when known, the line or
    the record (``question id '...'`` in SQuAD JSON, ``row N`` in parquet)."""

    def __init__(
        self, path: Path, line: int | None, problem: str, *, record: str | None = None
    ) -> None:
        where = [str(path)]
        if line is not None:
            where.append(f"line {line}")
        if record is not None:
            where.append(record)
        super().__init__(f"{', '.join(where)}: {problem}")
        self.path = path
        self.line = line
        self.record = record


def read_utf8(path: Path) -> str:
    """The text of ``path`` without a leading BOM; a file that is not UTF-8 raises
    :class:`DataFormatError` naming the line and byte offset of its first bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        problem = (
            f"not UTF-8: byte {raw[err.start]:#04x} at byte offset {err.start} ({err.reason}); "
            "re-save the file as UTF-8"
        )
        raise DataFormatError(path, line, problem) from None
