"""Random interleavings of client inputs over one WebSocket connection, and the oracle that judges them.

A :class:`Step` is one thing a client does: type a question, send a picture with a question, speak an
utterance (a burst of audio frames that the fake VAD/STT turn into speech), interrupt, switch modes,
update the configuration, ping, or drop the connection and resume the session on a new one. Steps are
sent back to back unless a step carries a ``pause`` (none, a bare ``sleep(0)``, or a few milliseconds),
so the server sees them at every phase of the turns they overlap.

:class:`Run` plays the steps against a live server and records, per connection, what was sent and
every message that came back; :func:`problems` then lists what broke the turn invariants:

- every input that starts a turn gets exactly one ``response_done`` (or one ``error`` naming it), on the
  connection it was sent on unless that connection was dropped while the turn ran;
- no ``error`` with code ``invalid_state``; no empty ``response_done`` that was not interrupted;
- on the last connection (never dropped) the number of ``response_done`` is the number of turns;
- the session's history alternates: one user entry per turn, each followed by at most one assistant
  entry, no two assistant entries in a row, no empty assistant entry unless interrupted.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import websockets

from aria.types import AudioChunk
from tests.keys import owned, remember
from tests.server.conftest import LiveServer

__all__ = [
    "MODES",
    "REPLY",
    "SPOKEN",
    "Conn",
    "Run",
    "Step",
    "describe",
    "history_problems",
    "png_b64",
    "problems",
    "speech_frames",
]

REPLY = "Sure, here is the answer. It has two sentences."
#: What the fake STT hears in every utterance (``FAST_FAKES``).
SPOKEN = "what time is it"
#: Two built-in modes that answer text, pictures and speech.
MODES = ("voice_chat", "visual_chat")
#: The turn-starting steps.
TURN_KINDS = frozenset({"text", "image", "speech"})
#: The client's options: no proxy from the environment, every message kept until read.
CLIENT_OPTIONS: dict[str, Any] = {"proxy": None, "max_queue": None, "open_timeout": 5}

Kind = Literal["text", "image", "image_only", "speech", "interrupt", "switch", "config", "ping", "reconnect"]
Pause = Literal["none", "yield", "1ms", "5ms", "20ms"]
_PAUSE_S: dict[str, float] = {"yield": 0.0, "1ms": 0.001, "5ms": 0.005, "20ms": 0.02}


def png_b64() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 200, 200)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def speech_frames(loud: int = 3, quiet: int = 9) -> list[bytes]:
    """An utterance for ``FAST_FAKES`` (VAD start after 2 loud frames, end after 8 quiet ones). Its
    loud frames are noise, not a tone: the fake TTS speaks a tone, and the server's echo guard rightly
    takes a microphone playing the same tone back for the answer's own echo."""
    noise = np.random.default_rng(3).uniform(-0.2, 0.2, 320).astype(np.float32)
    loud_frame = b"\x01" + AudioChunk(noise, 16000).to_pcm16()
    quiet_frame = b"\x01" + AudioChunk(np.zeros(320, np.float32), 16000).to_pcm16()
    return [loud_frame] * loud + [quiet_frame] * quiet


_IMAGE = png_b64()
_SPEECH = speech_frames()


@dataclass(frozen=True)
class Step:
    kind: Kind
    pause: Pause = "none"
    #: switch: the mode; config: the key and value.
    arg: str = ""
    value: Any = None

    @property
    def starts_turn(self) -> bool:
        return self.kind in TURN_KINDS

    def __str__(self) -> str:
        extra = f"({self.arg})" if self.arg else ""
        if self.kind == "config":
            extra = f"({self.arg}={self.value!r})"
        return f"{self.kind}{extra}" + ("" if self.pause == "none" else f"+{self.pause}")


def describe(steps: list[Step]) -> str:
    return ", ".join(str(s) for s in steps)


