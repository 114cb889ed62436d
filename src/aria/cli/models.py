"""``aria models list`` and ``aria models pull NAME`` (or ``--loadout default``: the language model sized to
this machine, Whisper, the Kokoro voice and the Smart Turn model): the model files engines need, and
fetching them.

Downloads resume where an interrupted one stopped, are checked against the catalog's size and SHA-256, and
show a one-line progress bar on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from aria.engines.catalog import CATALOG, ModelEntry, find_entry
from aria.engines.downloads import download, file_matches
from aria.engines.models import models_dir
from aria.errors import InvalidInput

__all__ = ["ProgressBar", "add_parser", "format_size", "list_models", "pull_model"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("models", help="list and download model files")
    which = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = which.add_parser("list", help="the models engines can use, and whether they are here")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.add_argument("--dir", metavar="DIR", help="models folder (default: <data dir>/models)")
    ls.set_defaults(run=_run_list)
    pull = which.add_parser("pull", help="download a model (resumes an interrupted download)")
    pull.add_argument(
        "name", metavar="NAME", nargs="?", help="a name from `aria models list`, e.g. kokoro or qwen3-4b"
    )
    pull.add_argument(
        "--loadout",
        choices=["default"],
        help="pull the default loadout for this machine (language model, Whisper, Kokoro, Smart Turn)",
    )
    pull.add_argument("--dir", metavar="DIR", help="models folder (default: <data dir>/models)")
    pull.add_argument("--force", action="store_true", help="download again even when the files are present")
    pull.set_defaults(run=_run_pull)


def _root(args: argparse.Namespace) -> Path:
    if getattr(args, "dir", None):
        return Path(args.dir).expanduser()
    if hasattr(args, "config"):  # the full `aria` parser: honour --config and ARIA_DATA_DIR
        from aria.cli.common import settings_from_args

        return models_dir(settings_from_args(args).data_dir)
    return models_dir()


def list_models(root: Path, catalog: tuple[ModelEntry, ...] = CATALOG) -> list[dict[str, Any]]:
    """One row per catalog entry: what it is, its download size, and whether it is in ``root``."""
    rows = []
    for entry in catalog:
        status = entry.status(root)
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "engine": entry.engine,
                "description": entry.description,
                "aliases": list(entry.aliases),
                "status": status,
                "present": status in ("present", "bundled"),
                "size": None if entry.bundled else entry.size,
                "sha256": [f.sha256 for f in entry.files],
                "local_size": entry.local_size(root),
                "path": None if entry.bundled else str(entry.local_path(root)),
                "files": [
                    {"url": f.url, "path": f.path, "size": f.size, "sha256": f.sha256} for f in entry.files
                ],
            }
        )
    return rows


def format_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _format_table(rows: list[dict[str, Any]], root: Path) -> str:
    header = ("NAME", "KIND", "SIZE", "STATUS", "DESCRIPTION")
    table = [header]
    for row in rows:
        size = "-" if row["status"] == "bundled" else format_size(row["size"])
        status = row["status"]
        if status == "partial":
            status = f"partial ({format_size(row['local_size'])})"
        table.append((row["name"], row["kind"], size, status, row["description"]))
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in table
    ]
    return "\n".join([*lines, "", f"models folder: {root}"])


def _run_list(args: argparse.Namespace) -> int:
    root = _root(args)
    rows = list_models(root)
    print(json.dumps(rows, indent=2) if args.json else _format_table(rows, root))
    return 0


class ProgressBar:
    """``label [#########.........]  45.2%  12.3 MB/27.0 MB  3.1 MB/s`` on one line, redrawn in place
    (``\\r``) at most every ``interval_s``, and always at 100%."""

    def __init__(
        self,
        label: str,
        stream: IO[str] | None = None,
        *,
        width: int = 24,
        interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._start_bytes: int | None = None
        self._last_draw = float("-inf")
        self._last_len = 0
        self._open = False

    def update(self, done: int, total: int | None) -> None:
        now = self._clock()
        if self._start_bytes is None:
            self._start_bytes = done  # bytes resumed from an earlier run do not count towards the rate
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < self.interval_s:
            return
        self._last_draw = now
        elapsed = now - self._started
        rate = (done - self._start_bytes) / elapsed if elapsed > 0 else 0.0
        if total:
            filled = min(self.width, self.width * done // total)
            bar = "#" * filled + "." * (self.width - filled)
            text = (
                f"{self.label} [{bar}] {100 * done / total:5.1f}%  "
                f"{format_size(done)}/{format_size(total)}  {format_size(int(rate))}/s"
            )
        else:
            text = f"{self.label} {format_size(done)}  {format_size(int(rate))}/s"
        self.stream.write("\r" + text + " " * max(0, self._last_len - len(text)))
        self.stream.flush()
        self._last_len = len(text)
        self._open = True

    def close(self) -> None:
        """End the line (if anything was drawn)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


async def pull_model(
    entry: ModelEntry,
    root: Path,
    *,
    force: bool = False,
    stream: IO[str] | None = None,
    client: Any = None,
    timeout_s: float = 30.0,
) -> list[Path]:
    """Download the files of ``entry`` missing from ``root`` (all of them with ``force``); returns the
    files downloaded. Files already present with the right size and checksum are kept."""
    fetched: list[Path] = []
    for file in entry.files:
        dest = file.local_path(root)
        if not force and await asyncio.to_thread(file_matches, dest, size=file.size, sha256=file.sha256):
            continue
        bar = ProgressBar(dest.name, stream)
        try:
            await download(
                file.url,
                dest,
                sha256=file.sha256,
                size=file.size,
                progress=bar.update,
                client=client,
                timeout_s=timeout_s,
            )
        finally:
            bar.close()
        fetched.append(dest)
    return fetched


def _run_pull(args: argparse.Namespace) -> int:
    if (args.name is None) == (args.loadout is None):
        raise InvalidInput("name a model to pull, or pass --loadout default (not both)")
    if args.loadout is not None:
        return _pull_loadout(args)
    entry = find_entry(args.name)
    if entry.bundled:
        print(f"{entry.name} is bundled with its Python package ({entry.engine}); nothing to download")
        return 0
    root = _root(args)
    fetched = asyncio.run(pull_model(entry, root, force=args.force))
    where = entry.local_path(root)
    if fetched:
        print(f"{entry.name}: downloaded {len(fetched)} file(s) to {where} ({format_size(entry.size)})")
    else:
        print(f"{entry.name}: already present in {where}")
    return 0


def _pull_loadout(args: argparse.Namespace) -> int:
    from aria.server.firstrun import machine_loadout

    loadout = machine_loadout()
    root = _root(args)
    print(f"default loadout: {loadout.describe()}: {', '.join(loadout.models)}")
    for name in loadout.models:
        entry = find_entry(name)
        fetched = asyncio.run(pull_model(entry, root, force=args.force))
        state = f"downloaded {len(fetched)} file(s)" if fetched else "already present"
        print(f"{entry.name}: {state} in {entry.local_path(root)}")
    return 0
