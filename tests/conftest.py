"""Shared fixtures: tiny local GLUE / SQuAD files in the distribution layouts, and helpers that run
the Hydra entry point (in process) or compose its config into a tmp folder."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import dcft.train
from dcft.data.fingerprint import CACHE_DIR_ENV
from dcft.data.glue import read_glue_tsv
from dcft.data.location import parquet_dir, tsv_path
from dcft.data.tasks import TASKS, TaskSpec, get_task
from dcft.run.config import CONF_DIR

# The checkout's root: subprocesses get it on PYTHONPATH so they import this tree's dcft.
REPO = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (as CI lays it out): the real GLUE and SQuAD files.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GLUE_TASKS = tuple(name for name, spec in TASKS.items() if spec.kind == "glue")
SQUAD_TASKS = tuple(name for name, spec in TASKS.items() if spec.kind == "squad")

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


@dataclass(frozen=True)
class _RealTsv:
    """What a real GLUE TSV holds beyond the columns dcft reads (``TaskSpec.tsv``), so that the
    readers are tested on skipping it: the file's columns in order (header names; positions for
    headerless CoLA), the value of each unread column in row ``i`` whose label is written as
    ``label``, what its sentences end with (SST-2: a space) and a leading byte-order mark
    (MRPC)."""

    columns: tuple[str | int, ...]
    unread: Callable[[int, Any], dict[str | int, Any]] = lambda i, label: {}
    text_tail: str = ""
    bom: bool = False


_MNLI_PARSES = {
    "sentence1_binary_parse": "(x)",
    "sentence2_binary_parse": "(y)",
    "sentence1_parse": "(x)",
    "sentence2_parse": "(y)",
}
# Tasks not listed here get files of just the columns they read.
_REAL_TSVS = {
    "cola": _RealTsv((0, 1, 2, 3), lambda i, label: {0: "src", 2: "" if label else "*"}),
    "sst2": _RealTsv(("sentence", "label"), text_tail=" "),
    "mrpc": _RealTsv(
        ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        lambda i, label: {"#1 ID": i, "#2 ID": i + 1},
        bom=True,
    ),
    "qqp": _RealTsv(
        ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
        lambda i, label: {"id": i, "qid1": 2 * i, "qid2": 2 * i + 1},
    ),
    "stsb": _RealTsv(
        (
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
        ),
        lambda i, label: {
            "index": i,
            "genre": "main",
            "filename": "f",
            "year": "2012",
            "old_index": i,
            "source1": "s",
            "source2": "s",
        },
    ),
    "mnli": _RealTsv(
        (
            "index",
            "promptID",
            "pairID",
            "genre",
            *_MNLI_PARSES,
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ),
        lambda i, label: {
            "index": i,
            "promptID": i,
            "pairID": f"{i}e",
            "genre": "fiction",
            **_MNLI_PARSES,
            "label1": label,
        },
    ),
    "qnli": _RealTsv(("index", "question", "sentence", "label"), lambda i, label: {"index": i}),
    "rte": _RealTsv(("index", "sentence1", "sentence2", "label"), lambda i, label: {"index": i}),
}


def _real_tsv(spec: TaskSpec) -> _RealTsv:
    assert spec.tsv is not None, spec.name
    return _REAL_TSVS.get(spec.name) or _RealTsv(tuple(col for _, col in spec.tsv.columns))


def _glue_rows(spec: TaskSpec, rng: random.Random, n: int) -> tuple[list[str] | None, list[list]]:
    """Header (None when headerless) and rows of one GLUE split in the distribution format: texts
    (questions end with " ?"), labels cycling through the classes (as words where the task's TSVs
    spell them so; STS-B: random scores), then the columns dcft does not read."""
    layout, real = spec.tsv, _real_tsv(spec)
    assert layout is not None, spec.name
    column = dict(layout.columns)
    rows = []
    for i in range(n):
        values: dict[str | int, Any] = {}
        for field in spec.text_fields:
            tail = " ?" if field.startswith("question") else real.text_tail
            values[column[field]] = _sentence(rng) + tail
        if spec.is_regression:
            label: Any = f"{rng.uniform(0, 5):.3f}"
        elif layout.word_labels:
            label = spec.label_names[i % spec.num_labels]
        else:
            label = i % spec.num_labels
        values[column["label"]] = label
        values.update(real.unread(i, label))
        rows.append([values[c] for c in real.columns])
    return ([str(c) for c in real.columns] if layout.header else None), rows


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


# The first test example's index: GLUE test files are matched by their index column, not by
# row number, so the tiny ones start elsewhere.
TEST_INDEX_BASE = 100


def _glue_test_rows(spec: TaskSpec, rng: random.Random, n: int) -> tuple[list[str], list[list]]:
    """Header and rows of a GLUE test TSV: its index column, an unread column, the texts (no
    label)."""
    columns = dict(spec.test_columns)
    header = [columns["idx"], "genre", *(columns[f] for f in spec.text_fields)]
    rows = [
        [TEST_INDEX_BASE + i, "fiction", *(_sentence(rng) for _ in spec.text_fields)]
        for i in range(n)
    ]
    return header, rows


def write_tiny_data(root: Path, n_train: int = 48, n_eval: int = 24) -> Path:
    """Every GLUE task (test sets too) and both SQuAD versions as small files in the layout of
    shared/data."""
    rng, test_rng = random.Random(0), random.Random(1)  # the test files change no other file
    for task in GLUE_TASKS:
        spec = get_task(task)
        for split in spec.splits:
            header, rows = _glue_rows(spec, rng, n_train if split == "train" else n_eval)
            _write_tsv(tsv_path(root, spec, split), header, rows, bom=_real_tsv(spec).bom)
        for test in spec.test_splits:
            header, rows = _glue_test_rows(spec, test_rng, n_eval)
            _write_tsv(tsv_path(root, spec, test.split), header, rows)
    for version, folder, v2 in (("v1.1", "v1.1", False), ("v2.0", "v2.0", True)):
        for split, n in (("train", n_train), ("dev", n_eval)):
            path = root / "squad" / folder / f"{split}-{version}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_squad_json(rng, n, v2, f"{split}{version}-")))
    return root


def parquet_copy(source: Path, root: Path, tasks: Sequence[str]) -> Path:
    """The GLUE ``tasks`` of the data folder ``source`` in the Hub's parquet layout under
    ``root`` (no TSV): its parquet copy of a split where it has one, else the split's TSV
    written as parquet; SQuAD's files are linked."""
    for task in tasks:
        spec = get_task(task)
        for split in spec.splits:
            folder = parquet_dir(root, spec, split)
            if parquet_dir(source, spec, split).is_dir():
                shutil.copytree(parquet_dir(source, spec, split), folder)
            elif tsv_path(source, spec, split).is_file():
                folder.mkdir(parents=True)
                table = read_glue_tsv(tsv_path(source, spec, split), spec).data.table
                pq.write_table(table, folder / "0000.parquet")
    if (source / "squad").is_dir():
        (root / "squad").symlink_to((source / "squad").resolve())
    return root


