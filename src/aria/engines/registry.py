"""The engine registry: ``kind:backend`` names to import paths, imported only when selected.

Built-in engines are listed in :data:`BUILTIN`. Other packages add engines through the entry-point
group ``aria.engines``, each entry named ``kind:backend`` and pointing at the engine class::

    [project.entry-points."aria.engines"]
    "tts:myvoice" = "my_package.tts:MyVoice"

An engine class declares ``kind`` (matching its name's kind), may declare ``aria_api_version`` (its
major must match :data:`~aria.engines.base.API_VERSION`) and a pydantic ``Config`` (subclass of
:class:`~aria.engines.base.EngineConfig`) that validates its options.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pydantic import BaseModel, ValidationError

from aria.engines.base import API_VERSION, KINDS, Availability, Engine
from aria.errors import ConfigError, EngineUnavailable, RegistryError

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "EngineRegistry", "EngineSpec", "default_registry"]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "aria.engines"

BUILTIN: dict[str, str] = {
    "vad:silero": "aria.engines.vad.silero:SileroVAD",
    "vad:webrtc": "aria.engines.vad.webrtc:WebRTCVAD",
    "vad:energy": "aria.engines.vad.energy:EnergyVAD",
    "stt:whisper": "aria.engines.stt.whisper:WhisperSTT",
    "stt:pocketsphinx": "aria.engines.stt.pocketsphinx:PocketSphinxSTT",
    "stt:openai": "aria.engines.stt.openai:OpenAISTT",
    "llm:openai": "aria.engines.llm.openai:OpenAILLM",
    "llm:ollama": "aria.engines.llm.ollama:OllamaLLM",
    "llm:llamacpp": "aria.engines.llm.llamacpp:LlamaCppLLM",
    "llm:builtin": "aria.engines.llm.builtin:BuiltinLLM",
    "vision:clip": "aria.engines.vision.clip:ClipEncoder",
    "vision:change": "aria.engines.vision.change:ChangeDetector",
    "tts:espeak": "aria.engines.tts.espeak:EspeakTTS",
    "tts:kokoro": "aria.engines.tts.kokoro:KokoroTTS",
    "tts:piper": "aria.engines.tts.piper:PiperTTS",
    "tts:openai": "aria.engines.tts.openai:OpenAITTS",
    "turn:smart_turn": "aria.engines.turn.smart_turn:SmartTurn",
    "turn:silence": "aria.engines.turn.silence:SilenceTurn",
    "vad:fake": "aria.testing.fakes:FakeVAD",
    "stt:fake": "aria.testing.fakes:FakeSTT",
    "llm:fake": "aria.testing.fakes:FakeLLM",
    "vision:fake": "aria.testing.fakes:FakeVision",
    "tts:fake": "aria.testing.fakes:FakeTTS",
}


@dataclass(frozen=True, slots=True)
class EngineSpec:
    name: str
    target: str
    origin: str = "builtin"

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def backend(self) -> str:
        return self.name.split(":", 1)[1]


def _check_name(name: str) -> str:
    kind, sep, backend = name.partition(":")
    if not sep or kind not in KINDS or not backend:
        raise RegistryError(
            f"engine name {name!r} must look like 'kind:backend' with kind one of {', '.join(KINDS)}"
        )
    return name


class EngineRegistry:
    def __init__(self, builtins: Mapping[str, str] | None = None, *, discover: bool = True) -> None:
        self._specs: dict[str, EngineSpec] = {}
        for name, target in (BUILTIN if builtins is None else builtins).items():
            self.register(name, target)
        if discover:
            self.discover()

    def register(self, name: str, target: str, *, origin: str = "builtin", replace: bool = False) -> None:
        _check_name(name)
        if name in self._specs and not replace:
            raise RegistryError(f"engine {name!r} is already registered (from {self._specs[name].origin})")
        self._specs[name] = EngineSpec(name, target, origin)

    def discover(self) -> int:
        """Add engines from installed packages' ``aria.engines`` entry points. Returns how many."""
        found = 0
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = f"entry point of {ep.dist.name if ep.dist else 'unknown package'}"
            try:
                self.register(ep.name, ep.value, origin=origin)
                found += 1
            except RegistryError as exc:
                log.warning("ignoring engine plugin %s: %s", ep.name, exc)
        return found

    def names(self, kind: str | None = None) -> list[str]:
        return sorted(n for n in self._specs if kind is None or n.startswith(f"{kind}:"))

    def qualify(self, name: str, kind: str | None = None) -> str:
        """``"builtin"`` with kind ``"llm"`` -> ``"llm:builtin"``; full names pass through when their kind
        matches ``kind`` (a ``tts:`` name where an ``llm`` engine is wanted is an error)."""
        if ":" not in name and kind is not None:
            name = f"{kind}:{name}"
        _check_name(name)
        if kind is not None and not name.startswith(f"{kind}:"):
            raise RegistryError(f"engine {name!r} is not a {kind} engine; use a name like '{kind}:<backend>'")
        return name

    def spec(self, name: str, kind: str | None = None) -> EngineSpec:
        full = self.qualify(name, kind)
        try:
            return self._specs[full]
        except KeyError:
            close = difflib.get_close_matches(full, self._specs, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(self.names(full.split(":")[0])) or "none"
            raise RegistryError(f"unknown engine {full!r}{hint} (known: {known})") from None

    def load(self, name: str, kind: str | None = None) -> type[Any]:
        """Import the engine class (only now) and check its kind and API version."""
        spec = self.spec(name, kind)
        module_name, _, attr = spec.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = exc.name or module_name
            raise EngineUnavailable(
                f"cannot import {module_name} ({missing} is missing); "
                f"install the engine's extra, e.g. pip install 'aria-assistant[{spec.kind}]'",
                engine=spec.name,
            ) from exc
        try:
            cls: type[Any] = getattr(module, attr)
        except AttributeError as exc:
            raise RegistryError(f"{spec.target} has no attribute {attr!r} ({spec.origin})") from exc
        declared_kind = getattr(cls, "kind", None)
        if declared_kind != spec.kind:
            raise RegistryError(f"{spec.target} declares kind {declared_kind!r}, registered as {spec.name!r}")
        version = str(getattr(cls, "aria_api_version", API_VERSION))
        if version.split(".")[0] != API_VERSION.split(".")[0]:
            raise RegistryError(
                f"{spec.name} ({spec.origin}) was built for engine API {version}; "
                f"this Aria provides {API_VERSION}"
            )
        return cls

    def availability(
        self, name: str, options: Mapping[str, Any] | None = None, *, kind: str | None = None
    ) -> Availability:
        """Whether ``name`` can run here, from its class's cheap ``check(config)`` (no model loading)."""
        try:
            cls = self.load(name, kind)
            config = self._config(cls, self.qualify(name, kind), options)
            check = getattr(cls, "check", None)
            return check(config) if check is not None else Availability(True)
        except (EngineUnavailable, RegistryError, ConfigError) as exc:
            fix = getattr(exc, "fix", None) or ""
            return Availability(False, str(exc), fix)

    def _config(self, cls: type[Any], full: str, options: Mapping[str, Any] | None) -> Any:
        config_cls = getattr(cls, "Config", None)
        if config_cls is None or not (isinstance(config_cls, type) and issubclass(config_cls, BaseModel)):
            if options:
                raise ConfigError(f"{full} takes no options, got {sorted(options)}", key=f"{full}.options")
            return None
        try:
            return config_cls.model_validate(dict(options or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            section = full.split(":")[0]
            raise ConfigError(
                f"invalid option {section}.options.{key} for {full}: {first['msg']}",
                key=f"{section}.options.{key}",
                fix=f"valid options for {full}: {', '.join(config_cls.model_fields) or 'none'}",
            ) from exc

    def create(
        self, name: str, options: Mapping[str, Any] | None = None, *, kind: str | None = None
    ) -> Engine:
        """Instantiate an engine with its options validated against its ``Config`` model."""
        cls = self.load(name, kind)
        config = self._config(cls, self.qualify(name, kind), options)
        engine: Engine = cls() if config is None else cls(config)
        return engine


_default: EngineRegistry | None = None


def default_registry() -> EngineRegistry:
    """The process-wide registry with built-ins and discovered plugins (created on first use)."""
    global _default
    if _default is None:
        _default = EngineRegistry()
    return _default
