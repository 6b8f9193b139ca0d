"""The data part of a run's key names the examples, not the files (issue 21, point 5): the same
examples from TSV, parquet or the Hub's cache give one fingerprint and one run key; examples that
differ give another; and it is computed once per version of the files (process and disk)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import datasets
import pytest

import dcft.data.fingerprint as fingerprint
from dcft.data import data_fingerprint
from dcft.data.location import tsv_path
from dcft.data.tasks import get_task
from dcft.run.identity import hparams_hash
from tests.conftest import (
    GLUE_TASKS,
    SHARED_DATA,
    compose_config,
    fake_hub_cache,
    parquet_copy,
)

# The tasks whose train and dev splits shared/data holds both as GLUE TSVs and as the Hub's
# parquet files (two independent copies of one release).
BOTH_FORMATS = ("cola", "mrpc", "rte", "stsb")
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the fingerprints this process computed (the disk cache stays)."""
    monkeypatch.setattr(fingerprint, "_computed", {})


def test_tsv_and_parquet_copies_of_the_examples_share_a_fingerprint(tiny_data, tmp_path):
    parquet = parquet_copy(tiny_data, tmp_path / "parquet", GLUE_TASKS)
    for task in GLUE_TASKS:
        assert not (parquet / "glue").exists()
        assert data_fingerprint(task, parquet) == data_fingerprint(task, tiny_data), task
    assert data_fingerprint("squad_v1", parquet) == data_fingerprint("squad_v1", tiny_data)


@needs_shared
@pytest.mark.parametrize("task", BOTH_FORMATS)
def test_the_hubs_parquet_files_and_the_glue_tsvs_share_a_fingerprint(task, tmp_path):
    """shared/data's glue_parquet/ is the Hub's own copy (MRPC's idx even differs from the
    TSV's): no file of one was made from the other."""
    parquet = tmp_path / "parquet"
    shutil.copytree(SHARED_DATA / "glue_parquet" / task, parquet / "glue_parquet" / task)
    assert data_fingerprint(task, parquet) == data_fingerprint(task, SHARED_DATA)


@needs_shared
def test_the_hubs_cache_gives_the_local_folders_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("DCFT_DATA_DIR", raising=False)  # else None means that folder, not the Hub
    # An empty cache first: once datasets has loaded a copy, it finds it again in this process.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty")
    assert data_fingerprint("rte", None) == fingerprint.UNAVAILABLE
    fake_hub_cache(tmp_path / "hf", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    from_hub = data_fingerprint("rte", None)
    assert from_hub == data_fingerprint("rte", SHARED_DATA)


def _edit_tsv(path: Path, edit) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(edit(lines)), encoding="utf-8")


def _swap_first_rows(lines: list[str]) -> list[str]:
    return [lines[0], lines[2], lines[1], *lines[3:]]  # after the header


def _flip_a_label(lines: list[str]) -> list[str]:
    sentence, label = lines[1].rstrip("\n").split("\t")
    return [lines[0], f"{sentence}\t{1 - int(label)}\n", *lines[2:]]


def _change_a_word(lines: list[str]) -> list[str]:
    return [lines[0], lines[1].replace(" ", "  ", 1), *lines[2:]]


def _drop_a_row(lines: list[str]) -> list[str]:
    return [lines[0], *lines[2:]]


def _crlf(lines: list[str]) -> list[str]:
    return [line.replace("\n", "\r\n") for line in lines]


@pytest.mark.parametrize(
    ("edit", "same"),
    [
        (_swap_first_rows, False),
        (_flip_a_label, False),
        (_change_a_word, False),
        (_drop_a_row, False),
        (_crlf, True),  # other bytes, the same examples
    ],
)
def test_a_copy_whose_examples_differ_gets_another_fingerprint(tiny_data, tmp_path, edit, same):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data / "glue" / "SST-2", copy / "glue" / "SST-2")
    before = data_fingerprint("sst2", copy)
    assert before == data_fingerprint("sst2", tiny_data)
    _edit_tsv(tsv_path(copy, get_task("sst2"), "train"), edit)
    assert (data_fingerprint("sst2", copy) == before) is same


def test_columns_a_run_never_reads_are_not_part_of_it(tiny_data, tmp_path):
    """CoLA's TSV has a source column and the original mark that dcft does not read."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data / "glue" / "CoLA", copy / "glue" / "CoLA")
    before = data_fingerprint("cola", copy)
    _edit_tsv(
        tsv_path(copy, get_task("cola"), "train"),
        lambda lines: [line.replace("src\t", "other\t", 1) for line in lines],
    )
    assert data_fingerprint("cola", copy) == before


def test_the_run_key_follows_the_examples_not_the_folder(tiny_data, tmp_path):
    parquet = parquet_copy(tiny_data, tmp_path / "parquet", ["rte"])
    changed = tmp_path / "changed"
    shutil.copytree(tiny_data / "glue" / "RTE", changed / "glue" / "RTE")
    _edit_tsv(tsv_path(changed, get_task("rte"), "validation"), _drop_a_row)
    keys = {
        folder: hparams_hash(compose_config(["task=rte", f"data.dir={folder}"]))
        for folder in (tiny_data, parquet, changed)
    }
    assert keys[tiny_data] == keys[parquet] != keys[changed]


def test_computed_once_per_version_of_the_files(tiny_data, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data / "glue" / "STS-B", copy / "glue" / "STS-B")
    monkeypatch.setenv(fingerprint.CACHE_DIR_ENV, str(tmp_path / "cache"))
    _fresh_process(monkeypatch)
    computed = []
    digest = fingerprint.examples_fingerprint

    def counted(*args):
        computed.append(args[0].name)
        return digest(*args)

    monkeypatch.setattr(fingerprint, "examples_fingerprint", counted)
    first = data_fingerprint("stsb", copy)
    assert data_fingerprint("stsb", copy) == first and computed == ["stsb"]  # this process
    (entry,) = (tmp_path / "cache" / "data-fingerprints").glob("*.json")
    _fresh_process(monkeypatch)
    assert data_fingerprint("stsb", copy) == first and computed == ["stsb"]  # from the disk
    train = tsv_path(copy, get_task("stsb"), "train")
    stat = train.stat()
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert data_fingerprint("stsb", copy) == first and computed == ["stsb", "stsb"]  # re-read
    entry.write_text("{not json")
    _fresh_process(monkeypatch)
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data_fingerprint("stsb", copy) == first and len(computed) == 3  # a bad entry: re-read
