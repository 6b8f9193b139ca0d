"""Upload the offline W&B runs that are not synced yet: ``python -m dcft.tools.wandb_sync sync
[--outputs outputs] [--dry-run]`` (``make wandb-sync``); already synced runs are skipped."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def _synced(folder: Path) -> bool:
    """wandb marks a synced log with ``<log>.wandb.synced`` beside it."""
    return all(log.with_suffix(".wandb.synced").exists() for log in folder.glob("*.wandb"))


def offline_runs(outputs: Path) -> tuple[list[Path], list[Path]]:
    """(not synced, synced): the offline run folders under ``outputs``
    (``**/wandb/offline-run-*`` holding a ``.wandb`` log), oldest first per run."""
    folders = [f for f in sorted(outputs.glob("**/wandb/offline-run-*")) if any(f.glob("*.wandb"))]
    return [f for f in folders if not _synced(f)], [f for f in folders if _synced(f)]


def sync(outputs: Path, dry_run: bool = False) -> list[str]:
    """Upload every offline run under ``outputs`` that is not synced yet (``wandb sync``, one run
    at a time, with a progress bar); returns the runs that failed, with wandb's last words."""
    from tqdm import tqdm

    pending, synced = offline_runs(outputs)
    print(f"{len(pending) + len(synced)} offline W&B runs under {outputs}: {len(synced)} synced")
    if dry_run:
        print("\n".join(f"to sync: {folder}" for folder in pending))
        return []
    failures = []
    for folder in tqdm(pending, desc="wandb sync", unit="run"):
        done = subprocess.run(
            [sys.executable, "-m", "wandb", "sync", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not _synced(folder):
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            failures.append(f"{folder}: exit code {done.returncode}; {' '.join(last)}")
    return failures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dcft.tools.wandb_sync", description="W&B helpers"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sync_cmd = commands.add_parser("sync", help="upload the offline runs not synced yet")
    sync_cmd.add_argument("--outputs", type=Path, default=Path("outputs"), help="runs' root")
    sync_cmd.add_argument("--dry-run", action="store_true", help="list them, upload nothing")
    args = parser.parse_args(argv)
    failures = sync(args.outputs, args.dry_run)
    for failure in failures:
        print(f"not synced: {failure}")
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
