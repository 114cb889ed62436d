"""A real Aria server in a thread of its own (its own event loop), and a synchronous protocol client.

The server runs like ``aria serve`` runs it (uvicorn, ``websockets-sansio``, frames up to 4 MiB), with
the fake engines of :data:`tests.server.conftest.FAST_FAKES`. Running it in its own thread keeps the
server's tasks apart from the test's: :meth:`ServerThread.tasks` counts the server's alone, and a
client that blocks (a flood, a sync Hypothesis test) never stalls the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Self, TypeVar

import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from aria.core.config import Settings, load_settings
from aria.server.app import create_app
from tests.keys import owned, remember
from tests.server.conftest import FAST_FAKES, free_port

__all__ = ["CLIENT_OPTIONS", "WS_MAX_SIZE", "Closed", "ServerThread", "SyncClient", "rss_mb"]

T = TypeVar("T")
#: What ``aria serve`` gives uvicorn (``ws_max_size``): a frame over it closes the connection (1009).
WS_MAX_SIZE = 4 * 1024 * 1024
#: Client options: no proxy from the environment, no compression (frames are sent as big as they are).
CLIENT_OPTIONS: dict[str, Any] = {"proxy": None, "compression": None, "open_timeout": 5}


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class ServerThread:
    def __init__(self, data_dir: Path, overrides: dict[str, Any] | None = None) -> None:
        self.settings: Settings = load_settings(
            overrides={**FAST_FAKES, "data_dir": str(data_dir), **(overrides or {})}, env={}
        )
        self.port = free_port()
        self.app = create_app(self.settings)
        self.loop = asyncio.new_event_loop()
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="aria-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by __enter__ / __exit__
            self._failed = exc
            self._ready.set()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            ws="websockets-sansio",
            ws_max_size=WS_MAX_SIZE,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        task = asyncio.create_task(self._server.serve(), name="uvicorn")
        while not self._server.started:
            if task.done():
                await task
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.01)
        await self.runtime.ready.wait()
        self._ready.set()
        await task

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(20) or self._failed is not None:
            raise RuntimeError(f"the server did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        server = self._server
        if server is not None:
            self.loop.call_soon_threadsafe(setattr, server, "should_exit", True)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the server did not stop"
        if self._failed is not None:
            raise self._failed

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def tasks(self) -> int:
        """The server loop's unfinished tasks (this query's own task not counted)."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return self.call(count)

    def quiet(self, within: float = 10.0) -> int:
        """Wait until no connection is open and its clean-up is done; then the task count."""
        deadline = time.monotonic() + within
        while self.runtime.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.runtime.connections == 0, "a connection never finished"
        time.sleep(0.05)
        return self.tasks()


class Closed(Exception):
    """The server closed the connection."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed by the server: {code} {reason}")
        self.code = code
        self.reason = reason


class SyncClient:
    """A blocking protocol client. Keeps to the documented rate (about 20 messages a second, bursts of
    40) with headroom, so rate limiting never interferes with what a test looks at."""

    RATE_PER_S = 15.0
    BURST = 30

    def __init__(self, server: ServerThread, query: str = "", **kwargs: Any) -> None:
        self.server = server
        options: dict[str, Any] = {**CLIENT_OPTIONS, "max_size": None, "max_queue": None}
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(server.ws_url + owned(query), **{**options, **kwargs})  # resuming: as the owner
        )
        self.session: dict[str, Any] = json.loads(self.ws.recv(10))
        remember(self.session)
        assert self.session["type"] == "session"
        self._tokens = float(self.BURST)
        self._last = time.monotonic()
        self._pings = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def pace(self, cost: int) -> None:
        """Take ``cost`` tokens of the client's own bucket, waiting for them if needed."""
        while True:
            now = time.monotonic()
            self._tokens = min(float(self.BURST), self._tokens + (now - self._last) * self.RATE_PER_S)
            self._last = now
            if self._tokens >= cost:
                self._tokens -= cost
                return
            time.sleep((cost - self._tokens) / self.RATE_PER_S)

    def send(self, frame: str | bytes, *, limited: bool = False, text: bool | None = None) -> None:
        if limited:
            self.pace(1)
        try:
            self.ws.send(frame, text=text)
        except ConnectionClosed as exc:
            raise self._closed(exc) from exc

    def send_json(self, message: dict[str, Any]) -> None:
        self.send(json.dumps(message), limited=message.get("type") in ("text", "image", "control", "ping"))

    def next(self, within: float = 5.0) -> dict[str, Any] | bytes:
        try:
            raw = self.ws.recv(within)
        except ConnectionClosed as exc:
            raise self._closed(exc) from exc
        return raw if isinstance(raw, bytes) else dict(json.loads(raw))

    def until(self, kind: str, within: float = 10.0, **match: Any) -> tuple[dict[str, Any], list[Any]]:
        """Read until a ``kind`` message matching ``match``; it and everything read before it."""
        deadline = time.monotonic() + within
        seen: list[Any] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} {match} within {within} s; got {seen[-5:]}")
            item = self.next(left)
            if (
                isinstance(item, dict)
                and item["type"] == kind
                and all(item.get(k) == v for k, v in match.items())
            ):
                return item, seen
            seen.append(item)

    def ping(self, within: float = 5.0) -> list[Any]:
        """Ping and wait for its pong; everything that arrived before it."""
        self._pings += 1
        ping_id = f"probe-{self._pings}"
        self.send_json({"type": "ping", "id": ping_id})
        _, seen = self.until("pong", within, id=ping_id)
        return seen

    def _closed(self, exc: ConnectionClosed) -> Closed:
        received = exc.rcvd
        return Closed(received.code if received else None, received.reason if received else "")
