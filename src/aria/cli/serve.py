"""``aria serve``: the WebSocket server and the browser client on http://127.0.0.1:8765/."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from aria.cli.common import settings_from_args
from aria.errors import ConfigError

__all__ = ["add_parser", "is_loopback"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("serve", help="run the server and the browser client")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument("--mode", help="start-up mode, e.g. voice_chat")
    p.add_argument("--token", help="require this bearer token from clients (needed off loopback)")
    p.add_argument("--resume", action="store_true", help="continue the last session (clients without an id)")
    p.set_defaults(run=_run)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(
        args,
        {"server.host": args.host, "server.port": args.port, "mode": args.mode, "server.token": args.token},
        quiet=False,
    )
    if not is_loopback(settings.server.host) and not settings.server.token:
        raise ConfigError(
            f"refusing to bind {settings.server.host} without a token: anyone on the network could use it",
            key="server.token",
            fix="pass --token SECRET (or set ARIA_SERVER__TOKEN), or bind 127.0.0.1",
        )
    import uvicorn

    from aria.server.app import create_app

    app = create_app(settings)
    if args.resume:
        runtime = app.state.runtime
        runtime.resume_id = runtime.sessions.latest_id()
        if runtime.resume_id:
            print(f"resuming session {runtime.resume_id}", file=sys.stderr)
    print(f"Aria is listening on http://{settings.server.host}:{settings.server.port}/", file=sys.stderr)
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.log.level.lower(),
        ws="websockets-sansio",
        log_config=None,
        ws_max_size=4 * 1024 * 1024,
    )
    return 0
