"""Where a run's examples come from: the sha256 of local data files (cached per file version)
and the record's ``data`` section that lists them."""

from __future__ import annotations

import functools
import hashlib
import logging
import warnings
from pathlib import Path
from typing import Any

from dcft.data.tasks import TaskSpec

# Questions in the official SQuAD v2.0 dev set; a local v2.0* folder other than squad/v2.0/ (e.g.
# shared/data's v2.0-subset) is a stand-in whose scores are not comparable to published ones.
OFFICIAL_SQUAD_V2_DEV = 11873

logger = logging.getLogger(__name__)


def cached_sha256(path: Path) -> str:
    """``file_sha256``, computed once per file version in this process."""
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and mtime too: a file rewritten in place is hashed again."""
    return file_sha256(Path(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_provenance(spec: TaskSpec, root: Path, files: dict[str, list[Path]]) -> dict[str, Any]:
    """The record's ``data`` section for local files: each file's path, size and sha256, and a
    warning when SQuAD v2 is read from a stand-in of the official dev set."""
    provenance: dict[str, Any] = {
        "source": "local",
        "dir": str(root.resolve()),
        "files": {
            split: [
                {
                    "path": str(p.relative_to(root)),
                    "bytes": p.stat().st_size,
                    "sha256": cached_sha256(p),
                }
                for p in paths
            ]
            for split, paths in files.items()
        },
        "warnings": [],
    }
    if spec.squad_version == "v2.0":
        version_dirs = {paths[0].parent.name for paths in files.values()}
        stand_ins = sorted(version_dirs - {spec.squad_version})
        if stand_ins:
            message = (
                f"{spec.name} is read from {root / 'squad' / stand_ins[0]}, NOT the official SQuAD "
                f"v2.0 dev set ({OFFICIAL_SQUAD_V2_DEV} questions): its scores are not comparable "
                "to published ones. Put the official dev-v2.0.json in squad/v2.0/ to use it."
            )
            warnings.warn(message, stacklevel=3)
            logger.warning(message)
            provenance["warnings"].append(message)
            provenance["stand_in"] = stand_ins[0]
    return provenance
