"""The soak benchmark: hundreds of turns against a real server, looking for leaks and lost turns.

A real Aria server runs in this process (uvicorn on 127.0.0.1, the event loop shared with the client)
over fake engines at nearly full speed. A WebSocket client holds a conversation through it: typed turns
and spoken turns (PCM frames through the fake VAD and STT), every ``interrupt_every``-th answer cut short
after its first token (alternately by ``control``/``interrupt`` and by the next typed question), and every
``reconnect_every`` turns the connection closed and reopened with ``?session_id=`` to resume. The client
keeps to the documented rate limit (and resends a message that still gets ``rate_limited``).

Measured:

* resources before (after a warm-up) and after, with no connection open: RSS, open file descriptors,
  asyncio tasks, objects tracked by the garbage collector, and with ``tracemalloc`` the traced memory;
* turns completed, interrupted and lost: a turn is lost when it started (its id appeared) and never got
  ``response_done``, or when the saved history misses it. The history is checked twice at the end,
  turn by turn and in order: through ``GET /sessions/{id}`` on the live server, and again through a
  second server started over the same data directory (what was saved on disk);
* ``error`` messages received, by code, and the turn latency: input sent (the last audio frame for a
  spoken turn) to the first ``text_token`` and to ``response_done``, for answers that completed.

What grows is not all leak: the conversation's history grows by two messages a turn, and the fake
engines keep a record of every request (``FakeLLM.requests``, the ``waits`` of each fake,
``FakeSTT.arrivals``), about 3 KB a turn between them.

The bench sits below the server in the layering, so the server's application factory
(``aria.server.app.create_app``) is passed in by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import platform
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from aria.bench.soak_client import HEARD, KEY_HEADER, REPLY, TURN_TIMEOUT_S, SoakClient, Turn, connect
from aria.core.config import Settings, load_settings
from aria.core.metrics import percentile

__all__ = ["AppFactory", "Resources", "SoakBench", "format_report", "measure_resources"]

#: Builds the ASGI application for a configuration (``aria.server.app.create_app``).
AppFactory = Callable[[Settings], Any]


@dataclass(frozen=True)
class Resources:
    """What the process holds at one moment (``None`` where this platform cannot say)."""

    rss_mb: float | None
    fds: int | None
    tasks: int
    objects: int
    traced_mb: float | None


def measure_resources() -> Resources:
    """Collect garbage, then measure. Call it from inside the event loop."""
    gc.collect()
    rss: float | None = None
    fds: int | None = None
    with contextlib.suppress(OSError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        rss = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    with contextlib.suppress(OSError):
        fds = len(os.listdir("/proc/self/fd"))
    traced = tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else None
    return Resources(rss, fds, len(asyncio.all_tasks()), len(gc.get_objects()), traced)


def _growth(before: Resources, after: Resources) -> dict[str, float | None]:
    pairs = zip(asdict(before).items(), asdict(after).values(), strict=True)
    return {key: None if a is None or b is None else round(b - a, 3) for (key, a), b in pairs}


@dataclass
class _Tally:
    records: list[tuple[Turn, bool]] = field(default_factory=list)  # (turn, measured)
    rss: list[tuple[int, float | None]] = field(default_factory=list)  # (measured turns done, RSS MB)
    started: int = 0
    lost: int = 0
    interrupts_missed: int = 0
    reconnects: int = 0
    rate_limited: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    text_turns: int = 0
    audio_turns: int = 0


@dataclass
class SoakBench:
    app_factory: AppFactory
    turns: int = 500
    warmup: int = 20
    interrupt_every: int = 7
    reconnect_every: int = 25
    #: Every ``audio_every``-th turn is spoken (0: none).
    audio_every: int = 3
    trace_memory: bool = False
    llm_token_s: float = 0.002
    data_dir: Path | None = None
    #: Turns between two RSS samples, and the window of the first/last latency figures.
    window: int = 1000
    #: The session's resume key, from its first ``session`` message (servers that give one).
    key: str | None = field(default=None, init=False)

    def overrides(self, data_dir: Path) -> dict[str, Any]:
        return {
            "data_dir": str(data_dir),
            "vad.backend": "fake",
            "vad.options": {"start_frames": 2, "end_frames": 8},
            "stt.backend": "fake",
            "stt.fallback": [],
            "stt.options": {"texts": [HEARD], "partial_every": 5},
            "llm.backend": "fake",
            "llm.fallback": [],
            "llm.options": {"replies": [REPLY], "token_interval_s": self.llm_token_s},
            "tts.backend": "fake",
            "tts.fallback": [],
            # ~60 ms of answer audio: inside the pacer's lead, so pacing never holds a turn up.
            "tts.options": {"ms_per_char": 1.0},
        }

    async def run(self) -> dict[str, Any]:
        if self.turns < 1 or self.warmup < 0:
            raise ValueError("turns must be at least 1 and warmup at least 0")
        with contextlib.ExitStack() as stack:
            data_dir = self.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            settings = load_settings(overrides=self.overrides(data_dir), env={})
            return await self._run(settings)

    async def _run(self, settings: Settings) -> dict[str, Any]:
        tally = _Tally()
        if self.trace_memory:
            tracemalloc.start()
        try:
            async with _serve(self.app_factory(settings)) as (url, http):
                session_id = None
                if self.warmup:
                    session_id = await self._conversation(url, tally, 0, self.warmup, None)
                before = await _quiet(http)
                started = time.monotonic()
                session_id = await self._conversation(url, tally, self.warmup, self.turns, session_id)
                elapsed = time.monotonic() - started
                after = await _quiet(http)
                tally.rss.append((self.turns, _rss_mb()))
                live = await _history(http, session_id, self.key)
            async with _serve(self.app_factory(settings)) as (_, http):
                saved = await _history(http, session_id, self.key)
        finally:
            if self.trace_memory:
                tracemalloc.stop()
        return self._report(tally, before, after, elapsed, live, saved)

    async def _conversation(
        self, url: str, tally: _Tally, first: int, count: int, session_id: str | None
    ) -> str:
        """Turns ``first`` .. ``first + count - 1`` of the conversation; returns the session id."""
        client = await connect(url, session_id, self.key)
        self.key = self.key or client.session.get("key")
        due = False
        try:
            for index in range(first, first + count):
                due |= bool(self.reconnect_every) and index > first and index % self.reconnect_every == 0
                if due and client.carried is None:  # not while the next question is already on its way
                    client = await self._reconnect(client, url, tally)
                    due = False
                measured = first > 0 or self.warmup == 0
                if measured and (index - first) % self.window == 0:
                    tally.rss.append((index - first, _rss_mb()))
                await self._turn(client, index, tally, measured=measured, last=index == first + count - 1)
        finally:
            await self._close(client, tally)
        return str(client.session["session_id"])

    async def _reconnect(self, client: SoakClient, url: str, tally: _Tally) -> SoakClient:
        await self._close(client, tally)
        tally.reconnects += 1
        again = await connect(url, client.session["session_id"], self.key)
        if not again.session.get("resumed"):
            tally.errors["not_resumed"] += 1
        return again

    async def _close(self, client: SoakClient, tally: _Tally) -> None:
        await client.ws.close()
        tally.rate_limited += client.rate_limited
        tally.errors.update(e["code"] for e in client.errors)
        client.errors.clear()
        client.rate_limited = 0

    async def _turn(
        self, client: SoakClient, index: int, tally: _Tally, *, measured: bool, last: bool
    ) -> None:
        interrupt = bool(self.interrupt_every) and index % self.interrupt_every == self.interrupt_every - 1
        by_text = interrupt and not last and (index // self.interrupt_every) % 2 == 1
        sent, client.carried = client.carried, None
        if sent is None:
            if self.audio_every and index % self.audio_every == self.audio_every - 1:
                sent = await client.speak()
            else:
                sent = await client.send_text(f"question number {index}, please answer it")
        if measured:
            tally.audio_turns += sent.audio
            tally.text_turns += not sent.audio
        if not await client.pump(lambda: sent.turn is not None):
            tally.lost += 1  # the input never started a turn
            client.pending = None
            return
        turn = sent.turn
        assert turn is not None
        tally.started += 1
        if interrupt:
            await client.pump(lambda: turn.first_token_at is not None or turn.done_at is not None)
            if by_text:
                client.carried = await client.send_text(
                    f"question number {index + 1}, interrupting the answer"
                )
            else:
                await client.send_json({"type": "control", "action": "interrupt"})
        if not await client.pump(lambda: turn.done_at is not None):
            tally.lost += 1
            return
        if interrupt and not turn.interrupted:
            tally.interrupts_missed += 1
        tally.records.append((turn, measured))

    def _report(
        self,
        tally: _Tally,
        before: Resources,
        after: Resources,
        elapsed: float,
        live: list[dict[str, Any]] | None,
        saved: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        measured = [turn for turn, counted in tally.records if counted]
        done = [t for t in measured if not t.interrupted]
        total_ms = [((t.done_at or 0) - t.sent_at) * 1000 for t in done]
        first_ms = [(t.first_token_at - t.sent_at) * 1000 for t in done if t.first_token_at is not None]
        expected = [turn for turn, _ in tally.records]
        return {
            "bench": "soak",
            "turns": len(measured),
            "warmup_turns": self.warmup,
            "turns_started": tally.started,
            "text_turns": tally.text_turns,
            "audio_turns": tally.audio_turns,
            "completed": len(done),
            "interrupted": len(measured) - len(done),
            "interrupts_missed": tally.interrupts_missed,
            "lost_turns": tally.lost,
            "lost_in_history": _missing(expected, live),
            "lost_in_saved_history": _missing(expected, saved),
            "history_messages": len(live) if live is not None else None,
            "reconnects": tally.reconnects,
            "errors": dict(sorted(tally.errors.items())),
            "rate_limited_resent": tally.rate_limited,
            "turn_ms_p50": _pct(total_ms, 50),
            "turn_ms_p95": _pct(total_ms, 95),
            "turn_ms_max": round(max(total_ms), 3) if total_ms else None,
            "first_token_ms_p50": _pct(first_ms, 50),
            "first_token_ms_p95": _pct(first_ms, 95),
            "seconds": round(elapsed, 3),
            "turns_per_s": round(len(measured) / elapsed, 2) if elapsed > 0 else None,
            **_drift(total_ms, tally.rss, len(measured), self.window),
            "before": asdict(before),
            "after": asdict(after),
            "growth": _growth(before, after),
            "settings": {
                "interrupt_every": self.interrupt_every,
                "reconnect_every": self.reconnect_every,
                "audio_every": self.audio_every,
                "llm_between_tokens_ms": self.llm_token_s * 1000,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
        }


def _drift(
    total_ms: list[float], rss: list[tuple[int, float | None]], turns: int, window: int
) -> dict[str, Any]:
    """Whether turns slow down or memory grows as the conversation gets long: the p50 of the first and
    the last ``window`` completed turns (each half of them when there are fewer than twice as many) and
    of each whole ``window`` from the start; RSS growth per 1,000 turns over the run, and after the first
    sample past the start (once the history has reached ``session.max_messages``, when the run is that
    long).
    RSS is the whole process's: the server's, and the client's small record of each turn."""
    size = min(window, len(total_ms) // 2) or len(total_ms)
    first, last = _pct(total_ms[:size], 50), _pct(total_ms[-size:], 50)
    samples = [(turn, mb) for turn, mb in rss if mb is not None]
    return {
        "window_turns": size,
        "turn_ms_p50_first": first,
        "turn_ms_p50_last": last,
        "p50_last_over_first": round(last / first, 3) if first and last else None,
        "turn_ms_p50_by_window": [
            _pct(total_ms[at : at + size], 50) for at in range(0, len(total_ms) - size + 1, size)
        ],
        "rss_mb_per_1000_turns": _slope(samples),
        "rss_mb_per_1000_turns_after_first": _slope(samples[1:]) if len(samples) > 2 else None,
        "rss_samples": [[turn, mb] for turn, mb in samples],
    }


def _slope(samples: list[tuple[int, float]]) -> float | None:
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    return round((samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0]) * 1000, 3)


