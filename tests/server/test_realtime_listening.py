"""The Realtime listener on the input audio's clock, with the fake VAD (speech = loud frames): server VAD
start/stop times and prefix padding, semantic VAD's pause decisions and longest wait, the idle timeout."""

from __future__ import annotations

from typing import Any

import numpy as np

from aria.server.realtime.listening import FRAME, Listener, Pause, Started, Stopped, Timeout
from aria.testing.fakes import FakeVAD

SERVER_VAD: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 100,
    "silence_duration_ms": 200,
    "create_response": True,
    "interrupt_response": True,
    "idle_timeout_ms": None,
}


def vad() -> FakeVAD:
    return FakeVAD(FakeVAD.Config(start_frames=1, end_frames=10))  # ends 200 ms after the speech


def audio(ms: int, loud: bool) -> np.ndarray:
    n = ms * 16
    return (0.3 * np.ones(n, np.float32)) if loud else np.zeros(n, np.float32)


def test_server_vad_reports_start_and_end_in_input_milliseconds() -> None:
    listener = Listener(vad(), SERVER_VAD, hangover_ms=200)
    signals = listener.push(audio(500, False)) + listener.push(audio(1000, True))
    assert signals == [Started(500)]
    assert listener.speaking
    signals = listener.push(audio(400, False))
    assert signals == [Stopped(1500)]  # reported after the VAD's 200 ms of silence (silence_duration_ms)
    kept = listener.take()
    assert kept.size == (100 + 1000 + 200) * 16  # from the prefix padding to where the turn ended
    assert listener.buffered().size == 200 * 16  # what came after stays for the next turn
    assert listener.push(audio(300, True)) == [Started(1900)]
    listener.push(audio(400, False))
    assert listener.take().size == (100 + 300 + 200) * 16


def test_audio_is_buffered_in_frames_whatever_the_chunk_size() -> None:
    listener = Listener(vad(), SERVER_VAD)
    chunks = np.array_split(np.concatenate([audio(300, False), audio(300, True)]), 37)
    signals = [s for chunk in chunks for s in listener.push(chunk)]
    assert signals == [Started(300)]
    assert listener.samples % FRAME == 0


def test_without_turn_detection_the_whole_buffer_is_committed() -> None:
    listener = Listener(None, None)
    assert listener.push(audio(300, True)) == []
    assert listener.take().size == 300 * 16


def test_semantic_vad_asks_about_each_pause_and_waits_at_most_its_longest() -> None:
    semantic = {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }
    listener = Listener(vad(), semantic, hangover_ms=200)
    listener.push(audio(200, False))
    listener.push(audio(600, True))
    signals = listener.push(audio(300, False))
    assert len(signals) == 1
    assert isinstance(signals[0], Pause)
    pause = signals[0]
    assert pause.audio.size >= 600 * 16
    assert listener.decide(True, 0.2, pause.at_ms) is None  # "high" needs 0.3: the person may go on
    assert listener.push(audio(1000, False)) == []
    assert listener.push(audio(1000, False)) == [Stopped(800)]  # after 2 s, high's longest pause


def test_semantic_vad_ends_the_turn_when_the_model_is_sure_enough() -> None:
    semantic = {"type": "semantic_vad", "eagerness": "low"}
    listener = Listener(vad(), semantic, hangover_ms=200)
    listener.push(audio(600, True))
    (pause,) = listener.push(audio(300, False))
    assert isinstance(pause, Pause)
    assert listener.decide(True, 0.7, pause.at_ms) is None  # low needs 0.8
    assert listener.decide(True, 0.9, pause.at_ms) == Stopped(600)  # where the speech ended
    assert listener.decide(True, 0.9, pause.at_ms) is None  # decided once


def test_speech_after_a_pause_continues_the_same_turn() -> None:
    listener = Listener(vad(), {"type": "semantic_vad", "eagerness": "auto"})
    listener.push(audio(600, True))
    (pause,) = listener.push(audio(300, False))
    assert listener.push(audio(300, True)) == []  # no second speech_started
    assert listener.decide(True, 1.0, pause.at_ms) is None  # a stale answer about a pause that went on


def test_idle_timeout_after_an_answer() -> None:
    listener = Listener(vad(), SERVER_VAD | {"idle_timeout_ms": 1000})
    listener.idle_after(500)  # the answer's audio plays 500 ms more
    assert listener.push(audio(1400, False)) == []
    signals = listener.push(audio(200, False))
    assert signals == [Timeout(1500, 1500)]
    assert listener.push(audio(2000, False)) == []  # once


def test_speech_cancels_the_idle_timeout() -> None:
    listener = Listener(vad(), SERVER_VAD | {"idle_timeout_ms": 1000})
    listener.idle_after(0)
    listener.push(audio(500, False))
    assert listener.push(audio(300, True)) == [Started(500)]
    assert not [s for s in listener.push(audio(2000, False)) if isinstance(s, Timeout)]
