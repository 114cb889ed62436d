"""Tool definitions, the argument schema validator, the ToolRegistry and entry-point discovery.

Plugins are real (if tiny) installed distributions: a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` in a folder put on ``sys.path``, next to the module the entry points name.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from aria.errors import InvalidInput, RegistryError
from aria.tools.registry import ENTRY_POINT_GROUP, Tool, ToolContext, ToolRegistry, no_parameters
from aria.tools.schema import SchemaIssue, check_schema, json_type, validate
from aria.types import ToolSpec


def handler(context: ToolContext, /, **arguments: Any) -> str:
    return "ok"


def make_tool(name: str = "echo", **kw: Any) -> Tool:
    parameters = kw.pop("parameters", no_parameters())
    return Tool(name, f"the {name} tool", parameters, handler, **kw)


# -- schema validation --------------------------------------------------------------------------------

STOP = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5},
        "minutes": {"type": "integer", "minimum": 0, "maximum": 60},
    },
    "required": ["name"],
    "additionalProperties": False,
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "where"},
        "units": {"type": "string", "enum": ["metric", "imperial"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "verbose": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
        "stops": {"type": "array", "items": STOP},
        "extra": {"type": "object"},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def messages(value: Any, schema: dict[str, Any] = SCHEMA) -> list[str]:
    return [str(issue) for issue in validate(value, schema)]


def test_valid_arguments_have_no_issues() -> None:
    value = {
        "city": "Oslo",
        "units": "metric",
        "days": 3,
        "ratio": 0.5,
        "verbose": True,
        "note": None,
        "stops": [{"name": "a", "minutes": 5}, {"name": "bcde"}],
        "extra": {"anything": [1, 2]},
    }
    assert validate(value, SCHEMA) == []
    assert validate({"city": "Oslo", "note": "hi"}, SCHEMA) == []


def test_a_missing_required_argument_is_named() -> None:
    assert validate({}, SCHEMA) == [SchemaIssue("city", "is required")]
    assert messages({}) == ["city: is required"]


def test_a_wrong_type_names_the_argument_and_what_came() -> None:
    assert messages({"city": 42}) == ["city: expected string, got integer 42"]
    assert messages({"city": "x", "verbose": "yes"}) == ["verbose: expected boolean, got string 'yes'"]
    assert messages({"city": "x", "note": 3}) == ["note: expected string or null, got integer 3"]
    assert messages([1], {"type": "object"}) == ["(arguments): expected object, got array [1]"]


def test_booleans_are_not_numbers_and_whole_floats_are_integers() -> None:
    assert messages({"city": "x", "days": True}) == ["days: expected integer, got boolean True"]
    assert messages({"city": "x", "ratio": False}) == ["ratio: expected number, got boolean False"]
    assert validate({"city": "x", "days": 2.0}, SCHEMA) == []
    assert messages({"city": "x", "days": 2.5}) == ["days: expected integer, got number 2.5"]
    assert validate({"city": "x", "ratio": 1}, SCHEMA) == []  # an integer is a number


def test_non_finite_numbers_are_refused() -> None:
    assert messages({"city": "x", "ratio": float("nan")}) == ["ratio: expected number, got number nan"]


def test_enum_and_bounds() -> None:
    assert messages({"city": "x", "units": "kelvin"}) == [
        "units: must be one of 'metric', 'imperial', got 'kelvin'"
    ]
    assert messages({"city": "x", "days": 0}) == ["days: must be >= 1, got 0"]
    assert messages({"city": "x", "days": 8}) == ["days: must be <= 7, got 8"]
    assert messages({"city": "x", "ratio": 1.5}) == ["ratio: must be <= 1, got 1.5"]
    assert messages({"type": "integer", "enum": [1, 2]}, {"type": "object"}) == []
    assert messages(True, {"enum": [1]}) == ["(arguments): must be one of 1, got True"]
    assert messages(1.0, {"enum": [1]}) == []


def test_string_lengths() -> None:
    schema = {"type": "string", "minLength": 2, "maxLength": 3}
    assert messages("a", schema) == ["(arguments): must be at least 2 characters long"]
    assert messages("abcd", schema) == ["(arguments): must be at most 3 characters long, got 4"]
    assert messages("abc", schema) == []


def test_unknown_arguments_are_refused_naming_the_accepted_ones() -> None:
    assert messages({"city": "x", "colour": "red"}) == [
        "colour: is not an accepted argument "
        "(accepted: city, units, days, ratio, verbose, note, stops, extra)"
    ]
    assert validate({"a": 1}, {"type": "object"}) == []  # additionalProperties defaults to true
    assert messages({"a": 1}, {"type": "object", "additionalProperties": {"type": "string"}}) == [
        "a: expected string, got integer 1"
    ]


def test_nested_paths_name_the_item() -> None:
    value = {"city": "x", "stops": [{"name": "ok"}, {"name": "toolong", "minutes": 90}, {"name": 1}]}
    assert messages(value) == [
        "stops[1].name: must be at most 5 characters long, got 7",
        "stops[1].minutes: must be <= 60, got 90",
        "stops[2].name: expected string, got integer 1",
    ]
    assert messages({"city": "x", "stops": [{}]}) == ["stops[0].name: is required"]
    assert messages([1, "a"], {"type": "array", "items": {"type": "integer"}}) == [
        "[1]: expected integer, got string 'a'"
    ]


def test_every_issue_is_reported() -> None:
    assert messages({"days": 99, "units": "x"}) == [
        "city: is required",
        "days: must be <= 7, got 99",
        "units: must be one of 'metric', 'imperial', got 'x'",
    ]


def test_json_type_names() -> None:
    values: list[Any] = [None, True, 3, 3.0, 3.5, "s", {}, []]
    assert [json_type(v) for v in values] == [
        "null",
        "boolean",
        "integer",
        "integer",
        "number",
        "string",
        "object",
        "array",
    ]


def test_check_schema_accepts_the_subset_and_annotations() -> None:
    check_schema(SCHEMA)
    check_schema({"type": "object", "title": "t", "properties": {"d": {"type": "string", "format": "date"}}})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string"}, 'must be a JSON schema with "type": "object"'),
        ([], 'must be a JSON schema with "type": "object"'),
        (
            {"type": "object", "properties": {"a": {"pattern": "x"}}},
            "unsupported JSON-schema keyword 'pattern'",
        ),
        ({"type": "object", "oneOf": []}, "unsupported JSON-schema keyword 'oneOf' at parameters"),
        ({"type": "object", "properties": {"a": {"type": "date"}}}, "parameters.properties.a.type must be"),
        ({"type": "object", "properties": {"a": {"enum": []}}}, "enum must be a non-empty list"),
        ({"type": "object", "properties": {"a": {"minimum": "1"}}}, "minimum must be a number"),
        ({"type": "object", "properties": {"a": {"maxLength": -1}}}, "maxLength must be a non-negative"),
        ({"type": "object", "properties": []}, "properties must be an object"),
        ({"type": "object", "required": "a"}, "required must be a list"),
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required names ['b'] that are not"),
        ({"type": "object", "additionalProperties": {"type": "blob"}}, "additionalProperties.type must be"),
        (
            {"type": "object", "properties": {"a": {"type": "array", "items": 3}}},
            "items must be a JSON-schema",
        ),
    ],
)
def test_check_schema_refuses_what_it_cannot_enforce(schema: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_schema(schema)
    assert message in str(info.value)


# -- Tool ---------------------------------------------------------------------------------------------


def test_tool_defaults_and_spec() -> None:
    tool = make_tool()
    assert (tool.confirm, tool.timeout_s, tool.runs_external_program, tool.enabled) == (
        False,
        10.0,
        False,
        True,
    )
    assert tool.describe is None
    assert tool.spec == ToolSpec("echo", "the echo tool", no_parameters())


@pytest.mark.parametrize("name", ["", "1abc", "has space", "dot.ted", "x" * 65, "é"])
def test_bad_tool_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="must be 1-64 letters, digits"):
        make_tool(name)


@pytest.mark.parametrize("name", ["a", "get_weather", "web-search", "Camel2", "x" * 64])
def test_good_tool_names(name: str) -> None:
    assert make_tool(name).name == name


def test_a_tool_needs_a_description_a_callable_and_a_positive_timeout() -> None:
    with pytest.raises(InvalidInput, match="needs a description"):
        Tool("t", "  ", no_parameters(), handler)
    with pytest.raises(InvalidInput, match="handler must be callable"):
        Tool("t", "d", no_parameters(), "not callable")  # type: ignore[arg-type]
    for bad in (0, -1, float("inf"), float("nan"), True):
        with pytest.raises(InvalidInput, match="timeout_s must be a positive number"):
            make_tool(timeout_s=bad)


def test_a_bad_schema_names_the_tool() -> None:
    with pytest.raises(InvalidInput, match=r"tool 'echo': unsupported JSON-schema keyword 'anyOf'"):
        make_tool(parameters={"type": "object", "anyOf": []})


# -- ToolRegistry -------------------------------------------------------------------------------------


def test_register_get_and_names() -> None:
    registry = ToolRegistry([make_tool("b"), make_tool("a")])
    registry.register(make_tool("c", enabled=False), origin="test")
    assert registry.names() == ["a", "b", "c"]
    assert registry.names(enabled_only=True) == ["a", "b"]
    assert len(registry) == 3
    assert "a" in registry
    assert "zzz" not in registry
    assert registry.get("c").enabled is False
    assert (registry.origin("a"), registry.origin("c")) == ("builtin", "test")
    assert [t.name for t in registry.tools()] == ["a", "b", "c"]


def test_specs_offer_enabled_tools_sorted() -> None:
    registry = ToolRegistry([make_tool("b"), make_tool("a"), make_tool("off", enabled=False)])
    assert [s.name for s in registry.specs()] == ["a", "b"]
    assert [s.name for s in registry.specs(enabled_only=False)] == ["a", "b", "off"]
    assert all(isinstance(s, ToolSpec) for s in registry.specs())


def test_duplicates_are_refused_unless_replacing() -> None:
    registry = ToolRegistry([make_tool("a")])
    with pytest.raises(RegistryError, match=r"tool 'a' is already registered \(from builtin\)"):
        registry.register(make_tool("a"))
    replacement = make_tool("a", timeout_s=3)
    registry.register(replacement, origin="config", replace=True)
    assert registry.get("a") is replacement
    assert registry.origin("a") == "config"


def test_only_tools_can_be_registered() -> None:
    with pytest.raises(RegistryError, match="only Tool objects can be registered, got dict"):
        ToolRegistry().register({"name": "x"})  # type: ignore[arg-type]


def test_unknown_tools_suggest_the_closest_name() -> None:
    registry = ToolRegistry([make_tool("calculator"), make_tool("recall")])
    with pytest.raises(RegistryError) as info:
        registry.get("calculater")
    assert (
        str(info.value) == "unknown tool 'calculater'; did you mean 'calculator'? (known: calculator, recall)"
    )
    with pytest.raises(RegistryError, match=r"unknown tool 'x' \(known: none\)"):
        ToolRegistry().origin("x")


def test_set_enabled_and_unregister() -> None:
    registry = ToolRegistry([make_tool("a", enabled=False, confirm=True)])
    tool = registry.set_enabled("a")
    assert tool.enabled
    assert tool.confirm
    assert registry.get("a") is tool
    off = registry.set_enabled("a", False)
    assert off.enabled is False
    assert registry.unregister("a") is off
    assert "a" not in registry
    with pytest.raises(RegistryError):
        registry.unregister("a")


# -- entry-point discovery ----------------------------------------------------------------------------

PLUGIN_MODULE = """
from aria.tools.registry import Tool, no_parameters


