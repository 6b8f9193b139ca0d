"""Compose the configs of many runs at a fraction of ``hydra.compose``'s cost, with Hydra's own
semantics (the keys of ``dcft.sweep --dry-run``, held equal to composed ones by
tests/test_sweep_keys.py).

``hydra.compose`` re-reads and re-merges every YAML file of the tree for each run, Hydra's own
configs included (~0.2 s a run on a 2-core CPU). Here each config file is read once per process;
a run's defaults list (which files, in which order, at which package) is Hydra's own
(``create_defaults_list``), and the files are merged as plain dicts in that order, once per
combination of group choices; the run's other overrides are applied by Hydra's own code, and the
tree is resolved once. The ``hydra`` node is left out (it is never part of a run's key).

This is the package's one use of Hydra's private ``hydra._internal`` (tests/test_layers.py
allows it here only). Hydra's public API composes a whole config (``hydra.compose``,
``Hydra.compose_config``) but has no call that returns a run's defaults list, nor a config
repository that caches the files it reads: those are ``create_defaults_list``,
``CachingConfigRepository`` and the loader's search path, all internal. Re-implementing the
defaults-list algorithm (packages, ``override``, ``_self_``, optional and nested groups) would be
a second copy of Hydra's semantics to keep equal; calling ``hydra.compose`` per run costs
~0.2 s a run, what this module exists to avoid (issue 27: a table's dry run in seconds).
Three internal names, imported here only, are the smallest surface that keeps Hydra's own
semantics at that speed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.config_repository import CachingConfigRepository
from hydra._internal.defaults_list import create_defaults_list
from hydra.core.default_element import ResultDefault
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

CONFIG_NAME = "config"
# Top-level keys a run's key never reads (dcft.run.identity), dropped before resolving.
UNRESOLVED = ("hydra", "logger", "run_dir")


def _merge(into: dict[str, Any], config: dict[str, Any]) -> None:
    """OmegaConf's merge of plain YAML content: dicts merge key by key, anything else replaces."""
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


class Composer:
    """Resolved run configs of the tree Hydra is initialised with (``initialize_config_dir``)."""

    def __init__(self) -> None:
        loader = GlobalHydra.instance().config_loader()
        assert isinstance(loader, ConfigLoaderImpl)
        self._repo = CachingConfigRepository(loader.repository)
        loader._process_config_searchpath(CONFIG_NAME, [], self._repo)
        self._parser = OverridesParser.create()
        self._parsed: dict[str, Override] = {}
        self._trees: dict[tuple[str, ...], dict[str, Any]] = {}
        self._groups: dict[str, bool] = {}
        self._interpolated: dict[tuple[tuple[str, ...], str], bool] = {}

    def _is_group(self, override: Override) -> bool:
        """As Hydra splits overrides: a group choice, or a value (dicts are values)."""
        key = override.key_or_group
        if key not in self._groups:
            self._groups[key] = self._repo.group_exists(key)
        return self._groups[key] and not isinstance(override.value(), dict)

    def _parse(self, overrides: Sequence[str]) -> list[Override]:
        """Parsed overrides (each text parsed once), those of the ``hydra`` node left out."""
        for text in overrides:
            if text not in self._parsed:
                [self._parsed[text]] = self._parser.parse_overrides([text])
        parsed = [self._parsed[text] for text in overrides]
        return [o for o in parsed if not o.is_hydra_override()]

    def _merged(self, choices: list[Override]) -> dict[str, Any]:
        """The tree's content for these group choices, ``UNRESOLVED`` left out: the files of
        Hydra's defaults list, merged in its order at their packages (shared: not to be changed)."""
        key = tuple(o.input_line for o in choices)
        if key not in self._trees:
            defaults = create_defaults_list(
                repo=self._repo,
                config_name=CONFIG_NAME,
                overrides_list=choices,
                prepend_hydra=False,
                skip_missing=False,
            ).defaults
            merged: dict[str, Any] = {}
            for default in defaults:
                _merge(merged, self._content(default))
            for unresolved in UNRESOLVED:
                merged.pop(unresolved, None)
            self._trees[key] = merged
        return self._trees[key]

    def _content(self, default: ResultDefault) -> dict[str, Any]:
        """A config file's content without its defaults list, placed at its package."""
        loaded = self._repo.load_config(str(default.config_path))
        assert loaded is not None, default.config_path
        content = OmegaConf.to_container(loaded.config, resolve=False)
        assert isinstance(content, dict)
        content.pop("defaults", None)
        package = default.package if default.package is not None else loaded.header["package"]
        for name in reversed(package.split(".") if package else []):
            content = {name: content}
        return content

    def resolved(self, overrides: Sequence[str]) -> dict[str, Any]:
        """The resolved config a run composed with ``overrides`` gets, less ``UNRESOLVED``."""
        parsed = self._parse(overrides)
        cfg = OmegaConf.create(self._merged([o for o in parsed if self._is_group(o)]))
        OmegaConf.set_struct(cfg, True)
        values = [
            o
            for o in parsed
            if not self._is_group(o) and o.key_or_group.split(".")[0] not in UNRESOLVED
        ]
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(resolved, dict)
        return resolved

    def interpolates(self, overrides: Sequence[str], key: str) -> bool:
        """Whether a value of the tree composed with ``overrides``, or of ``overrides``, may
        interpolate ``key`` (an interpolation naming it; conservative). Asked once per setting
        for each of its seeds: remembered."""
        memo = (tuple(overrides), key)
        if memo not in self._interpolated:
            parsed = self._parse(overrides)
            texts = [*_strings(self._merged([o for o in parsed if self._is_group(o)]))]
            texts += [str(o.value()) for o in parsed if not self._is_group(o)]
            named = re.compile(rf"\b{re.escape(key)}\b")
            self._interpolated[memo] = any("${" in t and named.search(t) for t in texts)
        return self._interpolated[memo]


def _strings(tree: Any) -> Iterator[str]:
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _strings(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _strings(value)
    elif isinstance(tree, str):
        yield tree
