"""Fuzzing a LIVE server: Hypothesis sends random and broken frames over a real WebSocket.

The sans-I/O protocol (fuzzed on its own in ``tests/server/test_protocol_fuzz.py``) is the oracle: for
each frame it says which error code the server must answer with, or that the frame is valid. After
every example the same connection still answers ``ping`` with ``pong``, every bad frame got exactly its
``error`` (in order, before the pong), and nothing got ``internal_error``. The server closes a connection
only for a frame over the WebSocket size limit (1009); the session then resumes on a new connection.
After each test a real question still gets an answer, the server's task count is back to where it
started and memory stayed bounded. One server for the module, in its own thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aria.server.protocol import ERROR_CODES, Limits, ProtocolError, ServerProtocol
from tests.reliability.live import WS_MAX_SIZE, Closed, ServerThread, SyncClient, rss_mb
from tests.server.test_protocol_fuzz import any_chars, json_values, messages_ish

REPLY = "Sure, here is the answer. It has two sentences."
LIMITED = frozenset({"text", "image", "control", "ping"})
#: Errors a well-formed message may still get: what it asks for is refused (not the frame itself).
REFUSALS = frozenset({"invalid_config", "unknown_mode", "unknown_action", "bad_image", "mode_unavailable"})
LIVE = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
#: Memory the whole module may add. Measured: about 22 MB, half of it after the frames of 3-4 MiB
#: (read, parsed and dropped; the allocator keeps some of that memory).
RSS_SLACK_MB = 50.0


@dataclass(frozen=True)
class Live:
    server: ServerThread
    #: The server's tasks with no connection open, and this process's RSS, before any test.
    tasks: int
    rss_mb: float


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    with ServerThread(data_dir, {"tts.options": {"ms_per_char": 1.0}}) as server:
        yield Live(server, server.quiet(), rss_mb())


def oracle(client: SyncClient) -> ServerProtocol:
    return ServerProtocol(Limits(**client.session["limits"]))


def utf8_safe(text: str) -> str:
    """The frame as a client can send it: lone surrogates only as JSON escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
    return text


def exchange(client: SyncClient, frames: list[str | bytes]) -> list[dict[str, Any]]:
    """Send ``frames`` and a ping; check every bad frame got its error, in order, before the pong."""
    check = oracle(client)
    expected: list[tuple[str, str]] = []  # ("bad", code) or ("valid", type)
    for frame in frames:
        event = check.receive_text(frame) if isinstance(frame, str) else check.receive_bytes(frame)
        if isinstance(event, ProtocolError):
            assert event.code != "internal_error", event.message
            expected.append(("bad", event.code))
            client.send(frame)
        else:
            kind = str(getattr(event, "type", "binary"))
            expected.append(("valid", kind))
            client.send(frame, limited=kind in LIMITED)
    seen = client.ping()
    errors = [m for m in seen if isinstance(m, dict) and m["type"] == "error" and m["turn_id"] is None]
    codes = [e["code"] for e in errors]
    assert "internal_error" not in codes, errors
    assert all(code in ERROR_CODES for code in codes), codes
    assert all(e["message"] and e["retryable"] is False for e in errors), errors
    at = 0
    for outcome, what in expected:
        if outcome == "bad":
            assert at < len(codes), (expected, errors)
            assert codes[at] == what, (expected, errors)
            at += 1
        elif at < len(codes) and codes[at] in REFUSALS and what in ("control", "image"):
            at += 1
    assert at == len(codes), f"unexpected errors: {errors[at:]} for {expected}"
    return errors


def finish(live: Live) -> None:
    """A real question still gets an answer; tasks back to the baseline; memory bounded."""
    with SyncClient(live.server) as client:
        client.send_json({"type": "text", "text": "and now a real question"})
        done, _ = client.until("response_done")
        assert done["text"] == REPLY
        assert done["interrupted"] is False
    assert live.server.quiet() == live.tasks
    assert rss_mb() - live.rss_mb < RSS_SLACK_MB


def test_random_json_values(live: Live) -> None:
    server = live.server
    answered: list[dict[str, Any]] = []
    with SyncClient(server) as client:

        @LIVE
        @given(st.lists(json_values, min_size=1, max_size=4), st.booleans())
        def run(values: list[Any], ascii_only: bool) -> None:
            answered.extend(
                exchange(client, [utf8_safe(json.dumps(v, ensure_ascii=ascii_only)) for v in values])
            )

        run()
    assert "invalid_message" in {e["code"] for e in answered}
    finish(live)


def test_message_shaped_objects_and_random_text(live: Live) -> None:
    server = live.server
    answered: list[dict[str, Any]] = []
    with SyncClient(server) as client:

        @LIVE
        @given(st.lists(messages_ish.map(json.dumps) | any_chars.map(utf8_safe), min_size=1, max_size=4))
        def run(frames: list[str]) -> None:
            answered.extend(exchange(client, list(frames)))

        run()
    assert {"invalid_json", "invalid_message"} <= {e["code"] for e in answered}
    finish(live)