def _pct(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 3) if values else None


def _missing(turns: list[Turn], history: list[dict[str, Any]] | None) -> int | None:
    """How many answered turns the history lacks (user message and answer, in order)."""
    if history is None:
        return None
    found = [(h["role"], h["content"], bool(h["interrupted"])) for h in history]
    missing, at = 0, 0
    for turn in turns:
        user = ("user", turn.transcript if turn.transcript is not None else turn.user, False)
        answer = ("assistant", turn.answer or "", turn.interrupted)
        for index in range(at, len(found) - 1):
            if found[index] == user and found[index + 1] == answer:
                at = index + 2
                break
        else:
            missing += 1
    return missing


async def _poll(http: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool], what: str) -> None:
    """Ask ``/health`` until ``done`` says so (the server offers nothing to wait on from outside)."""
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while time.monotonic() < deadline:
        if done((await http.get("/health")).json()):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the server did not {what} within {TURN_TIMEOUT_S:g} s")


async def _quiet(http: httpx.AsyncClient) -> Resources:
    """Wait until the server has no connection left (its clean-up done), then measure."""
    await _poll(http, lambda health: health["connections"] == 0, "close every connection")
    for _ in range(5):  # let closing transports and finished tasks go
        await asyncio.sleep(0)
    return measure_resources()


