"""The session REST routes the page's conversation list uses: the list with titles, updated time and
message count, newest first; ``PATCH /sessions/{id}`` renames (an empty title goes back to the first
message, and the name survives a restart); delete; the token and Origin checks on each."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.keys import OWNER
from tests.server.conftest import LiveServer, connect, start_server, stop_server


async def talk(live: LiveServer, text: str, query: str = "") -> str:
    """One typed turn in a new session; its id."""
    ws, client = await connect(live, query)
    async with ws:
        await client.send({"type": "text", "text": text})
        await client.until("response_done")
        await client.until("metrics")
    return str(client.session["session_id"])


async def test_the_list_has_titles_updated_times_and_counts_newest_first(live: LiveServer) -> None:
    first = await talk(live, "What is   the capital\nof France?")
    long_question = "Tell me " + "a very long story about dragons " * 5
    second = await talk(live, long_question)
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        listed = (await http.get("/sessions")).json()["sessions"]
    assert [s["session_id"] for s in listed] == [second, first]
    assert listed[1]["title"] == "What is the capital of France?"
    assert listed[0]["title"].startswith("Tell me a very long story about dragons")
    assert listed[0]["title"].endswith("…")
    assert len(listed[0]["title"]) <= 80
    assert listed[0]["updated"] >= listed[1]["updated"] > 0
    assert all(s["messages"] == 2 for s in listed)  # the question and the answer
    assert all(s["mode"] == "voice_chat" for s in listed)


async def test_rename_then_reset_and_the_name_is_in_the_history_and_export(live: LiveServer) -> None:
    session_id = await talk(live, "hello there")
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        renamed = await http.patch(f"/sessions/{session_id}", json={"title": "  Greetings \n  chat "})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["title"] == "Greetings chat"
        assert renamed.json()["messages"] == 2
        listed = (await http.get("/sessions")).json()["sessions"]
        assert [s["title"] for s in listed] == ["Greetings chat"]
        assert (await http.get(f"/sessions/{session_id}")).json()["title"] == "Greetings chat"
        markdown = (await http.get(f"/sessions/{session_id}/export?format=markdown")).text
        assert markdown.startswith("# Greetings chat")
        reset = await http.patch(f"/sessions/{session_id}", json={"title": ""})
        assert reset.json()["title"] == "hello there"


async def test_rename_refuses_what_it_cannot_use(live: LiveServer) -> None:
    session_id = await talk(live, "hello there")
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        missing = await http.patch("/sessions/s_nosuchsession00", json={"title": "x"})
        assert missing.status_code == 404
        assert missing.json()["code"] == "unknown_session"
        assert (await http.patch("/sessions/bad%20id!", json={"title": "x"})).status_code == 400
        for body in ({}, {"title": 3}, ["title"]):
            refused = await http.patch(f"/sessions/{session_id}", json=body)
            assert refused.status_code == 400, body
            assert refused.json()["code"] == "invalid_message"
        form = await http.patch(
            f"/sessions/{session_id}", content=b"title=x", headers={"content-type": "text/plain"}
        )
        assert form.status_code == 415
        cross = await http.patch(
            f"/sessions/{session_id}", json={"title": "x"}, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        own = await http.patch(
            f"/sessions/{session_id}", json={"title": "Mine"}, headers={"origin": live.url}
        )
        assert own.status_code == 200
        assert (await http.get(f"/sessions/{session_id}")).json()["title"] == "Mine"


async def test_delete_removes_it_from_the_list(live: LiveServer) -> None:
    keep = await talk(live, "keep this one")
    drop = await talk(live, "drop this one")
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        cross = await http.delete(f"/sessions/{drop}", headers={"origin": "https://evil.example"})
        assert cross.status_code == 403
        assert (await http.delete(f"/sessions/{drop}")).status_code == 200
        listed = (await http.get("/sessions")).json()["sessions"]
        assert [s["session_id"] for s in listed] == [keep]
        assert (await http.delete(f"/sessions/{drop}")).status_code == 404


@pytest.mark.parametrize("server_overrides", [{"server.token": "s3cret"}])
async def test_the_routes_need_the_token_when_one_is_set(live: LiveServer) -> None:
    session_id = await talk(live, "hello there", "?token=s3cret")
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
        assert (await http.get("/sessions")).status_code == 401
        assert (await http.patch(f"/sessions/{session_id}", json={"title": "x"})).status_code == 401
        assert (await http.delete(f"/sessions/{session_id}")).status_code == 401
        auth = {"authorization": "Bearer s3cret"}
        assert (
            await http.patch(f"/sessions/{session_id}", json={"title": "x"}, headers=auth)
        ).status_code == 200
        assert [s["title"] for s in (await http.get("/sessions", headers=auth)).json()["sessions"]] == ["x"]


async def test_a_name_survives_a_restart(tmp_path: Path) -> None:
    live, server, task = await start_server(tmp_path, {})
    try:
        session_id = await talk(live, "hello there")
        async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
            assert (await http.patch(f"/sessions/{session_id}", json={"title": "Kept"})).status_code == 200
    finally:
        await stop_server(server, task)
    live, server, task = await start_server(tmp_path, {})
    try:
        async with httpx.AsyncClient(auth=OWNER, base_url=live.url) as http:
            listed = (await http.get("/sessions")).json()["sessions"]
            assert [(s["session_id"], s["title"]) for s in listed] == [(session_id, "Kept")]
            assert (await http.get(f"/sessions/{session_id}")).json()["title"] == "Kept"
    finally:
        await stop_server(server, task)
