"""Admission cannot be exhausted: request bodies are capped before they are read, half-sent headers are
timed out (slowloris), idle WebSockets give up their seats, one client address cannot take every seat,
and a connection's VAD costs kilobytes (one Silero model shared by all).

The HTTP limits are tested on a spawned ``aria serve`` (the uvicorn protocol it runs with), the WebSocket
limits on a live server in the test's loop with small limits."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from aria.engines.vad.silero import SileroVAD, find_model
from aria.server.limits import Admission, Refused, Seat, watch_idle
from aria.types import AudioChunk
from tests.server.conftest import Client, LiveServer, free_port

FAKES = {
    "ARIA_MODELS__OFFLINE": "1",
    "ARIA_VAD__BACKEND": "fake",
    "ARIA_STT__BACKEND": "fake",
    "ARIA_STT__FALLBACK": "[]",
    "ARIA_LLM__BACKEND": "fake",
    "ARIA_LLM__FALLBACK": "[]",
    "ARIA_TTS__BACKEND": "fake",
    "ARIA_TTS__FALLBACK": "[]",
    "ARIA_TURN__BACKEND": "silence",
    "ARIA_TURN__FALLBACK": "[]",
}


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def logged(self) -> str:
        return self.log.read_text(errors="replace")


def spawn_serve(data_dir: Path, env: dict[str, str], *args: str) -> Spawned:
    """``aria serve`` on a free port with fake engines (and ``env``), its log in ``data_dir/serve.log``;
    returns once ``/health`` answers (ok or not)."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("ARIA_")}
    full.update(FAKES, ARIA_DATA_DIR=str(data_dir), **env)
    log = data_dir / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aria", "serve", "--port", str(port), *args],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    spawned = Spawned(proc, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{spawned.url}/health", timeout=2)  # any answer: it is up (503 without an LLM)
            return spawned
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"aria serve did not start:\n{spawned.logged()}")


def stop(spawned: Spawned) -> None:
    spawned.proc.terminate()
    try:
        spawned.proc.wait(10)
    except subprocess.TimeoutExpired:
        spawned.proc.kill()
        spawned.proc.wait(5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawned]:
    spawned = spawn_serve(tmp_path_factory.mktemp("limits"), {"ARIA_SERVER__HEADER_TIMEOUT_S": "1"})
    try:
        yield spawned
    finally:
        stop(spawned)


def raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def read_response(sock: socket.socket, within: float = 5.0) -> bytes:
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b"content-length" in data.lower():
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    next(line for line in head.lower().split(b"\r\n") if b"content-length" in line).split(
                        b":"
                    )[1]
                )
                if len(body) >= length:
                    break
    except (ConnectionResetError, TimeoutError):
        pass
    return data


# -- request bodies ------------------------------------------------------------------------------------


def test_a_200_mb_post_is_refused_at_once_without_reading_it(served: Spawned) -> None:
    before = served.rss_mb()
    began = time.monotonic()
    with raw(served.port) as sock:
        sock.sendall(
            b"POST /config HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 209715200\r\n\r\n" + b"{" + b" " * (1024 * 1024)
        )
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"body_too_large" in response
    assert b"server.max_body_bytes" in response
    assert time.monotonic() - began < 3.0
    assert served.rss_mb() - before < 20  # was +390 MB when the body was read before refusing it
    assert httpx.get(f"{served.url}/health").status_code == 200  # and the server carries on


def test_a_chunked_body_is_refused_once_it_passes_the_limit(served: Spawned) -> None:
    before = served.rss_mb()
    with raw(served.port) as sock:
        sock.sendall(
            b"POST /config HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 65536
        sent = 0
        try:
            for _ in range(400):  # up to 25 MB, far past the 1 MiB limit
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert served.rss_mb() - before < 20


def test_small_bodies_still_pass(served: Spawned) -> None:
    response = httpx.post(f"{served.url}/config", json={"llm.temperature": 0.5})
    assert response.status_code == 200, response.text
    assert response.json()["llm"]["temperature"] == 0.5


# -- slowloris -----------------------------------------------------------------------------------------


def test_half_sent_headers_are_timed_out_in_seconds(served: Spawned) -> None:
    slow = [raw(served.port) for _ in range(5)]
    try:
        began = time.monotonic()
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):  # trickle more header lines: the deadline is not extended
            time.sleep(0.3)
            for sock in slow:
                sock.sendall(b"X-Slow: 1\r\n")
        # Meanwhile the server answers others.
        assert httpx.get(f"{served.url}/health", timeout=2).status_code == 200
        for sock in slow:
            answer = read_response(sock, within=5.0)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            assert sock.recv(1) == b""  # closed
        assert time.monotonic() - began < 3.0  # 1 s deadline (header_timeout_s), not forever
    finally:
        for sock in slow:
            sock.close()
    assert "no complete request headers within 1 s" in served.logged()


