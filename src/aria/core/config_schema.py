"""Aria's configuration schema: one pydantic-settings model with a nested model per section.

The sections and their fields, defaults and bounds live here; :mod:`aria.core.config_loader` builds a
:class:`Settings` from pydantic-settings sources (a TOML file, ``ARIA_`` environment variables, overrides)
with errors that name the key and the fix. Import both from :mod:`aria.core.config`.

A plain ``Settings()`` reads ``ARIA_`` variables with pydantic-settings' own environment source (no file,
no check for misspelt names); :func:`aria.core.config.load_settings` is the way in for a program.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aria.core.modespec import BUILTIN_MODES, LLMOverride, ModeSpec, resolve_modes

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
    "default_data_dir",
    "redacted",
]

ENV_PREFIX = "ARIA_"
_SECRET_KEY = re.compile(r"(?:^|_)(?:api_?key|access_?key|token|secret|secret_?key|password|passwd)$")

#: Dotted keys that :func:`~aria.core.config.apply_update` may change while Aria runs.
HOT_RELOADABLE: frozenset[str] = frozenset(
    {"mode", "tts.voice", "tts.enabled", "llm.temperature", "llm.system_prompt", "llm.max_tokens"}
)


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/aria``, else ``~/.local/share/aria``."""
    xdg = (os.environ if env is None else env).get("XDG_DATA_HOME")
    return Path(xdg) / "aria" if xdg else Path.home() / ".local" / "share" / "aria"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class EngineSettings(_Section):
    """What every engine section has: the backend, its fallbacks, a deadline and backend options."""

    backend: str = "auto"
    fallback: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    #: Resident memory of this engine in MB, for the residency budget (unset: the engine's own estimate).
    memory_mb: float | None = Field(default=None, ge=0)


class VADSettings(EngineSettings):
    timeout_s: float = Field(default=1.0, gt=0)
    threshold: float = Field(default=0.5, ge=0, le=1)
    min_speech_ms: int = Field(default=64, ge=0)
    min_silence_ms: int = Field(default=320, ge=0)


class STTSettings(EngineSettings):
    fallback: list[str] = Field(default_factory=lambda: ["pocketsphinx"])
    language: str | None = None
    timeout_s: float = Field(default=15.0, gt=0)


class LLMSettings(EngineSettings):
    fallback: list[str] = Field(default_factory=lambda: ["builtin"])
    timeout_s: float = Field(default=60.0, gt=0)
    first_token_timeout_s: float = Field(default=15.0, gt=0)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    system_prompt: str = "You are Aria, a helpful voice assistant. Answer briefly and conversationally."
    stop: list[str] = Field(default_factory=list)
    #: The model's context size in tokens: the history window is fitted into it.
    context_tokens: int = Field(default=8192, ge=256)
    #: A small model that summarises turns older than the window, in the background: a backend name
    #: (e.g. "ollama") with ``summary_options``; unset, the main model does it when it is a real one.
    summary_backend: str | None = None
    summary_options: dict[str, Any] = Field(default_factory=dict)
    #: Tools the model may call (built-ins: current_time, calculator, remember, recall, shell).
    tools: list[str] = Field(default_factory=lambda: ["current_time", "calculator", "remember", "recall"])


class VisionSettings(EngineSettings):
    backend: str = "none"


class TTSSettings(EngineSettings):
    fallback: list[str] = Field(default_factory=lambda: ["espeak"])
    enabled: bool = True
    voice: str | None = None


#: Short answers that acknowledge without taking the turn ("mm-hm"), per language (lower case).
DEFAULT_BACKCHANNELS: dict[str, list[str]] = {
    "en": ["mm-hm", "mhm", "uh-huh", "yeah", "yes", "okay", "ok", "right", "sure", "i see", "got it", "hmm"],
    "de": ["mhm", "ja", "genau", "okay", "ok", "stimmt", "klar", "aha", "ach so", "hm"],
    "fr": ["mhm", "oui", "ouais", "d'accord", "ok", "okay", "voilà", "ah bon", "je vois", "hum"],
    "es": ["mhm", "sí", "vale", "claro", "ok", "okay", "ya", "ajá", "ya veo", "bueno"],
}


