"""The pure parts of ``aria talk``: the conversation the screen shows, the file sink's timeline, the
echo canceller's pieces, the terminal keys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from aria.talk.camera import Camera
from aria.talk.conversation import Conversation
from aria.talk.echo import PushToTalk, _Linear, open_echo_canceller
from aria.talk.files import WavSink
from aria.talk.tui import key_code, meter

SESSION = {
    "type": "session", "session_id": "s_0123456789", "resumed": False, "mode": "voice_chat",
    "modes": ["voice_chat", "visual_chat"], "audio_out": {"sample_rate": 22050},
}  # fmt: skip


def test_the_conversation_revises_partials_streams_answers_and_keeps_latencies() -> None:
    conv = Conversation()
    conv.apply(SESSION)
    conv.apply({"type": "state", "state": "listening", "turn_id": "t1"})
    assert conv.state_label == "listening"
    conv.apply({"type": "transcript", "turn_id": "t1", "text": "what", "final": False})
    conv.apply({"type": "transcript", "turn_id": "t1", "text": "what time is it", "final": True})
    conv.apply({"type": "state", "state": "processing", "turn_id": "t1"})
    assert conv.state_label == "thinking"
    for piece in ("It is", " nine", " o'clock."):
        conv.apply({"type": "text_token", "turn_id": "t1", "text": piece})
    assert [(line.role, line.text, line.final) for line in conv.lines] == [
        ("you", "what time is it", True),
        ("aria", "It is nine o'clock.", False),
    ]
    conv.apply({"type": "response_done", "turn_id": "t1", "text": "It is nine", "interrupted": True})
    conv.apply({"type": "metrics", "turn_id": "t1", "waterfall": {"first_audio_out": 412.5}})
    answer = conv.lines[-1]
    assert (answer.text, answer.interrupted, answer.final) == ("It is nine", True, True)  # what was heard
    assert conv.latency_ms == {"t1": 412.5}
    assert conv.last_latency_ms() == 412.5
    assert conv.done == [("t1", True)]
    assert conv.audio_out_rate == 22050
    conv.apply({"type": "mode", "mode": "visual_chat", "watch": None})
    conv.apply({"type": "error", "code": "llm_failed", "message": "boom", "turn_id": None})
    assert [line.text for line in conv.lines[-2:]] == ["mode: visual_chat", "llm_failed: boom"]
    conv.apply({"type": "something_new", "x": 1})  # unknown messages are ignored


def test_a_resumed_history_is_shown_once() -> None:
    conv = Conversation()
    conv.apply({**SESSION, "resumed": True})
    history = {
        "type": "history",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    }
    conv.apply(history)
    conv.apply(history)  # a second reconnect sends it again
    assert [(line.role, line.text) for line in conv.lines if line.role != "note"] == [
        ("you", "hi"),
        ("aria", "hello"),
    ]


async def test_the_file_sink_places_answers_on_the_timeline_and_cuts_an_interrupted_one() -> None:
    now = [0.0]
    sink = WavSink("unused.wav", rate=1000, clock=lambda: now[0])
    now[0] = 1.0
    sink.play(np.ones(500, np.float32), "t1")  # arrives at 1.0 s: plays 1.0-1.5 s
    sink.play(np.ones(500, np.float32), "t1")  # back to back: 1.5-2.0 s
    assert sink.end_s == 2.0
    now[0] = 1.7
    assert sink.played_ms("t1") == pytest.approx(700.0)
    assert sink.buffered_s() == pytest.approx(0.3)
    sink.flush()  # interrupted at 1.7 s: the rest never plays
    assert sink.end_s == pytest.approx(1.7)
    assert sink.played_ms("t1") == pytest.approx(700.0)
    now[0] = 3.0
    sink.play(np.ones(100, np.float32), "t2")
    assert sink.end_s == pytest.approx(3.1)
    await asyncio.sleep(0)


def test_the_streaming_resampler_leaves_no_seams_between_blocks() -> None:
    rate = 22050
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    resampler = _Linear(rate, 16000)
    out = np.concatenate([resampler(tone[i : i + 441]) for i in range(0, rate, 441)])
    expected = np.sin(2 * np.pi * 440 * np.arange(out.size) / 16000)
    assert abs(out.size - 16000) <= 1
    assert float(np.max(np.abs(out - expected))) < 0.01


def test_the_canceller_silences_pure_echo_and_passes_a_voice_over_it() -> None:
    canceller = open_echo_canceller()
    assert canceller.aec, "the livekit wheel is part of the talk extra"
    rng = np.random.default_rng(3)
    rate, block = 16000, 320
    t = 100.0
    far = (0.2 * rng.standard_normal(rate * 4)).astype(np.float32)
    sent: list[np.ndarray] = []
    for index in range(far.size // block):
        chunk = far[index * block : (index + 1) * block]
        canceller.played([(t + index * 0.02, chunk)], rate)
        # The microphone hears the speaker 30 ms later, 12 dB quieter.
        start = index * block - 480
        echo = 0.25 * far[start : start + block] if start >= 0 else np.zeros(block, np.float32)
        sent.append(canceller.capture(echo.astype(np.float32), t + index * 0.02 + 0.03))
    tail = np.concatenate(sent[-50:])
    assert float(np.sqrt(np.mean(tail**2))) < 0.002  # the echo does not reach the server
    assert canceller.echo_blocks > 100
    # A voice as loud as the answer over the same echo gets through.
    voice = (0.3 * np.sin(2 * np.pi * 220 * np.arange(block * 25) / rate)).astype(np.float32)
    passed = 0
    for index in range(25):
        k = far.size // block + index
        chunk = (0.2 * rng.standard_normal(block)).astype(np.float32)
        canceller.played([(t + k * 0.02, chunk)], rate)
        out = canceller.capture(
            0.25 * chunk + voice[index * block : (index + 1) * block], t + k * 0.02 + 0.03
        )
        passed += float(np.sqrt(np.mean(out**2))) > 0.05
    assert passed >= 15, passed


def test_push_to_talk_and_keys() -> None:
    ptt = PushToTalk(True)
    block = np.ones(4, np.float32)
    assert not ptt.gate(block).any()
    assert ptt.toggle() is True
    assert ptt.gate(block).all()
    assert PushToTalk(False).gate(block).all()
    assert key_code("ctrl-t") == "\x14"
    assert key_code("space") == " "
    with pytest.raises(ValueError, match="unknown key"):
        key_code("hyper-x")
    assert meter(0.5, 4) == "██··"


def test_the_camera_reads_a_video_file_and_loops_it(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for shade in (20, 120, 220):
        writer.write(np.full((240, 320, 3), shade, np.uint8))
    writer.release()
    camera = Camera(str(path), max_width=160)
    frames = [camera.read_jpeg() for _ in range(5)]  # three frames, then from the start again
    camera.close()
    decoded = [cv2.imdecode(np.frombuffer(f or b"", np.uint8), cv2.IMREAD_GRAYSCALE) for f in frames]
    assert [image.shape for image in decoded] == [(120, 160)] * 5  # scaled down to max_width
    shades = [int(image.mean()) for image in decoded]
    assert shades[0] < shades[1] < shades[2]
    assert abs(shades[3] - shades[0]) < 10  # looped


def test_the_session_memory_keeps_each_sessions_key_per_server(tmp_path: Path) -> None:
    from aria.talk.local import SessionMemory

    memory = SessionMemory(tmp_path)
    assert memory.last(None) == (None, None)
    assert memory.key(None, "s_1") is None
    memory.remember(None, "s_1", "s_1.key1")
    memory.remember(None, "s_2", "s_2.key2")
    memory.remember("ws://elsewhere/ws", "s_9", "s_9.key9")
    assert memory.last(None) == ("s_2", "s_2.key2")
    assert memory.key(None, "s_1") == "s_1.key1"  # an earlier session opens with its own key
    assert memory.key(None, "s_9") is None  # a key belongs to the server that gave it
    assert memory.key("ws://elsewhere/ws", "s_9") == "s_9.key9"
    memory.remember(None, "s_1", "s_1.key1b")  # the server gave a new key on resume
    assert memory.key(None, "s_1") == "s_1.key1b"
    memory.remember(None, "s_3", None)  # no key given: the others are kept
    assert memory.last(None) == ("s_3", None)
    assert memory.key(None, "s_2") == "s_2.key2"


def test_the_session_memory_keeps_the_newest_keys_and_survives_a_bad_file(tmp_path: Path) -> None:
    from aria.talk.local import SessionMemory

    memory = SessionMemory(tmp_path)
    memory.KEYS_KEPT = 3
    for n in range(5):
        memory.remember(None, f"s_{n}", f"s_{n}.key")
    memory.remember(None, "s_2", "s_2.key")  # used again: the newest now
    assert [memory.key(None, f"s_{n}") for n in range(5)] == [None, None, "s_2.key", "s_3.key", "s_4.key"]
    memory.remember(None, "s_5", "s_5.key")
    assert memory.key(None, "s_3") is None
    assert memory.key(None, "s_2") == "s_2.key"
    memory.path.write_text("{not json", encoding="utf-8")
    assert memory.last(None) == (None, None)
    memory.remember(None, "s_6", "s_6.key")
    assert memory.key(None, "s_6") == "s_6.key"
