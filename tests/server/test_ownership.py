"""A session belongs to whoever holds its resume key: through a live server, an owner and an intruder who
knows the id but not the key (over /ws and REST), takeover by a second connection with the key,
``GET /sessions`` scoped by keys (all with the server's token), ``--resume`` only with the key, and
sessions saved before keys existed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import websockets

from aria.server.ownership import KEY_META, give_key, key_matches, session_of_key
from aria.session.store import Session
from tests.server.conftest import Client, LiveServer, connect, start_server, stop_server

TOKEN = "tok-for-tests"


async def turn(client: Client, text: str) -> None:
    await client.send({"type": "text", "text": text})
    await client.until("response_done")
    await client.until("metrics")


async def new_session(
    live: LiveServer, text: str = "my bank PIN is 4321", query: str = ""
) -> tuple[str, str]:
    """A conversation with one turn; its id and key."""
    ws, client = await connect(live, query)
    async with ws:
        key = client.session["key"]
        await turn(client, text)
    return str(client.session["session_id"]), str(key)


async def refused(live: LiveServer, query: str) -> tuple[dict[str, Any], int | None]:
    """Open /ws with ``query``; the error it gets and the close code."""
    ws = await websockets.connect(live.ws_url + query)
    async with ws:
        client = Client(ws)
        first = await client.next()
        await until_closed(client)
    return first, ws.close_code


async def until_closed(client: Client) -> None:
    """Read until the server closes the connection (within 5 s)."""
    try:
        while True:
            await client.next()
    except websockets.ConnectionClosed:
        return


def keys_header(*keys: str) -> dict[str, str]:
    return {"X-Aria-Session-Key": ",".join(keys)}


# -- keys ------------------------------------------------------------------------------------------------


def test_a_key_names_its_session_and_only_its_hash_is_kept() -> None:
    session = Session("s_0123456789abcdef")
    key = give_key(session)
    assert session_of_key(key) == session.id
    assert len(key) > len(session.id) + 30
    assert session.meta[KEY_META] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(session.meta)
    assert key_matches(session, key)
    assert not key_matches(session, key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert not key_matches(session, None)
    assert session_of_key("no-dot") is None


async def test_the_key_comes_once_and_is_stored_only_as_a_hash(live: LiveServer, tmp_path: Path) -> None:
    session_id, key = await new_session(live)
    assert key.startswith(session_id + ".")
    ws, client = await connect(live, f"?session_id={session_id}&key={key}")
    async with ws:
        assert client.session["resumed"] is True
        assert client.session["key"] is None  # given once
    stored = "".join(p.read_text() for p in (tmp_path / "sessions").rglob("*") if p.is_file())
    assert session_id in stored
    assert key not in stored
    assert hashlib.sha256(key.encode()).hexdigest() in stored


# -- owner and intruder over /ws ---------------------------------------------------------------------------


async def test_an_intruder_with_the_id_but_not_the_key_is_refused_while_the_owner_talks_on(
    live: LiveServer,
) -> None:
    owner_ws, owner = await connect(live)
    session_id = owner.session["session_id"]
    async with owner_ws:
        await turn(owner, "remember that my bank PIN is 4321")
        other_id, other_key = await new_session(live, "hello")
        for query in (
            f"?session_id={session_id}",
            f"?session_id={session_id}&key=",
            f"?session_id={session_id}&key={other_key}",  # another session's key
            f"?session_id={session_id}&key={session_id}.guessed",
        ):
            error, code = await refused(live, query)
            assert error["type"] == "error", query
            assert error["code"] == "session_locked"
            assert "key" in error["message"]
            assert code == 4403
        # The owner saw none of it and goes on.
        await turn(owner, "what is my PIN?")
        assert "session_taken_over" not in json.dumps(owner.of_type("error"))
    history = live.runtime.sessions.get(session_id).history
    assert [m.content for m in history if m.role == "user"] == [
        "remember that my bank PIN is 4321",
        "what is my PIN?",
    ]
    assert other_id != session_id


async def test_a_second_connection_with_the_key_takes_the_session_over(live: LiveServer) -> None:
    first_ws, first = await connect(live)
    session_id, key = first.session["session_id"], first.session["key"]
    async with first_ws:
        await turn(first, "first question")
        second_ws, second = await connect(live, f"?session_id={session_id}&key={key}")
        async with second_ws:
            told = await first.until("error", within=5)
            assert told["code"] == "session_taken_over"
            await until_closed(first)
            assert first_ws.close_code == 4409
            assert second.session["resumed"] is True
            history = await second.until("history")
            assert history["messages"][0]["content"] == "first question"
            await turn(second, "second question")
    users = [m.content for m in live.runtime.sessions.get(session_id).history if m.role == "user"]
    assert users == ["first question", "second question"]


# -- REST --------------------------------------------------------------------------------------------------


async def test_rest_needs_the_key_and_lists_only_the_callers_sessions(live: LiveServer) -> None:
    a_id, a_key = await new_session(live, "alpha")
    b_id, b_key = await new_session(live, "bravo")
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/sessions")).json()["sessions"] == []
        listed = (await http.get("/sessions", headers=keys_header(a_key))).json()["sessions"]
        assert [s["session_id"] for s in listed] == [a_id]
        both = (await http.get("/sessions", headers=keys_header(a_key, b_key))).json()["sessions"]
        assert [s["session_id"] for s in both] == [b_id, a_id]  # newest first
        forged = (await http.get("/sessions", headers=keys_header(f"{b_id}.{a_key.split('.')[1]}"))).json()
        assert forged["sessions"] == []

        for method, path, body in (
            ("GET", f"/sessions/{a_id}", None),
            ("GET", f"/sessions/{a_id}/export?format=markdown", None),
            ("PATCH", f"/sessions/{a_id}", {"title": "mine now"}),
            ("DELETE", f"/sessions/{a_id}", None),
        ):
            for headers in ({}, keys_header(b_key)):
                answer = await http.request(method, path, json=body, headers=headers)
                assert answer.status_code == 403, (method, path, headers)
                assert answer.json()["code"] == "session_locked"
        read = await http.get(f"/sessions/{a_id}", headers=keys_header(a_key))
        assert read.status_code == 200
        assert read.json()["history"][0]["content"] == "alpha"
        exported = await http.get(f"/sessions/{a_id}/export?format=markdown", headers=keys_header(a_key))
        assert "alpha" in exported.text
        renamed = await http.patch(f"/sessions/{a_id}", json={"title": "Alpha"}, headers=keys_header(a_key))
        assert renamed.json()["title"] == "Alpha"
        assert (await http.delete(f"/sessions/{a_id}", headers=keys_header(a_key))).status_code == 200
        assert (await http.get(f"/sessions/{a_id}", headers=keys_header(a_key))).status_code == 404
        assert (await http.get(f"/sessions/{b_id}", headers=keys_header(b_key))).status_code == 200


async def test_the_server_token_lists_and_reads_every_session(tmp_path: Path) -> None:
    live, server, task = await start_server(tmp_path, {"server.token": TOKEN})
    try:
        a_id, _ = await new_session(live, "alpha", f"?token={TOKEN}")
        b_id, b_key = await new_session(live, "bravo", f"?token={TOKEN}")
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=live.url) as http:
            listed = (await http.get("/sessions", headers=bearer)).json()["sessions"]
            assert {s["session_id"] for s in listed} == {a_id, b_id}
            assert (await http.get(f"/sessions/{a_id}", headers=bearer)).status_code == 200
            assert (await http.get("/sessions")).status_code == 401  # no token at all
        # Over /ws the token alone does not open a keyed session: the key does.
        error, code = await refused(live, f"?token={TOKEN}&session_id={b_id}")
        assert (error["code"], code) == ("session_locked", 4403)
        ws, client = await connect(live, f"?token={TOKEN}&session_id={b_id}&key={b_key}")
        async with ws:
            assert client.session["resumed"] is True
    finally:
        await stop_server(server, task)


# -- --resume and sessions saved before keys ---------------------------------------------------------------


async def test_resume_continues_the_last_session_only_for_its_owner(live: LiveServer) -> None:
    session_id, key = await new_session(live, "the last one")
    live.runtime.resume_id = session_id  # what aria serve --resume sets
    ws, stranger = await connect(live)
    async with ws:
        assert stranger.session["resumed"] is False
        assert stranger.session["session_id"] != session_id
    ws, owner = await connect(live, f"?key={key}")
    async with ws:
        assert owner.session["resumed"] is True
        assert owner.session["session_id"] == session_id


def _legacy(live: LiveServer, session_id: str) -> None:
    """A session saved before keys existed (no key hash in its snapshot)."""
    session = Session(session_id)
    session.rename("old chat")
    live.runtime.sessions.save(session, force=True)
    assert not session.meta


async def test_a_session_without_a_key_is_reached_only_with_the_token(tmp_path: Path) -> None:
    live, server, task = await start_server(tmp_path, {"server.token": TOKEN})
    try:
        _legacy(live, "s_oldsession0001")
        async with httpx.AsyncClient(base_url=live.url) as http:
            read = await http.get("/sessions/s_oldsession0001", headers={"Authorization": f"Bearer {TOKEN}"})
            assert read.json()["title"] == "old chat"
        ws, client = await connect(live, f"?token={TOKEN}&session_id=s_oldsession0001")
        async with ws:
            claimed = client.session["key"]
            assert client.session["resumed"] is True
            assert claimed.startswith("s_oldsession0001.")
        error, code = await refused(live, f"?token={TOKEN}&session_id=s_oldsession0001")
        assert (error["code"], code) == ("session_locked", 4403)  # now it has a key: the key is needed
    finally:
        await stop_server(server, task)


async def test_without_a_server_token_an_old_session_stays_locked(live: LiveServer) -> None:
    _legacy(live, "s_oldsession0002")
    error, code = await refused(live, "?session_id=s_oldsession0002")
    assert (error["code"], code) == ("session_locked", 4403)
    assert "token" in error["message"]
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/sessions/s_oldsession0002")).status_code == 403
        assert (await http.get("/sessions")).json()["sessions"] == []
