"""Shared fixtures: tiny local GLUE / SQuAD files in the distribution layouts, and helpers that run
the Hydra entry point (in process) or compose its config into a tmp folder."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import dcft.train
from dcft.data.glue import glue_folder
from dcft.run.config import CONF_DIR

# The checkout's root: subprocesses get it on PYTHONPATH so they import this tree's dcft.
REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (as CI lays it out): the real GLUE and SQuAD files.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
SQUAD_TASKS = ("squad_v1", "squad_v2")

_WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "story",
    "actor",
    "plot",
    "music",
    "scene",
    "good",
    "bad",
    "great",
    "dull",
    "funny",
    "sad",
    "long",
    "short",
    "city",
    "river",
    "king",
    "queen",
    "dog",
    "cat",
    "house",
    "car",
    "tree",
    "bird",
    "water",
    "light",
    "night",
    "day",
    "old",
    "new",
    "red",
    "blue",
    "runs",
    "sees",
    "makes",
    "takes",
    "finds",
    "wants",
    "likes",
    "knows",
    "gives",
    "tells",
]


def _sentence(rng: random.Random, n: int = 8) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _write_tsv(path: Path, header: list[str] | None, rows: list[list[Any]], bom: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


def _glue_rows(task: str, rng: random.Random, n: int) -> tuple[list[str] | None, list[list]]:
    """Header and rows of one GLUE split in the original distribution format."""
    s = lambda: _sentence(rng)  # noqa: E731
    if task == "cola":
        return None, [["src", i % 2, "" if i % 2 else "*", s()] for i in range(n)]
    if task == "sst2":
        return ["sentence", "label"], [[s() + " ", i % 2] for i in range(n)]
    if task == "mrpc":
        header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
        return header, [[i % 2, i, i + 1, s(), s()] for i in range(n)]
    if task == "qqp":
        header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
        return header, [[i, 2 * i, 2 * i + 1, s() + " ?", s() + " ?", i % 2] for i in range(n)]
    if task == "stsb":
        header = [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ]
        return header, [
            [i, "main", "f", "2012", i, "s", "s", s(), s(), f"{rng.uniform(0, 5):.3f}"]
            for i in range(n)
        ]
    if task == "mnli":
        header = [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ]
        labels = ("entailment", "neutral", "contradiction")
        return header, [
            [
                i,
                i,
                f"{i}e",
                "fiction",
                "(x)",
                "(y)",
                "(x)",
                "(y)",
                s(),
                s(),
                labels[i % 3],
                labels[i % 3],
            ]
            for i in range(n)
        ]
    labels = ("entailment", "not_entailment")
    if task == "qnli":
        return ["index", "question", "sentence", "label"], [
            [i, s() + " ?", s(), labels[i % 2]] for i in range(n)
        ]
    return ["index", "sentence1", "sentence2", "label"], [
        [i, s(), s(), labels[i % 2]] for i in range(n)
    ]


def _squad_json(rng: random.Random, n: int, version_2: bool, prefix: str) -> dict[str, Any]:
    """Articles whose ~90-word contexts need several 64-token windows; v2 adds unanswerable
    questions (with plausible answers, as in the official files)."""
    paragraphs = []
    for i in range(n):
        words = [rng.choice(_WORDS) for _ in range(90)]
        start_word = rng.randrange(5, 85)
        answer = " ".join(words[start_word : start_word + 3])
        context = " ".join(words)
        answer_start = len(" ".join(words[:start_word])) + 1
        assert context[answer_start : answer_start + len(answer)] == answer
        qa: dict[str, Any] = {"id": f"{prefix}{i}", "question": f"what {words[start_word]} ?"}
        impossible = version_2 and i % 3 == 0
        answers = [{"text": answer, "answer_start": answer_start}]
        qa["answers"] = [] if impossible else answers
        if version_2:
            qa["is_impossible"] = impossible
            if impossible:
                qa["plausible_answers"] = answers
        paragraphs.append({"context": context, "qas": [qa]})
    return {
        "version": "v2.0" if version_2 else "1.1",
        "data": [{"title": "t", "paragraphs": paragraphs}],
    }


def write_tiny_data(root: Path, n_train: int = 48, n_eval: int = 24) -> Path:
    """Every GLUE task and both SQuAD versions as small files in the layout of shared/data."""
    rng = random.Random(0)
    for task in GLUE_TASKS:
        folder = glue_folder(task)
        evals = ("dev_matched", "dev_mismatched") if task == "mnli" else ("dev",)
        for split, n in (("train", n_train), *((e, n_eval) for e in evals)):
            header, rows = _glue_rows(task, rng, n)
            _write_tsv(root / "glue" / folder / f"{split}.tsv", header, rows, bom=task == "mrpc")
    for version, folder, v2 in (("v1.1", "v1.1", False), ("v2.0", "v2.0", True)):
        for split, n in (("train", n_train), ("dev", n_eval)):
            path = root / "squad" / folder / f"{split}-{version}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_squad_json(rng, n, v2, f"{split}{version}-")))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("tiny_data"))


# A few steps of a tiny random model: what every end-to-end test starts from.
FAST = [
    "model=tiny-bert",
    "logger=none",
    "trainer.max_steps=4",
    "trainer.batch_size=8",
    "trainer.eval_batch_size=16",
    "trainer.eval_strategy=steps",
    "trainer.eval_steps=2",
    "trainer.logging_steps=2",
]


def place(workdir: Path, data_dir: Path | str) -> list[str]:
    return [
        f"results_dir={workdir / 'results'}",
        f"outputs_dir={workdir / 'outputs'}",
        f"data.dir={data_dir}",
    ]


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.fixture
def hydra_main(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], None]:
    """Run ``python -m dcft.train <argv>`` in this process (the real @hydra.main entry point)."""

    def call(argv: list[str]) -> None:
        monkeypatch.setattr(sys, "argv", ["dcft.train", *argv])
        dcft.train.main()

    return call


def records(results_dir: Path) -> list[Path]:
    return sorted(results_dir.rglob("seed*.json"))


@pytest.fixture(autouse=True)
def _no_ambient_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose the W&B mode themselves and never reach the network."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
