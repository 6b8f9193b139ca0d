"""The release's split sizes a task declares (what the preflight prices a run by when the data is
not here) are the sizes of the real files, for every split the shared data folder holds."""

from __future__ import annotations

import pytest

from dcft.data.errors import DataUnavailableError
from dcft.data.sources import load_local_split
from dcft.data.tasks import TASKS
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")


@pytest.mark.parametrize("name", [n for n, s in TASKS.items() if s.kind == "glue"])
def test_published_sizes_are_the_local_files_sizes(name: str) -> None:
    spec = TASKS[name]
    assert {split for split, _ in spec.published_sizes} == set(spec.splits)
    compared = 0
    for split, size in spec.published_sizes:
        try:
            local = load_local_split(spec, SHARED_DATA, split)
        except DataUnavailableError:
            continue  # e.g. QNLI's training set is not in the shared folder
        assert len(local) == size, (name, split)
        compared += 1
    if name in ("cola", "sst2", "mrpc", "stsb", "rte"):
        assert compared == 2  # both splits are here: the check really ran
