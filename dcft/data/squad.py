"""Read SQuAD v1.1 / v2.0 JSON files into the Hub's ``rajpurkar/squad`` column layout."""

from __future__ import annotations

import json
from pathlib import Path

import datasets

from dcft.data.errors import DataFormatError
from dcft.data.tasks import TaskSpec

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

_VERSIONS = {"squad_v1": "v1.1", "squad_v2": "v2.0"}
_FILE_PREFIX = {"train": "train", "validation": "dev"}


def squad_json_paths(data_dir: Path, spec: TaskSpec, split: str) -> list[Path]:
    """Candidate files for a split, best first.

    ``squad/v1.1/`` for v1; for v2 ``squad/v2.0/`` first, then any other ``squad/v2.0*/`` folder
    in name order (e.g. ``v2.0-subset``).
    """
    version = _VERSIONS[spec.name]
    name = f"{_FILE_PREFIX[split]}-{version}.json"
    root = data_dir / "squad"
    folders = [root / version]
    if root.is_dir():
        folders += sorted(p for p in root.glob(f"{version}*") if p.is_dir() and p.name != version)
    return [folder / name for folder in folders]


def read_squad_json(path: Path) -> datasets.Dataset:
    """One row per question; unanswerable v2 questions get empty answer lists, as on the Hub."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(
            path, err.lineno, f"invalid JSON: {err.msg} (column {err.colno})"
        ) from None
    rows: dict[str, list] = {name: [] for name in SQUAD_FEATURES}
    try:
        for article in payload["data"]:
            title = article.get("title", "")
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [] if qa.get("is_impossible", False) else qa["answers"]
                    rows["id"].append(qa["id"])
                    rows["title"].append(title)
                    rows["context"].append(paragraph["context"])
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
    return datasets.Dataset.from_dict(rows, features=SQUAD_FEATURES)
