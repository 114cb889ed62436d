"""``docs/protocol.md`` cannot drift from the models in :mod:`aria.server.messages`.

* every message (``type``, and ``action`` for controls) has its own section, in the right direction, and
  every section is a message;
* each section's field table lists exactly the model's fields (nested objects as dotted paths,
  ``engines.*.name`` for maps), and the ``limits`` rows give the defaults;
* each section has a JSON example of its own message, and every JSON example in the document, and every
  ``→``/``←`` line of the example exchanges, validates (strictly) against the models;
* the error table lists exactly :data:`~aria.server.messages.ERROR_CODES`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel, TypeAdapter

from aria.server.messages import (
    AUDIO_TAG,
    CLIENT_MODELS,
    ERROR_CODES,
    PROTOCOL_VERSION,
    SERVER_MODELS,
    VIDEO_TAG,
    ClientMessage,
    Limits,
    ServerMessage,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
CLIENT: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
SERVER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
DIRECTIONS = {"Server → client messages": "server", "Client → server messages": "client"}
HEADING = re.compile(r"^### `(\w+)`(?: · `(\w+)`)?\s*$")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
ROW_NAME = re.compile(r"^\|\s*`([\w.*]+)`\s*\|")


@dataclass
class Section:
    level: int
    title: str
    text: str = ""
    parent: str = ""


@dataclass
class Doc:
    sections: list[Section] = field(default_factory=list)

    def messages(self) -> dict[tuple[str, str, str | None], Section]:
        """(direction, type, action) -> the section documenting that message."""
        found: dict[tuple[str, str, str | None], Section] = {}
        for section in self.sections:
            direction = DIRECTIONS.get(section.parent)
            match = HEADING.match(f"### {section.title}")
            if section.level == 3 and direction and match:
                key = (direction, match.group(1), match.group(2))
                assert key not in found, f"{key} is documented twice"
                found[key] = section
        return found

    def section(self, title: str) -> Section:
        return next(s for s in self.sections if s.title == title)


def parse(text: str) -> Doc:
    doc = Doc()
    parent = ""
    in_fence = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            in_fence = not in_fence
        heading = re.match(r"^(#{2,3}) (.+?)\s*$", line) if not in_fence else None
        if heading:
            level = len(heading.group(1))
            if level == 2:
                parent = heading.group(2)
            doc.sections.append(Section(level, heading.group(2), parent=parent if level == 3 else ""))
        elif doc.sections:
            doc.sections[-1].text += line
    return doc


def table_rows(text: str) -> dict[str, str]:
    """The first table's rows, keyed by the backticked name in the first cell."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        match = ROW_NAME.match(line)
        if match:
            rows[match.group(1)] = line
        elif rows and not line.startswith("|"):
            break
    return rows


