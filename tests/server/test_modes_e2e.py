"""Every mode through a real server on 127.0.0.1: switching over ``/ws``, what each mode sends back, the
session surviving switches, residency swapping models within the budget, and the active monitor's
alerts on a scripted sequence of camera frames."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from aria.testing.speech import say
from aria.types import AudioChunk
from tests.engines.llm_servers import OpenAIServer, Script
from tests.keys import OWNER
from tests.server.conftest import Client, LiveServer, connect, engine, start_server, stop_server
from tests.server.test_endpoint import pcm_frames

BRIGHT_REPLY = "YES, a bright light is on."
DARK_REPLY = "NO, the room is dark."


def jpeg(level: int, *, square: int | None = None) -> bytes:
    """A 160x120 grey picture at ``level``, with a square of ``square`` in a corner when given."""
    array = np.full((120, 160, 3), level, np.uint8)
    if square is not None:
        array[10:70, 10:70] = square
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=90)
    return out.getvalue()


async def drain(client: Client, quiet: float = 0.3) -> None:
    """Receive until nothing arrives for ``quiet`` seconds."""
    try:
        while True:
            await client.next(within=quiet)
    except TimeoutError:
        pass


async def switch(client: Client, mode: str, **extra: Any) -> dict[str, Any]:
    if not client.of_type("mode"):
        await client.until("mode")  # the pipeline of the starting mode is ready
    await client.send({"type": "control", "action": "switch_mode", "mode": mode, **extra})
    return await client.until("mode", within=15)


# -- the mode catalogue --------------------------------------------------------------------------------


async def test_session_lists_every_mode_with_details_and_custom_modes(tmp_path: Path) -> None:
    custom = {"modes": {"shout": {"inputs": ["text"], "steps": ["llm"], "llm": {"system_prompt": "SHOUT"}}}}
    info, server, task = await start_server(tmp_path, custom)
    try:
        ws, client = await connect(info)
        async with ws:
            modes = client.session["modes"]
            details = {d["name"]: d for d in client.session["mode_details"]}
        builtin = ["voice_chat", "broadcast", "visual_chat", "active_monitor", "router", "deep_dive"]
        assert modes == [*builtin, "shout"]
        assert list(details) == modes
        assert details["broadcast"]["outputs"] == ["transcript"]
        assert details["broadcast"]["inputs"] == ["audio"]
        assert details["active_monitor"]["watches"] is True
        assert "notification" in details["active_monitor"]["outputs"]
        assert "video" in details["visual_chat"]["inputs"]
        assert details["shout"] == {
            "name": "shout",
            "label": "Shout",
            "description": "",
            "inputs": ["text"],
            "outputs": ["text"],
            "watches": False,
            "available": True,
            "reason": "",
        }
    finally:
        await stop_server(server, task)


async def test_a_custom_mode_from_config_answers_with_its_own_prompt_and_no_audio(tmp_path: Path) -> None:
    custom = {"modes": {"shout": {"inputs": ["text"], "steps": ["llm"], "llm": {"system_prompt": "SHOUT"}}}}
    info, server, task = await start_server(tmp_path, custom)
    try:
        ws, client = await connect(info)
        async with ws:
            assert (await switch(client, "shout"))["mode"] == "shout"
            await client.send({"type": "text", "text": "hello"})
            done = await client.until("response_done")
        assert done["text"]
        assert done["audio_ms"] == 0
        assert not [m for _, m in client.messages if isinstance(m, bytes)]
        llm = engine(info, "llm")
        assert llm.requests[-1].system_prompt.startswith("SHOUT")
    finally:
        await stop_server(server, task)


async def test_serve_starts_in_the_configured_mode(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, {"mode": "broadcast"})
    try:
        ws, client = await connect(info)
        async with ws:
            assert client.session["mode"] == "broadcast"
            await client.send({"type": "text", "text": "hello"})
            error = await client.until("error")
        assert error["code"] == "invalid_message"
        assert "only transcribes" in error["message"]
    finally:
        await stop_server(server, task)


# -- switching keeps the session -----------------------------------------------------------------------


async def test_broadcast_transcribes_only_and_history_survives_switches(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        await client.send({"type": "text", "text": "hello there"})
        await client.until("response_done")
        mode = await switch(client, "broadcast")
        assert mode == {"type": "mode", "mode": "broadcast", "watch": None, "engines": {"stt": "stt"}}
        start = len(client.messages)
        for frame in [*pcm_frames(400, 0.2), *pcm_frames(300, 0.0)]:
            await ws.send(frame)
        final = await client.until("transcript", final=True)
        done = await client.until("response_done")
        await client.until("state", state="idle")
        dictated = [m for _, m in client.messages[start:]]
        assert final["text"] == "what time is it"
        assert done["text"] == ""
        assert not [m for m in dictated if isinstance(m, bytes) or m["type"] == "text_token"]
        # Typed text is refused in dictation, and the connection stays up.
        await client.send({"type": "text", "text": "answer me"})
        assert (await client.until("error"))["code"] == "invalid_message"
        assert (await switch(client, "voice_chat"))["mode"] == "voice_chat"
        await client.send({"type": "text", "text": "and now?"})
        await client.until("response_done")
        session_id = client.session["session_id"]
    llm = engine(live, "llm")
    sent = [(m.role, m.content) for m in llm.requests[-1].messages]
    assert ("user", "hello there") in sent
    assert ("user", "what time is it") in sent  # the dictated text is part of the conversation
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        history = (await http.get(f"/sessions/{session_id}")).json()
    turns = [(m["role"], m["mode"]) for m in history["history"]]
    assert turns == [
        ("user", "voice_chat"),
        ("assistant", "voice_chat"),
        ("user", "broadcast"),
        ("user", "voice_chat"),
        ("assistant", "voice_chat"),
    ]
    assert history["mode"] == "voice_chat"


async def test_switching_mid_answer_interrupts_it_and_resume_keeps_the_mode(tmp_path: Path) -> None:
    slow = {"llm.options": {"replies": ["One two three four five six seven."], "token_interval_s": 0.1}}
    info, server, task = await start_server(tmp_path, slow)
    try:
        ws, client = await connect(info)
        async with ws:
            await client.send({"type": "text", "text": "count"})
            await client.until("text_token")
            await client.send({"type": "control", "action": "switch_mode", "mode": "deep_dive"})
            done = await client.until("response_done")
            mode = await client.until("mode")
            session_id = client.session["session_id"]
        assert done["interrupted"] is True
        assert mode["mode"] == "deep_dive"
        types = client.types()
        assert types.index("response_done") < len(types) - 1 - types[::-1].index("mode")
        ws, client = await connect(info, f"?session_id={session_id}")
        async with ws:
            assert client.session["resumed"] is True
            assert client.session["mode"] == "deep_dive"
    finally:
        await stop_server(server, task)


async def test_unknown_mode_and_set_watch_outside_the_monitor_are_errors(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        await client.send({"type": "control", "action": "switch_mode", "mode": "nope"})
        error = await client.until("error")
        assert error["code"] == "unknown_mode"
        assert "active_monitor" in error["message"]
        await client.send({"type": "control", "action": "set_watch", "watch": "a cat"})
        assert (await client.until("error"))["code"] == "invalid_message"
        await client.send({"type": "text", "text": "still here?"})
        await client.until("response_done")


# -- visual chat ---------------------------------------------------------------------------------------

LOOKING = {"llm.options": {"vision_replies": [BRIGHT_REPLY, DARK_REPLY]}}


async def test_visual_chat_answers_about_the_newest_picture(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, LOOKING)
    try:
        ws, client = await connect(info)
        async with ws:
            await switch(client, "visual_chat")
            await ws.send(b"\x02" + jpeg(20))  # the camera sees a dark room
            await client.send({"type": "text", "text": "what do you see?"})
            assert (await client.until("response_done"))["text"] == DARK_REPLY
            # An uploaded picture is newer than the camera frame: it is the one looked at.
            bright = base64.b64encode(jpeg(230)).decode()
            await client.send({"type": "image", "format": "jpeg", "data": bright, "text": "and now?"})
            assert (await client.until("response_done"))["text"] == BRIGHT_REPLY
        llm = engine(info, "llm")
        last = llm.requests[-1].messages
        assert len(last[-1].images) == 1
        assert all(not m.images for m in last[:-1])  # older pictures are not sent again
    finally:
        await stop_server(server, task)


async def test_visual_chat_sends_the_camera_frame_as_an_image_part_to_an_openai_server(
    tmp_path: Path,
) -> None:
    with OpenAIServer(Script(tokens=["A", " grey", " wall", "."])) as llm:
        overrides = {
            "llm.backend": "openai",
            "llm.options": {"base_url": llm.base_url, "model": "tiny-vlm"},
            "tts.options": {"ms_per_char": 1.0},
        }
        info, server, task = await start_server(tmp_path, overrides)
        try:
            ws, client = await connect(info)
            async with ws:
                await switch(client, "visual_chat")
                frame = jpeg(128)
                await ws.send(b"\x02" + frame)
                await client.send({"type": "text", "text": "what is this?"})
                done = await client.until("response_done")
            assert done["text"] == "A grey wall."
            body = llm.chat_requests()[-1].body
            content = body["messages"][-1]["content"]
            parts = {part["type"]: part for part in content}
            assert parts["text"]["text"] == "what is this?"
            url = parts["image_url"]["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            assert base64.b64decode(url.split(",", 1)[1]) == frame
        finally:
            await stop_server(server, task)


# -- active monitor -------------------------------------------------------------------------------------

#: Consecutive frames always differ (so the change gate lets each through); brightness decides.
SCRIPT = [("dark", 20, None), ("dark", 40, 90), ("bright", 230, None), ("bright", 200, 250),
          ("dark", 20, None), ("bright", 230, None)]  # fmt: skip


async def watch_frames(ws: Any, info: LiveServer, frames: list[tuple[str, int, int | None]]) -> None:
    """Send each frame once the previous one has been checked (the monitor checks one at a time)."""
    llm = engine(info, "llm")
    for _, level, square in frames:
        calls = llm.calls
        await ws.send(b"\x02" + jpeg(level, square=square))
        for _ in range(500):
            if llm.calls > calls:
                break
            await asyncio.sleep(0.01)
        assert llm.calls > calls, "the monitor did not check a changed frame"


def monitor_overrides(**mode: Any) -> dict[str, Any]:
    fast = {"every_s": 0.0, "every_frames": 1, "cooldown_s": 0.0, "dedup_s": 0.0, **mode}
    return {**LOOKING, "modes": {"active_monitor": fast}}


@pytest.mark.parametrize(
    ("mode", "alerts"),
    [
        ({}, 2),  # an alert each time the light comes on: frames 3 and 6
        ({"cooldown_s": 60.0}, 1),  # the second edge falls in the cooldown
        ({"dedup_s": 300.0}, 1),  # the second alert describes the same thing
    ],
    ids=["edges", "cooldown", "dedup"],
)
async def test_monitor_alerts_on_edges_with_cooldown_and_dedup(
    tmp_path: Path, mode: dict[str, Any], alerts: int
) -> None:
    info, server, task = await start_server(tmp_path, monitor_overrides(**mode))
    try:
        ws, client = await connect(info)
        async with ws:
            watching = await switch(client, "active_monitor", watch="the light is on")
            assert watching["watch"] == "the light is on"
            await watch_frames(ws, info, SCRIPT)
            await drain(client)
            notes = [m for m in client.of_type("notification") if m["data"].get("kind") == "monitor"]
        assert len(notes) == alerts
        assert notes[0]["data"]["condition"] == "the light is on"
        assert notes[0]["data"]["description"] == "a bright light is on."
        llm = engine(info, "llm")
        prompt = llm.requests[0].messages[-1]
        assert "the light is on" in prompt.content
        assert len(prompt.images) == 1
    finally:
        await stop_server(server, task)


async def test_monitor_is_told_by_voice_what_to_watch_and_keeps_talking(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, monitor_overrides())
    try:
        ws, client = await connect(info)
        async with ws:
            assert (await switch(client, "active_monitor"))["watch"] is None
            await client.send({"type": "text", "text": "Tell me when the light comes on."})
            done = await client.until("response_done")
            assert done["text"] == "Okay, I will tell you when I see that the light comes on."
            assert [m["watch"] for m in client.of_type("mode")] == [None, None, "the light comes on"]
            await watch_frames(ws, info, SCRIPT[:3])
            alert = await client.until("notification")
            assert alert["data"]["kind"] == "monitor"
            # The conversation goes on while it watches: a question about the scene is answered.
            await client.send({"type": "text", "text": "is it bright?"})
            assert (await client.until("response_done"))["text"] == BRIGHT_REPLY
            await client.send({"type": "control", "action": "set_watch", "watch": ""})
            assert (await client.until("mode"))["watch"] is None
            session_id = client.session["session_id"]
        async with httpx.AsyncClient(auth=OWNER, base_url=info.url) as http:
            history = (await http.get(f"/sessions/{session_id}")).json()["history"]
        assert any(m["content"].startswith("Seen:") for m in history)  # the alert is in the history
    finally:
        await stop_server(server, task)


async def test_monitor_needs_a_vision_model(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, {"llm.backend": "builtin", "llm.options": {}})
    try:
        ws, client = await connect(info)
        async with ws:
            await client.send({"type": "control", "action": "switch_mode", "mode": "active_monitor"})
            error = await client.until("error")
            mode = await client.until("mode")
            await client.send({"type": "text", "text": "hello"})
            await client.until("response_done")
        assert error["code"] == "mode_unavailable"
        assert "vision" in error["message"]
        assert mode["mode"] == "voice_chat"
    finally:
        await stop_server(server, task)


# -- router ------------------------------------------------------------------------------------------------


def router_overrides(reply: str) -> dict[str, Any]:
    return {
        "llm.options": {"replies": ["The main model says hi."]},
        "modes": {"router": {"router": {"options": {"replies": [reply]}}}},
    }


@pytest.mark.parametrize(
    ("reply", "route", "answer"),
    [
        ("Hi there!", "answer", "Hi there!"),
        ('TOOL:calculator:{"expression": "6 * 7"}', "tool", "The main model says hi."),
        ("TOOL:hand_off:{}", "hand_off", "The main model says hi."),
    ],
)
async def test_router_answers_calls_a_tool_or_hands_off(
    tmp_path: Path, reply: str, route: str, answer: str
) -> None:
    info, server, task = await start_server(tmp_path, router_overrides(reply))
    try:
        ws, client = await connect(info)
        async with ws:
            mode = await switch(client, "router")
            assert mode["engines"]["router"] == "router:router"
            assert mode["engines"]["llm"] == "llm"
            await client.send({"type": "text", "text": "what is six times seven?"})
            done = await client.until("response_done")
            metrics = await client.until("metrics")
        assert done["text"] == answer
        assert metrics["extra"]["route"] == route
        results = client.of_type("tool_result")
        assert [r["tool"] for r in results] == (["calculator"] if route == "tool" else [])
        router = engine(info, "router:router")
        main = engine(info, "llm")
        assert "hand_off" in [t.name for t in router.requests[0].tools]
        assert len(main.requests) == (0 if route == "answer" else 1)
        if route == "tool":
            assert "42" in main.requests[0].messages[-1].content
    finally:
        await stop_server(server, task)


# -- deep dive and residency -----------------------------------------------------------------------------


def deep_overrides(deep_mb: float) -> dict[str, Any]:
    return {
        "residency.budget_mb": 1000,
        "llm.memory_mb": 600,
        "stt.memory_mb": 50,
        "tts.memory_mb": 50,
        "modes": {"deep_dive": {"llm": {"options": {"replies": ["A deep answer."]}, "memory_mb": deep_mb}}},
    }


async def test_deep_dive_swaps_in_the_heavier_model_within_the_budget(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, deep_overrides(800))
    try:
        residency = info.runtime.residency
        ws, client = await connect(info)
        async with ws:
            await client.send({"type": "text", "text": "hi"})
            await client.until("response_done")
            mode = await switch(client, "deep_dive")
            assert mode["engines"]["llm"] == "llm:deep_dive"
            states = client.of_type("state")
            reasons = [s["reason"] for s in states]
            assert any(r.startswith("loading llm:deep_dive") for r in reasons)
            assert any(r.startswith("unloaded llm") for r in reasons)
            assert any("llm:deep_dive" in s["loading"] for s in states)
            assert set(residency.resident()) == {"stt", "tts", "llm:deep_dive"}  # sticky STT/TTS stay
            assert residency.resident_mb() <= residency.budget_mb
            await client.send({"type": "text", "text": "explain"})
            assert (await client.until("response_done"))["text"] == "A deep answer."
            deep = engine(info, "llm:deep_dive")
            assert deep.requests[-1].system_prompt.startswith("You are Aria in deep-dive mode")
            assert [m.content for m in deep.requests[-1].messages][:1] == ["hi"]  # same conversation
            await switch(client, "voice_chat")
            assert set(residency.resident()) == {"stt", "tts", "llm"}
        async with httpx.AsyncClient(auth=OWNER, base_url=info.url) as http:
            health = (await http.get("/health")).json()
        assert health["residency"]["budget_mb"] == 1000
        assert health["residency"]["engines"]["llm:deep_dive"]["resident"] is False
    finally:
        await stop_server(server, task)


async def test_a_mode_too_big_for_the_budget_is_refused_and_the_current_one_stays(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, deep_overrides(5000))
    try:
        ws, client = await connect(info)
        async with ws:
            await client.send({"type": "control", "action": "switch_mode", "mode": "deep_dive"})
            error = await client.until("error")
            mode = await client.until("mode")
            await client.send({"type": "text", "text": "hi"})
            done = await client.until("response_done")
        assert error["code"] == "residency_error"
        assert "budget" in error["message"]
        assert mode["mode"] == "voice_chat"
        assert done["text"] == "Sure, here is the answer. It has two sentences."
        assert "llm" in info.runtime.residency.resident()
    finally:
        await stop_server(server, task)


# -- real offline engines -----------------------------------------------------------------------------


async def test_dictation_with_real_offline_engines(tmp_path: Path) -> None:
    """Silero VAD and PocketSphinx on espeak speech: dictation gives final transcripts and nothing else."""
    real = {
        "vad.backend": "silero",
        "vad.options": {},
        "stt.backend": "pocketsphinx",
        "stt.options": {},
        "mode": "broadcast",
    }
    info, server, task = await start_server(tmp_path, real)
    try:
        ws, client = await connect(info)
        async with ws:
            assert (await client.until("mode"))["mode"] == "broadcast"
            speech = say("Please write this down.")
            audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
            for start in range(0, audio.size, 320):
                block = audio[start : start + 320]
                if block.size < 320:
                    block = np.pad(block, (0, 320 - block.size))
                await ws.send(b"\x01" + AudioChunk(block, 16000).to_pcm16())
            final = await client.until("transcript", final=True, within=30)
            await client.until("response_done", within=10)
        assert final["text"].strip()
        assert not [m for _, m in client.messages if isinstance(m, bytes)]
        assert not client.of_type("text_token")
    finally:
        await stop_server(server, task)