def test_a_silent_connection_is_closed_too(served: Spawned) -> None:
    with raw(served.port) as sock:
        began = time.monotonic()
        answer = read_response(sock, within=5.0)
        assert answer.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - began < 3.0


# -- the shared VAD model ------------------------------------------------------------------------------


@pytest.mark.skipif(find_model()[0] is None, reason="no Silero model installed")
async def test_silero_instances_share_one_model_and_cost_kilobytes_each() -> None:
    first = SileroVAD()
    await first.start()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        more = [SileroVAD() for _ in range(20)]
        for vad in more:
            await vad.start()
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_instance = (used - base) / len(more)
    assert all(vad._session is first._session for vad in more)  # one onnxruntime session
    assert per_instance < 100_000, f"{per_instance:.0f} bytes per VAD"
    # Each still has its own state: one hearing noise does not move another.
    noise = np.random.default_rng(0).normal(0, 0.3, 16000).astype(np.float32)
    more[0].process_all(AudioChunk(noise, 16000))
    assert more[0].last_probability > 0.0
    assert more[1].last_probability == 0.0
    for vad in [first, *more]:
        await vad.aclose()


# -- WebSocket admission and idleness (a live server in this loop) ------------------------------------

SMALL = {
    "server.max_connections": 6,
    "server.max_connections_per_client": 4,
    "server.idle_evict_s": 0.5,
    "server.idle_timeout_s": 0,
}


async def _closed_with(client: Client, within: float = 5.0) -> tuple[dict[str, Any] | None, int | None]:
    """Read until the server closes (or ``within`` passes); the last error and the close code (None:
    still open)."""
    error = None
    try:
        while True:
            item = await client.next(within)
            if isinstance(item, dict) and item.get("type") == "error":
                error = item
    except (websockets.ConnectionClosed, TimeoutError):  # closed, or still open after ``within``
        pass
    return error, client.ws.close_code


async def _try_connect(live: LiveServer) -> tuple[websockets.ClientConnection, Client]:
    ws = await websockets.connect(live.ws_url, max_queue=None)  # unread answers never stall a close
    client = Client(ws)
    client.session = await client.next()
    return ws, client


@pytest.mark.parametrize("server_overrides", [SMALL])
async def test_forty_idle_connections_do_not_lock_out_a_new_client(live: LiveServer) -> None:
    held: list[websockets.ClientConnection] = []
    refused_codes = []
    try:
        for _ in range(40):
            ws, client = await _try_connect(live)
            if client.session.get("type") == "session":
                held.append(ws)
                continue
            assert client.session["code"] == "too_many_connections"
            assert "max_connections_per_client" in client.session["message"]
            _, code = await _closed_with(client)
            refused_codes.append(code)
            await ws.close()
        assert len(held) == 4  # max_connections_per_client
        assert refused_codes == [1013] * 36
        # One of the held connections is in use: it keeps its seat.
        busy_ws = held[0]
        busy = Client(busy_ws)
        await asyncio.sleep(0.6)  # the others are now idle for longer than idle_evict_s
        await busy.send({"type": "text", "text": "still here"})
        await busy.until("response_done")
        newcomer_ws, newcomer = await _try_connect(live)
        async with newcomer_ws:
            assert newcomer.session["type"] == "session"  # admitted: an idle one made room
            await newcomer.send({"type": "text", "text": "hello"})
            await newcomer.until("response_done")
        evicted = 0
        for ws in held[1:]:
            if ws.close_code is None:
                await _closed_with(Client(ws), within=0.5)
            if ws.close_code == 4408:
                evicted += 1
        assert evicted == 1  # exactly one gave up its seat
        assert busy_ws.close_code is None  # the busy one was not chosen
    finally:
        for ws in held:
            await ws.close()


