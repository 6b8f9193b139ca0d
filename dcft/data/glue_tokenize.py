"""Turn raw GLUE examples into model inputs (unpadded: a collator pads each batch)."""

from __future__ import annotations

from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from dcft.data.tasks import get_task


def tokenize_glue(
    dataset: datasets.Dataset,
    task: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int | None = None,
) -> datasets.Dataset:
    """Tokenise the task's text field(s), truncating to ``max_length`` (default: the task's).

    Returns only the tokenizer outputs (``input_ids``, ``attention_mask`` and, when the tokenizer
    makes them, ``token_type_ids``) plus ``labels`` (float for STS-B); every raw column, ``idx``
    included, is dropped, and row order is kept.
    """
    spec = get_task(task)
    if spec.kind != "glue":
        raise ValueError(f"tokenize_glue needs a GLUE task, got {task!r} (kind {spec.kind!r})")
    missing = [c for c in (*spec.text_fields, "label") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset for {task!r} lacks columns {missing}; it has {dataset.column_names}"
        )
    limit = max_length if max_length is not None else spec.max_length

    def encode(batch: dict[str, list]) -> dict[str, Any]:
        texts = [batch[field] for field in spec.text_fields]
        encoded = dict(tokenizer(*texts, truncation=True, max_length=limit))
        encoded["labels"] = (
            [float(v) for v in batch["label"]] if spec.is_regression else batch["label"]
        )
        return encoded

    return dataset.map(
        encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenize {task}"
    )
