"""Raw splits -> model features (tokenised train and eval sets per task kind)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import datasets
from omegaconf import DictConfig
from transformers import (
    PreTrainedTokenizerBase,
)

from dcft.data import (
    get_task,
    tokenize_glue,
    tokenize_squad,
)


@dataclass
class TaskData:
    """Tokenised train set, eval features per split (model inputs; extra columns are dropped by
    the Trainer) and, for SQuAD, the raw eval examples that post-processing needs."""

    train: datasets.Dataset
    eval: dict[str, datasets.Dataset]
    eval_examples: dict[str, datasets.Dataset] = field(default_factory=dict)


def prepare_data(
    task: DictConfig, raw: Mapping[str, datasets.Dataset], tokenizer: PreTrainedTokenizerBase
) -> TaskData:
    spec = get_task(task.name)
    evals = [s for s in spec.eval_splits if s in raw]
    if spec.kind == "glue":
        return TaskData(
            train=tokenize_glue(raw["train"], spec.name, tokenizer, task.max_length),
            eval={s: tokenize_glue(raw[s], spec.name, tokenizer, task.max_length) for s in evals},
        )
    window = {"max_length": task.max_length, "doc_stride": task.doc_stride}
    return TaskData(
        train=tokenize_squad(raw["train"], tokenizer, **window, train=True),
        eval={s: tokenize_squad(raw[s], tokenizer, **window, train=False) for s in evals},
        eval_examples={s: raw[s] for s in evals},
    )
