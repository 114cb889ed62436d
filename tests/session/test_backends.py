"""Tests for aria.session.backends: the store the settings ask for, and periodic retention."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aria.core.config import SessionSettings
from aria.session.backends import prune_forever, session_store
from aria.session.files import MemorySnapshotStore
from aria.session.journal import JournalFileStore
from aria.session.redis_store import RedisSnapshotStore
from aria.session.store import SessionStore
from aria.types import Message


def test_the_file_store_is_a_journal_in_the_data_dir(tmp_path: Path) -> None:
    store = session_store(SessionSettings(max_messages=50, compact_every=7), tmp_path)
    assert isinstance(store.snapshots, JournalFileStore)
    assert store.snapshots.directory == tmp_path / "sessions"
    assert (store.snapshots.max_messages, store.snapshots.compact_every, store.max_messages) == (50, 7, 50)
    assert store.persist


def test_private_and_memory_stores_write_nothing_to_disk(tmp_path: Path) -> None:
    private = session_store(SessionSettings(persist=False), tmp_path)
    assert not private.persist
    memory = session_store(SessionSettings(store="memory"), tmp_path)
    assert isinstance(memory.snapshots, MemorySnapshotStore)
    assert list(tmp_path.iterdir()) == []


def test_the_redis_store_uses_the_url_and_lease(redis_store_url: str, tmp_path: Path) -> None:
    store = session_store(SessionSettings(store="redis", redis_url=redis_store_url, lease_s=3), tmp_path)
    try:
        assert isinstance(store.snapshots, RedisSnapshotStore)
        assert store.snapshots.lease_s == 3
        session, _ = store.open("via-settings", mode="voice_chat")
        session.history.append(Message("user", "hello"))
        store.save(session)
        store.flush()
        assert [s.id for s in store.list()] == ["via-settings"]
    finally:
        store.close()


async def test_retention_runs_again_every_period(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SessionStore(JournalFileStore(tmp_path), clock=lambda: now[0])
    session, _ = store.open("aging-session", mode="voice_chat")
    session.history.append(Message("user", "hello"))
    store.save(session)
    task = asyncio.create_task(prune_forever(store, 1.0, every_s=0.01))
    try:
        await asyncio.sleep(0.05)
        assert store.get("aging-session") is not None  # not old yet
        now[0] += 2 * 86400
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not store.list():
                break
        assert store.list() == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()


async def test_no_retention_returns_at_once(tmp_path: Path) -> None:
    await asyncio.wait_for(prune_forever(SessionStore(), 0), 1)


def test_an_unknown_store_is_refused() -> None:
    with pytest.raises(ValueError, match="store"):
        SessionSettings(store="disk")  # type: ignore[arg-type]
