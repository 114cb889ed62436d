"""Build the configured engines from settings: the backend plus its fallbacks, behind one interface."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aria.core.breaker import CircuitBreaker
from aria.core.config import EngineSettings, LLMSettings, Settings
from aria.core.retry import RetryPolicy
from aria.engines.base import Engine, EngineKind
from aria.engines.fallback import FallbackEngine, FallbackLLM, FallbackSTT, FallbackTTS
from aria.engines.registry import EngineRegistry, default_registry
from aria.errors import AllEnginesFailed, EngineUnavailable

__all__ = ["create_engine", "resolve_backend"]

log = logging.getLogger(__name__)

_WRAPPERS: dict[str, type[FallbackEngine[Any]]] = {"llm": FallbackLLM, "stt": FallbackSTT, "tts": FallbackTTS}


def resolve_backend(kind: EngineKind, backend: str) -> str:
    """Turn ``auto`` into a concrete backend for this machine."""
    if backend != "auto":
        return backend
    if kind == "llm":
        log.info("no language model server configured; using llm:builtin (rule-based, limited)")
        return "builtin"
    if kind == "vad":
        return "energy"
    raise EngineUnavailable(f"no {kind} engine is installed for backend 'auto'", engine=f"{kind}:auto")


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
    names: list[str] = []
    errors: list[BaseException] = []
    try:
        names.append(registry.qualify(resolve_backend(kind, section.backend), kind))
    except EngineUnavailable as exc:
        errors.append(exc)
    for extra in section.fallback:
        name = registry.qualify(extra, kind)
        if name not in names:
            names.append(name)
    engines: list[Engine] = []
    for index, name in enumerate(names):
        options = dict(section.options) if index == 0 and not errors else {}
        try:
            fields = getattr(getattr(registry.load(name, kind), "Config", None), "model_fields", {})
            if "data_dir" in fields:
                options.setdefault("data_dir", settings.data_dir)
            engines.append(registry.create(name, options, kind=kind))
        except EngineUnavailable as exc:
            log.warning("%s is unavailable: %s", name, exc)
            errors.append(exc)
    if not engines:
        raise AllEnginesFailed(kind, errors)
    wrapper = _WRAPPERS.get(kind)
    if len(engines) == 1 or wrapper is None:
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
    )
