"""Sessions survive: kill the server with SIGKILL in the middle of a turn, restart it, and continue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.keys import OWNER
from tests.server.conftest import LiveServer, connect, engine, free_port

ENV = {
    "ARIA_MODELS__OFFLINE": "1",  # no first-run pull in these subprocesses
    "ARIA_VAD__BACKEND": "fake",
    "ARIA_STT__BACKEND": "fake",
    "ARIA_STT__FALLBACK": "[]",
    "ARIA_LLM__BACKEND": "fake",
    "ARIA_LLM__FALLBACK": "[]",
    "ARIA_LLM__OPTIONS": json.dumps(
        {"replies": ["First answer, done.", "A second answer that takes long to say."]}
    ),
    "ARIA_TTS__BACKEND": "fake",
    "ARIA_TTS__FALLBACK": "[]",
    "ARIA_TTS__OPTIONS": json.dumps({"ms_per_char": 80.0}),
}


def spawn(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIA_")}
    env.update(ENV, ARIA_DATA_DIR=str(data_dir))
    return subprocess.Popen(
        [sys.executable, "-m", "aria", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    proc = spawn(data_dir, port)
    async with httpx.AsyncClient(auth=OWNER) as http:
        for _ in range(300):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).json()["status"] == "ok":
                    return proc
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


async def test_sigkill_mid_turn_loses_no_completed_turn(tmp_path: Path) -> None:
    port = free_port()
    live = LiveServer(settings=None, port=port)  # type: ignore[arg-type]
    proc = await start(tmp_path, port)
    try:
        ws, client = await connect(live)
        session_id = client.session["session_id"]
        async with ws:
            await client.send({"type": "text", "text": "first question"})
            first = await client.until("response_done")
            await client.send({"type": "text", "text": "second question"})
            while not isinstance(await client.next(), bytes):  # the second answer is playing
                pass
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    snapshot = json.loads((tmp_path / "sessions" / f"{session_id}.json").read_text())  # a whole, valid file
    assert snapshot["schema"] == 1

    proc = await start(tmp_path, port)
    try:
        ws, again = await connect(live, f"?session_id={session_id}")
        async with ws:
            assert again.session["resumed"] is True
            history = await again.until("history")
            contents = [(m["role"], m["content"], m["interrupted"]) for m in history["messages"]]
            assert contents[:2] == [("user", "first question", False), ("assistant", first["text"], False)]
            # The killed turn is absent or marked; never a torn or half-written answer.
            for role, _, interrupted in contents[2:]:
                assert role == "user" or interrupted
            await again.send({"type": "text", "text": "third question"})
            done = await again.until("response_done")
            assert done["text"]
    finally:
        proc.terminate()
        proc.wait(10)


async def test_sessions_are_listed_exported_and_deleted(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        await client.send({"type": "text", "text": "hello there"})
        await client.until("response_done")
        await client.until("metrics")
    session_id = client.session["session_id"]
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        listed = (await http.get("/sessions")).json()["sessions"]
        assert [s["session_id"] for s in listed] == [session_id]
        assert listed[0]["title"] == "hello there"
        md = await http.get(f"/sessions/{session_id}/export?format=markdown")
        assert md.status_code == 200
        assert "hello there" in md.text
        as_json = (await http.get(f"/sessions/{session_id}/export?format=json")).json()
        assert as_json["id"] == session_id
        assert (await http.delete(f"/sessions/{session_id}")).status_code == 200
        assert (await http.get(f"/sessions/{session_id}")).status_code == 404
        assert (await http.delete("/sessions/bad%20id!")).status_code == 400


@pytest.mark.parametrize("server_overrides", [{"llm.options": {"replies": ["Noted."]}}])
async def test_settings_changed_in_a_session_survive_a_reconnect(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        await client.send({"type": "control", "action": "update_config", "config": {"llm.temperature": 0.1}})
        await client.send({"type": "text", "text": "remember my settings"})
        await client.until("response_done")
    ws, again = await connect(live, f"?session_id={client.session['session_id']}")
    async with ws:
        await again.send({"type": "text", "text": "again"})
        await again.until("response_done")
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        exported = (await http.get(f"/sessions/{client.session['session_id']}/export?format=json")).json()
    assert exported["overrides"] == {"llm.temperature": 0.1}


@pytest.mark.parametrize(
    "server_overrides",
    [
        {
            "llm.context_tokens": 256,
            "llm.max_tokens": 64,
            "llm.summary_backend": "fake",
            "llm.summary_options": {"replies": ["The user asked many numbered questions."]},
        }
    ],
)
async def test_old_turns_are_summarised_by_the_summary_model(live: LiveServer) -> None:
    ws, client = await connect(live)
    async with ws:
        for index in range(14):
            await client.send({"type": "text", "text": f"question number {index} " + "padding words " * 6})
            await client.until("response_done")
    llm = engine(live)
    first, last = llm.requests[0], llm.requests[-1]
    assert "Summary of the earlier conversation" not in (first.system_prompt or "")
    assert "The user asked many numbered questions." in (last.system_prompt or "")
    assert "Current date and time:" in (last.system_prompt or "")
    assert len(last.messages) < 28  # older turns left the window: the summary stands in for them
    assert live.runtime.summarizer.calls >= 1
