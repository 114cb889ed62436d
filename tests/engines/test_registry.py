"""EngineRegistry: names, lazy imports, plugin discovery, version and option checks.

Engines under test are real modules written to ``tmp_path`` and put on ``sys.path``, and plugins are real
(if tiny) installed distributions: a ``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from aria.engines.base import API_VERSION, TTS
from aria.engines.llm.builtin import BuiltinLLM
from aria.engines.registry import BUILTIN, ENTRY_POINT_GROUP, EngineRegistry, EngineSpec
from aria.errors import ConfigError, EngineUnavailable, RegistryError
from aria.testing.fakes import FakeLLM, Fault

TTS_ENGINE = """
from aria.engines.base import Capabilities, EngineConfig, EngineHealth
from aria.types import AudioChunk
import numpy as np


class {cls}:
    kind = {kind!r}
    name = {backend!r}
    capabilities = Capabilities(sample_rate=16000)
    {extra}

    class Config(EngineConfig):
        voice: str = "plain"
        speed: float = 1.0

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    async def start(self):
        pass

    async def aclose(self):
        pass

    async def health(self):
        return EngineHealth(ok=True, detail={backend!r})

    async def synthesize(self, text, *, voice=None):
        yield AudioChunk(np.zeros(160, dtype=np.float32), 16000)