def fenced(text: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """The model's fields, nested models as ``a.b``, maps and lists of models as ``a.*.b`` (the list
    itself also as ``a``)."""
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths |= field_paths(annotation, f"{prefix}{name}.")
        elif get_origin(annotation) is dict and _is_model(get_args(annotation)[1]):
            paths |= field_paths(get_args(annotation)[1], f"{prefix}{name}.*.")
        elif get_origin(annotation) is list and _is_model(get_args(annotation)[0]):
            paths.add(prefix + name)
            paths |= field_paths(get_args(annotation)[0], f"{prefix}{name}.*.")
        else:
            paths.add(prefix + name)
    return paths


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def key_of(model: type[BaseModel], direction: str) -> tuple[str, str, str | None]:
    action = model.model_fields.get("action")
    return (direction, str(model.model_fields["type"].default), None if action is None else action.default)


def validate(obj: Any, direction: str) -> BaseModel:
    adapter: TypeAdapter[Any] = SERVER if direction == "server" else CLIENT
    result = adapter.validate_python(obj, strict=True)
    assert isinstance(result, BaseModel)
    return result


def message_key(message: BaseModel, direction: str) -> tuple[str, str, str | None]:
    return key_of(type(message), direction)


TEXT = DOC.read_text(encoding="utf-8")
PARSED = parse(TEXT)
MESSAGES = PARSED.messages()
EXPECTED = {key_of(m, "server"): m for m in SERVER_MODELS} | {key_of(m, "client"): m for m in CLIENT_MODELS}


def test_the_parser_finds_the_sections() -> None:
    assert {"Connecting", "Binary frames", "Errors", "Pacing and playback", "Session resume"} <= {
        s.title for s in PARSED.sections if s.level == 2
    }
    assert ("client", "control", "interrupt") in MESSAGES
    assert ("server", "session", None) in MESSAGES


def test_every_message_is_documented_and_nothing_else() -> None:
    missing = sorted(str(key) for key in EXPECTED.keys() - MESSAGES.keys())
    extra = sorted(str(key) for key in MESSAGES.keys() - EXPECTED.keys())
    assert not missing, f"messages without a section in {DOC.name}: {missing}"
    assert not extra, f"sections in {DOC.name} that are no message: {extra}"


@pytest.mark.parametrize("key", sorted(EXPECTED, key=str), ids=lambda key: "-".join(filter(None, key)))
def test_the_field_table_lists_exactly_the_fields(key: tuple[str, str, str | None]) -> None:
    rows = table_rows(MESSAGES[key].text)
    expected = field_paths(EXPECTED[key])
    assert set(rows) == expected, (
        f"{key}: undocumented {sorted(expected - set(rows))}, not in the model {sorted(set(rows) - expected)}"
    )


@pytest.mark.parametrize("key", sorted(EXPECTED, key=str), ids=lambda key: "-".join(filter(None, key)))
def test_each_message_has_its_own_valid_example(key: tuple[str, str, str | None]) -> None:
    examples = fenced(MESSAGES[key].text, "json")
    assert examples, f"{key} has no JSON example"
    for example in examples:
        message = validate(json.loads(example), key[0])
        assert message_key(message, key[0]) == key


def test_every_json_example_validates() -> None:
    examples = fenced(TEXT, "json")
    assert len(examples) >= len(EXPECTED)
    for example in examples:
        obj = json.loads(example)
        errors = []
        for direction in ("client", "server"):
            try:
                validate(obj, direction)
                break
            except ValueError as exc:
                errors.append(str(exc))
        else:
            pytest.fail(f"example validates as no message: {example}\n" + "\n".join(errors))


def test_every_exchange_line_validates_in_its_direction() -> None:
    lines = [line for block in fenced(TEXT, "text") for line in block.splitlines()]
    checked = 0
    for line in lines:
        match = re.match(r"^([→←]) (\{.*\})\s*$", line)
        if match:
            validate(json.loads(match.group(2)), "client" if match.group(1) == "→" else "server")
            checked += 1
    assert checked >= 20


def test_the_limits_rows_give_the_defaults() -> None:
    rows = table_rows(MESSAGES["server", "session", None].text)
    for name, info in Limits.model_fields.items():
        assert str(info.default) in rows[f"limits.{name}"], f"limits.{name}: default {info.default} missing"


def test_the_error_table_lists_exactly_the_codes() -> None:
    codes = set(table_rows(PARSED.section("Errors").text))
    missing, unknown = sorted(ERROR_CODES - codes), sorted(codes - ERROR_CODES)
    assert codes == ERROR_CODES, f"undocumented codes {missing}, unknown codes {unknown}"


def test_the_binary_frames_and_version_are_documented() -> None:
    frames = PARSED.section("Binary frames").text
    assert f"`0x{AUDIO_TAG:02x}`" in frames
    assert f"`0x{VIDEO_TAG:02x}`" in frames
    assert f"version {PROTOCOL_VERSION}" in TEXT.splitlines()[0]


@pytest.mark.parametrize(
    "topic",
    ["Origin", "HTTP 403", "Authorization: Bearer", "?token=", "?session_id=", "300 ms", "playback"],
)
def test_the_handshake_pacing_and_resume_are_covered(topic: str) -> None:
    assert topic in TEXT
