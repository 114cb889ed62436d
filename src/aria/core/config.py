"""Aria's configuration: one pydantic-settings model, loaded from defaults, a TOML file, ``ARIA_`` env vars
and CLI overrides (later wins), and validated once at start-up.

Use :func:`load_settings`, not ``Settings()``: it reads the environment itself (``ARIA_`` prefix, ``__``
nesting, case-insensitive, JSON for lists and tables) so that a misspelt variable such as
``ARIA_LLM__TEMPRATURE`` is reported instead of silently ignored, and the ``env`` argument can stand in for
``os.environ`` in tests. Every problem becomes a :class:`~aria.errors.ConfigError` naming the dotted key
(``llm.temperature``) and a fix in both spellings (``[llm] temperature`` / ``ARIA_LLM__TEMPERATURE``).
"""

from __future__ import annotations

import contextvars
import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aria.core.modespec import BUILTIN_MODES, LLMOverride, ModeSpec, resolve_modes
from aria.errors import ConfigError

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

ENV_PREFIX = "ARIA_"
_RESERVED_ENV = frozenset({"ARIA_CONFIG"})  # ARIA_ variables that are not settings
_SECRET_KEY = re.compile(r"(?:^|_)(?:api_?key|access_?key|token|secret|secret_?key|password|passwd)$")

#: Dotted keys that :func:`apply_update` may change while Aria runs.
HOT_RELOADABLE: frozenset[str] = frozenset(
    {"mode", "tts.voice", "tts.enabled", "llm.temperature", "llm.system_prompt", "llm.max_tokens"}
)

_explicit_only: contextvars.ContextVar[bool] = contextvars.ContextVar("aria_settings_explicit", default=False)


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
    #: Messages of a conversation kept in memory and in its snapshot; older ones are archived (0: all).
    max_messages: int = Field(default=2000, ge=0)
    #: Saves between two snapshots (each save appends one record to the session's journal).
    compact_every: int = Field(default=64, ge=1)


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings/apply_update merge every source themselves; plain Settings() keeps the usual ones.
        if _explicit_only.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)


