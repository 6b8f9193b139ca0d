"""SQuAD examples -> model features, following the Hugging Face ``run_qa`` recipe.

Long contexts are split into overlapping windows (``doc_stride`` tokens shared between
neighbours), so one example can give several features. The question always comes first and only
the context is truncated. Features are not padded; a collator pads each batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

_CONTEXT = 1  # sequence id of the context in (question, context) pairs


def _encode(
    examples: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> Any:
    if not tokenizer.is_fast:
        raise ValueError("SQuAD features need a fast tokenizer (offset mappings)")
    questions = [q.lstrip() for q in examples["question"]]
    return tokenizer(
        questions,
        list(examples["context"]),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def prepare_squad_train_features(
    examples: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 384,
    doc_stride: int = 128,
) -> dict[str, list]:
    """Batched ``map`` function: tokenised windows with ``start_positions``/``end_positions``.

    The first gold answer is the target. A window that does not contain it whole, and every
    window of an unanswerable (v2) question, points both positions at the CLS token.
    """
    encoded = _encode(examples, tokenizer, max_length, doc_stride)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    all_offsets = encoded.pop("offset_mapping")
    starts, ends = [], []
    for i, offsets in enumerate(all_offsets):
        input_ids = encoded["input_ids"][i]
        cls = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        answers = examples["answers"][sample_map[i]]
        span = None
        if answers["answer_start"]:
            first = answers["answer_start"][0]
            span = _token_span(
                offsets, encoded.sequence_ids(i), first, first + len(answers["text"][0])
            )
        start, end = span if span is not None else (cls, cls)
        starts.append(start)
        ends.append(end)
    result = dict(encoded)
    result["start_positions"] = starts
    result["end_positions"] = ends
    return result


def _token_span(
    offsets: Sequence[tuple[int, int]],
    sequence_ids: Sequence[int | None],
    start_char: int,
    end_char: int,
) -> tuple[int, int] | None:
    """First and last context token covering ``[start_char, end_char)``; None if outside."""
    context = [k for k, sid in enumerate(sequence_ids) if sid == _CONTEXT]
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return None
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def prepare_squad_eval_features(
    examples: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 384,
    doc_stride: int = 128,
) -> dict[str, list]:
    """Batched ``map`` function: windows with ``example_id`` and context-only ``offset_mapping``.

    Offsets of question and special tokens are ``None`` so post-processing can only pick
    context spans.
    """
    encoded = _encode(examples, tokenizer, max_length, doc_stride)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    all_offsets = encoded.pop("offset_mapping")
    result = dict(encoded)
    result["example_id"] = [examples["id"][s] for s in sample_map]
    result["offset_mapping"] = [
        [
            list(o) if sid == _CONTEXT else None
            for o, sid in zip(offsets, encoded.sequence_ids(i), strict=True)
        ]
        for i, offsets in enumerate(all_offsets)
    ]
    return result


def tokenize_squad(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int = 384,
    doc_stride: int = 128,
    *,
    train: bool,
) -> datasets.Dataset:
    """Map a raw SQuAD split to train (``train=True``) or eval features; raw columns are dropped."""
    prepare = prepare_squad_train_features if train else prepare_squad_eval_features
    return dataset.map(
        prepare,
        batched=True,
        remove_columns=dataset.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "doc_stride": doc_stride},
        desc="squad train features" if train else "squad eval features",
    )
