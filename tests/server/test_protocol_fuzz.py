"""Fuzzing the sans-I/O protocol: whatever arrives, ``receive_*`` returns an event and never raises.

Random text, random JSON values, message-shaped objects with random fields, truncated messages, random
binary frames with random tags, truncated and huge frames. Every result must be a client message model,
:class:`AudioIn`, :class:`VideoIn` or a :class:`ProtocolError` with a documented code (never
``internal_error``, which would mean a bug), and valid input must parse to what was sent.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aria.server.protocol import (
    CLIENT_MODELS,
    ERROR_CODES,
    AudioIn,
    Event,
    Limits,
    PlaybackMessage,
    ProtocolError,
    ServerProtocol,
    TextMessage,
    UpdateConfigControl,
    VideoIn,
    encode_audio,
)

LIMITS = Limits(max_audio_frame_bytes=64, max_image_bytes=128, max_text_chars=50, max_message_bytes=4096)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = ["text", "image", "control", "playback", "ping", "session", "pong", "", "TEXT"]
ACTIONS = ["interrupt", "switch_mode", "confirm_action", "update_config", "start", "stop", ""]
FIELDS = ["text", "data", "format", "action", "mode", "id", "accept", "config", "turn_id", "played_ms", "x"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages_ish = st.builds(
    lambda kind, action, fields: {
        "type": kind,
        **({"action": action} if action is not None else {}),
        **fields,
    },
    st.sampled_from(TYPES),
    st.none() | st.sampled_from(ACTIONS),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
)
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_chars = st.text(st.characters() | surrogates | st.sampled_from('{}[]":,\\'), max_size=200)


def check(event: Event) -> Event:
    if isinstance(event, ProtocolError):
        assert event.code in ERROR_CODES
        assert event.code != "internal_error", event.message
        assert isinstance(event.message, str)
        assert event.message
        event.to_message()  # always a valid error message
    else:
        assert isinstance(event, (AudioIn, VideoIn, *CLIENT_MODELS)), event
    return event


@FUZZ
@given(any_chars)
def test_random_text(text: str) -> None:
    check(ServerProtocol(LIMITS).receive_text(text))


@FUZZ
@given(any_chars)
def test_random_text_inside_a_message(text: str) -> None:
    for frame in (
        '{"type":"text","text":"' + text + '"}',
        json.dumps({"type": "text", "text": text}),
        json.dumps({"type": "ping", "id": text}, ensure_ascii=False),
    ):
        check(ServerProtocol(LIMITS).receive_text(frame))


@FUZZ
@given(json_values, st.booleans())
def test_random_json_values(value: Any, ascii_only: bool) -> None:
    check(ServerProtocol(LIMITS).receive_text(json.dumps(value, ensure_ascii=ascii_only)))


@FUZZ
@given(messages_ish)
def test_message_shaped_objects_with_random_fields(obj: dict[str, Any]) -> None:
    event = check(ServerProtocol(LIMITS).receive_text(json.dumps(obj)))
    if isinstance(event, BaseModel):
        dumped = event.model_dump()
        assert {key: dumped.get(key) for key in obj} == obj  # nothing dropped, nothing changed


@FUZZ
@given(messages_ish, st.data())
def test_truncated_messages(obj: dict[str, Any], data: st.DataObject) -> None:
    text = json.dumps(obj)
    cut = data.draw(st.integers(0, max(0, len(text) - 1)))
    event = check(ServerProtocol(LIMITS).receive_text(text[:cut]))
    assert isinstance(event, ProtocolError)


@FUZZ
@given(st.text(min_size=1, max_size=50).filter(str.strip), st.booleans())
def test_valid_text_parses_to_what_was_sent(text: str, ascii_only: bool) -> None:
    frame = json.dumps({"type": "text", "text": text}, ensure_ascii=ascii_only)
    assert ServerProtocol(LIMITS).receive_text(frame) == TextMessage(text=text)


@FUZZ
@given(st.text(max_size=20), st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_valid_playback_parses_to_what_was_sent(turn_id: str, played_ms: float) -> None:
    frame = json.dumps({"type": "playback", "turn_id": turn_id, "played_ms": played_ms})
    assert ServerProtocol(LIMITS).receive_text(frame) == PlaybackMessage(turn_id=turn_id, played_ms=played_ms)


@FUZZ
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=5))
def test_any_config_object_parses(config: dict[str, Any]) -> None:
    frame = json.dumps({"type": "control", "action": "update_config", "config": config})
    assert ServerProtocol(LIMITS).receive_text(frame) == UpdateConfigControl(config=config)


@FUZZ
@given(st.binary(max_size=300))
def test_random_binary_frames(data: bytes) -> None:
    check(ServerProtocol(LIMITS).receive_bytes(data))


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=300))
def test_random_tags(tag: int, payload: bytes) -> None:
    event = check(ServerProtocol(LIMITS).receive_bytes(bytes([tag]) + payload))
    if tag not in (1, 2):
        assert isinstance(event, ProtocolError)
        assert event.code == "unknown_frame_tag"


@FUZZ
@given(st.binary(min_size=2, max_size=64).filter(lambda b: len(b) % 2 == 0), st.data())
def test_truncated_audio_frames(pcm: bytes, data: st.DataObject) -> None:
    frame = encode_audio(pcm)
    assert ServerProtocol(LIMITS).receive_bytes(frame) == AudioIn(pcm)
    cut = data.draw(st.integers(0, len(frame) - 1))
    event = check(ServerProtocol(LIMITS).receive_bytes(frame[:cut]))
    assert isinstance(event, AudioIn) == (cut > 1 and cut % 2 == 1)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 7]), st.integers(0, 8), st.integers(0, 6 * 1024 * 1024))
def test_huge_frames(tag: int, near: int, size: int) -> None:
    proto = ServerProtocol()  # the default, real limits
    limit = proto.limits.max_audio_frame_bytes if tag == 1 else proto.limits.max_image_bytes
    for length in (size, limit - 4 + near):
        payload = (b"\xff\xd8\xff" if tag == 2 else b"") + bytes(length)
        event = check(proto.receive_bytes(bytes([tag]) + payload))
        if tag in (1, 2) and len(payload) > limit:
            assert isinstance(event, ProtocolError)
            assert event.code == "frame_too_large"


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 8 * 1024 * 1024), st.sampled_from(["x", "é", "😀", "[", "{"]))
def test_huge_text_frames(size: int, char: str) -> None:
    proto = ServerProtocol()
    text = '{"type":"text","text":"' + char * size + '"}'
    event = check(proto.receive_text(text))
    if len(text.encode()) > proto.limits.max_message_bytes:
        assert isinstance(event, ProtocolError)
        assert event.code == "message_too_large"