def _toml_name(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"[{'.'.join(parts[:-1])}] {parts[-1]}"


def _env_name(parts: Sequence[str]) -> str:
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


def _submodel(info: FieldInfo) -> type[BaseModel] | None:
    ann = info.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _is_table(info: FieldInfo) -> bool:
    return info.annotation is dict or get_origin(info.annotation) is dict


def _all_keys(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        yield prefix + name
        sub = _submodel(info)
        if sub is not None:
            yield from _all_keys(sub, f"{prefix}{name}.")


def _describe(info: FieldInfo | None) -> str:
    ann = info.annotation if info is not None else None
    if info is None or ann is None:
        return "a valid value"
    if get_origin(ann) is Literal:
        return "one of " + ", ".join(f'"{a}"' for a in get_args(ann))
    if ann is bool:
        return "true or false"
    if get_origin(ann) is list:
        return "a list of strings"
    if _is_table(info) or _submodel(info) is not None:
        return "a table"
    if ann is Path:
        return "a directory path"
    if ann is int or ann is float:
        noun = "an integer" if ann is int else "a number"
    else:
        return "a string"
    b = {k: getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    if "ge" in b and "le" in b:
        return f"{noun} between {b['ge']:g} and {b['le']:g}"
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return f"{noun} " + " and ".join(f"{words[k]} {v:g}" for k, v in b.items()) if b else noun


def _field_at(parts: Sequence[str]) -> FieldInfo | None:
    """The field at ``parts``; None inside a free-form table. Raises KeyError for an unknown key."""
    model: type[BaseModel] | None = Settings
    info: FieldInfo | None = None
    for part in parts:
        if model is None:
            if info is not None and _is_table(info):
                return None
            raise KeyError(part)
        info = model.model_fields.get(part)
        if info is None:
            raise KeyError(part)
        model = _submodel(info)
    return info


def _check_key(dotted: str, source: str) -> FieldInfo | None:
    try:
        return _field_at(dotted.split("."))
    except KeyError:
        raise _unknown(dotted, source) from None


def _unknown(dotted: str, source: str) -> ConfigError:
    parts = dotted.split(".")
    keys = list(_all_keys())
    close = [k for k in keys if k.startswith(dotted)][:1] or difflib.get_close_matches(dotted, keys, 1, 0.6)
    if close:
        best = close[0].split(".")
        hint = f"; did you mean {close[0]}?"
        fix = f"use {_toml_name(best)} in the TOML file or {_env_name(best)} in the environment"
    else:
        hint = ""
        fix = f"remove {_toml_name(parts)} / {_env_name(parts)}; valid keys: {', '.join(_all_keys())}"
    return ConfigError(f"unknown setting {dotted} (from {source}){hint}", key=dotted, fix=fix)


def _unknown_in_mode(loc: Sequence[str], source: str) -> ConfigError:
    """An unknown key inside a ``[modes.<name>]`` table (or its ``llm``/``router`` table): suggest a key
    of that table, not a top-level setting."""
    dotted, table, name = ".".join(loc), list(loc[:-1]), loc[-1]
    model: type[BaseModel] = ModeSpec if len(loc) == 3 else LLMOverride
    close = difflib.get_close_matches(name, list(model.model_fields), 1, 0.6)
    if close:
        hint = f"; did you mean {'.'.join([*table, close[0]])}?"
        fix = f"use {_toml_name([*table, close[0]])} in the TOML file or {_env_name([*table, close[0]])}"
    else:
        hint = ""
        fix = f"remove {_toml_name(loc)}; valid keys there: {', '.join(model.model_fields)}"
    return ConfigError(f"unknown setting {dotted} (from {source}){hint}", key=dotted, fix=fix)


def _set_path(data: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    for part in parts[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    data[parts[-1]] = value


def _merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = dict(value) if isinstance(value, Mapping) else value


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        yield prefix + key
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")


def _syntax_key(text: str, lineno: int) -> str | None:
    section, key = "", None
    for line in text.splitlines()[:lineno]:
        if m := re.match(r"\s*\[+\s*([\w.\-\" ]+?)\s*\]+", line):
            section = m.group(1).replace('"', "").replace(" ", "")
        key = m.group(1) if (m := re.match(r"\s*([\w\-]+)\s*=", line)) else None
    return f"{section}.{key}" if section and key else key or section or None


def _read_toml(path: Path, how: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file {path} ({how}) does not exist",
            fix="create it, or point --config/ARIA_CONFIG elsewhere",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({how}): {exc}", fix="check the path") from exc
    try:
        text = raw.decode("utf-8")
        return tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text", fix="save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        key = _syntax_key(text, int(m.group(1))) if m else None
        where = f" near {key}" if key else ""
        raise ConfigError(
            f"config file {path} is not valid TOML{where}: {exc}",
            key=key,
            fix='quote strings ("..."), use key = value, and [section] headers; see the line named above',
        ) from exc


def _read_env(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, raw in env.items():
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in _RESERVED_ENV:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        dotted = ".".join(parts)
        source = f"environment variable {name}"
        info = _check_key(dotted, source)
        value: Any = raw
        if info is None:  # a key inside an options table: JSON if it parses, else the string
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        elif _submodel(info) is not None or _is_table(info) or get_origin(info.annotation) is list:
            try:
                value = json.loads(raw)
            except ValueError as exc:
                is_list = get_origin(info.annotation) is list
                example = '\'["a", "b"]\'' if is_list else '\'{"key": "value"}\''
                raise ConfigError(
                    f"{dotted}: {name} is not valid JSON ({exc})",
                    key=dotted,
                    fix=f"set {name}={example} (JSON), or set {_toml_name(parts)} in the TOML file",
                ) from exc
        _set_path(data, parts, value)
        origins[dotted] = source
    return data, origins


def _validate(data: Mapping[str, Any], origins: Mapping[str, str]) -> Settings:
    token = _explicit_only.set(True)
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as exc:
        raise _translate(exc, origins) from exc
    finally:
        _explicit_only.reset(token)


def _translate(exc: ValidationError, origins: Mapping[str, str]) -> ConfigError:
    problems: list[tuple[str, str, FieldInfo | None]] = []
    for err in exc.errors():
        parts: list[str] = []
        model: type[BaseModel] | None = Settings
        for item in err["loc"]:
            info = model.model_fields.get(item) if model is not None and isinstance(item, str) else None
            if info is None:
                break
            parts.append(str(item))
            model = _submodel(info)
        rest = [str(p) for p in err["loc"][len(parts) :]]
        if parts == ["modes"] and rest:  # a mode's table: name the key inside it
            parts, rest = [*parts, *rest], []
        key = ".".join(parts) or ".".join(rest)
        if err["type"] == "extra_forbidden" and parts[0:1] == ["modes"] and len(err["loc"]) >= 3:
            return _unknown_in_mode([str(p) for p in err["loc"]], origins.get(key, "configuration"))
        if err["type"] == "extra_forbidden":
            return _unknown(".".join(str(p) for p in err["loc"]), origins.get(key, "configuration"))
        source = next(
            (origins[a] for i in range(len(parts), 0, -1) if (a := ".".join(parts[:i])) in origins), ""
        )
        got = f"got {err['input']!r}" + (f" from {source}" if source else "")
        where = f" (item {'.'.join(rest)})" if rest and parts else ""
        info = _field_at(parts) if parts and parts[0] != "modes" else None
        problems.append((key, f"{key}{where}: {err['msg'].rstrip('.')} ({got})", info))
    key, message, info = problems[0]
    if len(problems) > 1:
        message += "; also " + "; ".join(m for _, m, _ in problems[1:])
    parts = key.split(".")
    fix = f"set {_toml_name(parts)} to {_describe(info)}, or {_env_name(parts)}"
    return ConfigError(f"invalid setting {message}", key=key, fix=fix)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings: ``overrides`` > environment > TOML file > defaults.

    ``config_file`` defaults to ``$ARIA_CONFIG`` when set. ``overrides`` maps dotted keys (``"llm.backend"``)
    to values; None values are skipped, so unset CLI flags can be passed straight through. ``env`` replaces
    ``os.environ``. Raises :class:`ConfigError` for a missing or malformed file, an unknown key or a bad
    value.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    how = "passed as config_file"
    if config_file is None:
        var = next((k for k in env if k.upper() == "ARIA_CONFIG"), None)
        if var is not None and env[var]:
            config_file, how = env[var], f"from {var}"
    if config_file is not None:
        path = Path(config_file).expanduser()
        file_data = _read_toml(path, how)
        for dotted in _leaves(file_data):
            _check_key(dotted, f"config file {path}")
            origins[dotted] = f"config file {path}"
        _merge(data, file_data)
    env_data, env_origins = _read_env(env)
    _merge(data, env_data)
    origins.update(env_origins)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _check_key(dotted, "override")
        _set_path(data, dotted.split("."), value)
        origins[dotted] = "override"
    data.setdefault("data_dir", default_data_dir(env))
    return _validate(data, origins)


def apply_update(settings: Settings, updates: Mapping[str, Any]) -> Settings:
    """A new validated :class:`Settings` with hot-reloadable dotted-key ``updates`` applied."""
    data = settings.model_dump()
    for dotted, value in updates.items():
        parts = dotted.split(".")
        if dotted not in HOT_RELOADABLE:
            _check_key(dotted, "update")
            raise ConfigError(
                f"{dotted} cannot be changed while Aria is running; restart to change it "
                f"(live keys: {', '.join(sorted(HOT_RELOADABLE))})",
                key=dotted,
                fix=f"set {_toml_name(parts)} in the TOML file or {_env_name(parts)}, then restart Aria",
            )
        _set_path(data, parts, value)
    return _validate(data, dict.fromkeys(updates, "update"))


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