"""


def engine_source(cls: str = "MyTTS", *, kind: str = "tts", backend: str = "mytts", extra: str = "") -> str:
    return TTS_ENGINE.format(cls=cls, kind=kind, backend=backend, extra=extra)


@pytest.fixture
def new_modules() -> Iterator[list[str]]:
    """Module names a test generates; removed from ``sys.modules`` afterwards so tests stay independent."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def make_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_modules: list[str]
) -> Callable[[str], str]:
    """Write ``source`` as a fresh, uniquely named module importable from ``tmp_path``; return its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(source: str) -> str:
        name = f"aria_test_engine_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        new_modules.append(name)
        return name

    return make


def bare_registry() -> EngineRegistry:
    """Built-ins only, whatever plugins this machine has installed."""
    return EngineRegistry(discover=False)


# -- names ---------------------------------------------------------------------------------------


def test_builtin_names_are_registered_and_sorted_by_kind() -> None:
    registry = bare_registry()
    assert registry.names() == sorted(BUILTIN)
    for kind in ("vad", "stt", "llm", "vision", "tts", "turn"):
        assert registry.names(kind) == sorted(n for n in BUILTIN if n.startswith(f"{kind}:"))
    assert {"llm:builtin", "llm:fake", "vad:energy", "vad:fake", "stt:fake", "tts:fake"} <= set(BUILTIN)
    assert all(name.partition(":")[0] in ("vad", "stt", "llm", "vision", "tts", "turn") for name in BUILTIN)


def test_builtin_spec_reports_target_kind_backend_and_origin() -> None:
    spec = bare_registry().spec("builtin", "llm")
    assert spec == EngineSpec("llm:builtin", "aria.engines.llm.builtin:BuiltinLLM", "builtin")
    assert (spec.kind, spec.backend) == ("llm", "builtin")


def test_empty_builtins_mapping_gives_an_empty_registry() -> None:
    assert EngineRegistry({}, discover=False).names() == []


def test_qualify_adds_the_kind_to_a_bare_backend() -> None:
    registry = bare_registry()
    assert registry.qualify("builtin", "llm") == "llm:builtin"
    assert registry.qualify("whisper", "stt") == "stt:whisper"  # qualifying does not require registration


def test_qualify_passes_full_names_through() -> None:
    registry = bare_registry()
    assert registry.qualify("llm:builtin") == "llm:builtin"
    assert registry.qualify("llm:builtin", "llm") == "llm:builtin"
    assert registry.qualify("tts:my:voice") == "tts:my:voice"


def test_qualify_rejects_a_full_name_of_another_kind() -> None:
    with pytest.raises(RegistryError, match=r"'tts:fake' is not a llm engine"):
        bare_registry().qualify("tts:fake", "llm")


def test_create_refuses_an_engine_of_another_kind_than_asked() -> None:
    with pytest.raises(RegistryError, match="not a llm engine"):
        bare_registry().create("tts:fake", kind="llm")


@pytest.mark.parametrize("bad", ["whisper", "audio:whisper", "stt:", ":whisper", "", "STT:whisper"])
def test_bad_name_format_is_a_registry_error(bad: str) -> None:
    registry = bare_registry()
    with pytest.raises(RegistryError, match=r"must look like 'kind:backend' with kind one of vad, stt, llm"):
        registry.qualify(bad)
    with pytest.raises(RegistryError, match="must look like 'kind:backend'"):
        registry.register(bad, "somewhere:Thing")


def test_unknown_engine_suggests_the_closest_name() -> None:
    registry = bare_registry()
    with pytest.raises(RegistryError) as info:
        registry.spec("bultin", "llm")
    message = str(info.value)
    assert message.startswith("unknown engine 'llm:bultin'; did you mean 'llm:builtin'?")
    assert message.endswith(f"(known: {', '.join(registry.names('llm'))})")
    assert "llm:fake" in message
    assert info.value.code == "unknown_engine"


def test_unknown_engine_without_a_close_match_lists_the_known_ones() -> None:
    registry = bare_registry()
    with pytest.raises(RegistryError) as info:
        registry.create("llm:zzzzzzzzzz")
    assert "did you mean" not in str(info.value)
    assert str(info.value) == f"unknown engine 'llm:zzzzzzzzzz' (known: {', '.join(registry.names('llm'))})"
    with pytest.raises(RegistryError, match=r"unknown engine 'vision:clip' \(known: none\)"):
        EngineRegistry({}, discover=False).load("clip", "vision")


def test_registering_a_name_twice_is_refused_unless_replacing() -> None:
    registry = bare_registry()
    with pytest.raises(RegistryError, match="'llm:builtin' is already registered \\(from builtin\\)"):
        registry.register("llm:builtin", "elsewhere:Other")
    registry.register("llm:builtin", "elsewhere:Other", origin="test", replace=True)
    assert registry.spec("llm:builtin") == EngineSpec("llm:builtin", "elsewhere:Other", "test")


# -- lazy import ----------------------------------------------------------------------------------


def test_target_module_is_imported_only_on_load(make_module: Callable[[str], str]) -> None:
    module = make_module(engine_source(backend="lazy"))
    registry = bare_registry()
    registry.register("tts:lazy", f"{module}:MyTTS")
    assert "tts:lazy" in registry.names("tts")
    assert registry.qualify("lazy", "tts") == "tts:lazy"
    assert registry.spec("lazy", "tts").target == f"{module}:MyTTS"
    assert module not in sys.modules

    cls = registry.load("tts:lazy")

    assert module in sys.modules
    assert cls is sys.modules[module].MyTTS


def test_target_module_is_imported_on_create(make_module: Callable[[str], str]) -> None:
    module = make_module(engine_source(backend="lazy"))
    registry = bare_registry()
    registry.register("tts:lazy", f"{module}:MyTTS")
    assert module not in sys.modules
    engine = registry.create("lazy", {"voice": "warm"}, kind="tts")
    assert module in sys.modules
    assert isinstance(engine, TTS)
    assert engine.name == "lazy"
    assert engine.config.voice == "warm"  # type: ignore[attr-defined]


def test_building_the_registry_imports_no_engine_module() -> None:
    code = textwrap.dedent(
        """
        import sys
        from aria.engines.registry import EngineRegistry
        registry = EngineRegistry()
        registry.names()
        registry.spec("llm:builtin")
        registry.qualify("energy", "vad")
        targets = ["aria.engines.llm.builtin", "aria.engines.vad.energy", "aria.testing"]
        print(",".join(t for t in targets if t in sys.modules))
        registry.load("llm:builtin")
        print("aria.engines.llm.builtin" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["", "True"]


# -- load failures --------------------------------------------------------------------------------


def test_missing_module_is_engine_unavailable_naming_the_extra(make_module: Callable[[str], str]) -> None:
    sdk = f"aria_test_missing_sdk_{uuid.uuid4().hex[:8]}"
    module = make_module(f"import {sdk}\n")
    registry = bare_registry()
    registry.register("stt:whisperish", f"{module}:Whisperish")
    with pytest.raises(EngineUnavailable) as info:
        registry.create("whisperish", kind="stt")
    error = info.value
    assert error.engine == "stt:whisperish"
    assert error.retryable is False
    assert f"cannot import {module} ({sdk} is missing)" in str(error)
    assert "pip install 'aria-assistant[stt]'" in str(error)
    assert isinstance(error.__cause__, ImportError)
    assert module not in sys.modules


def test_a_target_module_that_does_not_exist_is_engine_unavailable() -> None:
    registry = bare_registry()
    registry.register("tts:ghost", "aria_test_no_such_module_anywhere:Ghost")
    with pytest.raises(EngineUnavailable, match=r"aria_test_no_such_module_anywhere is missing.*\[tts\]"):
        registry.load("tts:ghost")


def test_a_missing_class_is_a_registry_error(make_module: Callable[[str], str]) -> None:
    module = make_module(engine_source())
    registry = bare_registry()
    registry.register("tts:typo", f"{module}:MyTSS", origin="entry point of typo-pkg")
    with pytest.raises(RegistryError, match=r"has no attribute 'MyTSS' \(entry point of typo-pkg\)"):
        registry.load("tts:typo")


def test_kind_mismatch_is_a_registry_error(make_module: Callable[[str], str]) -> None:
    module = make_module(engine_source(kind="llm"))
    registry = bare_registry()
    registry.register("tts:liar", f"{module}:MyTTS")
    with pytest.raises(RegistryError, match=r"declares kind 'llm', registered as 'tts:liar'"):
        registry.create("tts:liar")


def test_a_class_without_kind_is_a_registry_error(make_module: Callable[[str], str]) -> None:
    module = make_module("class Plain:\n    pass\n")
    registry = bare_registry()
    registry.register("tts:plain", f"{module}:Plain")
    with pytest.raises(RegistryError, match="declares kind None"):
        registry.load("tts:plain")


def test_incompatible_api_version_is_a_registry_error(make_module: Callable[[str], str]) -> None:
    module = make_module(engine_source(extra='aria_api_version = "2.0"'))
    registry = bare_registry()
    registry.register("tts:future", f"{module}:MyTTS", origin="entry point of future-voice")
    with pytest.raises(RegistryError) as info:
        registry.create("tts:future")
    assert str(info.value) == (
        f"tts:future (entry point of future-voice) was built for engine API 2.0; "
        f"this Aria provides {API_VERSION}"
    )


def test_same_major_api_version_loads(make_module: Callable[[str], str]) -> None:
    major = API_VERSION.split(".")[0]
    module = make_module(engine_source(extra=f'aria_api_version = "{major}.7"'))
    registry = bare_registry()
    registry.register("tts:minor", f"{module}:MyTTS")
    assert registry.load("tts:minor").aria_api_version == f"{major}.7"


# -- options --------------------------------------------------------------------------------------


def test_options_are_validated_and_passed_to_the_engine() -> None:
    engine = bare_registry().create("builtin", {"assistant_name": "Nova"}, kind="llm")
    assert isinstance(engine, BuiltinLLM)
    assert engine.config == BuiltinLLM.Config(assistant_name="Nova")
    assert engine.answer("hello") == "Hello, I'm Nova. How can I help you?"


def test_no_options_means_the_config_defaults() -> None:
    engine = bare_registry().create("llm:fake")
    assert isinstance(engine, FakeLLM)
    assert engine.config == FakeLLM.Config()


def test_nested_options_are_validated_into_models() -> None:
    engine = bare_registry().create("llm:fake", {"fault": {"calls": [2], "retryable": False}})
    assert isinstance(engine, FakeLLM)
    assert engine.config.fault == Fault(calls=(2,), retryable=False)


def test_unknown_option_names_the_key_and_the_valid_options() -> None:
    with pytest.raises(ConfigError) as info:
        bare_registry().create("builtin", {"assistant_nam": "Nova"}, kind="llm")
    error = info.value
    assert error.key == "llm.options.assistant_nam"
    assert str(error).startswith("invalid option llm.options.assistant_nam for llm:builtin:")
    assert error.fix == "valid options for llm:builtin: assistant_name, tz"
    assert isinstance(error.__cause__, Exception)


def test_invalid_option_value_names_the_key_and_the_reason() -> None:
    with pytest.raises(ConfigError) as info:
        bare_registry().create("llm:builtin", {"tz": "Mars/Olympus_Mons"})
    assert info.value.key == "llm.options.tz"
    assert "unknown time zone 'Mars/Olympus_Mons'" in str(info.value)


def test_invalid_nested_option_names_the_dotted_path() -> None:
    with pytest.raises(ConfigError) as info:
        bare_registry().create("llm:fake", {"fault": {"always": "sometimes"}})
    assert info.value.key == "llm.options.fault.always"
    assert "invalid option llm.options.fault.always for llm:fake" in str(info.value)


def test_options_for_an_engine_without_config_are_refused(make_module: Callable[[str], str]) -> None:
    module = make_module(
        """
        class NoOptions:
            kind = "vad"
            name = "noopt"
        """
    )
    registry = bare_registry()
    registry.register("vad:noopt", f"{module}:NoOptions")
    assert type(registry.create("vad:noopt")).__name__ == "NoOptions"
    with pytest.raises(ConfigError, match=r"vad:noopt takes no options, got \['level'\]") as info:
        registry.create("vad:noopt", {"level": 3})
    assert info.value.key == "vad:noopt.options"


# -- entry-point discovery -----------------------------------------------------------------------


def install_plugin(root: Path, entry_points: str, *, dist: str = "myplugin", module: str = "") -> None:
    """A minimal installed distribution in ``root``, as pip would leave it in site-packages."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module:
        (root / "myplugin_mod.py").write_text(module)


class Site(NamedTuple):
    root: Path
    #: How many engine plugins this machine really has installed (counted before ours exist).
    baseline: int


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_modules: list[str]) -> Site:
    """An empty site-packages-like folder on ``sys.path``."""
    baseline = bare_registry().discover()
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    new_modules.append("myplugin_mod")
    sys.modules.pop("myplugin_mod", None)
    return Site(root, baseline)


def test_plugin_entry_point_is_discovered_and_created(plugin_site: Site) -> None:
    install_plugin(
        plugin_site.root,
        f"""
        [{ENTRY_POINT_GROUP}]
        tts:mytts = myplugin_mod:MyTTS
        """,
        module=engine_source(),
    )
    registry = EngineRegistry()
    assert "tts:mytts" in registry.names("tts")
    assert "tts:fake" in registry.names("tts")
    spec = registry.spec("mytts", "tts")
    assert spec == EngineSpec("tts:mytts", "myplugin_mod:MyTTS", "entry point of myplugin")
    assert "myplugin_mod" not in sys.modules  # discovery reads metadata only

    engine = registry.create("mytts", {"speed": 1.5}, kind="tts")

    assert type(engine).__module__ == "myplugin_mod"
    assert type(engine).__name__ == "MyTTS"
    assert isinstance(engine, TTS)
    assert engine.config.speed == 1.5  # type: ignore[attr-defined]


def test_discover_counts_the_plugins_it_added(plugin_site: Site) -> None:
    install_plugin(
        plugin_site.root,
        f"""
        [{ENTRY_POINT_GROUP}]
        tts:mytts = myplugin_mod:MyTTS
        stt:myears = myplugin_mod:MyEars

        [console_scripts]
        myplugin = myplugin_mod:main
        """,
    )
    registry = bare_registry()
    assert "tts:mytts" not in registry.names()
    assert registry.discover() == plugin_site.baseline + 2
    assert {"tts:mytts", "stt:myears"} <= set(registry.names())
    assert "myplugin" not in " ".join(registry.names())


def test_bad_plugin_entries_are_skipped_with_a_warning(
    plugin_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin(
        plugin_site.root,
        f"""
        [{ENTRY_POINT_GROUP}]
        nonsense = myplugin_mod:MyTTS
        llm:builtin = myplugin_mod:Hijack
        tts:mytts = myplugin_mod:MyTTS
        tts:broken = myplugin_missing_mod:Broken
        """,
        module=engine_source(),
    )
    with caplog.at_level(logging.WARNING, logger="aria.engines.registry"):
        registry = EngineRegistry()

    warnings = [r.getMessage() for r in caplog.records if r.name == "aria.engines.registry"]
    assert any(m.startswith("ignoring engine plugin nonsense:") for m in warnings), warnings
    assert any(
        m.startswith("ignoring engine plugin llm:builtin:") and "already registered" in m for m in warnings
    ), warnings
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "aria.engines.registry")
    # The built-in is not hijacked, the good entry still works, the broken one fails only when chosen.
    assert registry.spec("llm:builtin").origin == "builtin"
    assert isinstance(registry.create("llm:builtin"), BuiltinLLM)
    assert registry.create("tts:mytts").name == "mytts"
    with pytest.raises(EngineUnavailable, match="myplugin_missing_mod is missing"):
        registry.create("tts:broken")
