"""The session store a configuration asks for (``session.*`` settings)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aria.core.config import SessionSettings
from aria.errors import AriaError
from aria.session.files import MemorySnapshotStore, SnapshotStore
from aria.session.journal import JournalFileStore
from aria.session.store import SessionStore

__all__ = ["prune_forever", "session_store"]

log = logging.getLogger(__name__)


def session_store(settings: SessionSettings, data_dir: Path) -> SessionStore:
    """A :class:`SessionStore` over files in ``data_dir/sessions``, Redis or memory; with
    ``persist = false`` over nothing at all (nothing is written, not even the directory)."""
    snapshots: SnapshotStore
    if not settings.persist:
        snapshots = MemorySnapshotStore(max_snapshots=1)
    elif settings.store == "redis":
        from aria.session.redis_store import RedisSnapshotStore  # imports redis only when chosen

        snapshots = RedisSnapshotStore(
            settings.redis_url,
            max_messages=settings.max_messages,
            compact_every=settings.compact_every,
            lease_s=settings.lease_s,
        )
    elif settings.store == "memory":
        snapshots = MemorySnapshotStore()
    else:
        snapshots = JournalFileStore(
            data_dir / "sessions", max_messages=settings.max_messages, compact_every=settings.compact_every
        )
    return SessionStore(snapshots, max_messages=settings.max_messages, persist=settings.persist)


async def prune_forever(store: SessionStore, retention_days: float, *, every_s: float = 3600.0) -> None:
    """Delete sessions older than ``retention_days`` now and every ``every_s`` seconds (0 days: never).
    Failures are logged and tried again next time."""
    if retention_days <= 0:
        return
    while True:
        try:
            store.prune(retention_days)
        except (OSError, AriaError) as exc:
            log.warning("could not delete old sessions: %s", exc)
        await asyncio.sleep(every_s)
