"""The /ws endpoint and REST API against a real server on 127.0.0.1, with a real WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from aria.types import AudioChunk
from tests.keys import OWNER
from tests.server.conftest import LiveServer, connect

REPLY = "Sure, here is the answer. It has two sentences."


def pcm_frames(ms: int, amplitude: float) -> list[bytes]:
    t = np.arange(320, dtype=np.float32) / 16000
    block = (amplitude * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    return [b"\x01" + AudioChunk(block, 16000).to_pcm16() for _ in range(ms // 20)]


async def test_session_message_comes_first_with_formats(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        s = client.session
        assert s["type"] == "session"
        assert s["protocol"] == 1
        assert s["resumed"] is False
        assert s["audio_in"] == {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1, "tag": 1}
        assert s["audio_out"]["sample_rate"] == 16000  # the fake TTS's rate
        assert s["engines"]["llm"]["state"] == "ready"
        assert "voice_chat" in s["modes"]


async def test_text_gets_streamed_tokens_paced_audio_and_response_done(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        await client.send({"type": "text", "text": "hello"})
        done = await client.until("response_done")
        await client.until("metrics")
        types = client.types()
        assert types.index("text_token") < types.index("<audio>") < types.index("response_done")
        assert done["text"] == REPLY
        assert done["interrupted"] is False
        tokens = "".join(
            m["text"] for _, m in client.messages if isinstance(m, dict) and m["type"] == "text_token"
        )
        assert tokens == REPLY
        audio = [(t, m) for t, m in client.messages if isinstance(m, bytes)]
        assert all(m[0] == 1 and len(m) % 2 == 1 for _, m in audio)
        seconds = sum((len(m) - 1) / 2 / 16000 for _, m in audio)
        assert abs(seconds * 1000 - done["audio_ms"]) < 1.0
        # Paced: ~0.48 s of audio cannot all arrive at once; lead is 300 ms.
        spread = audio[-1][0] - audio[0][0]
        assert spread >= seconds - 0.3 - 0.05
        states = [m["state"] for _, m in client.messages if isinstance(m, dict) and m["type"] == "state"]
        assert states == ["processing", "responding", "idle"]


async def test_speech_gets_a_transcript_and_an_answer(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        for frame in [*pcm_frames(400, 0.2), *pcm_frames(300, 0.0)]:
            await ws.send(frame)
        final = await client.until("transcript", final=True)
        assert final["text"] == "what time is it"
        done = await client.until("response_done")
        assert done["text"] == REPLY
        partials = [
            m
            for _, m in client.messages
            if isinstance(m, dict) and m["type"] == "transcript" and not m["final"]
        ]
        assert partials
        metrics = await client.until("metrics")
        assert metrics["waterfall"]["speech_end"] == 0.0
        assert metrics["waterfall"]["first_audio_out"] is not None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"type": "text"}), "invalid_message"),
        (json.dumps({"type": "control", "action": "switch_mode", "mode": "nope"}), "unknown_mode"),
        (
            json.dumps(
                {"type": "image", "data": base64.b64encode(b"not an image").decode(), "format": "jpeg"}
            ),
            "bad_image",
        ),
        (
            json.dumps({"type": "control", "action": "update_config", "config": {"llm.temperature": 9}}),
            "invalid_config",
        ),
        (b"\x01abc", "bad_audio"),
        (b"\x07hello", "unknown_frame_tag"),
        (b"", "empty_frame"),
        (b"\x02not-a-jpeg", "bad_image"),
        (b"\x01" + b"\x00" * 64000, "frame_too_large"),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_survives(
    live: LiveServer, frame: str | bytes, code: str
) -> None:
    ws, client = await connect(live)
    async with ws:
        await ws.send(frame)
        error = await client.until("error")
        assert error["code"] == code
        assert error["message"]
        await client.send({"type": "ping", "id": "still-there"})
        pong = await client.until("pong")
        assert pong["id"] == "still-there"
        await client.send({"type": "text", "text": "and now a real question"})
        assert (await client.until("response_done"))["text"] == REPLY


async def test_foreign_origin_is_refused_with_403(live: LiveServer) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(live.ws_url, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    own = f"http://127.0.0.1:{live.port}"
    ws, client = await connect(live, origin=own)  # type: ignore[arg-type]
    async with ws:
        assert client.session["type"] == "session"


@pytest.mark.parametrize("server_overrides", [{"server.token": "s3cret"}])
async def test_token_is_required_when_configured(live: LiveServer) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(live.ws_url)
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(live.ws_url + "?token=wrong")
    ws, client = await connect(live, "?token=s3cret")
    async with ws:
        assert client.session["type"] == "session"
    ws, client = await connect(live, additional_headers={"Authorization": "Bearer s3cret"})
    async with ws:
        assert client.session["type"] == "session"


@pytest.mark.parametrize("server_overrides", [{"tts.options": {"ms_per_char": 60.0}}])
async def test_interrupt_stops_audio_and_history_keeps_what_was_heard(live: LiveServer) -> None:
    ws, client = await connect(live)
    rate = client.session["audio_out"]["sample_rate"]
    async with ws:
        await client.send({"type": "text", "text": "talk for a while"})
        turn_id, received_s = None, 0.0
        while received_s < 0.7:  # no clock: as soon as 0.7 s of the ~2.9 s answer has arrived
            item = await client.next()
            if isinstance(item, bytes):
                received_s += (len(item) - 1) / 2 / rate
            elif item.get("turn_id"):
                turn_id = item["turn_id"]
        assert turn_id is not None
        # The client says how much it played (it wins over the server's estimate from time), then stops.
        await client.send({"type": "playback", "turn_id": turn_id, "played_ms": 600.0})
        await client.send({"type": "control", "action": "interrupt"})
        done = await client.until("response_done")
        assert done["interrupted"] is True
        audio = [m for _, m in client.messages if isinstance(m, bytes)]
        sent_ms = sum(len(frame) - 1 for frame in audio) / 2 / rate * 1000
        assert done["audio_ms"] == pytest.approx(sent_ms, abs=0.1)  # what was sent: what arrived
        assert 700 <= done["audio_ms"] < 2900  # what had arrived, not the whole answer
        after = len(client.messages)
        await client.send({"type": "ping", "id": "flush"})
        await client.until("pong")  # anything the server sent after response_done arrives before its pong
        assert not [m for _, m in client.messages[after:] if isinstance(m, bytes)]
        # Word-exact: at 60 ms a character, 600 ms played is "Sure," (0-0.3 s) and "here" (0.36-0.6 s).
        assert done["text"] == "Sure, here"
        async with httpx.AsyncClient(auth=OWNER) as http:
            session = (await http.get(f"{live.url}/sessions/{client.session['session_id']}")).json()
        assistant = session["history"][1]
        assert assistant["interrupted"] is True
        assert assistant["content"] == done["text"]


async def test_reconnecting_with_the_session_id_resumes_history(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        await client.send({"type": "text", "text": "remember me"})
        await client.until("response_done")
    session_id = client.session["session_id"]
    ws, again = await connect(live, f"?session_id={session_id}")
    async with ws:
        assert again.session["resumed"] is True
        assert again.session["session_id"] == session_id
    async with httpx.AsyncClient(auth=OWNER) as http:
        history = (await http.get(f"{live.url}/sessions/{session_id}")).json()["history"]
        assert [h["content"] for h in history] == ["remember me", REPLY]
        assert (await http.get(f"{live.url}/sessions/nope-nope-nope")).status_code == 404
    ws = await websockets.connect(live.ws_url + "?session_id=../../etc")
    refused = json.loads(await ws.recv())
    assert refused["code"] == "invalid_session"
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()


async def test_video_flood_does_not_disturb_the_conversation(live: LiveServer) -> None:
    jpeg = b"\x02\xff\xd8\xff" + b"\x00" * 5000
    ws, client = await connect(live)
    async with ws:
        await client.send({"type": "text", "text": "hello"})
        for _ in range(300):
            await ws.send(jpeg)
        done = await client.until("response_done")
        assert done["text"] == REPLY
        errors = [m for _, m in client.messages if isinstance(m, dict) and m["type"] == "error"]
        assert errors == []


async def metrics_once_recorded(http: httpx.AsyncClient, within: float = 5.0) -> str:
    """The /metrics text once the finished turn is counted there, polled against a deadline."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        text = (await http.get("/metrics")).text
        if 'aria_turns_total{outcome="completed"}' in text:
            return text
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no completed turn in /metrics within {within} s:\n{text}")
        await asyncio.sleep(0.01)


