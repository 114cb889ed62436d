"""Dependencies point one way, and the lower layers import no engine SDK.

Layers, lowest first (a module may import its own layer and any lower one, never a higher one, not even
inside a function or under ``if TYPE_CHECKING:``)::

    aria (the root package), aria.types, aria.errors, aria._version
    aria.core
    aria.engines
    aria.pipeline
    aria.testing, aria.bench
    aria.session
    aria.cli, aria.server, aria.talk, aria.__main__
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import aria

SRC = Path(aria.__file__).resolve().parent

LAYERS: dict[str, int] = {
    "aria": 0,
    "aria.types": 0,
    "aria.errors": 0,
    "aria._version": 0,
    "aria.core": 1,
    "aria.engines": 2,
    "aria.tools": 2,
    "aria.pipeline": 3,
    "aria.testing": 4,
    "aria.bench": 4,
    "aria.session": 5,
    "aria.cli": 6,
    "aria.server": 6,
    "aria.talk": 6,
    "aria.__main__": 6,
}

ENGINE_SDKS = frozenset(
    {
        "onnxruntime",
        "faster_whisper",
        "httpx",
        "openai",
        "ollama",
        "llama_cpp",
        "torch",
        "transformers",
        "kokoro_onnx",
        "piper",
        "espeakng_loader",
        "sounddevice",
        "fastapi",
        "starlette",
        "uvicorn",
        "websockets",
    }
)

#: Modules that must not import an engine SDK at all (rule 1: the core imports none).
SDK_FREE = ("aria.types", "aria.errors", "aria._version", "aria.core")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.importer} ({self.path}:{self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def imports_of(name: str, path: Path) -> list[Import]:
    """Every import in the module, wherever it is (functions, ``TYPE_CHECKING`` blocks, try/except)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, path, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            # ``from aria import cli`` imports the submodule aria.cli: record each name under the base.
            found += [Import(name, f"{base}.{alias.name}", path, node.lineno) for alias in node.names]
    return found


def layer_of(module: str) -> int | None:
    """The layer of ``module`` (or of the closest enclosing module in :data:`LAYERS`)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def is_aria(module: str) -> bool:
    return module == "aria" or module.startswith("aria.")


MODULES = modules()
ALL_IMPORTS = [imp for name, path in MODULES.items() for imp in imports_of(name, path)]


# -- the checker checks what it should ----------------------------------------------------------------


def test_every_module_is_found_and_parsed() -> None:
    assert {"aria", "aria.types", "aria.core.config", "aria.engines.registry", "aria.cli"} <= set(MODULES)
    assert "aria.__main__" in MODULES
    assert any(imp.target.startswith("aria.cli") for imp in ALL_IMPORTS if imp.importer == "aria.__main__")


def test_function_level_and_type_checking_imports_are_seen(tmp_path: Path) -> None:
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        from . import sibling
        from .. import errors
        if TYPE_CHECKING:
            from aria.pipeline.voice import VoicePipeline

        def f():
            import aria.session.store
            from aria import cli
        """
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    targets = {imp.target for imp in imports_of("aria.core.mod", path)}
    assert {
        "aria.core.sibling",
        "aria.errors",
        "aria.pipeline.voice.VoicePipeline",
        "aria.session.store",
        "aria.cli",
    } <= targets
    assert [
        layer_of(t) for t in ("aria.core.x", "aria.pipeline.voice.VoicePipeline", "aria.__version__")
    ] == [
        1,
        3,
        0,
    ]


# -- the rules ----------------------------------------------------------------------------------------


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in MODULES if layer_of(name) is None)
    assert not unplaced, f"modules outside every layer (add them to LAYERS in {__file__}): {unplaced}"


def test_no_upward_import() -> None:
    upward = [
        f"{imp} (layer {layer_of(imp.importer)} -> {layer_of(imp.target)})"
        for imp in ALL_IMPORTS
        if is_aria(imp.target)
        and layer_of(imp.importer) is not None
        and layer_of(imp.target) is not None
        and layer_of(imp.target) > layer_of(imp.importer)  # type: ignore[operator]
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_nothing_imports_an_unknown_aria_package() -> None:
    unknown = [str(imp) for imp in ALL_IMPORTS if is_aria(imp.target) and layer_of(imp.target) is None]
    assert not unknown, "imports of aria packages outside every layer:\n" + "\n".join(unknown)


@pytest.mark.parametrize("lower", ["aria.core", "aria.engines", "aria.pipeline"])
def test_core_engines_and_pipeline_never_import_testing_or_bench(lower: str) -> None:
    bad = [
        str(imp)
        for imp in ALL_IMPORTS
        if (imp.importer == lower or imp.importer.startswith(f"{lower}."))
        and any(imp.target == t or imp.target.startswith(f"{t}.") for t in ("aria.testing", "aria.bench"))
    ]
    assert not bad, "\n".join(bad)


def test_core_and_types_import_no_engine_sdk() -> None:
    bad = [
        str(imp)
        for imp in ALL_IMPORTS
        if any(imp.importer == m or imp.importer.startswith(f"{m}.") for m in SDK_FREE)
        and imp.target.split(".")[0] in ENGINE_SDKS
    ]
    assert not bad, "engine SDK imports in the core:\n" + "\n".join(bad)


def test_importing_the_cli_imports_no_engine_sdk() -> None:
    code = textwrap.dedent(
        f"""
        import json, sys
        sdks = {sorted(ENGINE_SDKS)!r}
        def loaded():
            return sorted({{m.split(".")[0] for m in sys.modules}} & set(sdks))
        import aria.cli
        after_import = loaded()
        aria.cli.build_parser()  # imports every subcommand module
        print(json.dumps({{"import": after_import, "parser": loaded(), "cli": "aria.cli" in sys.modules}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"import": [], "parser": [], "cli": True}


def test_importing_the_core_and_engines_framework_imports_no_engine_sdk() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, json, pkgutil, sys
        import aria.core
        for info in pkgutil.walk_packages(aria.core.__path__, "aria.core."):
            importlib.import_module(info.name)
        import aria.types, aria.errors
        import aria.engines.base, aria.engines.registry, aria.engines.factory, aria.engines.chain
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({sorted(ENGINE_SDKS)!r}))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