def _hello(context, /):
    return "hello from a plugin"


def _tool(name):
    return Tool(name, "a plugin tool", no_parameters(), _hello)


weather = _tool("weather")
calculator = _tool("calculator")  # takes a built-in's name


def make_many():
    return [_tool("news"), _tool("stocks")]


def make_one():
    return _tool("jokes")


def make_nothing():
    return []


def make_junk():
    return ["not a tool"]


def crash():
    raise RuntimeError("plugin exploded")


NOT_A_TOOL = 42
"""


def install_plugin(root: Path, entry_points: str, *, dist: str = "mytools") -> None:
    """A minimal installed distribution in ``root``, as pip would leave it in site-packages."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (root / "mytools_mod.py").write_text(PLUGIN_MODULE)


class Site(NamedTuple):
    root: Path
    #: How many tool plugins this machine really has installed (counted before ours exist).
    baseline: int


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """An empty site-packages-like folder on ``sys.path``; the plugin module is forgotten afterwards."""
    baseline = ToolRegistry().discover()
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "mytools_mod", raising=False)
    yield Site(root, baseline)
    sys.modules.pop("mytools_mod", None)


def test_a_tool_object_and_factories_are_discovered(plugin_site: Site) -> None:
    install_plugin(
        plugin_site.root,
        f"""
        [{ENTRY_POINT_GROUP}]
        weather = mytools_mod:weather
        many = mytools_mod:make_many
        one = mytools_mod:make_one

        [console_scripts]
        mytools = mytools_mod:main
        """,
    )
    registry = ToolRegistry([make_tool("calculator")])
    assert registry.discover() == plugin_site.baseline + 4
    assert {"weather", "news", "stocks", "jokes", "calculator"} <= set(registry.names())
    assert "mytools" not in registry
    assert registry.origin("weather") == "entry point weather of mytools"
    assert registry.origin("news") == "entry point many of mytools"
    assert registry.get("weather").spec.description == "a plugin tool"


