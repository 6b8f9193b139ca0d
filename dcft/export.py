"""A finished run as a plain transformers model: every update folded into its weight.

    python -m dcft.export RECORD.json OUT_DIR

RECORD is the run's record (``results/runs/<model>/<task>/<slug>/seed<N>-<hash>.json``): it
names the backbone, the task and the adapter file. OUT_DIR gets ``save_pretrained``'s model
(``config.json`` with the task's label names, ``model.safetensors``) and the tokenizer, which
``AutoModelForSequenceClassification.from_pretrained(OUT_DIR)`` (``...ForQuestionAnswering``
for SQuAD) loads with plain transformers. Every method whose update is a change of the target
weights exports (DCFT, LoRA, LoRA-FA, SoRA, SSL, SSB; BitFit, head-only and full fine-tuning
train the weights themselves); the bottleneck adapters add modules a plain model does not have
and are refused, like LoRA with the non-linear mpc_n constraint. Relative paths in the record
are relative to the folder the run was launched from.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dcft.cli import OneLineParser
from dcft.files import follow_umask

PROG = "python -m dcft.export"


def plain_model(model: Any) -> Any:
    """Fold every update of the applied method into its frozen weight and put the plain
    ``nn.Linear`` back in its place: the architecture transformers builds, with the run's
    weights. Refuses (``ValueError``) a method that adds other modules."""
    from dcft.methods import applied_method
    from dcft.methods.layers import AdapterModule, LinearAdapter

    method = applied_method(model)
    modules = list(model.named_modules())
    added = [
        n for n, m in modules if isinstance(m, AdapterModule) and not isinstance(m, LinearAdapter)
    ]
    if added:
        raise ValueError(
            f"method {method.name!r} adds modules a plain model does not have ({added[0]}, ...): "
            "it cannot be merged; its adapter loads with dcft.load_adapter"
        )
    for name, layer in modules:
        if isinstance(layer, LinearAdapter):
            layer.merge()
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, layer.base)
    model.__dict__.pop("dcft_method", None)
    return model


def _labels(record: Mapping[str, Any]) -> tuple[str, tuple[str, ...], bool]:
    """(task kind, label names, regression) of the record's task."""
    from dcft.data import get_task

    task = record["config"]["task"]["name"]
    inferred = (record.get("data") or {}).get("task")
    if inferred:  # task=custom: what its files said
        return "glue", tuple(inferred["labels"]), bool(inferred["regression"])
    spec = get_task(task)
    return spec.kind, spec.label_names, spec.is_regression


def _adapter(record: Mapping[str, Any], record_path: Path) -> Path:
    path = Path((record.get("adapter") or {}).get("path") or "")
    if not path.is_file():
        raise FileNotFoundError(
            f"{record_path} names the adapter {path}, which is not there (relative paths are "
            "relative to the folder the run was launched from)"
        )
    return path


def export_run(record_path: str | Path, out_dir: str | Path) -> Path:
    """Write the run's merged model and its tokenizer to ``out_dir``."""
    from transformers import set_seed

    from dcft.methods import load_adapter
    from dcft.run.models import build_model, load_tokenizer

    record_path = Path(record_path)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        config = record["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{record_path} is not a run record: {err}") from None
    if record.get("status") != "finished":
        raise ValueError(f"{record_path}: the run did not finish ({record.get('status')!r})")
    adapter = _adapter(record, record_path)
    kind, names, regression = _labels(record)
    model_cfg = config["model"]
    set_seed(int(config["seed"]))  # a random-init backbone (source=config) as the run built it
    model = build_model(
        model_cfg["source"],
        model_cfg["path"],
        task_kind="qa" if kind == "squad" else "classification",
        num_labels=1 if regression else max(len(names), 1),
        cls_dropout=model_cfg.get("cls_dropout"),
    )
    plain_model(load_adapter(model, adapter))
    if names:
        model.config.id2label = dict(enumerate(names))
        model.config.label2id = {name: i for i, name in enumerate(names)}
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    load_tokenizer(model_cfg["source"], model_cfg["path"]).save_pretrained(out_dir)
    follow_umask(out_dir)  # safetensors writes its files 0600
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, metavar="RECORD.json", help="the run's record")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    args = parser.parse_args(argv)
    try:
        out = export_run(args.record, args.out_dir)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
