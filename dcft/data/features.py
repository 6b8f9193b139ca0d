"""Raw splits -> model features (tokenised train and eval sets per task kind)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import datasets
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from dcft.data import get_task, tokenize_glue, tokenize_squad
from dcft.data.tasks import TaskKind


@dataclass
class TaskData:
    """Tokenised train set, eval features per split (model inputs; extra columns are dropped by
    the Trainer) and the raw eval examples (SQuAD's post-processing needs them; GLUE's ``idx``
    names the examples in prediction files)."""

    train: datasets.Dataset
    eval: dict[str, datasets.Dataset]
    eval_examples: dict[str, datasets.Dataset] = field(default_factory=dict)


# One per task kind: (task config, raw splits, eval splits to keep, tokenizer) -> features.
_Prepare = Callable[
    [DictConfig, Mapping[str, datasets.Dataset], list[str], PreTrainedTokenizerBase], TaskData
]


def prepare_data(
    task: DictConfig, raw: Mapping[str, datasets.Dataset], tokenizer: PreTrainedTokenizerBase
) -> TaskData:
    """Tokenise ``raw`` as the task's kind does (``task`` is the ``task`` config: ``max_length``,
    SQuAD's ``doc_stride``); the task's eval splits that ``raw`` lacks are left out."""
    spec = get_task(task.name)
    evals = [s for s in spec.eval_splits if s in raw]
    return _PREPARE[spec.kind](task, raw, evals, tokenizer)


def _prepare_glue(
    task: DictConfig,
    raw: Mapping[str, datasets.Dataset],
    evals: list[str],
    tokenizer: PreTrainedTokenizerBase,
) -> TaskData:
    def tokenize(split: str) -> datasets.Dataset:
        return tokenize_glue(raw[split], task.name, tokenizer, task.max_length)

    return TaskData(
        train=tokenize("train"),
        eval={s: tokenize(s) for s in evals},
        eval_examples={s: raw[s] for s in evals},
    )


def _prepare_squad(
    task: DictConfig,
    raw: Mapping[str, datasets.Dataset],
    evals: list[str],
    tokenizer: PreTrainedTokenizerBase,
) -> TaskData:
    window = {"max_length": task.max_length, "doc_stride": task.doc_stride}
    return TaskData(
        train=tokenize_squad(raw["train"], tokenizer, **window, train=True),
        eval={s: tokenize_squad(raw[s], tokenizer, **window, train=False) for s in evals},
        eval_examples={s: raw[s] for s in evals},
    )


_PREPARE: dict[TaskKind, _Prepare] = {"glue": _prepare_glue, "squad": _prepare_squad}


def prepare_test(
    task: DictConfig, raw: Mapping[str, datasets.Dataset], tokenizer: PreTrainedTokenizerBase
) -> dict[str, datasets.Dataset]:
    """GLUE test splits -> model inputs without labels (they are hidden), in file order."""
    return {
        split: tokenize_glue(dataset, task.name, tokenizer, task.max_length).remove_columns(
            "labels"
        )
        for split, dataset in raw.items()
    }