@dataclass
class Conn:
    """One connection: what was sent on it and everything that came back."""

    ws: websockets.ClientConnection
    session: dict[str, Any]
    turns: int = 0
    #: Spoken utterances sent: speech that resumes before its turn's end is decided joins that turn
    #: (one turn, every word kept), so these count as turns by the final transcripts they got.
    speeches: int = 0
    pings: list[str] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)
    dropped: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def voice_turns(self) -> int:
        return len({m["turn_id"] for m in self.of_type("transcript") if m["final"] and m["text"]})

    def expected_turns(self) -> int:
        """Turn-starting inputs, with spoken ones counted by the voice turns they made."""
        return self.turns - self.speeches + self.voice_turns()

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="race-reader")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.received.append(raw if isinstance(raw, bytes) else json.loads(raw))
                self._arrived.set()
        except websockets.ConnectionClosed:
            pass

    async def stop(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if isinstance(m, dict) and m["type"] == kind]

    async def wait(self, done: Any, within: float) -> bool:
        """Until ``done()`` holds (checked on every message), at most ``within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return bool(done())
        return True

    def summary(self) -> list[str]:
        """The messages that tell the story of the turns, one short line each."""
        lines: list[str] = []
        audio = 0
        for m in self.received:
            if isinstance(m, bytes):
                audio += 1
                continue
            if audio:
                lines.append(f"<{audio} audio>")
                audio = 0
            kind = m["type"]
            turn = (m.get("turn_id") or "")[-4:]
            if kind == "state":
                lines.append(f"state {m['state']} ({m['reason']}) {turn}")
            elif kind == "response_done":
                flags = " interrupted" if m["interrupted"] else ""
                flags += f" error={m['error']}" if m.get("error") else ""
                lines.append(f"response_done {turn} {m['text']!r}{flags}")
            elif kind == "error":
                lines.append(f"error {m['code']} {turn} {m['message']!r}")
            elif kind in ("pong", "mode", "history"):
                detail = m.get("id") or m.get("mode") or len(m.get("messages", []))
                lines.append(f"{kind} {detail}")
            elif kind == "transcript" and m["final"]:
                lines.append(f"transcript final {turn} {m['text']!r}")
        if audio:
            lines.append(f"<{audio} audio>")
        return lines


class Run:
    """Plays steps on one session; a ``reconnect`` drops the connection and resumes on a new one."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.conns: list[Conn] = []
        self.session_id = ""
        self._pings = 0

    @property
    def conn(self) -> Conn:
        return self.conns[-1]

    async def connect(self) -> Conn:
        query = owned(f"?session_id={self.session_id}") if self.session_id else ""
        ws = await websockets.connect(self.live.ws_url + query, **CLIENT_OPTIONS)
        session = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert session["type"] == "session", session
        remember(session)
        self.session_id = session["session_id"]
        conn = Conn(ws, session)
        conn.start()
        self.conns.append(conn)
        return conn

    async def send(self, message: dict[str, Any]) -> None:
        await self.conn.ws.send(json.dumps(message))

    async def step(self, step: Step) -> None:
        conn = self.conn
        if step.kind == "text":
            await self.send({"type": "text", "text": "tell me something"})
        elif step.kind in ("image", "image_only"):
            text = {"text": "what is in this picture"} if step.kind == "image" else {}
            await self.send({"type": "image", "data": _IMAGE, "format": "png", **text})
        elif step.kind == "speech":
            for frame in _SPEECH:
                await conn.ws.send(frame)
        elif step.kind == "interrupt":
            await self.send({"type": "control", "action": "interrupt"})
        elif step.kind == "switch":
            await self.send({"type": "control", "action": "switch_mode", "mode": step.arg})
        elif step.kind == "config":
            await self.send({"type": "control", "action": "update_config", "config": {step.arg: step.value}})
        elif step.kind == "ping":
            self._pings += 1
            conn.pings.append(f"p{self._pings}")
            await self.send({"type": "ping", "id": conn.pings[-1]})
        elif step.kind == "reconnect":
            conn.dropped = True
            await conn.stop()
            await self.connect()
        if step.starts_turn:
            conn.turns += 1
        if step.kind == "speech":
            conn.speeches += 1
        if step.pause != "none":
            await asyncio.sleep(_PAUSE_S[step.pause])

    async def finish(self, within: float = 5.0) -> None:
        """The connection survives: a last ping gets its pong, a last question its answer; then every
        turn on it has ended (its response_done count reached, the last turn's metrics arrived)."""
        await self.step(Step("ping"))
        await self.step(Step("text"))
        conn = self.conn
        await conn.wait(lambda: len(conn.of_type("response_done")) >= conn.expected_turns(), within)
        last = conn.of_type("response_done")[-1:] or [{"turn_id": None}]
        await conn.wait(lambda: any(m["turn_id"] == last[0]["turn_id"] for m in conn.of_type("metrics")), 2)
        await self.step(Step("ping"))  # anything sent before it is flushed by its pong
        await conn.wait(lambda: conn.pings[-1] in {m["id"] for m in conn.of_type("pong")}, within)

    async def close(self) -> None:
        for conn in self.conns:
            if not conn.dropped:
                await conn.stop()

    def report(self) -> str:
        parts = []
        for i, conn in enumerate(self.conns):
            state = "dropped" if conn.dropped else "last"
            lines = "\n   ".join(conn.summary())
            parts.append(f"-- connection {i} ({state}, {conn.turns} turns):\n   {lines}")
        return "\n".join(parts)


