"""``/v1/realtime`` over Aria's real embedded engines: Silero VAD, PocketSphinx, a tiny random-weight GGUF
on llama.cpp and espeak-ng, driven by the official SDK with espeak speech streamed at real-time pace."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aria.testing.gguf import write_tiny_gguf
from aria.testing.speech import say
from tests.server.conftest import LiveServer, start_server, stop_server
from tests.server.test_realtime_ga import realtime

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")
pytest.importorskip("gguf", reason="the gguf package (dev extra) writes the test model")
pytest.importorskip("pocketsphinx", reason="the stt extra")
pytest.importorskip("onnxruntime", reason="the vad extra (Silero)")


@pytest.fixture
async def real(tmp_path: Path) -> AsyncIterator[LiveServer]:
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    overrides: dict[str, Any] = {
        "vad.backend": "silero",
        "vad.options": {},
        "stt.backend": "pocketsphinx",
        "stt.options": {},
        "llm.backend": "llamacpp",
        "llm.options": {"model_path": str(tiny), "n_threads": 1, "seed": 3},
        "llm.max_tokens": 16,
        "tts.backend": "espeak",
        "tts.options": {},
        "tts.voice": "en-us",
    }
    live, server, task = await start_server(tmp_path, overrides)
    try:
        yield live
    finally:
        await stop_server(server, task)


def question() -> np.ndarray:
    spoken = say("what is the weather in paris", sample_rate=24000)
    return np.concatenate([np.zeros(7200, np.float32), spoken, np.zeros(24000, np.float32)])


def answer_audio(events: list[dict[str, Any]]) -> np.ndarray:
    data = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


async def test_a_spoken_turn_then_truncation_with_espeak_word_timings(real: LiveServer) -> None:
    async with realtime(real.port) as rt:
        created = await rt.next()
        assert created["session"]["audio"]["output"]["voice"] == "en-us"
        transcription = {"audio": {"input": {"transcription": {"model": "whisper-1"}}}}
        await rt.send({"type": "session.update", "session": {"type": "realtime", **transcription}})
        await rt.until("session.updated")
        await rt.stream_audio(question())
        done = await rt.until("response.done", within=60)
        started = rt.of("input_audio_buffer.speech_started")[0]
        stopped = rt.of("input_audio_buffer.speech_stopped")[0]
        assert 150 <= started["audio_start_ms"] <= 500  # Silero: the speech starts 300 ms in
        assert stopped["audio_end_ms"] - started["audio_start_ms"] >= 800
        heard = rt.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
        assert heard  # PocketSphinx's dictation of espeak is rough, but it hears words
        assert done["response"]["status"] == "completed"
        transcript = rt.of("response.output_audio_transcript.done")[0]["transcript"]
        deltas = "".join(e["delta"] for e in rt.of("response.output_audio_transcript.delta"))
        assert transcript == deltas
        assert transcript.strip()
        audio = answer_audio(rt.events)
        assert audio.size / 24000 > 0.3
        assert float(np.sqrt(np.mean(audio**2))) > 0.02  # speech, not silence
        # The client played the first half: the item keeps the words heard by then.
        item_id = done["response"]["output"][0]["id"]
        half_ms = int(audio.size / 24000 * 500)
        truncate = {"item_id": item_id, "content_index": 0, "audio_end_ms": half_ms}
        await rt.send({"type": "conversation.item.truncate", **truncate})
        await rt.until("conversation.item.truncated")
        await rt.send({"type": "conversation.item.retrieve", "item_id": item_id})
        kept = (await rt.until("conversation.item.retrieved"))["item"]["content"][0]["transcript"]
        assert kept
        assert transcript.strip().startswith(kept)
        assert len(kept) < len(transcript.strip())


async def test_semantic_vad_and_a_text_answer(real: LiveServer) -> None:
    async with realtime(real.port) as rt:
        await rt.next()
        session = {
            "type": "realtime",
            "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}},
        }
        await rt.send({"type": "session.update", "session": session})
        await rt.until("session.updated")
        await rt.stream_audio(question())
        done = await rt.until("response.done", within=60)
    assert rt.types().index("input_audio_buffer.speech_stopped") < rt.types().index("response.created")
    assert done["response"]["output"][0]["content"][0]["type"] == "output_text"
    assert done["response"]["output"][0]["content"][0]["text"].strip()
    assert not rt.of("response.output_audio.delta")