async def test_rest_health_models_config_metrics(live: LiveServer) -> None:
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        health = (await http.get("/health")).json()
        assert health["status"] == "ok"
        assert health["engines"]["llm"]["name"] == "fake"
        models = (await http.get("/models")).json()
        assert "llm:builtin" in models["engines"]["llm"]["registered"]
        assert models["voices"] == ["fake"]
        config = (await http.get("/config")).json()
        assert config["llm"]["temperature"] == 0.7
        updated = await http.post("/config", json={"llm.temperature": 0.2, "tts.voice": "fake"})
        assert updated.status_code == 200
        assert updated.json()["llm"]["temperature"] == 0.2
        refused = await http.post("/config", json={"server.port": 1})
        assert refused.status_code == 400
        assert refused.json()["key"] == "server.port"
        bad = await http.post("/config", content=b"[1,2", headers={"content-type": "application/json"})
        assert bad.status_code == 400
        form = await http.post("/config", content=b"llm.temperature=2")  # not JSON: no cross-site form posts
        assert form.status_code == 415
        ws, client = await connect(live)
        async with ws:
            await client.send({"type": "text", "text": "hi"})
            await client.until("metrics")
            text = await metrics_once_recorded(http)
        assert 'aria_turns_total{outcome="completed"} 1' in text
        assert 'aria_turn_stage_seconds_count{stage="first_token"} 1' in text
        assert "aria_active_connections" in text
        page = await http.get("/")
        assert page.status_code == 200
        assert "<html" in page.text.lower()


async def test_secrets_never_appear_in_config(tmp_path: Any) -> None:
    from tests.server.conftest import start_server

    info, server, task = await start_server(
        tmp_path, {"server.token": "tok-123", "llm.options": {"replies": ["x"]}}
    )
    try:
        async with httpx.AsyncClient(auth=OWNER, base_url=info.url) as http:
            body = (await http.get("/config")).text
        assert "tok-123" not in body
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
