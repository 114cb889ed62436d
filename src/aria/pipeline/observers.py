"""Wildcard subscribers that turn pipeline events into metrics and log lines.

They run on the event bus, so they never hold up a turn: attach them once per bus::

    TurnMetricsRecorder(REGISTRY).attach(bus)
    EventLogger().attach(bus)
"""

from __future__ import annotations

import logging

from aria.core.events import Event, EventBus, EventType, Subscription
from aria.core.metrics import REGISTRY, MetricsRegistry

__all__ = ["EventLogger", "TurnMetricsRecorder"]

log = logging.getLogger(__name__)


class TurnMetricsRecorder:
    """Per-stage latency histograms (seconds from the end of speech, or from the turn's start for text
    turns), turns by outcome, errors by code and engine fallbacks, in a :class:`MetricsRegistry`."""

    def __init__(self, registry: MetricsRegistry = REGISTRY) -> None:
        self.stage_seconds = registry.histogram(
            "aria_turn_stage_seconds",
            "Time from end of speech (or turn start) to each turn stage",
            ("stage",),
        )
        self.turns = registry.counter("aria_turns_total", "Turns finished, by outcome", ("outcome",))
        self.errors = registry.counter("aria_errors_total", "Errors reported to clients, by code", ("code",))
        self.fallbacks = registry.counter(
            "aria_engine_fallbacks_total",
            "Times an engine failed and the next one was tried",
            ("kind", "engine"),
        )

    def attach(self, bus: EventBus) -> Subscription:
        return bus.subscribe(
            self,
            EventType.TURN_METRICS,
            EventType.RESPONSE_DONE,
            EventType.ERROR,
            EventType.ENGINE_FALLBACK,
            name="metrics",
        )

    def __call__(self, event: Event) -> None:
        payload = event.payload
        if event.type == EventType.TURN_METRICS:
            for stage, ms in payload["waterfall"].items():
                if ms is not None:
                    self.stage_seconds.labels(stage=stage).observe(ms / 1000)
        elif event.type == EventType.RESPONSE_DONE:
            outcome = (
                "error"
                if payload.get("error")
                else "interrupted"
                if payload.get("interrupted")
                else "completed"
            )
            self.turns.labels(outcome=outcome).inc()
        elif event.type == EventType.ERROR:
            self.errors.labels(code=str(payload.get("code", "unknown"))).inc()
        elif event.type == EventType.ENGINE_FALLBACK:
            self.fallbacks.labels(
                kind=str(payload.get("kind", "")), engine=str(payload.get("engine", ""))
            ).inc()


class EventLogger:
    """Logs every event at DEBUG (and errors at WARNING) with the turn id as a structured field."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def attach(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self, name="event-log")

    def __call__(self, event: Event) -> None:
        level = logging.WARNING if event.type == EventType.ERROR else logging.DEBUG
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level,
                "%s %s",
                event.type,
                dict(event.payload),
                extra={"turn_id": event.correlation_id, "event": event.type, "source": event.source},
            )
