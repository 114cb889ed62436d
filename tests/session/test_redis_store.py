"""Tests for aria.session.redis_store's leases, over a real redis-server: one store ("server") at a time
serves a session; a lease is renewed while a connection uses the session and expires when its holder
stops renewing; a server that takes a session back reads it again. (The snapshot and session store
tests run over Redis too: tests/session/test_files.py and test_store.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from aria.session.redis_store import RedisSnapshotStore
from aria.session.store import SessionBusy, SessionStore
from aria.types import Message

LEASE_S = 0.4


@pytest.fixture
def servers(redis_store_url: str) -> Iterator[tuple[RedisSnapshotStore, RedisSnapshotStore]]:
    a = RedisSnapshotStore(redis_store_url, lease_s=LEASE_S)
    b = RedisSnapshotStore(redis_store_url, lease_s=LEASE_S)
    yield a, b
    a.close()
    b.close()


def wait_until(condition: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_one_holder_at_a_time(servers: tuple[RedisSnapshotStore, RedisSnapshotStore]) -> None:
    a, b = servers
    assert a.acquire("shared-one") == "taken"
    assert a.acquire("shared-one") == "held"
    assert b.acquire("shared-one") == "busy"
    a.release("shared-one")
    assert b.acquire("shared-one") == "taken"
    assert a.acquire("shared-one") == "busy"
    assert a.held() == []
    assert b.held() == ["shared-one"]


def test_a_lease_in_use_is_renewed_and_an_idle_one_given_back(
    servers: tuple[RedisSnapshotStore, RedisSnapshotStore],
) -> None:
    a, b = servers
    connected = {"shared-two": True}
    a.keep_alive = lambda session_id: connected.get(session_id, False)
    assert a.acquire("shared-two") == "taken"
    time.sleep(3 * LEASE_S)  # three lease lengths: only renewal keeps it
    assert b.acquire("shared-two") == "busy"
    connected["shared-two"] = False  # the connection ended: the keeper gives it back
    wait_until(lambda: b.acquire("shared-two") == "taken", within=5 * LEASE_S)


def test_a_dead_holders_lease_expires(servers: tuple[RedisSnapshotStore, RedisSnapshotStore]) -> None:
    a, b = servers
    a.keep_alive = lambda _session_id: True
    assert a.acquire("shared-three") == "taken"
    a._stop.set()  # the holder stops renewing, as a SIGKILLed process does
    started = time.monotonic()
    wait_until(lambda: b.acquire("shared-three") == "taken", within=5 * LEASE_S)
    assert time.monotonic() - started >= LEASE_S * 0.5
    a.keep_leases()  # the old holder notices it lost the lease
    assert a.held() == []


def test_a_session_moves_between_session_stores_and_is_read_again(
    servers: tuple[RedisSnapshotStore, RedisSnapshotStore],
) -> None:
    a, b = servers
    first, second = SessionStore(a), SessionStore(b)
    session, resumed = first.open("moving-session", mode="voice_chat")
    assert not resumed
    session.connections = 1
    session.history.append(Message("user", "on the first server"))
    first.save(session)
    first.flush()
    with pytest.raises(SessionBusy, match="another server"):
        second.open("moving-session", mode="voice_chat")
    session.connections = 0  # disconnected: after its lease runs out the other server may take it
    wait_until(lambda: b.acquire("moving-session") != "busy", within=5 * LEASE_S)
    moved, resumed = second.open("moving-session", mode="voice_chat")
    assert resumed
    assert [m.content for m in moved.history] == ["on the first server"]
    moved.history.append(Message("user", "on the second server"))
    second.save(moved)
    second.flush()
    b.release("moving-session")
    back, _ = first.open("moving-session", mode="voice_chat")  # taken again: its stale copy is dropped
    assert back is not session
    assert [m.content for m in back.history] == ["on the first server", "on the second server"]
    first.close()
    second.close()


def test_prune_spares_a_session_another_server_holds(
    servers: tuple[RedisSnapshotStore, RedisSnapshotStore],
) -> None:
    a, b = servers
    store = SessionStore(a, clock=lambda: 1000.0)
    for name in ("held-elsewhere", "nobody-holds"):
        session, _ = store.open(name, mode="voice_chat")
        session.history.append(Message("user", name))
        store.save(session)
    store.flush()
    for name in ("held-elsewhere", "nobody-holds"):
        a.release(name)
    assert b.acquire("held-elsewhere") == "taken"
    assert a.prune(2000.0) == ["nobody-holds"]
    assert [s.id for s in a.list()] == ["held-elsewhere"]
