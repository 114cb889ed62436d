"""Tools the model may call: the :class:`Tool` definition and the :class:`ToolRegistry`.

A tool is a name, a description and a JSON schema for its arguments (what the model sees, as a
:class:`~aria.types.ToolSpec`), a handler, and flags that say how carefully to run it.

The handler is called as ``handler(context, **arguments)`` with the arguments already validated against
the schema; it may be a plain or an ``async`` function. It returns a :class:`ToolOutput`, a string (both
the model's text and the client's data), or any JSON-serialisable value (sent to the model as JSON). It
reports a failure by raising; an :class:`~aria.errors.AriaError` message is shown to the model as it is.

Other packages add tools through the entry-point group ``aria.tools``, each entry pointing at a
:class:`Tool`, or at a zero-argument factory returning a tool or a list of tools::

    [project.entry-points."aria.tools"]
    weather = "my_package.weather:weather_tool"

Discovery imports those modules (the registry needs the tools' schemas); a plugin that fails to import,
returns something else, or reuses a taken name is skipped with a warning.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from aria.errors import InvalidInput, RegistryError
from aria.tools.schema import check_schema
from aria.types import ToolSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "NAME_PATTERN",
    "Tool",
    "ToolContext",
    "ToolHandler",
    "ToolOutput",
    "ToolRegistry",
    "no_parameters",
]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "aria.tools"

#: Tool names as the OpenAI tools format allows them (and a letter first, so they read as identifiers).
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

#: ``handler(context, **arguments)``, returning a value or an awaitable of one.
ToolHandler = Callable[..., Any]


def no_parameters() -> dict[str, Any]:
    """The schema of a tool that takes no arguments."""
    return {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a handler knows about the call: the session, the turn, and the session's memory (a dict the
    session keeps for the conversation's life; tools may read and change it)."""

    session_id: str = ""
    turn_id: str = ""
    memory: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """A handler's answer: ``content`` goes back to the model, ``data`` (JSON-safe) to the client."""

    content: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool definition. Flags:

    * ``confirm``: the user must approve each call (see :class:`~aria.tools.runner.ToolRunner`);
    * ``timeout_s``: how long the handler may run;
    * ``runs_external_program``: the handler starts processes (with
      :func:`~aria.tools.runner.run_program`); shown to users deciding whether to enable it;
    * ``enabled``: whether the model is offered the tool and may call it;
    * ``describe``: turns the arguments into the sentence a confirmation shows ("Run the shell command
      ...").
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: ToolHandler
    confirm: bool = field(default=False, kw_only=True)
    timeout_s: float = field(default=10.0, kw_only=True)
    runs_external_program: bool = field(default=False, kw_only=True)
    enabled: bool = field(default=True, kw_only=True)
    describe: Callable[[Mapping[str, Any]], str] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise InvalidInput(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter"
            )
        if not isinstance(self.description, str) or not self.description.strip():
            raise InvalidInput(f"tool {self.name!r} needs a description (the model reads it)")
        try:
            check_schema(self.parameters)
        except InvalidInput as exc:
            raise InvalidInput(f"tool {self.name!r}: {exc}") from exc
        if not callable(self.handler):
            raise InvalidInput(f"tool {self.name!r}: handler must be callable")
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or not math.isfinite(self.timeout_s)
            or self.timeout_s <= 0
        ):
            raise InvalidInput(f"tool {self.name!r}: timeout_s must be a positive number of seconds")

    @property
    def spec(self) -> ToolSpec:
        """What the model is shown."""
        return ToolSpec(self.name, self.description, self.parameters)


class ToolRegistry:
    """Tools by name. ``tools`` are registered first (origin ``"builtin"``), then, with ``discover``,
    the ``aria.tools`` entry points of installed packages."""

    def __init__(self, tools: Iterable[Tool] = (), *, discover: bool = False) -> None:
        self._tools: dict[str, Tool] = {}
        self._origins: dict[str, str] = {}
        for tool in tools:
            self.register(tool, origin="builtin")
        if discover:
            self.discover()

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def register(self, tool: Tool, *, origin: str = "code", replace: bool = False) -> None:
        if not isinstance(tool, Tool):
            raise RegistryError(f"only Tool objects can be registered, got {type(tool).__name__}")
        if tool.name in self._tools and not replace:
            raise RegistryError(f"tool {tool.name!r} is already registered (from {self._origins[tool.name]})")
        self._tools[tool.name] = tool
        self._origins[tool.name] = origin

    def unregister(self, name: str) -> Tool:
        tool = self.get(name)
        del self._tools[name], self._origins[name]
        return tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._tools, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RegistryError(
                f"unknown tool {name!r}{hint} (known: {', '.join(self.names()) or 'none'})"
            ) from None

    def origin(self, name: str) -> str:
        """Where the tool came from: ``"builtin"``, ``"code"`` or ``"entry point NAME of PACKAGE"``."""
        self.get(name)
        return self._origins[name]

    def set_enabled(self, name: str, enabled: bool = True) -> Tool:
        """Turn a tool on or off (configuration does this, e.g. for ``shell``); returns the new tool."""
        tool = replace(self.get(name), enabled=enabled)
        self._tools[name] = tool
        return tool

    def names(self, *, enabled_only: bool = False) -> list[str]:
        return sorted(n for n, t in self._tools.items() if t.enabled or not enabled_only)

    def tools(self, *, enabled_only: bool = False) -> tuple[Tool, ...]:
        return tuple(self._tools[n] for n in self.names(enabled_only=enabled_only))

    def specs(self, enabled_only: bool = True) -> tuple[ToolSpec, ...]:
        """The tools to offer the model (``LLMRequest.tools``), sorted by name."""
        return tuple(tool.spec for tool in self.tools(enabled_only=enabled_only))

    def discover(self) -> int:
        """Add tools from installed packages' ``aria.tools`` entry points. Returns how many."""
        found = 0
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = f"entry point {ep.name} of {ep.dist.name if ep.dist else 'unknown package'}"
            try:
                tools = _tools_of(ep.load())
            except Exception as exc:  # a broken plugin must not stop Aria
                log.warning(
                    "ignoring tool plugin %s (%s): %s: %s", ep.name, ep.value, type(exc).__name__, exc
                )
                continue
            for tool in tools:
                try:
                    self.register(tool, origin=origin)
                except RegistryError as exc:
                    log.warning("ignoring tool %s from plugin %s: %s", tool.name, ep.name, exc)
                else:
                    found += 1
        return found


def _tools_of(target: Any) -> list[Tool]:
    """An entry point's object as tools: a tool, or what a zero-argument factory returns."""
    if isinstance(target, Tool):
        return [target]
    if not callable(target):
        raise RegistryError(f"expected a Tool or a factory, got {type(target).__name__}")
    made = target()
    items = list(made) if isinstance(made, list | tuple) else [made]
    wrong = [type(item).__name__ for item in items if not isinstance(item, Tool)]
    if wrong or not items:
        raise RegistryError(f"the factory must return a Tool or a list of Tools, got {wrong or 'nothing'}")
    return items
