"""Every module's ``__all__`` is honest and complete.

* a module that defines ``__all__`` defines every name in it;
* every public module (no ``_``-prefixed part, not ``__main__``), package ``__init__`` files aside,
  defines ``__all__``;
* every public top-level class and function defined in a module (its ``__module__`` is that module) is
  listed in that module's ``__all__``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import aria


def _walk() -> list[tuple[str, bool]]:
    """(module name, is a package) for every module under ``aria``; ``__main__`` is never imported."""
    found = [("aria", True)]
    for info in pkgutil.walk_packages(aria.__path__, "aria."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            found.append((info.name, info.ispkg))
    return sorted(found)


MODULES = _walk()
NAMES = [name for name, _ in MODULES]
PACKAGES = {name for name, ispkg in MODULES if ispkg}


def is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


@dataclass(frozen=True)
class View:
    """What the checks need to know about a module."""

    name: str
    exported: tuple[str, ...] | None
    defined: frozenset[str]
    #: Public top-level classes and functions whose home is this module (not re-exports).
    definitions: tuple[str, ...]
    how: str = "imported"


def imported_view(module: ModuleType) -> View:
    exported = getattr(module, "__all__", None)
    definitions = sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    )
    # A name the module provides lazily (PEP 562 ``__getattr__``) counts as defined.
    lazy = {item for item in exported or () if item not in vars(module) and hasattr(module, item)}
    return View(
        module.__name__,
        None if exported is None else tuple(exported),
        frozenset(vars(module)) | lazy,
        tuple(definitions),
    )


def static_view(name: str) -> View:
    """The same facts read from the source, for a module whose optional dependency is not installed."""
    spec = importlib.util.find_spec(name)
    assert spec is not None, name
    assert spec.origin is not None, name
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    exported: tuple[str, ...] | None = None
    defined: set[str] = set()
    definitions: list[str] = []
    body = list(tree.body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If | ast.Try):  # guarded imports and definitions
            body[:0] = [
                *node.body,
                *getattr(node, "orelse", []),
                *[n for h in getattr(node, "handlers", []) for n in h.body],
            ]
        elif isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            defined.add(node.name)
            if not node.name.startswith("_"):
                definitions.append(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        defined.add(leaf.id)
                        if leaf.id == "__all__" and node.value is not None:
                            exported = tuple(ast.literal_eval(node.value))
    return View(name, exported, frozenset(defined), tuple(sorted(definitions)), how="read from source")


def view(name: str) -> View:
    try:
        return imported_view(importlib.import_module(name))
    except ImportError as exc:
        if (exc.name or "aria").split(".")[0] == "aria":
            raise
        return static_view(name)  # e.g. an engine adapter whose SDK (an optional extra) is missing here


def test_the_walk_finds_the_package() -> None:
    assert {"aria", "aria.errors", "aria.types", "aria.core.config", "aria.engines.registry"} <= set(NAMES)
    assert "aria.cli" in PACKAGES
    assert not any(name.endswith("__main__") for name in NAMES)


@pytest.mark.parametrize("name", ["aria.errors", "aria.engines.registry", "aria.core.config", "aria.testing"])
def test_reading_the_source_agrees_with_importing(name: str) -> None:
    imported = imported_view(importlib.import_module(name))
    static = static_view(name)
    assert static.exported == imported.exported
    assert static.definitions == imported.definitions
    assert set(static.exported or ()) <= static.defined


@pytest.mark.parametrize("name", NAMES)
def test_every_name_in_all_exists(name: str) -> None:
    module = view(name)
    exported = module.exported
    if exported is None:
        return
    assert all(isinstance(item, str) for item in exported), f"{name}.__all__ holds non-strings"
    missing = [item for item in exported if item not in module.defined]
    assert not missing, f"{name}.__all__ lists names the module does not define: {missing}"
    duplicates = sorted({item for item in exported if list(exported).count(item) > 1})
    assert not duplicates, f"{name}.__all__ lists names twice: {duplicates}"


@pytest.mark.parametrize("name", [n for n in NAMES if is_public(n) and n not in PACKAGES])
def test_every_public_module_defines_all(name: str) -> None:
    module = view(name)
    assert module.exported is not None, (
        f"public module {name} has no __all__; add one listing {list(module.definitions)}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_public_definition_is_listed_in_all(name: str) -> None:
    module = view(name)
    if module.exported is None:
        return  # reported by test_every_public_module_defines_all (packages may re-export instead)
    unlisted = [item for item in module.definitions if item not in module.exported]
    assert not unlisted, (
        f"{name} defines public {unlisted} but leaves them out of __all__; list them, or rename them "
        "with a leading underscore"
    )
