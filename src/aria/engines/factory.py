"""Build the configured engines from settings: the backend plus its fallbacks, behind one interface.

``auto`` picks the best engine that can run on this machine, in this order of preference:

=====  ==================================================================================
vad    silero, webrtc, energy
stt    whisper (when its model is on disk), pocketsphinx
llm    a local Ollama or OpenAI-compatible server (:func:`detect_llm`), else builtin
tts    kokoro (when its files are on disk), piper (likewise), espeak
turn   smart_turn (when its model is on disk or in the pipecat-ai wheel), silence
=====  ==================================================================================

Section fields that an engine's ``Config`` also declares (``vad.threshold``, ``stt.language``...) are
handed to the primary engine unless its ``options`` set them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aria.core.breaker import CircuitBreaker
from aria.core.config import EngineSettings, LLMSettings, Settings
from aria.core.retry import RetryPolicy
from aria.engines.base import KINDS, VAD, Engine, EngineKind
from aria.engines.chain import FallbackEngine, FallbackLLM, FallbackSTT, FallbackTTS, FallbackTurn
from aria.engines.registry import EngineRegistry, default_registry
from aria.errors import AllEnginesFailed, AriaError, EngineUnavailable

__all__ = ["AUTO_PREFERENCE", "create_engine", "detect_llm", "resolve_backend", "start_vad"]

log = logging.getLogger(__name__)

_WRAPPERS: dict[str, type[FallbackEngine[Any]]] = {
    "llm": FallbackLLM,
    "stt": FallbackSTT,
    "tts": FallbackTTS,
    "turn": FallbackTurn,
}

AUTO_PREFERENCE: dict[str, tuple[str, ...]] = {
    "vad": ("silero", "webrtc", "energy"),
    "stt": ("whisper", "pocketsphinx"),
    "llm": ("builtin",),
    "tts": ("kokoro", "piper", "espeak"),
    "vision": (),
    "turn": ("smart_turn", "silence"),
}


def _engine_options(
    name: str,
    kind: EngineKind,
    section: EngineSettings,
    settings: Settings,
    registry: EngineRegistry,
    primary: bool,
) -> dict[str, Any]:
    options: dict[str, Any] = dict(section.options) if primary else {}
    fields = getattr(getattr(registry.load(name, kind), "Config", None), "model_fields", {})
    if "data_dir" in fields:
        options.setdefault("data_dir", settings.data_dir)
    if primary:
        for key in type(section).model_fields.keys() - EngineSettings.model_fields.keys():
            value = getattr(section, key)
            if key in fields and key not in options and value is not None:
                options[key] = value
    return options


def _chain_member(entry: str, kind: EngineKind, registry: EngineRegistry) -> tuple[str, str | None]:
    """A fallback entry: ``"builtin"``, ``"llm:builtin"``, or a backend with a model,
    ``"ollama:qwen2.5:3b"`` / ``"llm:ollama:qwen2.5:3b"``."""
    head, _, rest = entry.partition(":")
    if head in KINDS:
        backend, _, model = rest.partition(":")
        return registry.qualify(f"{head}:{backend}", kind), model or None
    return registry.qualify(head, kind), rest or None


def resolve_backend(kind: EngineKind, settings: Settings, registry: EngineRegistry | None = None) -> str:
    """The concrete backend for ``kind``: the configured one, or for ``auto`` the first engine in
    :data:`AUTO_PREFERENCE` whose availability check passes here."""
    registry = registry or default_registry()
    section: EngineSettings = getattr(settings, kind)
    if section.backend != "auto":
        return section.backend
    reasons = []
    for backend in AUTO_PREFERENCE[kind]:
        name = f"{kind}:{backend}"
        try:
            options = _engine_options(name, kind, section, settings, registry, primary=True)
        except AriaError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        found = registry.availability(name, options)
        if found.available:
            log.info("auto-selected %s", name)
            return backend
        reasons.append(f"{name}: {found.reason}")
    raise EngineUnavailable(
        f"no {kind} engine can run here ({'; '.join(reasons) or 'none known'})", engine=kind
    )


async def detect_llm(settings: Settings, *, timeout_s: float = 0.3) -> Settings:
    """For ``llm.backend = auto``, look for a local Ollama or OpenAI-compatible server and configure it;
    otherwise keep ``builtin`` (and say so). Returns updated settings."""
    if settings.llm.backend != "auto":
        return settings
    from aria.engines.llm.detect import detect_local_llm

    try:
        found = await detect_local_llm(timeout_s=timeout_s)
    except Exception as exc:  # detection is best effort, never fatal
        log.warning("local LLM detection failed: %s", exc)
        found = None
    if found is None:
        log.info("no local language model server found; using llm:builtin (rule-based, limited)")
        return settings
    backend, options = found
    log.info(
        "detected a local %s server at %s (model %s)", backend, options.get("base_url"), options.get("model")
    )
    data = settings.model_dump()
    data["llm"]["backend"] = backend
    data["llm"]["options"] = {**options, **settings.llm.options}
    return type(settings).model_validate(data)


def create_engine(
    kind: EngineKind,
    settings: Settings,
    registry: EngineRegistry | None = None,
    *,
    on_fallback: Callable[[str, str, BaseException], None] | None = None,
) -> Engine | None:
    """The engine for ``kind`` (None when its backend is ``none``): the primary with the section's
    options, then each fallback with defaults, wrapped in a fallback chain when there is more than one."""
    registry = registry or default_registry()
    section: EngineSettings = getattr(settings, kind)
    if section.backend == "none":
        return None
    # (registry name, model or None) per member, in order; "ollama:qwen2.5:3b" is a backend and a model.
    members: list[tuple[str, str | None]] = []
    errors: list[BaseException] = []
    try:
        members.append((registry.qualify(resolve_backend(kind, settings, registry), kind), None))
    except EngineUnavailable as exc:
        errors.append(exc)
    for extra in section.fallback:
        member = _chain_member(extra, kind, registry)
        if member not in members and (member[1] is not None or (member[0], None) not in members):
            members.append(member)
    engines: list[Engine] = []
    for index, (name, model) in enumerate(members):
        try:
            options = _engine_options(
                name, kind, section, settings, registry, primary=index == 0 and not errors
            )
            if model is not None:
                if index > 0 and name == members[0][0]:  # another model of the primary's backend: same server
                    options = {**_engine_options(name, kind, section, settings, registry, primary=True)}
                options["model"] = model
            engine = registry.create(name, options, kind=kind)
            if model is not None:
                engine.name = f"{engine.name}:{model}"  # two models of one backend need two names
            engines.append(engine)
        except EngineUnavailable as exc:
            log.warning("%s is unavailable: %s", name, exc)
            errors.append(exc)
    if not engines:
        raise AllEnginesFailed(kind, errors)
    wrapper = _WRAPPERS.get(kind)
    if wrapper is None:  # VAD and vision run inline: no chain
        return engines[0]
    resilience = settings.resilience
    first_item_timeout = (
        section.first_token_timeout_s if isinstance(section, LLMSettings) else section.timeout_s
    )
    return wrapper(
        engines,
        timeout=section.timeout_s,
        first_item_timeout=first_item_timeout,
        retry_policy=RetryPolicy(
            attempts=max(1, resilience.retry_attempts), base_delay=resilience.retry_base_delay_s
        ),
        breaker_factory=lambda name: CircuitBreaker(
            name, failure_threshold=resilience.failure_threshold, recovery_timeout=resilience.recovery_s
        ),
        on_fallback=on_fallback,
        max_concurrency=resilience.max_concurrency,
    )


async def start_vad(settings: Settings, registry: EngineRegistry | None, *, purpose: str) -> VAD | None:
    """A started VAD of ``settings`` for one stream (VADs keep per-stream state); None, with a warning
    naming ``purpose``, when none is configured or it cannot start."""
    try:
        vad = create_engine("vad", settings, registry)
        if vad is None:
            return None
        await vad.start()
    except AriaError as exc:
        log.warning("no VAD for %s: %s", purpose, exc)
        return None
    assert isinstance(vad, VAD)
    return vad
