"""``trainer.predict=true``: after training, the run's predictions in the files the official
scorers take (``dcft.data.submission``), in ``<run_dir>/predict/``:

- ``<dev split>/predictions.json`` for every task (GLUE ``{idx: label}``, SQuAD ``{id: answer}``),
  plus SQuAD's ``nbest_predictions.json`` and, for v2.0, ``null_odds.json``: re-scored by
  ``python -m dcft.score TASK FILE [--split SPLIT] [--na-prob null_odds.json]`` or the official
  SQuAD scripts;
- ``test/<server file>`` for GLUE (``RTE.tsv``, MNLI's ``MNLI-m.tsv`` and ``MNLI-mm.tsv``): the
  benchmark server's submission files for the task's test splits, read like every split (local
  TSV, parquet copy or Hub) and listed with their sha256 in the record's ``predict`` section.

Dev and test predictions both come from the model at the end of training (the record's
``last`` evaluation; ``best`` may be an earlier step). Test sets are predicted whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from dcft.data import RawData, TaskSpec, load_test_data
from dcft.data.features import TaskData, prepare_test
from dcft.data.submission import (
    glue_dev_predictions,
    glue_submission_tsv,
    squad_prediction_files,
)
from dcft.run.fitting import FitResult
from dcft.run.records import write_json

PREDICT_DIR = "predict"


@dataclass
class TestInputs:
    """The task's test splits: raw (for their ``idx`` and provenance) and as model inputs."""

    raw: RawData
    features: dict[str, datasets.Dataset]


def test_inputs(cfg: DictConfig, tokenizer: PreTrainedTokenizerBase) -> TestInputs | None:
    """The test splits to predict (loaded before training, so a missing or malformed test file
    stops the run before it trains); None unless ``trainer.predict``."""
    if not cfg.trainer.get("predict"):
        return None
    raw = load_test_data(cfg.task.name, cfg.data.dir)
    return TestInputs(raw, prepare_test(cfg.task, raw.splits, tokenizer))


def write_predictions(
    folder: Path, spec: TaskSpec, data: TaskData, result: FitResult, test: TestInputs
) -> dict[str, Any]:
    """Write every prediction file; returns the record's ``predict`` section."""
    written: list[Path] = []
    for split in data.eval:
        predictions = result.predictions[split]
        if spec.kind == "squad":
            files = squad_prediction_files(
                spec,
                predictions["predictions"],
                result.nbest[split],
                predictions.get("null_score_diffs", {}),
            )
        else:
            idx = data.eval_examples[split]["idx"]
            files = {
                "predictions.json": glue_dev_predictions(spec, idx, predictions["predictions"])
            }
        written += [write_json(folder / split / name, content) for name, content in files.items()]
    for split in spec.test_splits:
        path = folder / "test" / split.submission
        path.parent.mkdir(parents=True, exist_ok=True)
        idx = test.raw.splits[split.split]["idx"]
        path.write_text(glue_submission_tsv(spec, idx, result.test_logits[split.split]))
        written.append(path)
    return {
        "dir": str(folder),
        "files": [str(path.relative_to(folder)) for path in written],
        "test_data": test.raw.provenance or None,
    }
