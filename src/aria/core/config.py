"""Aria's configuration: the schema (:mod:`aria.core.config_schema`) and its loader
(:mod:`aria.core.config_loader`), imported from one place.

Use :func:`load_settings`, not ``Settings()``: it loads defaults, a TOML file, ``ARIA_`` environment
variables and CLI overrides (later wins) with pydantic-settings sources, reports a misspelt variable
instead of ignoring it, and turns every problem into a :class:`~aria.errors.ConfigError` naming the dotted
key and a fix.

The loader (TOML, difflib for suggestions) is imported on first use of :func:`load_settings` or
:func:`apply_update`: code that only needs the schema does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aria.core.config_schema import (
    DEFAULT_BACKCHANNELS,
    ENV_PREFIX,
    HOT_RELOADABLE,
    EngineSettings,
    LLMSettings,
    LogSettings,
    ModelsSettings,
    PipelineSettings,
    ResidencySettings,
    ResilienceSettings,
    ServerSettings,
    SessionSettings,
    Settings,
    STTSettings,
    TTSSettings,
    TurnSettings,
    VADSettings,
    VisionSettings,
    default_data_dir,
    redacted,
)

if TYPE_CHECKING:
    from aria.core.config_loader import apply_update, load_settings

__all__ = [
    "DEFAULT_BACKCHANNELS",
    "ENV_PREFIX",
    "HOT_RELOADABLE",
    "EngineSettings",
    "LLMSettings",
    "LogSettings",
    "ModelsSettings",
    "PipelineSettings",
    "ResidencySettings",
    "ResilienceSettings",
    "STTSettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "TTSSettings",
    "TurnSettings",
    "VADSettings",
    "VisionSettings",
    "apply_update",
    "default_data_dir",
    "load_settings",
    "redacted",
]


def __getattr__(name: str) -> Any:  # PEP 562: the loader on first use
    if name in ("apply_update", "load_settings"):
        from aria.core import config_loader

        return getattr(config_loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