@pytest.mark.parametrize("server_overrides", [{"server.idle_timeout_s": 0.6}])
async def test_pings_keep_a_connection_only_until_the_idle_timeout(live: LiveServer) -> None:
    idle_ws, idle = await _try_connect(live)
    talking_ws, talking = await _try_connect(live)
    async with idle_ws, talking_ws:
        began = asyncio.get_running_loop().time()

        async def ping() -> None:
            for i in range(100):
                await idle.send({"type": "ping", "id": str(i)})
                await asyncio.sleep(0.1)

        pinger = asyncio.create_task(ping())
        for _ in range(3):  # turns keep the other one alive past the timeout
            await asyncio.sleep(0.3)
            await talking.send({"type": "text", "text": "and another thing"})
        try:
            error, code = await _closed_with(idle, within=3.0)
        finally:
            pinger.cancel()
            await asyncio.gather(pinger, return_exceptions=True)
        assert error is not None
        assert error["code"] == "idle_timeout"
        assert code == 4408
        assert 0.5 < asyncio.get_running_loop().time() - began < 2.5
        assert talking_ws.close_code is None


@pytest.mark.skipif(find_model()[0] is None, reason="no Silero model installed")
async def test_a_connection_with_a_silero_vad_costs_well_under_a_megabyte(tmp_path: Path) -> None:
    env = {
        "ARIA_VAD__BACKEND": "silero",
        "ARIA_SERVER__MAX_CONNECTIONS": "64",
        "ARIA_SERVER__MAX_CONNECTIONS_PER_CLIENT": "64",
    }
    served = await asyncio.to_thread(spawn_serve, tmp_path, env)
    url = f"ws://127.0.0.1:{served.port}/ws"
    held = []
    try:
        held.append(await websockets.connect(url))  # the first loads the model
        await held[0].recv()
        await asyncio.sleep(1.0)
        before = served.rss_mb()
        for _ in range(30):
            ws = await websockets.connect(url)
            await ws.recv()
            held.append(ws)
        await asyncio.sleep(2.0)  # each has built its pipeline and VAD
        per_connection_kb = (served.rss_mb() - before) * 1024 / 30
        assert per_connection_kb < 1024, f"{per_connection_kb:.0f} KB per connection"  # ~180 KB here
    finally:
        for ws in held:
            await ws.close()
        await asyncio.to_thread(stop, served)


# -- the admission rules, on a fake clock ----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_admission_gives_the_idlest_seat_to_a_newcomer_and_refuses_when_none_is_idle() -> None:
    clock = FakeClock()
    admission = Admission(
        max_total=lambda: 3, max_per_client=lambda: 2, evict_idle_s=lambda: 10.0, clock=clock
    )
    kicked: list[tuple[str, str, int]] = []

    def seat_for(address: str) -> Seat:
        seat = admission.admit(address)

        async def kick(code: str, message: str, close_code: int) -> None:
            kicked.append((seat.address, code, close_code))

        seat.kick = kick
        return seat

    a1, a2 = seat_for("10.0.0.1"), seat_for("10.0.0.1")
    with pytest.raises(Refused, match="max_connections_per_client"):
        admission.admit("10.0.0.1")  # nobody idle yet
    b1 = seat_for("10.0.0.2")
    with pytest.raises(Refused, match=r"3 connections \(max_connections\)"):
        admission.admit("10.0.0.3")
    clock.now += 11
    a2.touch()  # a2 and b1 are in use; a1 has been idle 11 s
    b1.touch()
    newcomer = seat_for("10.0.0.3")
    await asyncio.sleep(0)  # the kick runs as a task
    assert kicked == [("10.0.0.1", "idle_evicted", 4408)]
    assert a1 not in admission.seats
    assert {a2, b1, newcomer} == admission.seats
    admission.release(newcomer)
    assert newcomer.done.is_set()


async def test_watch_idle_closes_after_the_timeout_counted_from_the_last_use() -> None:
    clock = FakeClock()
    seat = Seat("10.0.0.1", clock)
    closed: list[str] = []

    async def kick(code: str, message: str, close_code: int) -> None:
        closed.append(code)

    seat.kick = kick
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # time passes only when the watcher sleeps
        waits.append(seconds)
        clock.now += seconds
        if len(waits) == 1:
            seat.touch()  # used during the first wait: the deadline moves

    await asyncio.wait_for(watch_idle(seat, lambda: 30.0, sleep=sleep), 1)
    assert closed == ["idle_timeout"]
    assert waits == [30.0, 30.0]
