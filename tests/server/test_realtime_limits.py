"""``/v1/realtime`` takes a seat in the same admission as ``/ws``: the per-client and server-wide caps (a
refused client gets an ``error`` event ``too_many_connections`` and close code 1013), the idle timeout
(``idle_timeout``, 4408) and the eviction of the idlest seat for a newcomer (``idle_evicted``, 4408).

Driven against a live server on 127.0.0.1, with raw ``websockets`` clients where the close code matters
and the official ``openai`` SDK for an ordinary session (its events GA-checked by the recorder)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.server.conftest import LiveServer
from tests.server.test_realtime_ga import realtime


def realtime_url(live: LiveServer) -> str:
    return f"ws://127.0.0.1:{live.port}/v1/realtime?model=gpt-realtime"


async def first_event(ws: websockets.ClientConnection, within: float = 5.0) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return event


async def closed_with(ws: websockets.ClientConnection, within: float = 5.0) -> tuple[list[str], int | None]:
    """The error codes received until the server closes (or ``within`` passes), and the close code."""
    codes = []
    try:
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), within))
            if event["type"] == "error":
                codes.append(event["error"]["code"])
    except (websockets.ConnectionClosed, TimeoutError):
        pass
    return codes, ws.close_code


def cap(**server: Any) -> dict[str, Any]:
    """Server overrides: the given limits, no idle timeout unless given, eviction only after a minute."""
    return {"server.idle_timeout_s": 0, "server.idle_evict_s": 60} | {
        f"server.{k}": v for k, v in server.items()
    }


@pytest.mark.parametrize("server_overrides", [cap(max_connections_per_client=2)])
async def test_the_per_client_cap_refuses_a_third_realtime_connection_with_an_error_event(
    live: LiveServer,
) -> None:
    async with realtime(live.port) as first, websockets.connect(realtime_url(live)) as second:
        assert (await first.next())["type"] == "session.created"
        assert (await first_event(second))["type"] == "session.created"
        async with websockets.connect(realtime_url(live)) as third:
            refused = await first_event(third)
            assert refused["type"] == "error"
            assert refused["error"]["code"] == "too_many_connections"
            assert "max_connections_per_client" in refused["error"]["message"]
            assert await closed_with(third) == ([], 1013)
        # The first two are untouched: a text turn still goes through on the SDK's connection.
        await first.send({"type": "response.create"})
        assert (await first.until("response.done"))["response"]["status"] == "completed"
    # Seats are given back on close: a new one is admitted.
    async with websockets.connect(realtime_url(live)) as again:
        assert (await first_event(again))["type"] == "session.created"


@pytest.mark.parametrize("server_overrides", [cap(max_connections=2, max_connections_per_client=16)])
async def test_realtime_and_ws_share_the_server_wide_cap(live: LiveServer) -> None:
    async with websockets.connect(live.ws_url) as page, websockets.connect(realtime_url(live)) as rt:
        assert (await first_event(page))["type"] == "session"
        assert (await first_event(rt))["type"] == "session.created"
        async with websockets.connect(realtime_url(live)) as third:
            refused = await first_event(third)
            assert refused["error"]["code"] == "too_many_connections"
            assert "(max_connections)" in refused["error"]["message"]
            assert await closed_with(third) == ([], 1013)
        async with websockets.connect(live.ws_url) as fourth:  # /ws is refused for the same reason
            assert (await first_event(fourth))["code"] == "too_many_connections"


@pytest.mark.parametrize("server_overrides", [cap(idle_timeout_s=0.6)])
async def test_an_idle_realtime_connection_is_closed_and_a_busy_one_is_not(live: LiveServer) -> None:
    async with websockets.connect(realtime_url(live)) as idle, realtime(live.port) as busy:
        assert (await first_event(idle))["type"] == "session.created"
        assert (await busy.next())["type"] == "session.created"
        began = asyncio.get_running_loop().time()
        for _ in range(4):  # client events keep the other one alive past the timeout
            await asyncio.sleep(0.3)
            await busy.send({"type": "session.update", "session": {"type": "realtime", "instructions": "hi"}})
            await busy.until("session.updated")
        codes, close_code = await closed_with(idle, within=3.0)
        assert codes == ["idle_timeout"]
        assert close_code == 4408
        assert 0.5 < asyncio.get_running_loop().time() - began < 2.5
        assert busy.conn._connection.close_code is None


@pytest.mark.parametrize(
    "server_overrides", [cap(max_connections_per_client=1, idle_evict_s=0.3, idle_timeout_s=30)]
)
async def test_the_idlest_realtime_seat_is_given_up_to_a_newcomer(live: LiveServer) -> None:
    async with realtime(live.port) as old:
        assert (await old.next())["type"] == "session.created"
        await asyncio.sleep(0.4)  # idle for longer than idle_evict_s
        async with websockets.connect(realtime_url(live)) as newcomer:
            assert (await first_event(newcomer))["type"] == "session.created"
            evicted = await old.until("error")
            assert evicted["error"]["code"] == "idle_evicted"
            assert evicted["error"]["type"] == "server_error"
            await asyncio.wait_for(old.conn._connection.wait_closed(), 5)
            assert old.conn._connection.close_code == 4408