def fake_hub_cache(home: Path, revision: str, task: str = "rte") -> None:
    """What an earlier online ``load_dataset("nyu-mll/glue", task)`` leaves in ``HF_HOME``:
    the prepared arrow files under ``datasets/nyu-mll___glue/<task>/<version>/<revision>/``,
    built from shared/data's copy of the Hub's parquet files."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    shared = SHARED_DATA / "glue_parquet" / task
    if not shared.is_dir():
        pytest.skip("needs ../shared/data (the CI layout) for parquet files to cache")
    files = {s.name: [str(s / "0000.parquet")] for s in shared.iterdir()}
    builder = Parquet(
        cache_dir=str(home / "build"),
        dataset_name="glue",
        config_name=task,
        hash=revision,
        data_files=files,
    )
    builder.download_and_prepare()
    target = home / "datasets" / "nyu-mll___glue" / task / "0.0.0"
    target.mkdir(parents=True)
    shutil.move(builder.cache_dir, target / revision)


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


def package_copy(root: Path) -> Path:
    """A copy of the dcft package, its configs (``conf/``) and specs (``specs/``) under ``root``
    (on PYTHONPATH it replaces this checkout's), to add a toy method, task or table to."""
    for tree in ("dcft", "conf", "specs"):
        shutil.copytree(REPO / tree, root / tree, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def train_cli(
    argv: list[str], cwd: Path, pythonpath: Path = REPO, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``python -m dcft.train <argv>`` as a user types it (W&B off), from the dcft package under
    ``pythonpath``; fails the test, with the end of stderr, unless it exits 0."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "dcft.train", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def records(results_dir: Path) -> list[Path]:
    return sorted(results_dir.rglob("seed*.json"))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs ``-n logical``), each worker and the training
    subprocesses it starts share the CPUs instead of each taking all of them."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_ambient_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose the W&B mode themselves and never reach the network."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _fingerprint_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """The data fingerprints the tests compute are cached in the session's folder, not ~/.cache."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.getbasetemp() / "dcft-cache"))
