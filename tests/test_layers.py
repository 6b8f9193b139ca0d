"""The package's layers point one way (data/ and methods/ <- run/ <- report/, tools/, the sweep
and the entry points), and it imports only public APIs of Hydra, transformers and wandb.

The imports are read with ``ast`` (every ``import`` and ``from ... import``, also inside
functions; relative imports resolved), so a docstring or comment naming a module is no import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What each layer must not import: everything above it.
UPPER = ("dcft.report", "dcft.tools", "dcft.sweep", "dcft.sweep_summary", "dcft.table_tags")
FORBIDDEN = {
    "dcft.data": ("dcft.run", "dcft.methods", *UPPER),
    "dcft.methods": ("dcft.run", *UPPER),
    "dcft.run": UPPER,
}
# Private APIs of the libraries (a name or module starting with ``_`` is private as well), and
# the one module allowed to use it, with the reason in its docstring.
PRIVATE_MODULES = ("transformers.integrations.integration_utils",)
ALLOWED_PRIVATE = {"dcft.run.composer": ("hydra._internal",)}
LIBRARIES = ("hydra", "transformers", "wandb")


def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> Iterator[tuple[str, int, str]]:
    """(module, line, imported name) of every import in ``root/dcft``: ``a.b`` for ``import
    a.b``, ``a.b.c`` for ``from a.b import c``."""
    for path in sorted((root / "dcft").rglob("*.py")):
        module = _module(path, root)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "lineno", 0)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    yield module, node.lineno, f"{base}.{alias.name}"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(root: Path) -> list[str]:
    """Every import of a layer above the importing module's layer."""
    found = []
    for module, line, name in imports(root):
        for layer, above in FORBIDDEN.items():
            if _within(module, layer):
                hit = next((a for a in above if _within(name, a)), None)
                if hit:
                    found.append(f"{module}:{line} imports {name} ({layer} must not import {hit})")
    return found


def private_imports(root: Path) -> list[str]:
    """Every import of a private Hydra, transformers or wandb name not allowed above."""
    found = []
    for module, line, name in imports(root):
        if not name.startswith(tuple(f"{lib}." for lib in LIBRARIES)):
            continue
        private = any(part.startswith("_") for part in name.split(".")) or any(
            _within(name, m) for m in PRIVATE_MODULES
        )
        if private and not any(_within(name, a) for a in ALLOWED_PRIVATE.get(module, ())):
            found.append(f"{module}:{line} imports the private {name}")
    return found


def test_the_scan_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The scanner itself: an upward import inside a function and a relative one are found."""
    (tmp_path / "dcft" / "run").mkdir(parents=True)
    (tmp_path / "dcft" / "run" / "__init__.py").write_text("")
    (tmp_path / "dcft" / "run" / "x.py").write_text(
        '"""from dcft.report import rows"""\ndef f():\n    from ..report import rows\n'
        "import dcft.sweep\nfrom transformers.integrations import integration_utils\n"
    )
    assert layer_violations(tmp_path) == [
        "dcft.run.x:3 imports dcft.report.rows (dcft.run must not import dcft.report)",
        "dcft.run.x:4 imports dcft.sweep (dcft.run must not import dcft.sweep)",
    ]
    assert private_imports(tmp_path) == [
        "dcft.run.x:5 imports the private transformers.integrations.integration_utils"
    ]


def test_layers_point_one_way():
    assert layer_violations(REPO) == []


def test_only_public_library_apis():
    assert private_imports(REPO) == []
