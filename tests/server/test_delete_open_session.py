"""Deleting the conversation a connection has open: the connection's later saves (a turn, the save when it
closes) do not bring it back, on a live server and in the store itself."""

from __future__ import annotations

import asyncio

import httpx

from aria.session.files import MemorySnapshotStore
from aria.session.store import SessionStore
from tests.keys import OWNER
from tests.server.conftest import LiveServer, connect


async def test_the_open_conversation_stays_deleted_after_its_connection_saves(live: LiveServer) -> None:
    ws, client = await connect(live)
    session_id = str(client.session["session_id"])
    async with ws, httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        await client.send({"type": "text", "text": "remember this"})
        await client.until("metrics")
        assert (await http.get(f"/sessions/{session_id}")).status_code == 200
        deleted = await http.delete(f"/sessions/{session_id}")
        assert deleted.status_code == 200, deleted.text
        await client.send({"type": "text", "text": "and this too"})  # a turn after the delete saves again
        await client.until("metrics")
    # The connection is closed (it saved once more on the way out).
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        for _ in range(50):  # the close is handled by the server's own task
            if live.runtime.connections == 0:
                break
            await asyncio.sleep(0.02)  # waiting on the server's task, which takes no clock
        assert live.runtime.connections == 0
        assert (await http.get(f"/sessions/{session_id}")).status_code == 404
        listed = (await http.get("/sessions")).json()["sessions"]
        assert session_id not in [s["session_id"] for s in listed]


def test_a_deleted_session_object_is_not_saved_again_but_a_new_one_with_its_id_is() -> None:
    store = SessionStore(MemorySnapshotStore())
    session, _ = store.open("kept-then-deleted", mode="voice_chat")
    assert store.save(session, force=True)
    assert store.delete("kept-then-deleted")
    assert not store.save(session, force=True)  # the connection's copy
    assert store.get("kept-then-deleted") is None
    fresh, resumed = store.open("kept-then-deleted", mode="voice_chat")
    assert not resumed
    assert fresh is not session
    assert store.save(fresh, force=True)
    assert store.get("kept-then-deleted") is fresh
