"""The conversation core without sockets: a real runtime with scripted fake engines, driven the way a
shell drives it (push input, read the one ordered stream of events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aria.core.config import load_settings
from aria.engines.chain import primary
from aria.errors import InvalidInput
from aria.pipeline.outputs import (
    AudioOut,
    MetricsOut,
    NoticeOut,
    ResponseDone,
    StageOut,
    TextOut,
    ToolResultOut,
    TranscriptOut,
)
from aria.server.conversation import Conversation, ModeOut, Refused, ToolCallOut
from aria.server.conversation.events import Event
from aria.server.runtime import Runtime
from aria.types import AudioChunk, Message, ToolSpec
from tests.server.conftest import FAST_FAKES

REPLY = "Sure, here is the answer. It has two sentences."


class Shell:
    """Reads a conversation's events in the background, as a shell's writer does."""

    def __init__(self, conversation: Conversation) -> None:
        self.conv = conversation
        self.events: list[Event] = []
        self._arrived = asyncio.Condition()
        self._seen = 0
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.conv:
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()

    async def next_of(self, kind: type, within: float = 5.0, **match: Any) -> Any:
        async def wait() -> Any:
            async with self._arrived:
                while True:
                    for index in range(self._seen, len(self.events)):
                        event = self.events[index]
                        if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
                            self._seen = index + 1
                            return event
                    await self._arrived.wait()

        return await asyncio.wait_for(wait(), within)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def aclose(self) -> None:
        await self.conv.aclose()
        await asyncio.wait_for(self._task, 5)


async def make_runtime(tmp_path: Path, **overrides: Any) -> Runtime:
    settings = load_settings(overrides={**FAST_FAKES, "data_dir": str(tmp_path), **overrides}, env={})
    runtime = Runtime(settings)
    await runtime.start()
    await runtime.ready.wait()
    return runtime


@pytest.fixture
async def runtime(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    overrides = getattr(request, "param", {})
    rt = await make_runtime(tmp_path, **overrides)
    try:
        yield rt
    finally:
        await rt.aclose()


async def opened(runtime: Runtime, **kwargs: Any) -> tuple[Conversation, Shell]:
    session, _ = runtime.sessions.open(None, mode=runtime.settings.mode)
    conv = Conversation(runtime, session, **kwargs)
    shell = Shell(conv)
    await conv.start()
    return conv, shell


def fake_llm(runtime: Runtime) -> Any:
    engine = runtime.residency.engine("llm")
    assert engine is not None
    return primary(engine)


def speech(ms: int, amplitude: float, rate: int = 16000) -> list[AudioChunk]:
    samples = rate // 50
    t = np.arange(samples, dtype=np.float32) / rate
    block = (amplitude * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    return [AudioChunk(block, rate) for _ in range(ms // 20)]


async def test_a_typed_turn_streams_text_and_audio_then_ends_and_is_saved(runtime: Runtime) -> None:
    conv, shell = await opened(runtime)
    try:
        mode = await shell.next_of(ModeOut)
        assert mode.mode == "voice_chat"
        assert dict(mode.engines) == {"stt": "stt", "llm": "llm", "tts": "tts"}
        await conv.push_text("what time is it")
        done = await shell.next_of(ResponseDone)
        metrics = await shell.next_of(MetricsOut, turn_id=done.turn_id)
        assert done.text == REPLY
        assert metrics.extra["model"] == "fake"
        turn = [e for e in shell.events if getattr(e, "turn_id", None) == done.turn_id]
        kinds = [type(e).__name__ for e in turn]
        assert kinds.index("TextOut") < kinds.index("AudioOut") < kinds.index("ResponseDone")
        assert kinds.index("ResponseDone") < kinds.index("MetricsOut")
        assert "".join(e.text for e in turn if isinstance(e, TextOut)) == REPLY
        saved = runtime.sessions.get(conv.session.id)
        assert saved is not None
        assert [(m.role, m.content) for m in saved.history] == [
            ("user", "what time is it"),
            ("assistant", REPLY),
        ]
    finally:
        await shell.aclose()


async def test_speech_at_24_khz_is_heard_transcribed_and_answered(runtime: Runtime) -> None:
    conv, shell = await opened(runtime)
    try:
        await shell.next_of(ModeOut)
        for chunk in [*speech(400, 0.3, 24000), *speech(300, 0.0, 24000)]:
            conv.push_audio(chunk)
        started = await shell.next_of(StageOut, stage="speech_started")
        final = await shell.next_of(TranscriptOut, final=True)
        done = await shell.next_of(ResponseDone)
        assert started.turn_id == final.turn_id == done.turn_id
        assert final.text == "what time is it"
        assert done.text == REPLY
    finally:
        await shell.aclose()


async def test_a_client_tool_call_waits_for_the_client_output_and_the_answer_goes_on(tmp_path: Path) -> None:
    call = 'TOOL:get_weather:{"city": "Paris"}'
    runtime = await make_runtime(tmp_path, **{"llm.options": {"replies": [call, "It is sunny in Paris."]}})
    weather = ToolSpec("get_weather", "The weather in a city", {"type": "object", "properties": {}})
    try:
        conv, shell = await opened(runtime, client_tools=[weather])
        await conv.push_text("weather in Paris?")
        asked = await shell.next_of(ToolCallOut)
        assert (asked.name, json.loads(asked.arguments)) == ("get_weather", {"city": "Paris"})
        assert "get_weather" in [t.name for t in fake_llm(runtime).requests[0].tools]
        assert not shell.of(ResponseDone)  # the answer waits for the client
        assert conv.tool_output(asked.call_id, '{"sky": "sunny"}')
        assert not conv.tool_output(asked.call_id, "again")  # taken once
        result = await shell.next_of(ToolResultOut)
        done = await shell.next_of(ResponseDone)
        assert (result.tool, result.ok, result.content) == ("get_weather", True, '{"sky": "sunny"}')
        assert done.text == "It is sunny in Paris."
        second = fake_llm(runtime).requests[1]
        assert second.messages[-1].role == "tool"
        assert second.messages[-1].content == '{"sky": "sunny"}'
        await shell.aclose()
    finally:
        await runtime.aclose()


async def test_respond_answers_the_history_with_its_own_instructions(runtime: Runtime) -> None:
    conv, shell = await opened(runtime)
    try:
        conv.items.add(Message("user", "hello there"))
        assert not shell.of(ResponseDone)  # an item is not a turn
        turn_id = await conv.respond(instructions="Be terse.")
        done = await shell.next_of(ResponseDone, turn_id=turn_id)
        request = fake_llm(runtime).requests[-1]
        assert request.system_prompt is not None
        assert request.system_prompt.startswith("Be terse.")
        assert [m.content for m in request.messages] == ["hello there"]
        assert conv.pipeline is not None
        assert conv.pipeline.config.system_prompt != "Be terse."  # for that answer only
        assert [(m.role, m.content) for m in conv.session.history] == [
            ("user", "hello there"),
            ("assistant", done.text),
        ]
        assert [e for e in shell.of(AudioOut) if e.turn_id == turn_id]  # spoken
        quiet = await conv.respond(speak=False)
        done = await shell.next_of(ResponseDone, turn_id=quiet)
        assert done.text == REPLY
        assert not [e for e in shell.of(AudioOut) if e.turn_id == quiet]  # text only, recorded whole
        assert conv.session.history[-1].content == REPLY
    finally:
        await shell.aclose()


async def test_truncate_keeps_the_words_heard_and_delete_removes_an_item(runtime: Runtime) -> None:
    conv, shell = await opened(runtime)
    try:
        await conv.push_text("tell me")
        done = await shell.next_of(ResponseDone)
        audio_s = sum(e.chunk.duration for e in shell.of(AudioOut) if e.turn_id == done.turn_id)
        with pytest.raises(InvalidInput, match="past the end"):
            conv.items.truncate(done.turn_id, audio_s * 1000 + 500)
        cut = conv.items.truncate(done.turn_id, audio_s * 1000 / 2)
        assert cut.interrupted
        assert REPLY.startswith(cut.content)
        assert 0 < len(cut.content) < len(REPLY)
        assert cut.metadata["generated"] == REPLY
        assert conv.session.history[-1] is cut
        assert conv.items.delete(0).content == "tell me"
        assert [m.role for m in conv.session.history] == ["assistant"]
        with pytest.raises(InvalidInput):
            conv.items.truncate("turn_unknown", 10)
    finally:
        await shell.aclose()


async def test_a_crashed_engine_is_swapped_in_its_slot_under_the_same_pipeline(tmp_path: Path) -> None:
    crash = {"calls": [2], "after": 2, "crash": True, "message": "segfault"}
    runtime = await make_runtime(tmp_path, **{"llm.options": {"fault": crash}})
    try:
        conv, shell = await opened(runtime)
        pipeline, first = conv.pipeline, fake_llm(runtime)
        await conv.push_text("zero")
        assert (await shell.next_of(ResponseDone)).text == REPLY
        await conv.push_text("one")
        crashed = await shell.next_of(ResponseDone)
        assert crashed.error == "engine_crashed"
        notice = await shell.next_of(NoticeOut)
        assert notice.data == {"kind": "restarted", "slot": "llm"}
        assert conv.pipeline is pipeline  # nothing rebuilt
        assert fake_llm(runtime) is not first
        assert first.closed
        await conv.push_text("two")
        assert (await shell.next_of(ResponseDone)).text == REPLY  # the fresh engine answers
        await shell.aclose()
    finally:
        await runtime.aclose()


async def test_refusals_raise_and_the_conversation_goes_on(runtime: Runtime) -> None:
    conv, shell = await opened(runtime)
    try:
        with pytest.raises(Refused) as unknown:
            await conv.switch_mode("karaoke")
        assert unknown.value.code == "unknown_mode"
        with pytest.raises(Refused) as bad:
            await conv.push_image(b"not an image", "png")
        assert bad.value.code == "bad_image"
        with pytest.raises(Refused) as nothing:
            conv.confirm("confirm_x", True)
        assert nothing.value.code == "unknown_action"
        await conv.push_text("still there?")
        assert (await shell.next_of(ResponseDone)).text == REPLY
    finally:
        await shell.aclose()


async def test_reconfigure_changes_the_voice_in_place_and_a_turn_setting_rebuilds(runtime: Runtime) -> None:
    conv, shell = await opened(runtime)
    try:
        pipeline = conv.pipeline
        voiced = runtime.settings.model_copy(
            update={"tts": runtime.settings.tts.model_copy(update={"voice": "alto"})}
        )
        await conv.reconfigure(voiced)
        assert conv.pipeline is pipeline
        assert pipeline is not None
        assert pipeline.config.voice == "alto"
        silence = voiced.model_copy(update={"turn": voiced.turn.model_copy(update={"backend": "silence"})})
        await conv.reconfigure(silence, client_tools=[ToolSpec("ping", "Ping the client")])
        assert conv.pipeline is not pipeline
        await conv.push_text("hi")
        await shell.next_of(ResponseDone)
        assert "ping" in [t.name for t in fake_llm(runtime).requests[-1].tools]
    finally:
        await shell.aclose()
