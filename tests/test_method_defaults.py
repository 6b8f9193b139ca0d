"""A method's defaults are declared by its ``Options`` dataclass; the two copies that must exist
are held equal to it: ``conf/method/<name>.yaml`` (composed on a model without per-task settings)
runs with exactly the dataclass defaults, and the README's table of methods prints them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dcft.methods import get_method
from dcft.methods.registry import build_options
from dcft.run.config import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
# conf/method/<stem>.yaml whose stem is the method's registered name (the others are variants).
BASE_CONFIGS = sorted(
    p.stem for p in (CONF_DIR / "method").glob("*.yaml") if f"name: {p.stem}\n" in p.read_text()
)
# lorafa's README cell describes an option beside its defaults ("as lora; grad_scaling=peft ...").
README_EXEMPT = {"lorafa"}


def _defaults(name: str) -> dict:
    return dataclasses.asdict(build_options(get_method(name), {}))


@pytest.mark.parametrize("name", BASE_CONFIGS)
def test_method_yaml_runs_with_the_dataclass_defaults(name):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny-bert", f"method={name}"])
    options = OmegaConf.to_container(cfg.method.options, resolve=True) or {}
    built = dataclasses.asdict(build_options(get_method(name), options))
    assert built == _defaults(name)


def _readme_defaults() -> dict[str, dict[str, str]]:
    """method -> {option: printed default} from the README's table of methods."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.match(r"\| `(\w+)` \| .* \| (.*) \|$", line)
        if match and match.group(1) not in README_EXEMPT:
            rows[match.group(1)] = dict(re.findall(r"`(\w+)=([^`]+)`", match.group(2)))
    return rows


def test_readme_table_prints_the_dataclass_defaults():
    printed = _readme_defaults()
    assert {"lora", "dcft", "hadapter", "padapter", "sora"} <= printed.keys()
    for name, options in printed.items():
        defaults = _defaults(name)
        for key, text in options.items():
            value = defaults[key]
            if text in defaults:  # "stride=kernel": the same as that option
                assert value == defaults[text], (name, key, text)
            elif isinstance(value, float):
                assert float(text) == value, (name, key, text)
            else:
                assert text == str(value), (name, key, text)
