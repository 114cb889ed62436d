"""``/v1/realtime`` turn-taking through the official ``openai`` SDK against a live server with fakes: a
spoken turn with server VAD, barge-in and truncation, idle timeout, ``create_response`` and
``interrupt_response`` off, the buffers cleared. Speech is espeak-ng's, streamed as 24 kHz PCM in real time;
every event is checked against the SDK's GA types."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.server.conftest import LiveServer, engine
from tests.server.test_realtime_e2e import LONG, collapsed, speech, user_text
from tests.server.test_realtime_ga import realtime


async def test_a_spoken_turn_with_server_vad(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        transcription = {"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
        await rt.send({"type": "session.update", "session": {"type": "realtime", **transcription}})
        await rt.until("session.updated")
        start = len(rt.events)
        await rt.stream_audio(speech(lead_s=0.3))
        await rt.until("response.done")
    types = collapsed(rt.types(start))
    assert types[:10] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
    ]
    started, stopped = (
        rt.of("input_audio_buffer.speech_started")[0],
        rt.of("input_audio_buffer.speech_stopped")[0],
    )
    assert 200 <= started["audio_start_ms"] <= 450  # the speech starts 300 ms in
    assert stopped["audio_end_ms"] > started["audio_start_ms"] + 500
    item_id = started["item_id"]
    assert stopped["item_id"] == rt.of("input_audio_buffer.committed")[0]["item_id"] == item_id
    completed = rt.of("conversation.item.input_audio_transcription.completed")[0]
    assert completed["item_id"] == item_id
    assert completed["transcript"] == "what time is it"
    assert completed["usage"]["type"] == "duration"
    request = engine(live).requests[-1]
    assert request.messages[-1].content == "what time is it"
    assert request.messages[-1].modality == "audio"


@pytest.mark.parametrize(
    "server_overrides", [{"llm.options": {"replies": [LONG, "Okay."], "token_interval_s": 0.05}}]
)
async def test_barge_in_then_truncate_keeps_what_was_heard(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        await rt.send({"type": "conversation.item.create", "item": user_text("tell me something")})
        await rt.send({"type": "response.create"})
        first_audio = await rt.until("response.output_audio.delta")
        talking = asyncio.create_task(rt.stream_audio(speech()))  # the person speaks over the answer
        try:
            cancelled = await rt.until("response.done")
            assert cancelled["response"]["status"] == "cancelled"
            assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
            assert rt.types().index("input_audio_buffer.speech_started") < rt.types().index("response.done")
            item_id = first_audio["item_id"]
            assert cancelled["response"]["output"][0]["status"] == "incomplete"
            # the client had played 150 ms of the answer when the person spoke
            truncate = {"item_id": item_id, "content_index": 0, "audio_end_ms": 150}
            await rt.send({"type": "conversation.item.truncate", **truncate})
            truncated = await rt.until("conversation.item.truncated")
            assert truncated["audio_end_ms"] == 150
            await rt.send({"type": "conversation.item.retrieve", "item_id": item_id})
            heard = (await rt.until("conversation.item.retrieved"))["item"]["content"][0]["transcript"]
            assert heard
            assert "Sure, here is the answer.".startswith(heard)
            assert len(heard) < len("Sure, here is the answer.")
            second = await rt.until("response.done", within=15)  # the person's turn is answered
            assert second["response"]["status"] == "completed"
        finally:
            await talking
    request = engine(live).requests[-1]
    assistant = [m for m in request.messages if m.role == "assistant"]
    assert assistant[-1].content == heard
    assert assistant[-1].interrupted


async def test_idle_timeout_asks_again(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        vad = {"type": "server_vad", "idle_timeout_ms": 1000}
        await rt.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": vad}}}})
        await rt.until("session.updated")
        await rt.send({"type": "conversation.item.create", "item": user_text("hello")})
        await rt.send({"type": "response.create"})
        await rt.until("response.done")
        calls = engine(live).calls
        await rt.stream_audio(np.zeros(24000 * 2, np.float32), realtime=False)  # 2 s of silence
        timeout = await rt.until("input_audio_buffer.timeout_triggered")
        assert timeout["audio_end_ms"] >= 1000
        await rt.until("input_audio_buffer.committed")
        await rt.until("response.done")
    assert engine(live).calls == calls + 1
    assert rt.types().count("input_audio_buffer.timeout_triggered") == 1


async def test_create_response_false_transcribes_turns_without_answering(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        detection = {"type": "server_vad", "create_response": False, "silence_duration_ms": 200}
        session = {"audio": {"input": {"turn_detection": detection, "transcription": {"model": "whisper-1"}}}}
        await rt.send({"type": "session.update", "session": session})
        await rt.until("session.updated")
        await rt.stream_audio(speech())
        completed = await rt.until("conversation.item.input_audio_transcription.completed")
        assert completed["transcript"] == "what time is it"
        assert rt.types().index("input_audio_buffer.speech_started") < rt.types().index(
            "input_audio_buffer.committed"
        )
        await rt.send({"type": "response.create"})  # the client decides when to answer
        await rt.until("response.done")
    assert rt.types().count("response.created") == 1
    assert engine(live).requests[-1].messages[-1].content == "what time is it"


@pytest.mark.parametrize("server_overrides", [{"llm.options": {"replies": [LONG], "token_interval_s": 0.05}}])
async def test_output_and_input_buffer_clear(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        await rt.send({"type": "conversation.item.create", "item": user_text("go on")})
        await rt.send({"type": "response.create"})
        created = await rt.until("response.created")
        await rt.until("response.output_audio.delta")
        await rt.send({"type": "output_audio_buffer.clear"})
        cleared = await rt.until("output_audio_buffer.cleared")
        assert cleared["response_id"] == created["response"]["id"]
        done = await rt.until("response.done")
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        await rt.stream_audio(speech(tail_s=0.0)[:24000], realtime=False)  # half a question, then gone
        await rt.send({"type": "input_audio_buffer.clear"})
        await rt.until("input_audio_buffer.cleared")
        await rt.send({"type": "output_audio_buffer.clear"})
        assert (await rt.until("error"))["error"]["code"] == "no_active_response"


@pytest.mark.parametrize(
    "server_overrides", [{"llm.options": {"replies": [LONG, "Okay."], "token_interval_s": 0.05}}]
)
async def test_interrupt_response_false_lets_the_answer_finish(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        vad = {"type": "server_vad", "interrupt_response": False}
        await rt.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": vad}}}})
        await rt.until("session.updated")
        await rt.send({"type": "conversation.item.create", "item": user_text("tell me something")})
        await rt.send({"type": "response.create"})
        await rt.until("response.output_audio.delta")
        talking = asyncio.create_task(rt.stream_audio(speech()))
        try:
            first = await rt.until("response.done", within=15)
            assert first["response"]["status"] == "completed"
            assert first["response"]["output"][0]["content"][0]["transcript"] == LONG
            second = await rt.until("response.done", within=15)  # the speech is answered after it
            assert second["response"]["status"] == "completed"
        finally:
            await talking