async def _history(http: httpx.AsyncClient, session_id: str, key: str | None) -> list[dict[str, Any]] | None:
    """The whole conversation, archived messages included (the JSON export)."""
    headers = {KEY_HEADER: key} if key else {}
    response = await http.get(f"/sessions/{session_id}/export", params={"format": "json"}, headers=headers)
    return list(response.json()["history"]) if response.status_code == 200 else None


def _rss_mb() -> float | None:
    with contextlib.suppress(OSError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 3)
    return None


@contextlib.asynccontextmanager
async def _serve(app: Any) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """Serve ``app`` on 127.0.0.1 as ``aria serve`` does, in this event loop, until the block ends;
    yields its URL and an HTTP client."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, ws="websockets-sansio", ws_max_size=4 * 2**20
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="soak-server")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped while starting")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=TURN_TIMEOUT_S) as http:
            await _poll(http, lambda health: health["status"] != "loading", "load its engines")
            yield url, http
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def format_report(result: dict[str, Any]) -> str:
    growth = result["growth"]
    return "\n".join(
        [
            f"Aria soak: {result['turns']} turns after {result['warmup_turns']} warm-up "
            f"({result['text_turns']} typed, {result['audio_turns']} spoken), {result['reconnects']} "
            f"reconnects, {result['seconds']:.1f} s",
            f"  completed {result['completed']}, interrupted {result['interrupted']} "
            f"(missed {result['interrupts_missed']}), lost {result['lost_turns']}, missing from history "
            f"{result['lost_in_history']} live / {result['lost_in_saved_history']} saved",
            f"  errors {result['errors'] or 'none'}; turn p50 {result['turn_ms_p50']} ms, "
            f"p95 {result['turn_ms_p95']} ms; first token p50 {result['first_token_ms_p50']} ms",
            f"  growth: RSS {growth['rss_mb']} MB, fds {growth['fds']}, tasks {growth['tasks']}, "
            f"objects {growth['objects']}, traced {growth['traced_mb']} MB",
            f"  over the run: turn p50 {result['turn_ms_p50_first']} ms (first {result['window_turns']}) "
            f"-> {result['turn_ms_p50_last']} ms (last {result['window_turns']}), "
            f"x{result['p50_last_over_first']}; "
            f"RSS {result['rss_mb_per_1000_turns']} MB per 1,000 turns "
            f"({result['rss_mb_per_1000_turns_after_first']} after the first sample)",
        ]
    )
