"""``docs/realtime.md`` cannot drift from the Realtime models (like ``docs/protocol.md`` and its test).

* every client event of :data:`~aria.server.realtime.events.ClientEvent` and every server event of
  :data:`~aria.server.realtime.server_events.SERVER_EVENTS` has its section, and every section is one;
* a client section's table lists exactly the event's fields (nested as ``a.b``, lists of objects as
  ``a[].b``), each ``yes`` or ``not yet``, and the ``not yet`` rows are exactly the fields Aria refuses
  (:data:`~aria.server.realtime.events.NOT_YET`); a server section's table lists exactly its fields;
* each section has a JSON example of its own event: client examples validate against Aria's models,
  server examples against the official SDK's GA types (and Aria's own);
* the error table lists exactly :data:`~aria.server.realtime.protocol.ERROR_CODES`, and every code the
  package sends is among them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel, TypeAdapter

from aria.server.realtime.events import NOT_YET, ClientEvent
from aria.server.realtime.protocol import ERROR_CODES
from aria.server.realtime.server_events import SERVER_EVENTS
from tests.server.test_realtime_ga import ga_event

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "realtime.md"
TEXT = DOC.read_text(encoding="utf-8")
CLIENT: TypeAdapter[Any] = TypeAdapter(ClientEvent)
CLIENT_MODELS = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(get_args(ClientEvent)[0])
}
SERVER_MODELS = {m.model_fields["type"].default: m for m in SERVER_EVENTS}
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)$")


def chapters() -> dict[str, str]:
    """``## `` title -> its text (fenced blocks do not start chapters)."""
    found: dict[str, str] = {}
    title, in_fence = "", False
    for line in TEXT.splitlines(keepends=True):
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("## "):
            title = line[3:].strip()
            found[title] = ""
        elif title:
            found[title] += line
    return found


def sections(chapter: str) -> dict[str, str]:
    """``### `type` `` -> its text, within one chapter."""
    found: dict[str, str] = {}
    current, in_fence = None, False
    for line in chapters()[chapter].splitlines(keepends=True):
        if line.startswith("```"):
            in_fence = not in_fence
        match = re.match(r"^### `([\w.]+)`\s*$", line) if not in_fence else None
        if match:
            assert match.group(1) not in found, f"{match.group(1)} is documented twice"
            current = match.group(1)
            found[current] = ""
        elif current is not None:
            found[current] += line
    return found


