"""Two ``aria serve`` processes over one real redis-server: a session is served by one of them at a time
(the other refuses it while the first holds its lease), and after the first is SIGKILLed the session
continues on the second once the lease has expired, with its whole history."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets

from tests.redis_server import redis_server
from tests.server.conftest import free_port
from tests.server.test_persistence import ENV

LEASE_S = 1.5


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with redis_server(tmp_path) as url:
        yield url


def spawn(data_dir: Path, port: int, redis_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARIA_")}
    env.update(
        ENV,
        ARIA_DATA_DIR=str(data_dir),
        ARIA_SESSION__STORE="redis",
        ARIA_SESSION__REDIS_URL=redis_url,
        ARIA_SESSION__LEASE_S=str(LEASE_S),
        ARIA_LLM__OPTIONS=json.dumps({"replies": ["Noted."]}),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "aria", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def ready(port: int) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(400):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).json()["status"] in ("ok", "degraded"):
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"the server on port {port} did not start")


async def until(ws: websockets.ClientConnection, kind: str, within: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(raw, str) and (message := json.loads(raw))["type"] == kind:
            return dict(message)


def query(session_id: str, key: str | None) -> str:
    return f"?session_id={session_id}" + (f"&key={key}" if key else "")


async def test_a_session_moves_to_the_second_server_when_the_first_is_killed(
    tmp_path: Path, redis_url: str
) -> None:
    ports = [free_port(), free_port()]
    procs = [spawn(tmp_path / f"server{i}", port, redis_url) for i, port in enumerate(ports)]
    try:
        await asyncio.gather(*(ready(port) for port in ports))
        first = await websockets.connect(f"ws://127.0.0.1:{ports[0]}/ws")
        session = await until(first, "session")
        session_id, key = session["session_id"], session.get("key")
        await first.send(json.dumps({"type": "text", "text": "remember the blue door"}))
        assert (await until(first, "response_done"))["text"] == "Noted."

        # While the first server serves it, the second refuses the session.
        async with websockets.connect(f"ws://127.0.0.1:{ports[1]}/ws" + query(session_id, key)) as second:
            refused = await until(second, "error")
            assert "another server" in refused["message"]

        procs[0].send_signal(signal.SIGKILL)  # with the connection open: its lease is never given back
        procs[0].wait(10)
        killed_at = time.monotonic()
        while True:  # the lease expires LEASE_S after its last renewal
            second = await websockets.connect(f"ws://127.0.0.1:{ports[1]}/ws" + query(session_id, key))
            opened = json.loads(await second.recv())
            if opened["type"] == "session":
                break
            assert "another server" in opened["message"]
            await second.close()
            assert time.monotonic() - killed_at < 4 * LEASE_S, "the dead server's lease did not expire"
            await asyncio.sleep(0.2)
        async with second:
            assert opened["resumed"] is True
            history = await until(second, "history")
            assert [m["content"] for m in history["messages"]] == ["remember the blue door", "Noted."]
            await second.send(json.dumps({"type": "text", "text": "which door?"}))
            assert (await until(second, "response_done"))["text"] == "Noted."
        assert time.monotonic() - killed_at >= LEASE_S * 0.5  # it waited for the expiry, not less
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)

    assert stored_contents(redis_url, session_id) == [
        "remember the blue door",
        "Noted.",
        "which door?",
        "Noted.",
    ]
    assert not saved_on_disk(tmp_path)  # nothing on the servers' disks


def stored_contents(redis_url: str, session_id: str) -> list[str]:
    """The session as Redis holds it: the snapshot with the journal's records applied."""
    client = redis.Redis.from_url(redis_url)
    try:
        snapshot = json.loads(client.get(f"aria:session:{session_id}:snapshot") or b"{}")
        records = [json.loads(line) for line in client.lrange(f"aria:session:{session_id}:journal", 0, -1)]
    finally:
        client.close()
    messages = list(snapshot.get("history", []))
    for record in records:
        messages[record["at"] - snapshot.get("archived", 0) :] = record["messages"]
    return [m["content"] for m in messages]


def saved_on_disk(directory: Path) -> list[Path]:
    return list(directory.glob("server*/sessions/*"))