def test_random_binary_frames_with_random_tags(live: Live) -> None:
    server = live.server
    answered: list[dict[str, Any]] = []
    with SyncClient(server) as client:

        @LIVE
        @given(
            st.lists(
                st.binary(max_size=2000)
                | st.tuples(st.integers(0, 255), st.binary(max_size=200)).map(lambda t: bytes([t[0]]) + t[1]),
                min_size=1,
                max_size=5,
            )
        )
        def run(frames: list[bytes]) -> None:
            answered.extend(exchange(client, list(frames)))

        run()
    assert {"unknown_frame_tag", "empty_frame"} <= {e["code"] for e in answered}
    finish(live)


VALID_TEXT = [
    {"type": "ping", "id": "p"},
    {"type": "text", "text": "hello there"},
    {"type": "control", "action": "interrupt"},
    {"type": "control", "action": "update_config", "config": {"llm.temperature": 0.5}},
    {"type": "playback", "turn_id": "turn_x", "played_ms": 12.5},
]


def test_truncated_valid_frames(live: Live) -> None:
    server = live.server
    with SyncClient(server) as client:

        @LIVE
        @given(
            st.sampled_from(VALID_TEXT).map(json.dumps)
            | st.binary(min_size=2, max_size=640).filter(lambda b: len(b) % 2 == 0).map(lambda b: b"\x01" + b)
            | st.binary(max_size=64).map(lambda b: b"\x02\xff\xd8\xff" + b),
            st.data(),
        )
        def run(frame: str | bytes, data: st.DataObject) -> None:
            cut = data.draw(st.integers(0, len(frame) - 1))
            exchange(client, [frame[:cut], frame])

        run()
    finish(live)


def test_huge_frames_get_an_error_or_close_only_over_the_size_limit(live: Live) -> None:
    server = live.server
    """Every size around each limit, and one over the WebSocket frame limit (every combination: a
    few frames of up to 4 MiB, no need to sample)."""
    client = SyncClient(server)
    session_id = client.session["session_id"]
    limits = client.session["limits"]
    sizes = {
        "text": limits["max_message_bytes"],
        "audio": limits["max_audio_frame_bytes"],
        "video": limits["max_image_bytes"],
    }
    answered: list[str] = []
    try:
        for kind, limit in sizes.items():
            for size in (limit - 2, limit, limit + 1, limit + 2, limit + 1000, WS_MAX_SIZE + 10):
                frame: str | bytes
                if kind == "text":
                    frame = '{"type":"ping","id":"' + "x" * (size - 23) + '"}'
                elif kind == "audio":
                    frame = b"\x01" + bytes(size - size % 2)
                else:
                    frame = b"\x02\xff\xd8\xff" + bytes(size - 3)
                try:
                    answered += [e["code"] for e in exchange(client, [frame])]
                    continue
                except Closed as exc:
                    closed = exc
                client.close()
                client = SyncClient(server, f"?session_id={session_id}")
                size_on_wire = len(frame.encode()) if isinstance(frame, str) else len(frame)
                # 1009, or a reset when the server closes while the client is still sending the frame.
                assert closed.code in (1009, None), closed
                assert size_on_wire > WS_MAX_SIZE, (closed, size_on_wire)
                assert client.session["session_id"] == session_id
                assert client.session["resumed"] is True
                answered.append("closed")
                client.ping()
    finally:
        client.close()
    assert answered.count("message_too_large") == 3
    assert answered.count("frame_too_large") == 5  # audio payloads are rounded down to even: limit + 1 fits
    assert answered.count("closed") == 3
    finish(live)


BAD_SMALL: list[str | bytes] = [
    b"\x07x",
    b"",
    b"\x01\x00",
    b"\x02abc",
    "{",
    '{"type":"dance"}',
    "[]",
    '{"type":"text"}',
]


def test_floods_of_small_frames(live: Live) -> None:
    server = live.server
    with SyncClient(server) as client:

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(st.sampled_from([*BAD_SMALL, b"\x01\x00\x00"]), min_size=100, max_size=400))
        def run(frames: list[str | bytes]) -> None:
            errors = exchange(client, list(frames))
            assert len(errors) == sum(1 for f in frames if f != b"\x01\x00\x00")

        run()
    finish(live)


def test_invalid_utf8_in_a_text_frame_closes_with_1007_and_the_session_resumes(live: Live) -> None:
    server = live.server
    """RFC 6455 requires it: a text frame must be UTF-8. The only other reason a connection closes."""
    client = SyncClient(server)
    session_id = client.session["session_id"]
    client.send(b'{"type":"text","text":"\xe2\x82"}', text=True)
    with pytest.raises(Closed) as closed:
        client.ping()
    client.close()
    assert closed.value.code == 1007
    with SyncClient(server, f"?session_id={session_id}") as again:
        assert again.session["session_id"] == session_id
        again.ping()
    finish(live)
