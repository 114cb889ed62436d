"""The event bus, fed from the pipeline's outputs: the outputs are the one record of what happened.

:class:`BusFeed` sees every output as the pipeline queues it, in order, and publishes the matching event
(``transcript_final``, ``tool_result``, ``turn_metrics`` then ``response_done`` ...). Stages that have no
wire message (``speech_started``, ``llm_request``, ``first_audio`` ...) travel as :class:`StageOut`.
"""

from __future__ import annotations

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
    """Publishes the event for each output on ``bus`` (never blocks: the bus queues per subscriber)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._done: dict[str, ResponseDone] = {}

    def __call__(self, out: Output) -> None:
        emit = self.bus.emit
        if isinstance(out, StageOut):
            emit(out.stage, dict(out.data), source=SOURCE, correlation_id=out.turn_id)
        elif isinstance(out, TranscriptOut):
            kind = EventType.TRANSCRIPT_FINAL if out.final else EventType.TRANSCRIPT_PARTIAL
            emit(kind, {"text": out.text}, source=SOURCE, correlation_id=out.turn_id)
        elif isinstance(out, ToolResultOut):
            emit(
                EventType.TOOL_RESULT,
                {"tool": out.tool, "ok": out.ok},
                source=SOURCE,
                correlation_id=out.turn_id,
            )
        elif isinstance(out, ErrorOut):
            emit(
                EventType.ERROR,
                {"code": out.code, "message": out.message},
                source=SOURCE,
                correlation_id=out.turn_id,
            )
        elif isinstance(out, ResponseDone):
            self._done[out.turn_id] = out
        elif isinstance(out, MetricsOut):  # the turn's last output: its metrics, then that it is over
            done = self._done.pop(out.turn_id, None)
            emit(
                EventType.TURN_METRICS,
                {"waterfall": dict(out.waterfall)},
                source=SOURCE,
                correlation_id=out.turn_id,
            )
            emit(
                EventType.RESPONSE_DONE,
                {"interrupted": done.interrupted if done else False, "error": done.error if done else None},
                source=SOURCE,
                correlation_id=out.turn_id,
            )
