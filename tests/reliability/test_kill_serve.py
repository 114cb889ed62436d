"""SIGKILL a real ``aria serve`` at random moments of a fast conversation: after a restart over the same
data directory the conversation has every turn that was answered before the kill, whole and in order
(the last one may be missing: it was on its way to the disk), and nothing torn."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import websockets

from tests.reliability.test_redis_servers import ready, until
from tests.server.conftest import free_port
from tests.server.test_persistence import ENV


def spawn(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``aria serve`` on fakes that answer at once (one short sentence, audio at 1 ms a character)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIA_")}
    env.update(
        ENV,
        ARIA_DATA_DIR=str(data_dir),
        ARIA_LLM__OPTIONS=json.dumps({"replies": ["Noted."]}),
        ARIA_TTS__OPTIONS=json.dumps({"ms_per_char": 1.0}),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "aria", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def converse(port: int, answered: list[str], stop_at: float) -> tuple[str, str | None]:
    """Typed questions one after another, each once the last is answered, until ``stop_at`` (or the
    server dies); the session id and
    its key (when the server gives one)."""
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws")
    session = await until(ws, "session")
    try:
        turn = 0
        while time.monotonic() < stop_at:
            question = f"question {turn}"
            await ws.send(json.dumps({"type": "text", "text": question}))
            await until(ws, "response_done")
            answered.append(question)
            turn += 1
            await asyncio.sleep(0.07)  # below the documented rate limit (20 messages a second)
    except (websockets.ConnectionClosed, OSError, TimeoutError):
        pass
    finally:
        await ws.close()
    return str(session["session_id"]), session.get("key")


async def test_a_server_killed_at_random_moments_keeps_every_answered_turn(tmp_path: Path) -> None:
    rng = random.Random(99)
    for attempt in range(3):
        data_dir, port = tmp_path / f"run{attempt}", free_port()
        proc = spawn(data_dir, port)
        try:
            await ready(port)
            answered: list[str] = []
            talking = asyncio.create_task(converse(port, answered, time.monotonic() + 30))
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            session_id, key = await talking
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert len(answered) >= 2, "the conversation did not get going before the kill"

        proc = spawn(data_dir, port)
        try:
            await ready(port)
            query = f"?session_id={session_id}" + (f"&key={key}" if key else "")
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws{query}") as ws:
                assert (await until(ws, "session"))["resumed"] is True
                history = (await until(ws, "history"))["messages"]
        finally:
            proc.terminate()
            proc.wait(10)
        asked = [m["content"] for m in history if m["role"] == "user"]
        assert asked == [f"question {turn}" for turn in range(len(asked))]  # in order, none torn
        assert len(answered) - 1 <= len(asked) <= len(answered) + 1, (attempt, len(answered), len(asked))
        for index, message in enumerate(history):
            if message["role"] == "assistant":
                assert history[index - 1]["role"] == "user"
