"""The sans-I/O protocol: frames in, events out; server messages out. No sockets anywhere."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from aria.errors import (
    CircuitOpenError,
    ConfigError,
    EngineTimeout,
    EngineUnavailable,
    InvalidInput,
    RegistryError,
    StateError,
)
from aria.pipeline.outputs import (
    AudioOut,
    ErrorOut,
    MetricsOut,
    ResponseDone,
    StateOut,
    TextOut,
    TranscriptOut,
)
from aria.server import messages, protocol
from aria.server.protocol import (
    ERROR_CODES,
    AudioIn,
    ConfirmActionControl,
    EngineStatus,
    ErrorMessage,
    Event,
    ImageMessage,
    InterruptControl,
    Limits,
    MetricsMessage,
    PingMessage,
    PlaybackMessage,
    PongMessage,
    ProtocolError,
    RateLimiter,
    ResponseDoneMessage,
    ServerProtocol,
    SessionMessage,
    StartControl,
    StateMessage,
    SwitchModeControl,
    TextMessage,
    TextTokenMessage,
    TranscriptMessage,
    UpdateConfigControl,
    VideoIn,
    decode,
    encode,
    encode_audio,
    error_from_exception,
    from_output,
    session_message,
)
from aria.types import AudioChunk

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(20)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def receive(obj: Any, proto: ServerProtocol | None = None) -> Event:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return (proto or ServerProtocol()).receive_text(text)


def error_of(event: Event) -> ProtocolError:
    assert isinstance(event, ProtocolError), f"expected an error, got {event!r}"
    assert event.code in ERROR_CODES
    assert event.message
    return event


# --- every client message parses ---------------------------------------------------------------------

VALID: list[tuple[dict[str, Any], BaseModel]] = [
    ({"type": "text", "text": "hello"}, TextMessage(text="hello")),
    ({"type": "control", "action": "interrupt"}, InterruptControl()),
    (
        {"type": "control", "action": "switch_mode", "mode": "voice_chat"},
        SwitchModeControl(mode="voice_chat"),
    ),
    (
        {"type": "control", "action": "confirm_action", "id": "sig_1", "accept": False},
        ConfirmActionControl(id="sig_1", accept=False),
    ),
    (
        {
            "type": "control",
            "action": "update_config",
            "config": {"llm.temperature": 0.2, "tts.enabled": False},
        },
        UpdateConfigControl(config={"llm.temperature": 0.2, "tts.enabled": False}),
    ),
    ({"type": "control", "action": "start"}, StartControl()),
    (
        {"type": "playback", "turn_id": "turn_1", "played_ms": 1250.5},
        PlaybackMessage(turn_id="turn_1", played_ms=1250.5),
    ),
    (
        {"type": "playback", "turn_id": "turn_1", "played_ms": 0},
        PlaybackMessage(turn_id="turn_1", played_ms=0.0),
    ),
    ({"type": "ping", "id": "p1"}, PingMessage(id="p1")),
    ({"type": "ping"}, PingMessage(id=None)),
    ({"type": "ping", "id": None}, PingMessage()),
]


@pytest.mark.parametrize(("obj", "expected"), VALID, ids=[json.dumps(obj)[:60] for obj, _ in VALID])
def test_every_client_message_parses(obj: dict[str, Any], expected: BaseModel) -> None:
    assert receive(obj) == expected


@pytest.mark.parametrize(("fmt", "data"), [("jpeg", JPEG), ("png", PNG)])
def test_an_image_parses_and_carries_its_bytes(fmt: str, data: bytes) -> None:
    event = receive({"type": "image", "data": b64(data), "format": fmt, "text": "what is this?"})
    assert isinstance(event, ImageMessage)
    assert (event.format, event.text, event.image) == (fmt, "what is this?", data)
    assert "data" not in repr(event)  # a big base64 string never floods logs


def test_an_image_may_be_a_data_url_and_may_come_without_a_question() -> None:
    event = receive({"type": "image", "data": f"data:image/png;base64,{b64(PNG)}", "format": "png"})
    assert isinstance(event, ImageMessage)
    assert (event.image, event.text) == (PNG, None)


def test_text_may_hold_anything_up_to_the_limit() -> None:
    proto = ServerProtocol(Limits(max_text_chars=5))
    assert receive({"type": "text", "text": "ü😀\u200bab"}, proto) == TextMessage(text="ü😀\u200bab")
    error = error_of(receive({"type": "text", "text": "abcdef"}, proto))
    assert (error.code, error.field) == ("invalid_message", "text")
    assert "at most 5 characters" in error.message
    assert "max_text_chars" in error.message


def test_a_surrogate_pair_escape_is_fine() -> None:
    assert receive('{"type":"text","text":"\\ud83d\\ude00"}') == TextMessage(text="😀")


# --- bad input: the right code, a helpful message, the field named -----------------------------------

BAD_TEXT: list[tuple[str, str, str | None, str]] = [
    ("", "invalid_json", None, "not valid JSON"),
    ("{", "invalid_json", None, "not valid JSON"),
    ("{'type': 'text'}", "invalid_json", None, "not valid JSON"),
    ('{"type":"playback","turn_id":"t","played_ms":NaN}', "invalid_json", None, "NaN"),
    ('{"type":"playback","turn_id":"t","played_ms":Infinity}', "invalid_json", None, "Infinity"),
    ('{"type":"text","text":"\\ud800"}', "invalid_json", None, "surrogate"),
    ("[" * 100_000 + "]" * 100_000, "invalid_json", None, "not valid JSON"),
    ("[1, 2]", "invalid_message", None, "JSON object"),
    ('"text"', "invalid_message", None, "got string"),
    ("null", "invalid_message", None, "got null"),
    ("{}", "invalid_message", "type", 'no "type"'),
    ('{"type": 3}', "invalid_message", "type", "number"),
    ('{"type": "txt", "text": "hi"}', "unknown_type", "type", 'did you mean "text"'),
    ('{"type": "session"}', "unknown_type", "type", "expected one of: text, image, control, playback, ping"),
    ('{"type": "text"}', "invalid_message", "text", "missing required field 'text'"),
    ('{"type": "text", "text": ""}', "invalid_message", "text", "at least 1 character"),
    ('{"type": "text", "text": " \\n "}', "invalid_message", "text", "white space"),
    ('{"type": "text", "text": 5}', "invalid_message", "text", "valid string"),
    ('{"type": "text", "text": "hi", "lang": "en"}', "invalid_message", "lang", "unknown field 'lang'"),
    ('{"type": "control"}', "invalid_message", "action", 'no "action"'),
    ('{"type": "control", "action": "stop"}', "invalid_message", "action", 'unknown control action "stop"'),
    ('{"type": "control", "action": 1}', "invalid_message", "action", "interrupt, switch_mode"),
    ('{"type": "control", "action": "switch_mode"}', "invalid_message", "mode", "control (switch_mode)"),
    ('{"type": "control", "action": "switch_mode", "mode": ""}', "invalid_message", "mode", "at least 1"),
    ('{"type": "control", "action": "interrupt", "now": true}', "invalid_message", "now", "unknown field"),
    (
        '{"type": "control", "action": "confirm_action", "id": "x", "accept": "yes"}',
        "invalid_message",
        "accept",
        "boolean",
    ),
    (
        '{"type": "control", "action": "confirm_action", "id": 7, "accept": true}',
        "invalid_message",
        "id",
        "string",
    ),
    (
        '{"type": "control", "action": "update_config", "config": []}',
        "invalid_message",
        "config",
        "dictionary",
    ),
    ('{"type": "playback", "turn_id": "t", "played_ms": -1}', "invalid_message", "played_ms", "greater than"),
    ('{"type": "playback", "turn_id": "t", "played_ms": true}', "invalid_message", "played_ms", "number"),
    ('{"type": "playback", "turn_id": "t", "played_ms": "12"}', "invalid_message", "played_ms", "number"),
    ('{"type": "playback", "played_ms": 1}', "invalid_message", "turn_id", "missing"),
    ('{"type": "ping", "id": 1}', "invalid_message", "id", "string"),
    ('{"type": "ping", "id": "' + "x" * 300 + '"}', "invalid_message", "id", "at most 256"),
    ('{"type": "image", "format": "jpeg"}', "invalid_message", "data", "missing"),
    ('{"type": "image", "data": "AAAA", "format": "gif"}', "invalid_message", "format", "'jpeg' or 'png'"),
    ('{"type": "image", "data": "@@@@", "format": "png"}', "bad_image", "data", "not valid base64"),
    ('{"type": "image", "data": "AAAAAAAA", "format": "png"}', "bad_image", "data", "not a JPEG or PNG"),
    (f'{{"type": "image", "data": "{b64(JPEG)}", "format": "png"}}', "bad_image", "data", "is a JPEG"),
    (f'{{"type": "image", "data": "{b64(PNG)}", "format": "jpeg"}}', "bad_image", "data", "is a PNG"),
    ('{"type": "image", "data": "data:image/png;base64", "format": "png"}', "bad_image", "data", "nothing"),
]


@pytest.mark.parametrize(("text", "code", "field", "hint"), BAD_TEXT, ids=[t[:50] for t, *_ in BAD_TEXT])
def test_bad_text_frames_get_the_right_code(text: str, code: str, field: str | None, hint: str) -> None:
    error = error_of(ServerProtocol().receive_text(text))
    assert (error.code, error.field) == (code, field), error.message
    assert hint in error.message


def test_every_problem_after_the_first_is_counted() -> None:
    error = error_of(receive({"type": "control", "action": "confirm_action", "x": 1}))
    assert "2 more problems" in error.message


def test_the_limit_on_text_frames_counts_utf8_bytes() -> None:
    proto = ServerProtocol(Limits(max_message_bytes=40))
    fits = '{"type":"text","text":"xxxxxxxxxxxxxx"}'
    assert len(fits) == 39
    assert isinstance(proto.receive_text(fits), TextMessage)
    assert isinstance(proto.receive_text(fits.ljust(40)), TextMessage)
    assert error_of(proto.receive_text(fits.ljust(41))).code == "message_too_large"
    wide = '{"type":"text","text":"éééééééééééé"}'
    assert len(wide) <= 40 < len(wide.encode())
    error = error_of(proto.receive_text(wide))
    assert error.code == "message_too_large"
    assert "max_message_bytes" in error.message


def test_an_image_over_the_limit_is_too_large() -> None:
    proto = ServerProtocol(Limits(max_image_bytes=len(JPEG)))
    assert isinstance(receive({"type": "image", "data": b64(JPEG), "format": "jpeg"}, proto), ImageMessage)
    bigger = JPEG + b"\x00\x00\x00"
    error = error_of(receive({"type": "image", "data": b64(bigger), "format": "jpeg"}, proto))
    assert (error.code, error.field) == ("message_too_large", "data")
    assert "max_image_bytes" in error.message
    huge = error_of(receive({"type": "image", "data": "A" * 4000, "format": "jpeg"}, proto))
    assert huge.code == "message_too_large"


def test_the_image_question_is_limited_like_text() -> None:
    proto = ServerProtocol(Limits(max_text_chars=3))
    error = error_of(receive({"type": "image", "data": b64(PNG), "format": "png", "text": "why?!"}, proto))
    assert (error.code, error.field) == ("invalid_message", "text")


def test_a_text_frame_with_unencodable_characters_is_refused() -> None:
    assert error_of(ServerProtocol().receive_text('{"type":"text","text":"\ud800"}')).code == "invalid_json"


# --- binary frames ------------------------------------------------------------------------------------


def test_audio_frames() -> None:
    proto = ServerProtocol(Limits(max_audio_frame_bytes=8))
    event = proto.receive_bytes(b"\x01" + b"\x01\x00\xff\x7f")
    assert event == AudioIn(b"\x01\x00\xff\x7f")
    assert isinstance(event, AudioIn)
    assert event.duration_ms == pytest.approx(2 / 16000 * 1000)
    assert proto.receive_bytes(b"\x01" + bytes(8)) == AudioIn(bytes(8))
    assert proto.receive_bytes(bytearray(b"\x01\x00\x00")) == AudioIn(b"\x00\x00")
    assert proto.receive_bytes(memoryview(b"\x01\x00\x00")) == AudioIn(b"\x00\x00")
    wide = memoryview(bytes.fromhex("01020304")).cast("H")  # two items of two bytes
    error = error_of(proto.receive_bytes(wide))  # read as the bytes 01 02 03 04: tag 0x01, three bytes
    assert (error.code, "3 bytes" in error.message) == ("bad_audio", True)


@pytest.mark.parametrize(
    ("frame", "code", "hint"),
    [
        (b"", "empty_frame", "0x01"),
        (b"\x01", "bad_audio", "no samples"),
        (b"\x01\x00", "bad_audio", "1 bytes"),
        (b"\x01" + bytes(7), "bad_audio", "even"),
        (b"\x01" + bytes(10), "frame_too_large", "max_audio_frame_bytes"),
        (b"\x02", "bad_image", "nothing"),
        (b"\x02" + PNG, "bad_image", "89 50 4E"),
        (b"\x02" + JPEG + bytes(100), "frame_too_large", "max_image_bytes"),
        (b"\x00" + bytes(4), "unknown_frame_tag", "0x00"),
        (b"\x03", "unknown_frame_tag", "0x03"),
        (b"\xff\xd8\xff", "unknown_frame_tag", "0xFF"),
        (b"{", "unknown_frame_tag", "0x7B"),
    ],
)
def test_bad_binary_frames(frame: bytes, code: str, hint: str) -> None:
    proto = ServerProtocol(Limits(max_audio_frame_bytes=8, max_image_bytes=64))
    error = error_of(proto.receive_bytes(frame))
    assert error.code == code
    assert hint in error.message


def test_video_frames() -> None:
    proto = ServerProtocol(Limits(max_image_bytes=len(JPEG)))
    assert proto.receive_bytes(b"\x02" + JPEG) == VideoIn(JPEG)


def test_every_other_tag_is_unknown() -> None:
    proto = ServerProtocol()
    for tag in set(range(256)) - {1, 2}:
        assert error_of(proto.receive_bytes(bytes([tag, 0, 0]))).code == "unknown_frame_tag"


# --- errors on the wire -------------------------------------------------------------------------------


def test_a_protocol_error_becomes_an_error_message() -> None:
    message = ProtocolError("invalid_message", "bad", "text").to_message()
    assert message == ErrorMessage(code="invalid_message", message="bad", retryable=False, turn_id=None)
    assert ProtocolError("rate_limited", "slow down").to_message(turn_id="t").retryable is True


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (ConfigError("llm.x is unknown", key="llm.x"), "invalid_config", False),
        (EngineTimeout("too slow", engine="llm"), "engine_timeout", True),
        (EngineUnavailable("not installed"), "engine_unavailable", False),
        (CircuitOpenError("open"), "engine_unavailable", False),
        (RegistryError("no such engine"), "engine_unavailable", False),
        (InvalidInput("bad data"), "invalid_message", False),
        (StateError("illegal"), "internal_error", False),
    ],
)
def test_error_from_exception(exc: Exception, code: str, retryable: bool) -> None:
    message = error_from_exception(exc, turn_id="turn_1")
    assert (message.code, message.retryable, message.turn_id) == (code, retryable, "turn_1")
    assert message.message == str(exc)


def test_an_unexpected_exception_reveals_only_its_type() -> None:
    message = error_from_exception(RuntimeError("secret /home/me/path"))
    assert (message.code, message.message) == ("internal_error", "internal error (RuntimeError)")


# --- encoders -----------------------------------------------------------------------------------------


def test_encode_makes_compact_json_with_every_field() -> None:
    message = TranscriptMessage(turn_id="t", text="héllo", final=False, confidence=None)
    text = encode(message)
    assert text == (
        '{"type":"transcript","turn_id":"t","text":"héllo","final":false,"confidence":null,"language":null}'
    )
    assert decode(text) == message


def test_encode_audio_prefixes_the_tag() -> None:
    assert encode_audio(b"\x01\x02\x03\x04") == b"\x01\x01\x02\x03\x04"
    samples = np.array([0, 1000, -1000], dtype="<i2")
    assert encode_audio(samples.tobytes())[1:] == samples.tobytes()
    assert encode_audio(memoryview(samples.tobytes()).cast("h")) == b"\x01" + samples.tobytes()
    with pytest.raises(InvalidInput, match="even"):
        encode_audio(b"\x00\x01\x02")


@pytest.mark.parametrize(
    "message",
    [
        TextTokenMessage(turn_id="t", text=" hi"),
        ResponseDoneMessage(turn_id="t", text="hi", audio_ms=12.5),
        StateMessage(state="idle"),
        MetricsMessage(turn_id="t", waterfall={"speech_end": 0.0, "done": None}),
        messages.NotificationMessage(text="note", data={"a": [1, 2]}),
        messages.ControlSignalMessage(id="s", signal="confirm_action", payload={"url": "x"}),
        messages.ToolResultMessage(id="c", tool="clock", result=[1, "two", None], ok=False),
        ErrorMessage(code="internal_error", message="boom"),
        PongMessage(id="p"),
    ],
    ids=lambda m: m.type,
)
def test_every_server_message_round_trips(message: BaseModel) -> None:
    text = encode(message)  # type: ignore[arg-type]
    assert " " not in text.replace(" hi", "")
    assert json.loads(text)["type"] == type(message).model_fields["type"].default
    assert decode(text) == message


def test_server_messages_refuse_unknown_fields_and_values() -> None:
    with pytest.raises(ValidationError):
        StateMessage(state="sleeping")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PongMessage(id="p", extra=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ResponseDoneMessage(turn_id="t", text="", audio_ms=-1)


# --- from_output ----------------------------------------------------------------------------------------


def test_from_output_maps_each_pipeline_output() -> None:
    assert from_output(TranscriptOut("t", "hi", True, 0.9, "en")) == TranscriptMessage(
        turn_id="t", text="hi", final=True, confidence=0.9, language="en"
    )
    assert from_output(TextOut("t", " there")) == TextTokenMessage(turn_id="t", text=" there")
    assert from_output(ResponseDone("t", "heard", interrupted=True), audio_ms=640.0) == ResponseDoneMessage(
        turn_id="t", text="heard", interrupted=True, error=None, audio_ms=640.0
    )
    assert from_output(ResponseDone("t", "", error="llm_failed")) == ResponseDoneMessage(
        turn_id="t", text="", error="llm_failed", audio_ms=0.0
    )
    assert from_output(StateOut("listening", "speech started", "t"), loading=["tts"]) == StateMessage(
        state="listening", reason="speech started", turn_id="t", loading=["tts"]
    )
    assert from_output(ErrorOut("tts_failed", "no voice", "t", True)) == ErrorMessage(
        code="tts_failed", message="no voice", retryable=True, turn_id="t"
    )
    assert from_output(ErrorOut("circuit_open", "open", "t")) == ErrorMessage(
        code="engine_unavailable", message="open", turn_id="t"
    )
    waterfall = {"speech_end": 0.0, "first_token": 312.5, "done": None}
    assert from_output(MetricsOut("t", waterfall, {"tokens": 12})) == MetricsMessage(
        turn_id="t", waterfall=waterfall, extra={"tokens": 12}
    )


def test_from_output_leaves_audio_to_the_caller() -> None:
    chunk = AudioChunk(np.zeros(160, dtype=np.int16), 16000)
    assert from_output(AudioOut("t", chunk, clause=0, seq=0)) is None


def test_from_output_refuses_an_unknown_state() -> None:
    with pytest.raises(ValidationError):
        from_output(StateOut("dreaming"))


# --- the session message --------------------------------------------------------------------------------


def test_session_message_has_the_documented_shape() -> None:
    message = session_message(
        "s_1234567890",
        mode="voice_chat",
        modes=("voice_chat",),
        audio_out_rate=24000,
        engines={
            "llm": {"name": "llamacpp", "state": "ready", "detail": "", "healthy": True},
            "tts": {"name": None, "state": "disabled", "detail": ""},
            "stt": EngineStatus(name=None, state="loading"),
        },
    )
    obj = json.loads(encode(message))
    assert set(obj) == {
        "type", "session_id", "protocol", "resumed", "mode", "modes", "audio_in", "audio_out", "video_in",
        "limits", "engines", "mode_details", "private", "key",
    }  # fmt: skip
    assert obj["protocol"] == 1
    assert obj["resumed"] is False
    assert obj["private"] is False  # a server that keeps conversations
    assert obj["key"] is None  # the resume key travels only when the session is created
    assert obj["audio_in"] == {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1, "tag": 1}
    assert obj["audio_out"] == {"encoding": "pcm_s16le", "sample_rate": 24000, "channels": 1, "tag": 1}
    assert obj["video_in"] == {"encoding": "jpeg", "tag": 2, "max_fps": 2.0}
    assert obj["limits"] == {
        "max_audio_frame_bytes": 32000,
        "max_image_bytes": 2 * 1024 * 1024,
        "max_text_chars": 4000,
        "max_message_bytes": 3 * 1024 * 1024,
    }
    assert obj["engines"] == {
        "llm": {"name": "llamacpp", "state": "ready", "detail": ""},
        "tts": {"name": None, "state": "unavailable", "detail": "disabled in the configuration"},
        "stt": {"name": None, "state": "loading", "detail": ""},
    }
    assert isinstance(decode(encode(message)), SessionMessage)


def test_session_message_passes_limits_and_resume_through() -> None:
    limits = Limits(max_text_chars=10)
    message = session_message(
        "s_1", mode="m", modes=["m", "n"], audio_out_rate=22050, limits=limits, resumed=True, max_fps=1.5
    )
    assert (message.limits, message.resumed, message.modes, message.video_in.max_fps) == (
        limits,
        True,
        ["m", "n"],
        1.5,
    )
    with pytest.raises(ValidationError, match="sample rate"):
        session_message("s_1", mode="m", modes=["m"], audio_out_rate=12345)


# --- the rate limiter ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(rate: float = 2.0, burst: int = 3) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, burst, clock=clock), clock


def test_the_bucket_starts_full_and_refills_at_the_rate() -> None:
    bucket, clock = limiter(rate=2.0, burst=3)
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.now += 0.25
    assert not bucket.allow()
    clock.now += 0.25
    assert bucket.allow()
    assert not bucket.allow()
    clock.now += 60
    assert [bucket.allow() for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_the_bucket_survives_a_clock_going_backwards_and_weighs_costs() -> None:
    bucket, clock = limiter(rate=1.0, burst=2)
    assert not bucket.allow(cost=3)
    assert bucket.allow(cost=2)
    clock.now -= 10
    assert not bucket.allow()
    assert bucket.retry_after() == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (float("nan"), 1), (1, 0)])
def test_the_bucket_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate_per_s|burst"):
        RateLimiter(rate, burst)


def test_the_protocol_rate_limits_text_but_not_playback() -> None:
    bucket, clock = limiter(rate=1.0, burst=2)
    proto = ServerProtocol(rate_limiter=bucket)
    text = {"type": "text", "text": "hi"}
    playback = {"type": "playback", "turn_id": "t", "played_ms": 1}
    assert isinstance(receive(text, proto), TextMessage)
    assert isinstance(receive({"type": "control", "action": "interrupt"}, proto), InterruptControl)
    error = error_of(receive(text, proto))
    assert error.code == "rate_limited"
    assert "try again in 1.0 s" in error.message
    assert error.to_message().retryable
    assert error_of(receive({"type": "ping"}, proto)).code == "rate_limited"
    assert all(isinstance(receive(playback, proto), PlaybackMessage) for _ in range(10))
    assert error_of(receive({"type": "text"}, proto)).code == "invalid_message"  # bad input is not counted
    clock.now += 1
    assert isinstance(receive(text, proto), TextMessage)


# --- the module surface -------------------------------------------------------------------------------


def test_protocol_is_the_one_import_surface() -> None:
    assert set(messages.__all__) <= set(protocol.__all__)
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_client_models_are_frozen() -> None:
    message = TextMessage(text="hi")
    with pytest.raises(ValidationError):
        message.text = "changed"


def test_receive_text_never_raises_even_on_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    proto = ServerProtocol()
    bad: Callable[..., Any] = broken
    monkeypatch.setattr(proto, "_receive_text", bad)
    assert error_of(proto.receive_text("{}")).code == "internal_error"
