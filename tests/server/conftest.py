"""A real Aria server on 127.0.0.1 (uvicorn in the test's event loop) with scripted fake engines."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets

from aria.core.config import Settings, load_settings
from aria.engines.chain import primary
from aria.server.app import create_app
from tests.keys import owned, remember

FAST_FAKES: dict[str, Any] = {
    "vad.backend": "fake",
    "vad.options": {"start_frames": 2, "end_frames": 8},
    "stt.backend": "fake",
    "stt.fallback": [],
    "stt.options": {"texts": ["what time is it"], "partial_every": 5},
    "llm.backend": "fake",
    "llm.fallback": [],
    "llm.options": {"replies": ["Sure, here is the answer. It has two sentences."]},
    "tts.backend": "fake",
    "tts.fallback": [],
    "tts.options": {"ms_per_char": 10.0},
    # Every pause ends the turn (the end-of-turn model's own tests use real speech).
    "turn.backend": "silence",
    "turn.fallback": [],
}


def engine(live: LiveServer, slot: str = "llm") -> Any:
    """The engine in a residency slot (the first of its fallback chain): the fake a test scripted."""
    loaded = live.runtime.residency.engine(slot)
    assert loaded is not None, f"{slot} is not loaded"
    return primary(loaded)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    settings: Settings
    port: int
    runtime: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


async def start_server(
    tmp_path: Path, overrides: dict[str, Any]
) -> tuple[LiveServer, uvicorn.Server, asyncio.Task[None]]:
    port = free_port()
    settings = load_settings(overrides={**FAST_FAKES, "data_dir": str(tmp_path), **overrides}, env={})
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, ws="websockets-sansio", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "server did not start"
    await app.state.runtime.ready.wait()
    return LiveServer(settings, port, app.state.runtime), server, task


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def live(tmp_path: Path, server_overrides: dict[str, Any]) -> AsyncIterator[LiveServer]:
    info, server, task = await start_server(tmp_path, server_overrides)
    try:
        yield info
    finally:
        await stop_server(server, task)


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Stop a server from :func:`start_server` and wait for it to finish."""
    server.should_exit = True
    await asyncio.wait_for(task, 10)


class Client:
    """A protocol client that records every message with its arrival time."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.messages: list[tuple[float, Any]] = []
        self.session: dict[str, Any] = {}

    async def next(self, within: float = 5.0) -> Any:
        raw = await asyncio.wait_for(self.ws.recv(), within)
        item = raw if isinstance(raw, bytes) else json.loads(raw)
        self.messages.append((asyncio.get_running_loop().time(), item))
        return item

    async def until(self, kind: str, within: float = 10.0, **match: Any) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            item = await self.next(max(0.01, deadline - asyncio.get_running_loop().time()))
            if (
                isinstance(item, dict)
                and item.get("type") == kind
                and all(item.get(k) == v for k, v in match.items())
            ):
                return item

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The JSON messages received so far of one ``type``."""
        return [m for _, m in self.messages if isinstance(m, dict) and m["type"] == kind]

    def types(self) -> list[str]:
        return ["<audio>" if isinstance(m, bytes) else m["type"] for _, m in self.messages]


async def connect(
    live: LiveServer, query: str = "", **kwargs: Any
) -> tuple[websockets.ClientConnection, Client]:
    ws = await websockets.connect(live.ws_url + owned(query), **kwargs)  # resuming: as the owner
    client = Client(ws)
    client.session = await client.next()
    remember(client.session)
    return ws, client
