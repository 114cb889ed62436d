"""The server ``aria talk`` runs for itself, and where it remembers sessions for ``--resume``.

:func:`local_server` starts the same application as ``aria serve`` (``aria.server.app.create_app``: same
pipeline, session store and engines) in this process, with uvicorn on an ephemeral port of 127.0.0.1,
and yields its ``/ws`` URL. Nothing else can reach it (loopback only, a random port).

:class:`SessionMemory` keeps, per server URL, the last session ``aria talk`` held there and the resume
key of each session it held (``talk-sessions.json`` in the data directory), so ``aria talk --resume``
continues the last one and ``aria talk --resume SESSION_ID`` an earlier one, locally or with ``--server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from aria.core.config import Settings
from aria.server.app import create_app

__all__ = ["LocalServer", "SessionMemory", "local_server"]

log = logging.getLogger(__name__)

LOCAL = "local"


class LocalServer:
    """A running in-process server: its URL and its runtime (engines, sessions)."""

    def __init__(self, url: str, runtime: Any) -> None:
        self.url = url
        self.runtime = runtime


@contextlib.asynccontextmanager
async def local_server(settings: Settings, *, resume_id: str | None = None) -> AsyncIterator[LocalServer]:
    app = create_app(settings)
    runtime = app.state.runtime
    runtime.resume_id = resume_id
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        log_level="warning",
        ws="websockets-sansio",
        lifespan="on",
        ws_max_size=4 * 1024 * 1024,
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(), name="aria-talk-server")
    try:
        while not server.started:
            if task.done():
                await task  # raises what stopped it
                raise RuntimeError("the local server stopped while starting")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LocalServer(f"ws://127.0.0.1:{port}/ws", runtime)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


class _QuietServer(uvicorn.Server):
    """Leaves SIGINT and SIGTERM to ``aria talk``, which ends the conversation cleanly (saving it)
    and then stops this server; uvicorn's own handlers would stop the server under it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class SessionMemory:
    """Per server, in ``<data_dir>/talk-sessions.json``: the last session, and the resume key of each
    session held there (the newest :data:`KEYS_KEPT`), so ``--resume SESSION_ID`` opens an older one."""

    KEYS_KEPT = 100

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "talk-sessions.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _entry(self, server: str | None) -> dict[str, Any]:
        entry = self._read().get(server or LOCAL)
        return entry if isinstance(entry, dict) else {}

    def last(self, server: str | None) -> tuple[str | None, str | None]:
        """(session id, resume key) of the last session held with ``server`` (None: the local one)."""
        entry = self._entry(server)
        return entry.get("session_id"), entry.get("key")

    def key(self, server: str | None, session_id: str) -> str | None:
        """The resume key of ``session_id``, when ``aria talk`` held it with ``server``."""
        keys = self._entry(server).get("keys")
        return keys.get(session_id) if isinstance(keys, dict) else None

    def remember(self, server: str | None, session_id: str, key: str | None) -> None:
        data = self._read()
        entry = data.get(server or LOCAL)
        keys = entry.get("keys") if isinstance(entry, dict) else None
        keys = dict(keys) if isinstance(keys, dict) else {}
        if key is not None:
            keys.pop(session_id, None)  # the newest last: the oldest go first
            keys[session_id] = key
            for old in list(keys)[: -self.KEYS_KEPT]:
                del keys[old]
        data[server or LOCAL] = {"session_id": session_id, "key": key, "keys": keys}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
