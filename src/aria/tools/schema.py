"""A small JSON-schema validator for tool arguments (no ``jsonschema`` dependency).

It covers the subset tool parameters use:

* ``type``: ``object``, ``string``, ``number``, ``integer``, ``boolean``, ``array``, ``null``, or a list of
  them; ``enum``;
* objects: ``properties``, ``required``, ``additionalProperties`` (``false``, ``true`` or a schema);
* strings: ``minLength``, ``maxLength``; numbers: ``minimum``, ``maximum``; arrays: ``items``;
* annotations that are accepted and ignored: ``description``, ``title``, ``default``, ``examples``,
  ``format``.

:func:`check_schema` refuses any other keyword when a tool is defined, so a schema never *looks* stricter
than what is enforced. :func:`validate` returns every problem found, each naming the argument's path
(``city``, ``stops[2].name``).

As in JSON, booleans are not numbers, ``1.0`` is an integer, and NaN and infinities are not numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aria.errors import InvalidInput

__all__ = ["ANNOTATIONS", "KEYWORDS", "TYPES", "SchemaIssue", "check_schema", "json_type", "validate"]

TYPES = frozenset({"object", "string", "number", "integer", "boolean", "array", "null"})
#: Keywords that are enforced.
KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "items",
    }
)
#: Keywords that are accepted and not enforced (they carry no constraint).
ANNOTATIONS = frozenset({"description", "title", "default", "examples", "format", "$schema"})

#: What an argument path is called when the problem is with the arguments object as a whole.
ROOT = "(arguments)"


@dataclass(frozen=True, slots=True)
class SchemaIssue:
    """One way an argument breaks the schema: where (``stops[2].name``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def json_type(value: Any) -> str:
    """The JSON type name of a parsed JSON value (``integer`` for whole numbers, ``number`` otherwise)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "array"
    return type(value).__name__


def _matches(value: Any, expected: str) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    actual = json_type(value)
    return actual == expected or (expected == "number" and actual == "integer")


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{'' if path == ROOT else path}[{key}]"
    return key if path == ROOT else f"{path}.{key}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def validate(value: Any, schema: Mapping[str, Any], path: str = ROOT) -> list[SchemaIssue]:
    """Every way ``value`` (parsed JSON) breaks ``schema``; empty when it is valid."""
    issues: list[SchemaIssue] = []
    expected = schema.get("type")
    if expected is not None:
        allowed = [expected] if isinstance(expected, str) else list(expected)
        if not any(_matches(value, t) for t in allowed):
            wanted = " or ".join(allowed)
            issues.append(SchemaIssue(path, f"expected {wanted}, got {json_type(value)} {_show(value)}"))
            return issues  # the other checks would only repeat the mistake
    if "enum" in schema and not any(_same(value, choice) for choice in schema["enum"]):
        choices = ", ".join(_show(c) for c in schema["enum"])
        issues.append(SchemaIssue(path, f"must be one of {choices}, got {_show(value)}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            issues.append(SchemaIssue(path, f"must be at least {schema['minLength']} characters long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            issues.append(
                SchemaIssue(path, f"must be at most {schema['maxLength']} characters long, got {len(value)}")
            )
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            issues.append(SchemaIssue(path, f"must be >= {schema['minimum']}, got {_show(value)}"))
        if "maximum" in schema and value > schema["maximum"]:
            issues.append(SchemaIssue(path, f"must be <= {schema['maximum']}, got {_show(value)}"))
    elif isinstance(value, Mapping):
        issues += _validate_object(value, schema, path)
    elif isinstance(value, Sequence) and "items" in schema:
        for index, item in enumerate(value):
            issues += validate(item, schema["items"], _child(path, index))
    return issues


def _validate_object(value: Mapping[str, Any], schema: Mapping[str, Any], path: str) -> list[SchemaIssue]:
    issues: list[SchemaIssue] = []
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            issues.append(SchemaIssue(_child(path, name), "is required"))
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            issues += validate(item, properties[name], _child(path, name))
        elif extra is False:
            known = ", ".join(properties) or "none"
            issues.append(SchemaIssue(_child(path, name), f"is not an accepted argument (accepted: {known})"))
        elif isinstance(extra, Mapping):
            issues += validate(item, extra, _child(path, name))
    return issues


def _same(value: Any, choice: Any) -> bool:
    """JSON equality: ``1 == 1.0`` but ``True != 1``."""
    if isinstance(value, bool) or isinstance(choice, bool):
        return type(value) is type(choice) and value == choice
    return bool(value == choice)


# -- checking a tool's own schema -----------------------------------------------------------------------


def check_schema(schema: Any, path: str = "parameters") -> None:
    """Refuse a schema this validator cannot enforce; the root of a tool's parameters must be an object.

    Raises :class:`~aria.errors.InvalidInput` naming the keyword and where it is.
    """
    if path == "parameters" and (not isinstance(schema, Mapping) or schema.get("type") != "object"):
        raise InvalidInput('tool parameters must be a JSON schema with "type": "object"')
    _check(schema, path)


def _check(schema: Any, path: str) -> None:
    if not isinstance(schema, Mapping):
        raise InvalidInput(f"{path} must be a JSON-schema object, got {type(schema).__name__}")
    for key in schema:
        if key not in KEYWORDS and key not in ANNOTATIONS:
            supported = ", ".join(sorted(KEYWORDS))
            raise InvalidInput(f"unsupported JSON-schema keyword {key!r} at {path} (supported: {supported})")
    if "type" in schema:
        kinds = schema["type"]
        names = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(names, list) or not names or any(n not in TYPES for n in names):
            raise InvalidInput(
                f"{path}.type must be one of {', '.join(sorted(TYPES))} (or a list), got {kinds!r}"
            )
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise InvalidInput(f"{path}.enum must be a non-empty list")
    for key in ("minimum", "maximum"):
        if key in schema and (isinstance(schema[key], bool) or not isinstance(schema[key], int | float)):
            raise InvalidInput(f"{path}.{key} must be a number")
    for key in ("minLength", "maxLength"):
        if key in schema and (
            isinstance(schema[key], bool) or not isinstance(schema[key], int) or schema[key] < 0
        ):
            raise InvalidInput(f"{path}.{key} must be a non-negative integer")
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise InvalidInput(f"{path}.properties must be an object")
    for name, sub in properties.items():
        _check(sub, f"{path}.properties.{name}")
    required = schema.get("required", [])
    if not isinstance(required, list) or any(not isinstance(n, str) for n in required):
        raise InvalidInput(f"{path}.required must be a list of property names")
    unknown = [n for n in required if n not in properties]
    if unknown and "properties" in schema:
        raise InvalidInput(f"{path}.required names {unknown} that are not in {path}.properties")
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        _check(extra, f"{path}.additionalProperties")
    if "items" in schema:
        _check(schema["items"], f"{path}.items")
