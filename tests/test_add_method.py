"""Adding a method is one Python file in dcft/methods/ plus one conf/method/*.yaml: a copy of
the package gains a toy method that way (nothing else edited), and a run of it trains and
records under the slug its class declares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, package_copy, place, records, train_cli

TOY_METHOD = '''
"""LayerNorm tuning of the first layers: a toy method for the "add a method" test."""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Method, MethodOptions, register


@dataclass
class LnTuneOptions(MethodOptions):
    first_n: int = 2


@register("lntune")
class LnTune(Method):
    Options = LnTuneOptions
    label = "LN-tune"
    slug_options = (("first_n", "n"),)

    def trains_backbone_parameter(self, name: str) -> bool:
        layers = {f"layer.{i}." for i in range(self.options.first_n)}
        return "LayerNorm" in name and any(layer in name for layer in layers)
'''

TOY_CONFIG = """
name: lntune
options:
  first_n: 1
"""


@pytest.mark.slow
def test_a_method_is_one_file_and_one_yaml(tmp_path, tiny_data):
    tree = package_copy(tmp_path / "tree")
    (tree / "dcft/methods/lntune.py").write_text(TOY_METHOD)
    (tree / "conf/method/lntune.yaml").write_text(TOY_CONFIG)

    argv = ["task=rte", "method=lntune", *FAST, *place(tmp_path, tiny_data)]
    train_cli(argv, cwd=tmp_path, pythonpath=tree)
    (path,) = records(tmp_path / "results")
    record = json.loads(path.read_text())
    assert record["status"] == "finished"
    assert path.parent.name == "lntune-n1"
    assert record["identity"]["options"] == {"first_n": 1}
    # Two LayerNorms (attention output, FFN output) of layer 0, a weight and a bias each.
    hidden = json.loads((REPO / "dcft/model_configs/tiny-bert.json").read_text())["hidden_size"]
    assert record["parameters"]["paper"] == 4 * hidden

    label = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dcft.methods import get_method; print(get_method('lntune').label)",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert label.stdout.strip() == "LN-tune", label.stderr[-2000:]
    assert not (Path(REPO) / "dcft/methods/lntune.py").exists()
