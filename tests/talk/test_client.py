"""``aria talk`` as a native ``/ws`` client of a live server: token, typed turns, reconnect with
backoff and resume (also across a server restart), the session's resume key, the camera."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
import websockets

from aria.core.config import load_settings
from aria.server.app import create_app
from aria.talk.camera import Camera
from aria.talk.client import TalkClient, TalkError
from aria.talk.session import TalkSession
from tests.server.conftest import FAST_FAKES, engine, free_port, start_server, stop_server

REPLY = "Sure, here is the answer. It has two sentences."
TOKEN = "s3cret-token"


def _session(url: str, **client: Any) -> TalkSession:
    def make(**callbacks: Any) -> TalkClient:
        return TalkClient(url, backoff_s=(0.05, 0.4), **client, **callbacks)

    return TalkSession(make, source=None, make_sink=None)


async def _until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _serve(
    tmp_path: Path, port: int, overrides: dict[str, Any]
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    settings = load_settings(overrides={**FAST_FAKES, "data_dir": str(tmp_path), **overrides}, env={})
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await _until(lambda: server.started)
    return server, task


async def test_typed_turns_reconnect_and_resume_with_a_token(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, {"server.token": TOKEN})
    talk = _session(info.ws_url, token=TOKEN)
    run = asyncio.create_task(talk.run())
    try:
        await _until(lambda: talk.conversation.session_id is not None)
        first_id = talk.conversation.session_id
        assert await talk.submit("hello there")
        await _until(lambda: len(talk.conversation.answers()) == 1)
        # The network drops: the client reconnects with ?session_id= and the conversation goes on.
        await talk.client.drop_connection()
        await _until(lambda: talk.client.connects == 2)
        assert talk.client.session["resumed"] is True
        assert talk.conversation.session_id == first_id
        assert await talk.submit("and again")
        await _until(lambda: len(talk.conversation.answers()) == 2)
        assert [line.text for line in talk.conversation.answers()] == [REPLY, REPLY]
        assert any("reconnected" in line.text for line in talk.conversation.lines if line.role == "note")
        assert len(talk.conversation.latency_ms) == 2
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            saved = (await http.get(f"{info.url}/sessions/{first_id}")).json()
        assert [m["content"] for m in saved["history"]][:3] == ["hello there", REPLY, "and again"]
    finally:
        talk.stop()
        await run
        await stop_server(server, task)


async def test_a_wrong_token_is_refused_with_the_reason(tmp_path: Path) -> None:
    info, server, task = await start_server(tmp_path, {"server.token": TOKEN})
    try:
        talk = _session(info.ws_url, token="wrong")
        with pytest.raises(TalkError, match=r"HTTP 403.*--token"):
            await asyncio.wait_for(talk.run(), 10)
    finally:
        await stop_server(server, task)


async def test_reconnects_with_backoff_across_a_server_restart_and_resumes_from_disk(tmp_path: Path) -> None:
    port = free_port()
    server, task = await _serve(tmp_path, port, {})
    talk = _session(f"ws://127.0.0.1:{port}")
    run = asyncio.create_task(talk.run())
    try:
        await _until(lambda: talk.client.connects == 1)
        await talk.submit("remember this")
        await _until(lambda: len(talk.conversation.answers()) == 1)
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await _until(lambda: any("retrying" in line.text for line in talk.conversation.lines))
        await asyncio.sleep(0.5)  # a few retries fail while nothing listens
        server, task = await _serve(tmp_path, port, {})
        await _until(lambda: talk.client.connects == 2, within=15)
        assert talk.client.session["resumed"] is True  # the new server read the session from disk
        await talk.submit("still there?")
        await _until(lambda: len(talk.conversation.answers()) == 2)
    finally:
        talk.stop()
        await run
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_the_session_key_is_passed_back_on_resume() -> None:
    """A server that gives a resume key in ``session`` gets it back, with the id, on the reconnect."""
    paths: list[str] = []

    async def handler(ws: Any) -> None:
        paths.append(ws.request.path)
        await ws.send(json.dumps({"type": "session", "session_id": "s_0123456789abcdef", "key": "k-42",
                                  "resumed": len(paths) > 1, "mode": "voice_chat", "modes": ["voice_chat"],
                                  "audio_out": {"sample_rate": 24000}}))  # fmt: skip
        if len(paths) == 1:
            await ws.close()
        else:
            await asyncio.sleep(5)

    async with websockets.serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        talk = _session(f"ws://127.0.0.1:{port}/ws")
        run = asyncio.create_task(talk.run())
        try:
            await _until(lambda: len(paths) == 2)
        finally:
            talk.stop()
            await run
    assert paths[0] == "/ws"
    assert paths[1] == "/ws?session_id=s_0123456789abcdef&key=k-42"


async def test_the_camera_feeds_visual_chat_from_an_image_file(tmp_path: Path) -> None:
    import cv2

    picture = tmp_path / "bright.png"
    cv2.imwrite(str(picture), np.full((48, 64, 3), 230, np.uint8))
    info, server, task = await start_server(
        tmp_path, {"llm.options": {"vision_replies": ["I see a bright room.", "It is dark."]}}
    )

    def make(**callbacks: Any) -> TalkClient:
        return TalkClient(info.ws_url, **callbacks)

    talk = TalkSession(make, source=None, make_sink=None, camera=Camera(str(picture)))
    run = asyncio.create_task(talk.run())
    try:
        await _until(lambda: talk.conversation.mode == "voice_chat")
        await talk.submit("/mode visual_chat")
        await _until(lambda: talk.conversation.mode == "visual_chat")
        await _until(lambda: talk.camera is not None and talk.camera.sent >= 1)
        await talk.submit("what do you see?")
        await _until(lambda: len(talk.conversation.answers()) == 1)
        assert talk.conversation.answers()[0].text == "I see a bright room."
        assert len(engine(info, "llm").requests[-1].messages[-1].images) == 1
    finally:
        talk.stop()
        await run
        await stop_server(server, task)


def test_a_camera_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    from aria.errors import InvalidInput

    with pytest.raises(InvalidInput, match="no such file and not a camera number"):
        Camera(str(tmp_path / "missing.mp4"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    with pytest.raises(InvalidInput, match="cannot read this image"):
        Camera(str(broken))
