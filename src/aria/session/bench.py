"""``aria bench store``: what saving a turn costs as a conversation grows (100, 1,000, 10,000 messages).

For each length a session is built with that many messages and saved whole, then ``turns`` more turns
(a question and its answer each) are added and saved one at a time, as the server does when a turn
completes. Measured per turn, in milliseconds (p50 and p95):

* ``loop_ms``: the :meth:`SessionStore.save` call itself, what the event loop spends (the journal);
* ``durable_ms``: until the turn is fsynced on disk (the save, then waiting for the writer thread);
* ``whole_ms``: the same save over a plain :class:`~aria.session.files.FileSnapshotStore`, which
  rewrites the whole snapshot (how Aria saved before the journal), for comparison.

The history bound is off here (``max_messages = 0``), so each length is really held in memory.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aria.core.metrics import percentile
from aria.session.files import FileSnapshotStore, SnapshotStore
from aria.session.journal import JournalFileStore
from aria.session.store import Session, SessionStore
from aria.types import Message

__all__ = ["DEFAULT_SIZES", "format_report", "store_bench"]

DEFAULT_SIZES = (100, 1_000, 10_000)
_TEXT = "a sentence of about the length people say in one breath, give or take a few words"


def _grown(store: SessionStore, messages: int) -> Session:
    session, _ = store.open(f"bench-{messages}", mode="voice_chat")
    for index in range(messages):
        text, when = f"{index} {_TEXT}", 1_700_000_000.0 + index
        message = (
            Message("user", text, timestamp=when)
            if index % 2 == 0
            else Message("assistant", text, timestamp=when)
        )
        session.history.append(message)
    store.save(session)
    store.flush()
    return session


def _turns(
    store: SessionStore, session: Session, turns: int, after: Callable[[], None]
) -> tuple[list[float], list[float]]:
    loop, durable = [], []
    for turn in range(turns):
        session.history.append(Message("user", f"question {turn} {_TEXT}"))
        session.history.append(Message("assistant", f"answer {turn} {_TEXT}"))
        started = time.perf_counter()
        store.save(session)
        saved = time.perf_counter()
        after()
        done = time.perf_counter()
        loop.append((saved - started) * 1000)
        durable.append((done - started) * 1000)
    return loop, durable


def _figures(values: Sequence[float]) -> dict[str, float]:
    return {"p50": round(percentile(list(values), 50), 3), "p95": round(percentile(list(values), 95), 3)}


def store_bench(
    sizes: Sequence[int] = DEFAULT_SIZES, *, turns: int = 50, directory: Path | None = None
) -> dict[str, Any]:
    """Run the benchmark (in ``directory``, else a temporary one); the result as a JSON-safe dict."""
    if turns < 1 or any(size < 0 for size in sizes):
        raise ValueError("turns must be at least 1 and sizes not negative")
    with tempfile.TemporaryDirectory(dir=directory) as temp:
        root = Path(temp)
        results: list[dict[str, Any]] = []
        for size in sizes:
            journal = SessionStore(JournalFileStore(root / f"journal-{size}", compact_every=10**9))
            loop, durable = _turns(journal, _grown(journal, size), turns, journal.flush)
            journal.close()
            plain: SnapshotStore = FileSnapshotStore(root / f"whole-{size}")
            whole_store = SessionStore(plain)
            whole, _ = _turns(whole_store, _grown(whole_store, size), turns, lambda: None)
            results.append(
                {
                    "messages": size,
                    "loop_ms": _figures(loop),
                    "durable_ms": _figures(durable),
                    "whole_ms": _figures(whole),
                }
            )
    flat = (
        results[-1]["loop_ms"]["p50"] / results[0]["loop_ms"]["p50"]
        if results and results[0]["loop_ms"]["p50"]
        else None
    )
    return {
        "bench": "store",
        "turns": turns,
        "sizes": results,
        "loop_p50_largest_over_smallest": round(flat, 3) if flat is not None else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }


def format_report(result: dict[str, Any]) -> str:
    lines = [f"Aria session store: saving one turn ({result['turns']} turns per length), ms p50 / p95"]
    for row in result["sizes"]:
        lines.append(
            f"  {row['messages']:>6} messages: "
            f"on the loop {row['loop_ms']['p50']} / {row['loop_ms']['p95']}, "
            f"on disk {row['durable_ms']['p50']} / {row['durable_ms']['p95']}; "
            f"whole snapshot {row['whole_ms']['p50']} / {row['whole_ms']['p95']}"
        )
    lines.append(f"  largest / smallest (on the loop, p50): x{result['loop_p50_largest_over_smallest']}")
    return "\n".join(lines)
