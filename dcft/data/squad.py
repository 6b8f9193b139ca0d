"""Read SQuAD v1.1 / v2.0 JSON files into the Hub's ``rajpurkar/squad`` column layout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from dcft.data.errors import DataFormatError, read_utf8

SQUAD_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.List(datasets.Value("string")),
            "answer_start": datasets.List(datasets.Value("int32")),
        },
    }
)


def read_squad_json(path: Path) -> datasets.Dataset:
    """One row per question; unanswerable v2 questions get empty answer lists, as on the Hub.

    Every answer must sit where its ``answer_start`` says; the first one that does not is
    reported by question id, with how many answers in the file break the rule.
    """
    try:
        payload = json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise DataFormatError(
            path, err.lineno, f"invalid JSON: {err.msg} (column {err.colno})"
        ) from None
    rows: dict[str, list] = {name: [] for name in SQUAD_FEATURES}
    misplaced: list[tuple[str, str]] = []  # (question id, problem)
    try:
        for title, context, qa in _questions(payload):
            answers = [] if qa.get("is_impossible", False) else qa["answers"]
            for answer in answers:
                problem = _answer_problem(context, answer)
                if problem is not None:
                    misplaced.append((qa["id"], problem))
            rows["id"].append(qa["id"])
            rows["title"].append(title)
            rows["context"].append(context)
            rows["question"].append(qa["question"])
            rows["answers"].append(
                {
                    "text": [a["text"] for a in answers],
                    "answer_start": [a["answer_start"] for a in answers],
                }
            )
    except (KeyError, TypeError) as err:
        raise DataFormatError(
            path, None, f"not in SQuAD format (data/paragraphs/qas): missing or bad {err}"
        ) from None
    if not rows["id"]:
        raise DataFormatError(path, None, "no examples: the file has no questions")
    if misplaced:
        raise _misplaced_error(path, misplaced, len(rows["id"]))
    return datasets.Dataset.from_dict(rows, features=SQUAD_FEATURES)


def _questions(payload: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(title, context, qa)`` for every question of a SQuAD JSON payload."""
    for article in payload["data"]:
        title = article.get("title", "")
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield title, paragraph["context"], qa


def _answer_problem(context: str, answer: dict[str, Any]) -> str | None:
    """Why ``answer`` is not at its ``answer_start`` in ``context``; None when it is."""
    start, text = answer["answer_start"], answer["text"]
    if isinstance(start, int) and start >= 0 and context[start : start + len(text)] == text:
        return None
    found = context.find(text)
    where = f"the text first occurs at {found}" if found >= 0 else "the text is not in the context"
    return f"answer {text!r} is not at its answer_start {start!r} ({where})"


def _misplaced_error(
    path: Path, misplaced: list[tuple[str, str]], n_questions: int
) -> DataFormatError:
    question_id, problem = misplaced[0]
    n_bad_questions = len({qid for qid, _ in misplaced})
    return DataFormatError(
        path,
        None,
        f"{problem}; every answer must satisfy "
        "context[answer_start : answer_start + len(text)] == text, and "
        f"{len(misplaced)} answer(s) in {n_bad_questions} of the file's {n_questions} questions "
        "do not",
        record=f"question id {question_id!r}",
    )