class TurnSettings(EngineSettings):
    """The end-of-turn detector (``turn:<backend>``) and how the voice loop uses it."""

    backend: str = "smart_turn"
    fallback: list[str] = Field(default_factory=lambda: ["silence"])
    timeout_s: float = Field(default=1.0, gt=0)
    #: Silence (ms) the VAD must hear before the detector is asked: the VAD's minimum silence when an
    #: end-of-turn model runs. Silero's own decay adds 50-100 ms, so the model is asked ~150-200 ms after
    #: the last word; a short pause is safe because the model, not the silence, ends the turn.
    pause_ms: int = Field(default=80, ge=0, le=5000)
    #: Silence (ms) after which a turn the detector called incomplete ends anyway.
    max_wait_ms: int = Field(default=2500, ge=0, le=30000)
    #: Silence (ms) after which a turn the detector is unsure about (probability just under the threshold)
    #: ends: the wait scales from ``max_wait_ms`` (surely unfinished) down to this.
    min_wait_ms: int = Field(default=300, ge=0, le=30000)
    #: Completion probability at or above which the turn is complete.
    threshold: float = Field(default=0.5, gt=0, lt=1)
    #: What the person's speech does to an answer being spoken: ``adaptive`` pauses it, stops it after
    #: ``min_interruption_words`` words that are not a backchannel and resumes it otherwise; ``immediate``
    #: stops it at once; ``off`` lets it finish.
    interruption: Literal["adaptive", "immediate", "off"] = "adaptive"
    #: Words (not backchannels) that make an adaptive interruption real.
    min_interruption_words: int = Field(default=2, ge=1, le=20)
    #: How long (ms) a paused answer waits for words before it resumes.
    resume_ms: int = Field(default=1200, ge=0, le=10000)
    #: Start the answer at the pause, held back until the turn is confirmed (dropped if it is not).
    preemptive: bool = True
    #: Typed input while an answer is in progress: stop the answer (``supersede``) or wait (``queue``).
    busy_input: Literal["supersede", "queue"] = "supersede"
    #: Acknowledgements that never interrupt, per language; a table given in the configuration replaces the
    #: listed languages' defaults and keeps the others (``en = []`` turns English ones off).
    backchannels: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_BACKCHANNELS.items()}
    )

    @field_validator("max_wait_ms")
    @classmethod
    def _wait_after_pause(cls, value: int, info: ValidationInfo) -> int:
        pause = info.data.get("pause_ms")
        if pause is not None and value < pause:
            raise ValueError(f"must be at least turn.pause_ms ({pause})")
        return value

    @field_validator("backchannels")
    @classmethod
    def _normalise_backchannels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        merged = {k: list(v) for k, v in DEFAULT_BACKCHANNELS.items()}
        for language, phrases in value.items():
            key = language.strip().lower()
            if not key:
                raise ValueError("a language code cannot be empty")
            merged[key] = [" ".join(p.lower().split()) for p in phrases if p.strip()]
        return merged


class PipelineSettings(_Section):
    first_clause_min_chars: int = Field(default=12, gt=0)
    sentence_min_chars: int = Field(default=24, gt=0)
    max_chunk_chars: int = Field(default=220, gt=0)
    history_turns: int = Field(default=20, gt=0)
    preroll_ms: int = Field(default=200, gt=0)
    max_utterance_s: float = Field(default=60.0, gt=0)


class ResilienceSettings(_Section):
    failure_threshold: int = Field(default=3, ge=1)
    recovery_s: float = Field(default=10.0, gt=0)
    retry_attempts: int = Field(default=2, ge=0)
    retry_base_delay_s: float = Field(default=0.2, ge=0)
    #: Bulkhead: calls one engine serves at once; more wait (up to the engine's timeout) or fall back.
    max_concurrency: int = Field(default=8, ge=1)
    #: How often the server probes each loaded engine's health (0: never).
    probe_interval_s: float = Field(default=30.0, ge=0)
    #: Quality degradation: when ``slow_turns`` turns in a row wait longer than this for the first token
    #: (0: never), answer with ``fast_llm`` until the usual model is fast again (probed every
    #: ``recovery_probe_s``).
    slow_first_token_ms: float = Field(default=0.0, ge=0)
    slow_turns: int = Field(default=3, ge=1)
    recovery_probe_s: float = Field(default=30.0, gt=0)
    #: The faster model: keys of ``[llm]`` to change, e.g. ``{ options = { model = "qwen2.5:1.5b" } }``.
    fast_llm: LLMOverride | None = None


class ResidencySettings(_Section):
    #: Memory for models, in MB (GPU memory for GPU engines, else RAM); 0: three quarters of the
    #: machine's memory.
    budget_mb: float = Field(default=0.0, ge=0)


