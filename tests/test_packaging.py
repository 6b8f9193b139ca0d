"""The Hydra configs live in the checkout's top-level ``conf/`` and ship in the wheel as
``dcft/conf/``: a wheel built from a copy of the checkout holds every module and config, and once
installed (not editable) into a fresh virtual environment, ``dcft-train`` composes its config from
another folder, extended by ``--config-dir`` as Hydra users expect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from dcft.run.config import CONF_DIR
from tests.conftest import REPO

# A config of one's own: an experiment file in a folder outside the package.
MINE = """\
# @package _global_
experiment: mine
seed: 7
"""


def _user_conf(root: Path) -> Path:
    (root / "experiment").mkdir(parents=True)
    (root / "experiment" / "mine.yaml").write_text(MINE)
    return root


def _run(argv: list[str], cwd: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        argv, cwd=cwd, env={**environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_checkout_keeps_its_configs_at_the_top_level() -> None:
    assert CONF_DIR == REPO / "conf"
    assert (REPO / "conf" / "config.yaml").is_file()
    assert not (REPO / "dcft" / "conf").exists()


def test_config_dir_extends_the_checkouts_configs(tmp_path: Path) -> None:
    user = _user_conf(tmp_path / "myconf")
    argv = [sys.executable, "-m", "dcft.train", "--config-dir", str(user), "experiment=mine"]
    job = _run([*argv, "task=rte", "--cfg", "job"], cwd=tmp_path, PYTHONPATH=str(REPO))
    assert "experiment: mine\nseed: 7\n" in job
    assert "name: rte" in job  # the package's groups are still found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the checkout (the build writes nothing into the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    for tree in ("dcft", "conf", "specs"):
        shutil.copytree(REPO / tree, source / tree, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    _run([*pip, "-w", str(root / "dist"), str(source)], cwd=root)
    (path,) = (root / "dist").glob("dcft-*.whl")
    return path


def test_the_wheel_holds_every_module_and_config(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("dcft/")}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "dcft").rglob("*.py")}
    model_configs = {p.relative_to(REPO).as_posix() for p in (REPO / "dcft").rglob("*.json")}
    configs = {
        f"dcft/{p.relative_to(REPO).as_posix()}"
        for tree in ("conf", "specs")
        for p in (REPO / tree).rglob("*.yaml")
    }
    assert len(configs) > 50 and "dcft/conf/experiment/table4.yaml" in configs
    assert "dcft/specs/table/table4.yaml" in configs
    assert shipped == modules | model_configs | configs


@pytest.mark.slow
def test_an_installed_wheel_finds_its_configs_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv (no pip: this one's pip installs into it) gets the wheel, then this venv's
    site-packages for the dependencies (a plain path: its .pth files, among them the editable
    install of dcft, are not run)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    _run([*install, "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=tmp_path,
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        [str(python), "-c", "from dcft.run.config import CONF_DIR; print(CONF_DIR)"], cwd=elsewhere
    )
    assert Path(where.strip()) == site / "dcft" / "conf"

    train = str(venv / "bin" / "dcft-train")
    job = _run([train, "experiment=table4", "--cfg", "job"], cwd=elsewhere)
    assert "experiment: table4\n" in job and "name: deberta-v3-base" in job
    user = _user_conf(tmp_path / "myconf")
    job = _run([train, "--config-dir", str(user), "experiment=mine", "--cfg", "job"], cwd=elsewhere)
    assert "experiment: mine\nseed: 7\n" in job
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # --cfg writes nothing