def test_discover_at_construction(plugin_site: Site) -> None:
    install_plugin(plugin_site.root, f"[{ENTRY_POINT_GROUP}]\nweather = mytools_mod:weather\n")
    assert "weather" not in ToolRegistry()
    assert "weather" in ToolRegistry(discover=True)


def test_bad_plugins_are_skipped_with_a_warning(plugin_site: Site, caplog: pytest.LogCaptureFixture) -> None:
    install_plugin(
        plugin_site.root,
        f"""
        [{ENTRY_POINT_GROUP}]
        hijack = mytools_mod:calculator
        missing = mytools_missing_module:tool
        crash = mytools_mod:crash
        number = mytools_mod:NOT_A_TOOL
        nothing = mytools_mod:make_nothing
        junk = mytools_mod:make_junk
        weather = mytools_mod:weather
        """,
    )
    builtin = make_tool("calculator")
    registry = ToolRegistry([builtin])
    with caplog.at_level(logging.WARNING, logger="aria.tools.registry"):
        found = registry.discover()

    assert found == plugin_site.baseline + 1
    assert registry.get("calculator") is builtin  # not hijacked
    assert registry.origin("calculator") == "builtin"
    assert "weather" in registry
    warnings = [r.getMessage() for r in caplog.records if r.name == "aria.tools.registry"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "aria.tools.registry")

    def warned(start: str, part: str) -> bool:
        return any(m.startswith(start) and part in m for m in warnings)

    assert warned("ignoring tool calculator from plugin hijack:", "already registered"), warnings
    assert warned("ignoring tool plugin missing (mytools_missing_module:tool):", "ModuleNotFoundError"), (
        warnings
    )
    assert warned("ignoring tool plugin crash", "RuntimeError: plugin exploded"), warnings
    assert warned("ignoring tool plugin number", "expected a Tool or a factory, got int"), warnings
    assert warned("ignoring tool plugin nothing", "got nothing"), warnings
    assert warned("ignoring tool plugin junk", "got ['str']"), warnings