def table(text: str) -> dict[str, list[str]]:
    """The first table's rows: backticked first cell -> the other cells."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")[:-1]]
        elif rows and not line.startswith("|"):
            break
    return rows


def examples(text: str) -> list[Any]:
    return [json.loads(body) for body in re.findall(r"^```json\n(.*?)^```", text, re.M | re.S)]


def _models(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    found: list[type[BaseModel]] = []
    in_list, stack = False, [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
            continue
        if get_origin(current) is list:
            in_list = True
        if get_origin(current) is not None:
            stack.extend(get_args(current))
    return found, in_list


def field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, info in model.model_fields.items():
        inner, in_list = _models(info.annotation)
        paths.add(prefix + name)
        for sub in inner:
            paths |= field_paths(sub, prefix + name + ("[]." if in_list else "."))
    return paths


CLIENT_SECTIONS = sections("Client events")
SERVER_SECTIONS = sections("Server events")


def test_every_event_has_a_section_and_nothing_else() -> None:
    assert set(CLIENT_SECTIONS) == set(CLIENT_MODELS)
    assert set(SERVER_SECTIONS) == set(SERVER_MODELS)


@pytest.mark.parametrize("kind", sorted(CLIENT_MODELS))
def test_a_client_table_lists_exactly_the_fields_and_what_is_not_yet(kind: str) -> None:
    rows = table(CLIENT_SECTIONS[kind])
    expected = field_paths(CLIENT_MODELS[kind])
    assert set(rows) == expected, (
        f"undocumented {sorted(expected - set(rows))}, unknown {sorted(set(rows) - expected)}"
    )
    statuses = {path: cells[0] for path, cells in rows.items()}
    assert set(statuses.values()) <= {"yes", "not yet"}
    assert {p for p, s in statuses.items() if s == "not yet"} == expected & NOT_YET


def test_the_not_yet_rows_are_exactly_the_refused_fields() -> None:
    documented = {
        path
        for text in CLIENT_SECTIONS.values()
        for path, cells in table(text).items()
        if cells[0] == "not yet"
    }
    assert documented == NOT_YET


@pytest.mark.parametrize("kind", sorted(SERVER_MODELS))
def test_a_server_table_lists_exactly_the_fields(kind: str) -> None:
    assert set(table(SERVER_SECTIONS[kind])) == set(SERVER_MODELS[kind].model_fields)


@pytest.mark.parametrize("kind", sorted(CLIENT_MODELS))
def test_each_client_event_has_a_valid_example_of_its_own(kind: str) -> None:
    found = examples(CLIENT_SECTIONS[kind])
    assert found, f"{kind} has no example"
    for example in found:
        assert CLIENT.validate_python(example).type == kind


@pytest.mark.parametrize("kind", sorted(SERVER_MODELS))
def test_each_server_event_has_a_ga_valid_example_of_its_own(kind: str) -> None:
    found = examples(SERVER_SECTIONS[kind])
    assert found, f"{kind} has no example"
    for example in found:
        assert ga_event(example).type == kind  # type: ignore[attr-defined]
        SERVER_MODELS[kind].model_validate(example)


def test_the_error_table_is_complete() -> None:
    assert set(table(chapters()["Errors"])) == ERROR_CODES
    sent = set()
    for source in (ROOT / "src" / "aria" / "server" / "realtime").glob("*.py"):
        sent |= set(re.findall(r'error\(\s*"([a-z_]+)"', source.read_text(encoding="utf-8")))
        sent |= set(re.findall(r'"code": "([a-z_]+)"', source.read_text(encoding="utf-8")))
    assert sent - {"stt_failed"} <= ERROR_CODES  # stt_failed is a transcription.failed code, not an error


@pytest.mark.parametrize(
    "topic",
    [
        "?intent=transcription",
        "Authorization: Bearer",
        "openai-insecure-api-key",
        "audio/pcmu",
        "semantic_vad",
        "audio_end_ms",
        "Pipecat",
        "LiveKit",
        "/v1/audio/transcriptions",
        "/v1/audio/speech",
        "/v1/models",
    ],
)
def test_the_connection_formats_and_clients_are_covered(topic: str) -> None:
    assert topic in TEXT


#: GA request fields Aria refuses as invalid values rather than listing them: MCP tools, a tool_choice
#: naming a function or MCP server, custom voices by id (the documented rows say so).
UNLISTED_GA = (
    "tools[].",
    "truncation.",
    "tool_choice.",
    "audio.output.voice.id",
    "prompt.",
    "tracing.",
    "reasoning.",
    "input[]",
)


def test_every_ga_session_and_response_field_is_known() -> None:
    from openai.types.realtime import (
        RealtimeResponseCreateParams,
        RealtimeSessionCreateRequest,
        RealtimeTranscriptionSessionCreateRequest,
    )

    from aria.server.realtime.events import ResponseParams, SessionConfig

    for ours, theirs in (
        (SessionConfig, (RealtimeSessionCreateRequest, RealtimeTranscriptionSessionCreateRequest)),
        (ResponseParams, (RealtimeResponseCreateParams,)),
    ):
        ga = set().union(*(field_paths(model) for model in theirs))
        missing = {p for p in ga - field_paths(ours) if not p.startswith(UNLISTED_GA)}
        missing -= {"audio.input.noise_reduction.type", "audio.input.noise_reduction.strength"}  # not yet
        assert not missing, f"GA fields Aria neither supports nor refuses by name: {sorted(missing)}"
