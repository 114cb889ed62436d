"""A typed, in-process event bus.

Publishers call :meth:`EventBus.publish`, which never awaits and never blocks: each subscriber has its
own bounded queue (``drop_oldest``) drained by its own task, so a slow subscriber loses its own oldest
events (counted and logged) and a failing one has its exception logged with a traceback (counted, never
silently swallowed); neither ever holds up the publisher or the audio path.

Events carry a type, a monotonic timestamp, the source, a payload and a correlation id (the turn id).
Subscribe to one or more types, or to ``"*"`` for everything (logging, metrics).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aria.core.channels import Channel, Overflow
from aria.errors import ChannelClosed

__all__ = ["WILDCARD", "Event", "EventBus", "EventType", "Handler", "Subscription"]

log = logging.getLogger(__name__)
WILDCARD = "*"
Handler = Callable[["Event"], Awaitable[None] | None]


class EventType(enum.StrEnum):
    STATE_CHANGED = "state_changed"
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"
    TRANSCRIPT_PARTIAL = "transcript_partial"
    TRANSCRIPT_FINAL = "transcript_final"
    LLM_REQUEST = "llm_request"
    LLM_FIRST_TOKEN = "llm_first_token"
    TTS_REQUEST = "tts_request"
    FIRST_AUDIO = "first_audio"
    RESPONSE_DONE = "response_done"
    TURN_INTERRUPTED = "turn_interrupted"
    TURN_METRICS = "turn_metrics"
    TOOL_RESULT = "tool_result"
    ROUTED = "routed"
    ENGINE_FALLBACK = "engine_fallback"
    BREAKER_STATE = "breaker_state"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""
    correlation_id: str | None = None
    timestamp: float = field(default_factory=time.monotonic)


class Subscription:
    """One subscriber: its queue, its task, and its counters."""

    def __init__(
        self, bus: EventBus, handler: Handler, types: frozenset[str], name: str, queue_size: int
    ) -> None:
        self.bus = bus
        self.handler = handler
        self.types = types
        self.name = name
        self.delivered = 0
        self.failed = 0
        self._queue: Channel[Event] = Channel(queue_size, Overflow.DROP_OLDEST, name=f"events:{name}")
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"event-subscriber:{name}")

    @property
    def dropped(self) -> int:
        return self._queue.stats.dropped

    def offer(self, event: Event) -> None:
        dropped = self._queue.stats.dropped
        self._queue.send_nowait(event)
        self._idle.clear()
        if self._queue.stats.dropped != dropped and self._queue.stats.dropped in (1, 10, 100, 1000, 10000):
            log.warning(
                "event subscriber %s is slow: %d events dropped so far",
                self.name,
                self._queue.stats.dropped,
                extra={"subscriber": self.name},
            )

    async def _run(self) -> None:
        async for event in self._queue:
            try:
                result = self.handler(event)
                if inspect.isawaitable(result):
                    await result
                self.delivered += 1
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this subscriber is being shut down
                self.failed += 1  # the handler raised CancelledError itself: a handler bug, not a stop
                log.error("event subscriber %s raised CancelledError on %s", self.name, event.type)
            except Exception:
                self.failed += 1
                log.exception(
                    "event subscriber %s failed on %s",
                    self.name,
                    event.type,
                    extra={"subscriber": self.name, "event_type": event.type},
                )
            if not len(self._queue):
                self._idle.set()
        self._idle.set()

    def unsubscribe(self) -> None:
        self.bus._remove(self)
        self._queue.close()

    async def aclose(self, grace_s: float = 1.0) -> None:
        """Stop after delivering what is queued (at most ``grace_s`` seconds), then cancel."""
        self.unsubscribe()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def drained(self) -> None:
        """Wait until everything published so far has been handled (for tests and shutdown)."""
        await self._idle.wait()


class EventBus:
    def __init__(self, *, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._by_type: dict[str, list[Subscription]] = {}
        self._wildcard: list[Subscription] = []
        self.published = 0

    def subscribe(
        self,
        handler: Handler,
        *types: str,
        name: str | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """Call ``handler`` (sync or async) for each event of ``types`` (none, or ``"*"``: all)."""
        wanted = frozenset(str(t) for t in types) or frozenset({WILDCARD})
        label = name or str(getattr(handler, "__qualname__", None) or repr(handler))
        sub = Subscription(self, handler, wanted, label, queue_size or self.queue_size)
        if WILDCARD in wanted:
            self._wildcard.append(sub)
        else:
            for event_type in wanted:
                self._by_type.setdefault(event_type, []).append(sub)
        return sub

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every matching subscriber. Never waits, never raises for a subscriber."""
        self.published += 1
        for sub in self._by_type.get(event.type, ()):
            self._offer(sub, event)
        for sub in self._wildcard:
            self._offer(sub, event)

    def emit_lazily(
        self,
        type: str,
        payload: Callable[[], Mapping[str, Any]],
        *,
        source: str = "",
        correlation_id: str | None = None,
    ) -> None:
        """:meth:`emit`, for hot paths: the payload and the event are made only when someone subscribed
        to ``type`` (the event counts as :attr:`published` either way)."""
        if self._wildcard or type in self._by_type:
            self.emit(type, payload(), source=source, correlation_id=correlation_id)
        else:
            self.published += 1

    def emit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        source: str = "",
        correlation_id: str | None = None,
    ) -> Event:
        event = Event(str(type), MappingProxyType(dict(payload or {})), source, correlation_id)
        self.publish(event)
        return event

    @property
    def subscriptions(self) -> list[Subscription]:
        seen: dict[int, Subscription] = {id(s): s for subs in self._by_type.values() for s in subs}
        seen.update((id(s), s) for s in self._wildcard)
        return list(seen.values())

    async def drained(self) -> None:
        for sub in self.subscriptions:
            await sub.drained()

    async def aclose(self, grace_s: float = 1.0) -> None:
        await asyncio.gather(*(sub.aclose(grace_s) for sub in self.subscriptions))

    def _offer(self, sub: Subscription, event: Event) -> None:
        try:
            sub.offer(event)
        except ChannelClosed:
            self._remove(sub)

    def _remove(self, sub: Subscription) -> None:
        if sub in self._wildcard:
            self._wildcard.remove(sub)
        for subs in self._by_type.values():
            if sub in subs:
                subs.remove(sub)
