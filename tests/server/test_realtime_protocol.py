"""The Realtime protocol state machine without sockets: JSON in, GA events (SDK-checked) and actions out."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from aria.server.realtime import protocol as p
from aria.server.realtime.events import NOT_YET
from aria.server.realtime.state import Spoken
from aria.types import WordMark
from tests.server.test_realtime_ga import ga_event


class Driver:
    def __init__(self, **kw: Any) -> None:
        self.protocol = p.RealtimeProtocol(model="gpt-realtime", voices=("en-us", "en-gb"), **kw)
        self.events: list[dict[str, Any]] = []
        self.actions: list[Any] = []
        self.take(self.protocol.created())

    def take(self, out: list[Any]) -> list[Any]:
        for item in out:
            if isinstance(item, dict):
                ga_event(item)
                self.events.append(item)
            else:
                self.actions.append(item)
        return out

    def send(self, event: dict[str, Any] | str) -> list[Any]:
        return self.take(self.protocol.receive(event if isinstance(event, str) else json.dumps(event)))

    def types(self, out: list[Any]) -> list[str]:
        return [o["type"] if isinstance(o, dict) else type(o).__name__ for o in out]

    def error(self, event: dict[str, Any] | str) -> dict[str, Any]:
        out = self.send(event)
        assert self.types(out) == ["error"], out
        error: dict[str, Any] = out[0]["error"]
        return error


def user_text(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def test_session_created_echoes_the_model_and_ga_defaults() -> None:
    d = Driver()
    session = d.events[0]["session"]
    assert d.events[0]["type"] == "session.created"
    assert session["model"] == "gpt-realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["output_modalities"] == ["audio"]


def test_a_text_turn_with_audio_comes_in_the_ga_order() -> None:
    d = Driver()
    assert d.types(d.send(user_text("hello"))) == [
        "conversation.item.added",
        "conversation.item.done",
        "AddItem",
    ]
    out = d.send({"type": "response.create", "event_id": "client_1"})
    assert d.types(out) == ["response.created", "rate_limits.updated", "Respond"]
    respond = out[-1]
    assert respond.modalities == ("audio",)
    assert respond.output_format == "audio/pcm"
    proto = d.protocol
    out = d.take(proto.answers.transcript("Hi there."))
    out += d.take(proto.answers.audio(base64.b64encode(b"\0\0" * 2400).decode(), 0.1))
    proto.answers.spoken(Spoken("Hi there.", 0.0, 0.1))
    out += d.take(proto.answers.finish("completed"))
    assert d.types(out) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = out[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": "Hi there."}]
    ids = {o.get("item_id") for o in out if "item_id" in o}
    assert len(ids) == 1  # one item, named the same in every event
    assert len({e["event_id"] for e in d.events}) == len(d.events)


def test_a_text_response_uses_output_text() -> None:
    d = Driver()
    d.send(user_text("hello"))
    d.send({"type": "response.create", "response": {"output_modalities": ["text"], "instructions": "terse"}})
    respond = d.actions[-1]
    assert respond.modalities == ("text",)
    assert respond.instructions == "terse"
    out = d.take(d.protocol.answers.text("Hi")) + d.take(d.protocol.answers.text("!"))
    out += d.take(d.protocol.answers.finish())
    assert [e["type"] for e in out if "text" in e["type"]] == [
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
    ]
    assert out[-1]["response"]["output"][0]["content"] == [{"type": "output_text", "text": "Hi!"}]


def test_a_second_response_while_one_runs_is_refused() -> None:
    d = Driver()
    d.send({"type": "response.create"})
    error = d.error({"type": "response.create", "event_id": "again"})
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == "again"


def test_cancel_closes_the_open_item_as_incomplete() -> None:
    d = Driver()
    d.send({"type": "response.create"})
    d.take(d.protocol.answers.transcript("Half"))
    out = d.send({"type": "response.cancel"})
    assert d.types(out) == ["Cancel"]
    assert out[0].reason == "client_cancelled"
    done = d.take(d.protocol.answers.finish("cancelled", reason="client_cancelled"))
    response = done[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"] == {"type": "cancelled", "reason": "client_cancelled", "error": None}
    assert response["output"][0]["status"] == "incomplete"
    assert d.error({"type": "response.cancel"})["code"] == "response_cancel_not_active"


def test_a_function_call_item_and_its_output() -> None:
    d = Driver()
    d.send({"type": "session.update", "session": {"tools": [{"type": "function", "name": "get_weather"}]}})
    d.send({"type": "response.create"})
    assert d.actions[-1].tools == ({"type": "function", "name": "get_weather"},)
    out = d.take(d.protocol.answers.function_call("call_1", "get_weather", '{"city":"Paris"}'))
    out += d.take(d.protocol.answers.finish())
    assert d.types(out) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    output = {"type": "function_call_output", "call_id": "call_1", "output": '{"sky":"clear"}'}
    d.send({"type": "conversation.item.create", "item": output})
    messages, _system = d.protocol.conversation.messages()
    assert [m.role for m in messages] == ["assistant", "tool"]
    assert messages[0].metadata["tool_calls"][0].name == "get_weather"
    assert messages[1].metadata == {"tool_call_id": "call_1", "name": "get_weather"}


def test_truncate_keeps_the_words_heard() -> None:
    d = Driver()
    d.send({"type": "response.create"})
    answers = d.protocol.answers
    d.take(answers.transcript("One two three four."))
    d.take(answers.audio("AAAA", 1.0))
    marks = tuple(
        WordMark(w, i * 0.25, i * 0.25 + 0.2) for i, w in enumerate(["One", "two", "three", "four."])
    )
    answers.spoken(Spoken("One two three four.", 0.0, 1.0, marks))
    item_id = d.take(answers.finish())[-1]["response"]["output"][0]["id"]
    out = d.send(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 400}
    )
    assert out[0] == {
        **out[0],
        "type": "conversation.item.truncated",
        "audio_end_ms": 400,
        "item_id": item_id,
    }
    retrieved = d.send({"type": "conversation.item.retrieve", "item_id": item_id})[0]["item"]
    assert retrieved["content"][0]["transcript"] == "One two"
    assert retrieved["status"] == "incomplete"
    messages, _ = d.protocol.conversation.messages()
    assert messages[-1].content == "One two"
    assert messages[-1].interrupted
    error = d.error(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 5000}
    )
    assert error["param"] == "audio_end_ms"


def test_items_are_placed_retrieved_and_deleted() -> None:
    d = Driver()
    d.send({**user_text("first"), "item": {**user_text("first")["item"], "id": "item_a"}})
    out = d.send({**user_text("zeroth"), "previous_item_id": "root"})
    assert out[0]["previous_item_id"] is None
    assert [i.id for i in d.protocol.conversation.items][1] == "item_a"
    assert (
        d.send({"type": "conversation.item.delete", "item_id": "item_a"})[0]["type"]
        == "conversation.item.deleted"
    )
    assert d.error({"type": "conversation.item.retrieve", "item_id": "item_a"})["param"] == "item_id"
    assert d.error({**user_text("x"), "previous_item_id": "nope"})["param"] == "previous_item_id"


def test_audio_is_decoded_to_16k_and_commit_needs_audio() -> None:
    d = Driver()
    d.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
    assert d.error({"type": "input_audio_buffer.commit"})["code"] == "input_audio_buffer_commit_empty"
    pcm = (np.sin(np.arange(2400) / 5) * 8000).astype("<i2").tobytes()  # 100 ms at 24 kHz
    out = d.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
    assert isinstance(out[0], p.AudioIn)
    assert abs(out[0].samples.size - 1600) <= 200
    out = d.send({"type": "input_audio_buffer.commit"})
    assert d.types(out) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "Commit",
    ]
    assert out[1]["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    assert d.take(d.protocol.transcribed(out[-1].item_id, "hello", 0.1)) == []  # transcription is off
    assert d.protocol.conversation.messages()[0][0].content == "hello"


def test_pcmu_input_is_8k_g711() -> None:
    d = Driver()
    d.send({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}})
    heard = 0
    for _ in range(10):  # 100 ms of 8 kHz each, heard at 16 kHz (soxr holds up to about 100 ms)
        out = d.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\xff" * 800).decode()})
        heard += out[0].samples.size
    assert 16000 - 1800 <= heard <= 16000
    assert d.protocol.buffered_ms == 1000


def test_transcripts_are_sent_when_transcription_is_on() -> None:
    d = Driver()
    d.send(
        {"type": "session.update", "session": {"audio": {"input": {"transcription": {"model": "whisper-1"}}}}}
    )
    d.take(d.protocol.speech_started(100))
    d.take(d.protocol.speech_stopped(900))
    commit = d.take(d.protocol.commit())
    out = d.take(d.protocol.transcribed(commit[-1].item_id, "what time is it", 0.8))
    assert d.types(out) == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    item_ids = {e.get("item_id") or e.get("item", {}).get("id") for e in d.events[-7:]}
    assert item_ids == {commit[-1].item_id}  # the id announced at speech_started


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ("not json", "invalid_json", None),
        ("[1, 2]", "missing_required_parameter", "type"),
        ({"type": "nope"}, "unknown_event", "type"),
        ({"type": "session.update", "session": {"bogus": 1}}, "unknown_parameter", "session.bogus"),
        (
            {"type": "session.update", "session": {"tool_choice": "required"}},
            "invalid_value",
            "session.tool_choice",
        ),
        (
            {"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}},
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            {
                "type": "session.update",
                "session": {"audio": {"input": {"noise_reduction": {"type": "near_field"}}}},
            },
            "unsupported_parameter",
            "session.audio.input.noise_reduction",
        ),
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "invalid_value", "audio"),
        (
            {"type": "conversation.item.truncate", "item_id": "x"},
            "missing_required_parameter",
            "content_index",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "output_text", "text": "x"}],
                },
            },
            "invalid_value",
            "item.content[0].type",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}],
                },
            },
            "invalid_value",
            None,
        ),
        (
            {"type": "response.create", "response": {"conversation": "none"}},
            "unsupported_parameter",
            "response.conversation",
        ),
    ],
)
def test_malformed_events_get_a_clear_error_and_the_session_goes_on(
    event: Any, code: str, param: str | None
) -> None:
    d = Driver()
    error = d.error(event)
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"]
    assert d.types(d.send(user_text("still here"))) == [
        "conversation.item.added",
        "conversation.item.done",
        "AddItem",
    ]


def test_a_text_session_cannot_ask_for_an_audio_response() -> None:
    d = Driver()
    d.send({"type": "session.update", "session": {"output_modalities": ["text"]}})
    error = d.error({"type": "response.create", "response": {"output_modalities": ["audio"]}})
    assert error["param"] == "response.output_modalities"


def test_the_not_yet_fields_are_known() -> None:
    assert {"session.audio.input.noise_reduction", "session.prompt", "response.conversation"} <= NOT_YET


def test_session_update_merges_and_voices_follow_the_engine() -> None:
    d = Driver()
    out = d.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"output": {"voice": "en-gb", "speed": 1.2}}},
        }
    )
    assert d.types(out) == ["session.updated", "Configure"]
    session = out[0]["session"]
    assert session["audio"]["output"]["voice"] == "en-gb"
    assert session["audio"]["output"]["speed"] == 1.2
    assert session["audio"]["input"]["format"]["type"] == "audio/pcm"  # untouched parts stay
    assert d.protocol.session.voice == "en-gb"
    d.send({"type": "session.update", "session": {"audio": {"output": {"voice": "marin"}}}})
    assert d.protocol.session.voice is None  # an OpenAI voice: Aria's default voice speaks
    d.send(
        {
            "type": "session.update",
            "session": {
                "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}
            },
        }
    )
    assert d.protocol.session.turn_detection == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }
    assert (
        d.error({"type": "session.update", "session": {"type": "transcription"}})["param"] == "session.type"
    )
