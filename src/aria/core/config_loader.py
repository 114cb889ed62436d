"""Loading Aria's configuration with pydantic-settings sources, and errors that say how to fix it.

:func:`load_settings` builds :class:`~aria.core.config_schema.Settings` from three sources, highest
priority first, merged by pydantic-settings itself (``Settings(_build_sources=...)``):

1. ``overrides`` (CLI flags, dotted keys) -- an :class:`~pydantic_settings.InitSettingsSource`;
2. ``ARIA_`` environment variables -- :class:`AriaEnvSource` (``__`` nesting, case-insensitive, JSON for
   lists and tables). Unlike pydantic-settings' ``EnvSettingsSource`` it reports a misspelt variable such
   as ``ARIA_LLM__TEMPRATURE`` instead of ignoring it, and reads a given mapping in place of ``os.environ``;
3. the TOML file (``config_file``, else ``$ARIA_CONFIG``) -- :class:`AriaTomlSource`, pydantic-settings'
   ``TomlConfigSettingsSource`` with a missing, unreadable or malformed file reported as such.

Then the defaults (``data_dir`` from the given environment's ``XDG_DATA_HOME``). Every problem becomes a
:class:`~aria.errors.ConfigError` naming the dotted key (``llm.temperature``) and a fix in both spellings
(``[llm] temperature`` / ``ARIA_LLM__TEMPERATURE``).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
)

from aria.core.config_schema import ENV_PREFIX, HOT_RELOADABLE, Settings, default_data_dir
from aria.core.modespec import LLMOverride, ModeSpec
from aria.errors import ConfigError

__all__ = ["AriaEnvSource", "AriaTomlSource", "apply_update", "load_settings"]

_RESERVED_ENV = frozenset({"ARIA_CONFIG"})  # ARIA_ variables that are not settings


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


class AriaTomlSource(TomlConfigSettingsSource):
    """The TOML file, its keys checked against the schema (``origins``: dotted key -> where it came from)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, how: str) -> None:
        self._how = how
        if not path.is_file():  # the file source skips what is not a file: read it to say why
            self._read_file(path)
        super().__init__(settings_cls, toml_file=path)
        self.origins = dict.fromkeys(_leaves(self.toml_data), f"config file {path}")
        for dotted, origin in self.origins.items():
            _check_key(dotted, origin)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        path, how = Path(file_path), self._how
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


class AriaEnvSource(PydanticBaseSettingsSource):
    """``ARIA_`` variables of ``env``: ``__`` nests, names are case-insensitive, lists and tables are JSON
    (a key inside an ``options`` table: JSON if it parses, else the string). An unknown name is an error."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.data: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        for name, raw in env.items():
            if not name.upper().startswith(ENV_PREFIX) or name.upper() in _RESERVED_ENV:
                continue
            parts = name[len(ENV_PREFIX) :].lower().split("__")
            dotted = ".".join(parts)
            source = f"environment variable {name}"
            _set_path(self.data, parts, _env_value(name, raw, parts, _check_key(dotted, source)))
            self.origins[dotted] = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.data


def _env_value(name: str, raw: str, parts: Sequence[str], info: FieldInfo | None) -> Any:
    if info is None:  # a key inside an options table: JSON if it parses, else the string
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if _submodel(info) is not None or _is_table(info) or get_origin(info.annotation) is list:
        try:
            return json.loads(raw)
        except ValueError as exc:
            dotted = ".".join(parts)
            is_list = get_origin(info.annotation) is list
            example = '\'["a", "b"]\'' if is_list else '\'{"key": "value"}\''
            raise ConfigError(
                f"{dotted}: {name} is not valid JSON ({exc})",
                key=dotted,
                fix=f"set {name}={example} (JSON), or set {_toml_name(parts)} in the TOML file",
            ) from exc
    return raw


def _build(sources: Sequence[PydanticBaseSettingsSource], origins: Mapping[str, str]) -> Settings:
    """Settings from exactly these sources (highest priority first), merged by pydantic-settings."""
    try:
        # _build_sources: pydantic-settings' own merge over these sources (unknown to the mypy plugin)
        return Settings(_build_sources=(tuple(sources), {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        raise _translate(exc, origins) from exc


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
    # Read (and checked) lowest first, so a problem in the file is reported before one in the environment.
    sources: list[PydanticBaseSettingsSource] = [
        InitSettingsSource(Settings, {"data_dir": default_data_dir(env)})
    ]
    origins: dict[str, str] = {}
    how = "passed as config_file"
    if config_file is None:
        var = next((k for k in env if k.upper() == "ARIA_CONFIG"), None)
        if var is not None and env[var]:
            config_file, how = env[var], f"from {var}"
    if config_file is not None:
        file_source = AriaTomlSource(Settings, Path(config_file).expanduser(), how)
        sources.append(file_source)
        origins.update(file_source.origins)
    env_source = AriaEnvSource(Settings, env)
    sources.append(env_source)
    origins.update(env_source.origins)
    given: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _check_key(dotted, "override")
        _set_path(given, dotted.split("."), value)
        origins[dotted] = "override"
    sources.append(InitSettingsSource(Settings, given))
    return _build(sources[::-1], origins)  # highest priority first


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
    return _build([InitSettingsSource(Settings, data)], dict.fromkeys(updates, "update"))
