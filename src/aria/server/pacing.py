"""Answer audio paced to real time, with a small bounded lead over the listener's playback.

The pacer keeps a model of the client's play-head: audio plays back to back from when it arrives, so
a block can start at ``max(now, end of what was sent before)``. A block is sent ``lead_s`` before it
is due to start, never earlier. So the client always has at most ``lead_s`` buffered, a barge-in
throws away at most that much, and the server knows what was heard even from a client that sends no
``playback`` reports (``heard_seconds``). Messages queued behind a turn's audio (``response_done``) are
sent as that audio is about to play.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["AudioPacer", "Timer"]

log = logging.getLogger(__name__)


class Timer(Protocol):
    """What ``call_later`` returns (an :class:`asyncio.TimerHandle` does)."""

    def cancel(self) -> None: ...


@dataclass(slots=True)
class _TurnAudio:
    first_start: float | None = None
    sent_s: float = 0.0
    reported_s: float | None = None
    queued: int = 0
    sent_blocks: int = 0
    cancelled: bool = False
    paused_at: float | None = None
    buffered_s: float = 0.0


@dataclass(slots=True)
class _Item:
    turn_id: str
    payload: bytes | str
    duration_s: float = 0.0
    audio: bool = False
    reference: npt.NDArray[np.float32] | None = None


@dataclass
class AudioPacer:
    send_bytes: Callable[[bytes], Awaitable[None]]
    send_text: Callable[[str], Awaitable[None]]
    lead_s: float = 0.3
    #: Now, in seconds; and ``call_later(delay_s, callback)`` on the same time line (default: the event
    #: loop's, whose clock is ``time.monotonic``). A test's fake clock gives both and drives the pacer.
    clock: Callable[[], float] = time.monotonic
    call_later: Callable[[float, Callable[[], None]], Timer] | None = None
    #: Told each block's samples (16 kHz) and when it is due to play, as it goes out (the echo guard).
    on_sent: Callable[[npt.NDArray[np.float32], float], None] | None = None
    _queue: deque[_Item] = field(default_factory=deque)
    _turns: dict[str, _TurnAudio] = field(default_factory=dict)
    _play_end: float = 0.0
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    sent_audio_s: float = 0.0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- producer side -----------------------------------------------------------------------------

    def add_audio(
        self, turn_id: str, pcm: bytes, duration_s: float, *, reference: npt.NDArray[np.float32] | None = None
    ) -> None:
        self._turn(turn_id).queued += 1
        self._queue.append(_Item(turn_id, pcm, duration_s, audio=True, reference=reference))
        self._wakeup.set()

    def pause(self, turn_id: str) -> None:
        """Hold the turn's audio: nothing more of it is sent until :meth:`resume`. The client pauses its
        playback too (``playback_control``), keeping what it has buffered."""
        turn = self._turn(turn_id)
        if turn.paused_at is None:
            turn.paused_at = self.clock()
            turn.buffered_s = max(0.0, self._play_end - turn.paused_at)

    def resume(self, turn_id: str) -> None:
        """Go on from where the turn paused: its buffered audio plays first, then the rest is sent."""
        turn = self._turns.get(turn_id)
        if turn is None or turn.paused_at is None:
            return
        now = self.clock()
        if turn.first_start is not None:
            turn.first_start += now - turn.paused_at  # the pause is not listening time
        self._play_end = now + turn.buffered_s
        turn.paused_at = None
        self._wakeup.set()

    def add_after_audio(self, turn_id: str, text: str) -> bool:
        """Queue ``text`` behind the turn's pending audio; False when none is pending (send it now)."""
        turn = self._turns.get(turn_id)
        if turn is None or turn.queued == 0:
            return False
        self._queue.append(_Item(turn_id, text))
        self._wakeup.set()
        return True

    def pending(self, turn_id: str) -> bool:
        turn = self._turns.get(turn_id)
        return turn is not None and turn.queued > 0

    # -- what the listener heard -------------------------------------------------------------------

    def sent_seconds(self, turn_id: str) -> float:
        """Seconds of the turn's audio sent to the client so far."""
        turn = self._turns.get(turn_id)
        return turn.sent_s if turn is not None else 0.0

    def report(self, turn_id: str, played_ms: float) -> None:
        """The client's own account of how much of the turn it played."""
        turn = self._turns.get(turn_id)
        if turn is not None:
            turn.reported_s = max(turn.reported_s or 0.0, played_ms / 1000)

    def heard_seconds(self, turn_id: str) -> float | None:
        turn = self._turns.get(turn_id)
        if turn is None or turn.first_start is None:
            return 0.0 if turn is not None else None
        now = turn.paused_at if turn.paused_at is not None else self.clock()
        estimate = min(turn.sent_s, max(0.0, now - turn.first_start))
        if turn.reported_s is not None:
            return min(turn.sent_s, max(turn.reported_s, 0.0))
        return estimate

    def cancel(self, turn_id: str) -> None:
        """Drop the turn's audio not yet sent; the client stops its playback, so the play-head resets."""
        kept = deque(item for item in self._queue if not (item.audio and item.turn_id == turn_id))
        dropped = len(self._queue) - len(kept)
        self._queue = kept
        turn = self._turns.get(turn_id)
        if turn is not None:
            turn.queued = 0
            turn.cancelled = True
        self._play_end = self.clock()
        if dropped:
            log.debug("pacer dropped %d audio blocks of %s", dropped, turn_id)
        self._wakeup.set()
        waker = asyncio.get_running_loop().create_task(self._notify())
        self._tasks.add(waker)
        waker.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def wait_sent(self, turn_id: str, blocks: int) -> None:
        """Until ``blocks`` audio blocks of the turn have gone out (the last is about to play), or the
        turn was cancelled."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._done(turn_id, blocks))

    def _done(self, turn_id: str, blocks: int) -> bool:
        turn = self._turns.get(turn_id)
        return turn is None or turn.cancelled or turn.sent_blocks >= blocks

    def forget(self, turn_id: str) -> None:
        self._turns.pop(turn_id, None)

    # -- the sending task --------------------------------------------------------------------------

    def _call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        if self.call_later is not None:
            return self.call_later(delay, callback)
        return asyncio.get_running_loop().call_later(delay, callback)

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            item = self._queue[0]
            if item.audio and self._turn(item.turn_id).paused_at is not None:
                self._wakeup.clear()  # held until resume (or cancel)
                await self._wakeup.wait()
                continue
            if item.audio:
                now = self.clock()
                start = max(now, self._play_end)
                delay = start - self.lead_s - now
                if delay > 0:
                    self._wakeup.clear()
                    timer = self._call_later(delay, self._wakeup.set)
                    try:
                        await self._wakeup.wait()
                    finally:
                        timer.cancel()
                    continue  # re-check: a cancel may have removed it
                self._queue.popleft()
                turn = self._turn(item.turn_id)
                turn.queued -= 1
                if turn.first_start is None:
                    turn.first_start = start
                turn.sent_s += item.duration_s
                self._play_end = start + item.duration_s
                self.sent_audio_s += item.duration_s
                if self.on_sent is not None and item.reference is not None:
                    self.on_sent(item.reference, start)
                assert isinstance(item.payload, bytes)
                await self.send_bytes(item.payload)
                turn.sent_blocks += 1
                await self._notify()
            else:
                self._queue.popleft()
                assert isinstance(item.payload, str)
                await self.send_text(item.payload)

    def _turn(self, turn_id: str) -> _TurnAudio:
        turn = self._turns.get(turn_id)
        if turn is None:
            while len(self._turns) >= 64:  # keep the recent turns only
                self._turns.pop(next(iter(self._turns)))
            turn = self._turns[turn_id] = _TurnAudio()
        return turn
