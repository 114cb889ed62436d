"""``aria serve``: the WebSocket server and the browser client on http://127.0.0.1:8765/.

On a machine missing models of the default loadout (and not ``--offline`` / ``models.offline``), the
server starts at once with what it has and pulls them in the background, with a progress bar here (rich's
when it is installed, else a line per tenth) and the progress in ``/health``'s ``downloads``.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import sys
from typing import IO, Any

from aria.cli.common import settings_from_args
from aria.cli.models import format_size
from aria.core.config import Settings
from aria.engines.models import models_dir
from aria.errors import ConfigError

__all__ = ["TerminalProgress", "add_parser", "is_loopback"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("serve", help="run the server and the browser client")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument("--mode", help="start-up mode, e.g. voice_chat")
    p.add_argument("--token", help="require this bearer token from clients (needed off loopback)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the last session (for a client that presents its key)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="download nothing: run with the models on disk (setting models.offline)",
    )
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
        {
            "server.host": args.host,
            "server.port": args.port,
            "mode": args.mode,
            "server.token": args.token,
            "models.offline": args.offline,
        },
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
    from aria.server.limits import uvicorn_options

    app = create_app(settings)
    _plan_first_run(app.state.runtime, settings)
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
        **uvicorn_options(settings.server.header_timeout_s),  # with a deadline for request headers
    )
    return 0


def _plan_first_run(runtime: Any, settings: Settings) -> None:
    """Give the runtime a background pull of the default loadout's missing models, when allowed."""
    from aria.server.firstrun import FirstRunPull, machine_loadout, missing_entries

    loadout = machine_loadout()
    runtime.preferred_llm = loadout.llm
    if settings.models.offline or not settings.models.auto_pull:
        return
    root = models_dir(settings.data_dir)
    missing = missing_entries(loadout.models, root)
    if not missing:
        return
    size = sum(e.size or 0 for e in missing)
    names = ", ".join(e.name for e in missing)
    print(
        f"first run: pulling {names} ({format_size(size)}, default loadout: {loadout.describe()}) in the "
        "background; until then Aria answers with what it has (aria serve --offline to skip)",
        file=sys.stderr,
    )
    pull = FirstRunPull(missing, root)
    pull.listeners.add(TerminalProgress.create())
    runtime.first_run = pull


class TerminalProgress:
    """Print a first-run pull's progress: a line per file at each tenth, and when it ends or fails."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._tenths: dict[str, int] = {}

    @staticmethod
    def create() -> Any:
        """rich's live progress bars when rich is installed, else plain lines."""
        if importlib.util.find_spec("rich") is not None:
            return _RichProgress()
        return TerminalProgress()

    def __call__(self, state: Any) -> None:
        if state.state == "failed":
            print(f"download failed: {state.file}: {state.error}", file=self.stream, flush=True)
            return
        if state.state == "done":
            if self._tenths.get(state.file) != 10:
                self._tenths[state.file] = 10
                print(f"downloaded {state.file} ({format_size(state.done)})", file=self.stream, flush=True)
            return
        if not state.total:
            return
        tenth = min(9, 10 * state.done // state.total)
        if self._tenths.get(state.file, -1) < tenth:
            self._tenths[state.file] = tenth
            print(
                f"downloading {state.file}: {10 * tenth}% of {format_size(state.total)}",
                file=self.stream,
                flush=True,
            )


class _RichProgress:
    """One rich progress bar per file, on stderr."""

    def __init__(self) -> None:
        rp: Any = importlib.import_module("rich.progress")  # optional: typed loosely

        self._progress = rp.Progress(
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.DownloadColumn(),
            rp.TransferSpeedColumn(),
            rp.TimeRemainingColumn(),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}

    def __call__(self, state: Any) -> None:
        task = self._tasks.get(state.file)
        if task is None:
            self._progress.start()
            task = self._tasks[state.file] = self._progress.add_task(state.file, total=state.total)
        description = f"{state.file} failed: {state.error}" if state.state == "failed" else state.file
        self._progress.update(task, completed=state.done, total=state.total, description=description)
        if all(self._progress.tasks[i].finished for i in range(len(self._progress.tasks))):
            self._progress.stop()
