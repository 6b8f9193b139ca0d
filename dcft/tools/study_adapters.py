"""The CPU study's DCFT and LoRA-family adapters for notebooks/delta_w.ipynb, committed beside
the study: one seed of one task per setting, keeping only the update's tensors (the task head
and pooler, most of a ~0.7 MB adapter file, are left out: a few KB per file).

    python -m dcft.tools.study_adapters [--runs results/study/runs] [--out results/study/adapters]
                                        [--task sst2] [--seed 0] [--launched-in .]

A record names its adapter relative to the folder the study was launched in (``--launched-in``).

The copies hold what ``dcft.read_adapter`` needs (method, options, tensors); they are for looking
at Delta W, not for ``load_adapter``, which wants the head too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from dcft.methods import read_adapter
from dcft.methods.api import ADAPTER_FORMAT, save_tensors
from dcft.run.records import CorruptRecordError, read_record

METHODS = ("dcft", "lora", "lorafa")
# The update's own tensors (DcftLinear, LoraLinear): the last part of their names.
UPDATE_TENSORS = ("dcft_a", "dcft_b", "dcft_kernel", "lora_A", "lora_B")


def study_adapters(runs: Path, task: str, seed: int, launched_in: Path) -> dict[str, Path]:
    """Method slug -> adapter file of every finished DCFT/LoRA-family run of ``task``, ``seed``;
    one per setting: a reference-path run (Table 5's d=8, s=8) that has a fast-path twin with the
    same update is left out."""
    chosen: dict[tuple[str, str], tuple[bool, str, Path | None]] = {}
    for path in sorted(runs.rglob("seed*.json")):
        try:
            record = read_record(path)
        except CorruptRecordError:
            continue
        identity = record["identity"]
        if (
            record["status"] != "finished"
            or identity["task"] != task
            or identity["seed"] != seed
            or identity["method"] not in METHODS
        ):
            continue
        adapter = (record.get("adapter") or {}).get("path")
        options = {k: v for k, v in identity["options"].items() if k != "impl"}
        setting = (identity["method"], json.dumps(options, sort_keys=True))
        candidate = (
            identity["options"].get("impl") == "reference",
            identity["method_slug"],
            launched_in / adapter if adapter else None,
        )
        chosen[setting] = min(chosen.get(setting, candidate), candidate, key=lambda c: c[:2])
    return {slug: adapter for _, slug, adapter in chosen.values() if adapter and adapter.is_file()}


def copy_update(source: Path, target: Path) -> Path:
    """Write ``source``'s update tensors, method and options to ``target``."""
    saved = read_adapter(source)
    tensors = {
        name: tensor.contiguous()
        for name, tensor in saved.tensors.items()
        if name.rsplit(".", 1)[-1] in UPDATE_TENSORS
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": ADAPTER_FORMAT,
        "method": saved.method,
        "options": json.dumps(saved.options),
    }
    return save_tensors(tensors, target, metadata)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("results/study/runs"))
    parser.add_argument("--out", type=Path, default=Path("results/study/adapters"))
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--launched-in", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    adapters = study_adapters(args.runs, args.task, args.seed, args.launched_in)
    if not adapters:
        raise SystemExit(
            f"no finished DCFT/LoRA run of {args.task} seed {args.seed} with its adapter file "
            f"under {args.runs}: run `make study` first (adapters stay in outputs/)"
        )
    for slug, source in adapters.items():
        target = copy_update(source, args.out / args.task / f"{slug}-seed{args.seed}.safetensors")
        print(f"{target} ({target.stat().st_size:,} bytes) <- {source}")


if __name__ == "__main__":
    main()