#: What the fake STT hears in each stretch of speech (``FAST_FAKES``).
SPOKEN = "what time is it"


def problems(run: Run) -> list[str]:
    """What broke the per-connection turn invariants (empty: nothing)."""
    found: list[str] = []
    for index, conn in enumerate(run.conns):
        where = f"connection {index}"
        dones = conn.of_type("response_done")
        errors = conn.of_type("error")
        for e in errors:
            if e["code"] == "invalid_state":
                found.append(f"{where}: error invalid_state: {e['message']}")
        for d in dones:
            if not d["interrupted"] and not d["text"].strip():
                found.append(f"{where}: empty answer that was not interrupted (turn {d['turn_id']})")
        ids = [d["turn_id"] for d in dones]
        for turn_id in sorted({i for i in ids if ids.count(i) > 1}):
            found.append(f"{where}: {ids.count(turn_id)} response_done for turn {turn_id}")
        ended = set(ids) | {e["turn_id"] for e in errors if e.get("turn_id")}
        expected = conn.expected_turns()
        if len(ended) > expected:
            found.append(f"{where}: {len(ended)} turns ended for {expected} inputs that start one")
        if conn.dropped:
            continue
        if len(dones) != expected:
            found.append(f"{where}: {len(dones)} response_done for {expected} inputs that start a turn")
        heard = sum(m["text"].count(SPOKEN) for m in conn.of_type("transcript") if m["final"])
        if heard != conn.speeches:
            found.append(f"{where}: {conn.speeches} utterances spoken, {heard} in the final transcripts")
        announced = {m["turn_id"] for m in conn.received if isinstance(m, dict) and m.get("turn_id")}
        for turn_id in sorted(announced - ended):
            found.append(f"{where}: turn {turn_id} was announced but never ended")
        pongs = {m["id"] for m in conn.of_type("pong")}
        missing = [p for p in conn.pings if p not in pongs]
        if missing:
            found.append(f"{where}: no pong for {missing}")
        last = dones[-1] if dones else None
        if last is None or last["interrupted"] or last["text"] != REPLY:
            found.append(f"{where}: the last question got {last!r} instead of the answer")
    return found


def history_problems(history: list[dict[str, Any]], turns: int, unseen: int = 0) -> list[str]:
    """What is wrong with a session's history after ``turns`` turn-starting inputs; ``unseen``
    utterances were cut by a dropped connection before their transcript reached the client (the server
    keeps their words when it heard any, so each may or may not be a user entry)."""
    found: list[str] = []
    roles = "".join("u" if m["role"] == "user" else "a" if m["role"] == "assistant" else "?" for m in history)
    users = roles.count("u")
    if not turns <= users <= turns + unseen:
        found.append(f"history: {users} user entries for {turns} inputs that start a turn (+{unseen} unseen)")
    if roles.startswith("a"):
        found.append("history: an assistant entry before any user entry")
    if "aa" in roles:
        found.append(f"history: two assistant entries in a row ({roles})")
    for m in history:
        if m["role"] == "assistant" and not m["content"].strip() and not m["interrupted"]:
            found.append("history: an empty assistant entry not marked interrupted")
    return found
