"""The event bus, fed from the pipeline's outputs: the outputs are the one record of what happened.

:class:`BusFeed` sees every output as the pipeline queues it, in order, and publishes the matching event
(``transcript_final``, ``tool_result``, ``turn_metrics`` then ``response_done`` ...). Stages that have no
wire message (``speech_started``, ``llm_request``, ``first_audio`` ...) travel as :class:`StageOut`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aria.core.events import EventBus, EventType
from aria.pipeline.outputs import (
    ErrorOut,
    MetricsOut,
    Output,
    ResponseDone,
    StageOut,
    ToolResultOut,
    TranscriptOut,
)

__all__ = ["BusFeed"]

SOURCE = "pipeline"


class BusFeed:
    """Publishes the event for each output on ``bus`` (never blocks: the bus queues per subscriber).

    Called for every output, text and audio blocks included: it looks the output's type up once, and
    builds an event only when someone subscribed to it."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._done: dict[str, ResponseDone] = {}
        self._by_type: dict[type, Callable[[Any], None]] = {
            StageOut: self._stage,
            TranscriptOut: self._transcript,
            ToolResultOut: self._tool_result,
            ErrorOut: self._error,
            ResponseDone: self._response_done,
            MetricsOut: self._metrics,
        }

    def __call__(self, out: Output) -> None:
        handle = self._by_type.get(type(out))
        if handle is not None:
            handle(out)

    def _emit(self, kind: str, payload: Callable[[], dict[str, Any]], turn_id: str | None) -> None:
        self.bus.emit_lazily(kind, payload, source=SOURCE, correlation_id=turn_id)

    def _stage(self, out: StageOut) -> None:
        self._emit(out.stage, lambda: dict(out.data), out.turn_id)

    def _transcript(self, out: TranscriptOut) -> None:
        kind = EventType.TRANSCRIPT_FINAL if out.final else EventType.TRANSCRIPT_PARTIAL
        self._emit(kind, lambda: {"text": out.text}, out.turn_id)

    def _tool_result(self, out: ToolResultOut) -> None:
        self._emit(EventType.TOOL_RESULT, lambda: {"tool": out.tool, "ok": out.ok}, out.turn_id)

    def _error(self, out: ErrorOut) -> None:
        self._emit(EventType.ERROR, lambda: {"code": out.code, "message": out.message}, out.turn_id)

    def _response_done(self, out: ResponseDone) -> None:
        self._done[out.turn_id] = out

    def _metrics(self, out: MetricsOut) -> None:
        """The turn's last output: its metrics, then that it is over."""
        done = self._done.pop(out.turn_id, None)
        self._emit(EventType.TURN_METRICS, lambda: {"waterfall": dict(out.waterfall)}, out.turn_id)
        interrupted, error = (done.interrupted, done.error) if done else (False, None)
        self._emit(EventType.RESPONSE_DONE, lambda: {"interrupted": interrupted, "error": error}, out.turn_id)
