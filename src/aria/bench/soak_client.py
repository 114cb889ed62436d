"""The soak benchmark's WebSocket client: one connection that records every message by turn and keeps
to the documented rate limit (it resends a message that still gets ``rate_limited``).

It keeps little per turn (a slotted record; a complete answer shares the scripted reply's text), so the
soak's RSS figure is the server's.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websockets

from aria.testing.harness import silence, tone

__all__ = [
    "AUDIO_TAG",
    "CLIENT_BURST",
    "CLIENT_RATE_PER_S",
    "HEARD",
    "KEY_HEADER",
    "REPLY",
    "TURN_TIMEOUT_S",
    "Input",
    "SoakClient",
    "Turn",
    "connect",
]

REPLY = "Sure, here is the answer you asked for, in a dozen words or so."
HEARD = "what time is it"
AUDIO_TAG = 0x01
#: The documented per-connection limit is about 20 messages a second in bursts of 40: stay below it.
CLIENT_RATE_PER_S = 18.0
CLIENT_BURST = 30
TURN_TIMEOUT_S = 10.0
#: Where a session's resume key goes on REST requests (and ``&key=`` on ``/ws``), when it has one.
KEY_HEADER = "X-Aria-Session-Key"


@dataclass(slots=True)
class Turn:
    id: str
    sent_at: float
    user: str
    first_token_at: float | None = None
    done_at: float | None = None
    #: From ``response_done``: the answer's text and whether it was cut short.
    answer: str | None = None
    interrupted: bool = False
    transcript: str | None = None


@dataclass(slots=True)
class Input:
    """What was sent to start a turn: the next turn id this client has not seen is its turn."""

    user: str
    sent_at: float
    audio: bool
    turn: Turn | None = None


class SoakClient:
    """One WebSocket connection: records every message by turn, paces its own messages."""

    def __init__(self, ws: websockets.ClientConnection, session: dict[str, Any]) -> None:
        self.ws = ws
        self.session = session
        self.turns: dict[str, Turn] = {}
        self.errors: list[dict[str, Any]] = []
        #: The input whose turn has not shown up yet.
        self.pending: Input | None = None
        #: A typed interruption: the next turn, already sent.
        self.carried: Input | None = None
        self._tokens = float(CLIENT_BURST)
        self._last = time.monotonic()
        self.rate_limited = 0

    async def _recv(self, within: float) -> None:
        raw = await asyncio.wait_for(self.ws.recv(), max(0.001, within))
        now = time.monotonic()
        if isinstance(raw, bytes):
            return
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "error" and message.get("turn_id") is None:
            self.errors.append(message)
            return
        turn_id = message.get("turn_id")
        if not isinstance(turn_id, str):
            return
        turn = self.turns.get(turn_id)
        if turn is None:
            pending = self.pending
            if pending is None:
                return  # not a turn this client started
            turn = self.turns[turn_id] = Turn(turn_id, pending.sent_at, pending.user)
            pending.turn, self.pending = turn, None
        if kind == "text_token" and turn.first_token_at is None:
            turn.first_token_at = now
        elif kind == "transcript" and message.get("final"):
            turn.transcript = message["text"]
        elif kind == "response_done":
            answer = REPLY if message["text"] == REPLY else message["text"]  # one copy of the usual reply
            turn.done_at, turn.answer, turn.interrupted = now, answer, message["interrupted"]
        elif kind == "error":
            self.errors.append(message)

    async def pump(self, ready: Callable[[], bool], within: float = TURN_TIMEOUT_S) -> bool:
        """Read until ``ready()``; False when ``within`` seconds pass first."""
        deadline = time.monotonic() + within
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await self._recv(left)
            except TimeoutError:
                return False
        return True

    async def send_json(self, message: dict[str, Any], started: Input | None = None) -> None:
        """Send within the documented rate; resend what still comes back ``rate_limited``. For a
        message that starts a turn (``started``), wait a moment for the turn or the limiter's error."""
        while True:
            now = time.monotonic()
            self._tokens = min(float(CLIENT_BURST), self._tokens + (now - self._last) * CLIENT_RATE_PER_S)
            self._last = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / CLIENT_RATE_PER_S)
                continue
            self._tokens -= 1
            mark = len(self.errors)
            await self.ws.send(json.dumps(message))
            if started is None:
                return
            await self.pump(functools.partial(self._answered, started, mark), within=0.05)
            if not any(e["code"] == "rate_limited" for e in self.errors[mark:]):
                return
            self.rate_limited += 1
            del self.errors[mark:]
            await asyncio.sleep(1 / CLIENT_RATE_PER_S)

    def _answered(self, started: Input, errors_before: int) -> bool:
        return started.turn is not None or len(self.errors) > errors_before

    async def send_text(self, text: str) -> Input:
        self.pending = sent = Input(text, time.monotonic(), audio=False)
        await self.send_json({"type": "text", "text": text}, started=sent)
        return sent

    async def speak(self) -> Input:
        """An utterance, sent as fast as the socket takes it: 240 ms of tone, 200 ms of silence."""
        frames = [AUDIO_TAG.to_bytes(1, "little") + c.to_pcm16() for c in [*tone(240), *silence(200)]]
        for frame in frames[:-1]:
            await self.ws.send(frame)
        self.pending = sent = Input(HEARD, time.monotonic(), audio=True)
        await self.ws.send(frames[-1])
        return sent


async def connect(url: str, session_id: str | None, key: str | None = None) -> SoakClient:
    """A connection to ``url``'s ``/ws``, resuming ``session_id`` (with its ``key``) when given."""
    query = f"?session_id={session_id}" if session_id else ""
    query += f"&key={key}" if session_id and key else ""
    ws = await websockets.connect(f"ws://{url.removeprefix('http://')}/ws{query}", max_size=None)
    session = json.loads(await asyncio.wait_for(ws.recv(), TURN_TIMEOUT_S))
    return SoakClient(ws, session)  # a resumed session's history message is read (and skipped) later