class ModelsSettings(_Section):
    """Model files: whether ``aria serve`` fetches the default loadout when it is missing."""

    #: Never download anything (``aria serve --offline``): run with the models already on disk.
    offline: bool = False
    #: On start-up, pull the missing models of the default loadout in the background.
    auto_pull: bool = True


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=1, le=65535)
    #: Bearer token clients must present (``?token=`` or ``Authorization: Bearer``); required off loopback.
    token: str | None = None
    #: Origins besides the server's own that may open ``/ws`` (e.g. ``https://my-app.example``).
    allowed_origins: list[str] = Field(default_factory=list)
    #: Host names the server answers besides loopback ones (against DNS rebinding), e.g. ``aria.lan``.
    allowed_hosts: list[str] = Field(default_factory=list)
    max_connections: int = Field(default=32, ge=1)
    #: WebSocket connections one client address may hold (beyond it, its idlest one makes room or the
    #: new one is refused).
    max_connections_per_client: int = Field(default=16, ge=1)
    #: A WebSocket with no turn-related message for this long is closed; pings do not count (0: never).
    idle_timeout_s: float = Field(default=900.0, ge=0)
    #: When a connection limit is reached, a connection idle at least this long gives up its seat.
    idle_evict_s: float = Field(default=60.0, ge=0)
    #: HTTP request bodies over this many bytes are refused (413) before they are read.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Seconds a client has to send a request's headers (against slowloris); then 408 and disconnected.
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    #: How far answer audio may run ahead of the listener's playback.
    audio_lead_ms: int = Field(default=300, ge=20, le=2000)


class SessionSettings(_Section):
    """Where conversations are kept, for how long, and how much of each."""

    #: ``false``: a private server, nothing is written anywhere (conversations live in memory only).
    persist: bool = True
    #: ``file`` (``data_dir/sessions``), ``redis`` (shared by several servers: ``redis_url``) or ``memory``.
    store: Literal["file", "redis", "memory"] = "file"
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Seconds a server's claim on a session lasts without renewal (Redis: one server serves it at a time).
    lease_s: float = Field(default=15.0, gt=0, le=3600)
    #: Sessions not updated for this many days are deleted, at start-up and every hour (0: kept forever).
    retention_days: float = Field(default=0.0, ge=0)
    #: Messages of a conversation kept in memory, in its snapshot and in a resumed connection's
    #: ``history``; older ones are archived, and exports still have them (0: all).
    max_messages: int = Field(default=1000, ge=0)
    #: Saves between two snapshots (each save appends one record to the session's journal).
    compact_every: int = Field(default=64, ge=1)


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`~aria.core.config.load_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    log: LogSettings = Field(default_factory=LogSettings)
    data_dir: Path = Field(default_factory=default_data_dir)
    #: Custom modes, and changes to the built-in ones (see :mod:`aria.core.modespec`).
    modes: dict[str, ModeSpec] = Field(default_factory=dict)
    mode: str = "voice_chat"
    vad: VADSettings = Field(default_factory=VADSettings)
    stt: STTSettings = Field(default_factory=STTSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)
    tts: TTSSettings = Field(default_factory=TTSSettings)
    turn: TurnSettings = Field(default_factory=TurnSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    residency: ResidencySettings = Field(default_factory=ResidencySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    session: SessionSettings = Field(default_factory=SessionSettings)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("modes", mode="before")
    @classmethod
    def _whole_modes(cls, value: Any) -> Any:
        return resolve_modes(value) if isinstance(value, dict) else value

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str, info: ValidationInfo) -> str:
        known = {**BUILTIN_MODES, **(info.data.get("modes") or {})}
        if value not in known:
            raise ValueError(f"unknown mode {value!r}; known modes: {', '.join(known)}")
        return value

    def all_modes(self) -> dict[str, ModeSpec]:
        """The built-in modes with the configured ones applied, by name."""
        return {**BUILTIN_MODES, **self.modes}

    def with_llm(self, override: LLMOverride | None) -> Settings:
        """These settings with a mode's ``[llm]`` override applied (its ``options`` merged into
        ``llm.options``); the same object without one."""
        changes = override.changes() if override is not None else {}
        if not changes:
            return self
        data = self.llm.model_dump()
        data.update({k: v for k, v in changes.items() if k != "options"})
        data["options"] = {**self.llm.options, **changes.get("options", {})}
        return self.model_copy(update={"llm": LLMSettings.model_validate(data)})


def redacted(settings: Settings) -> dict[str, Any]:
    """``settings.model_dump(mode="json")`` with secrets (api_key, token, secret, password) masked, and
    credentials in any URL too (:func:`aria.core.redact.redact_tree`)."""
    from aria.core.redact import redact_tree  # one redaction for the dump, /health, errors and logs

    result: dict[str, Any] = redact_tree(_redact(settings.model_dump(mode="json")))
    return result


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        snake = {k: re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(k)).lower().replace("-", "_") for k in value}
        return {k: "***" if _SECRET_KEY.search(snake[k]) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
