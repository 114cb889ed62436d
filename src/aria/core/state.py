"""The turn state machine.

::

    IDLE --speech started--> LISTENING --speech ended--> PROCESSING --first token--> RESPONDING
      ^  \\___________________text input______________________^                          |
      |                                                                                  |
      +---------------------- response and playback done ---------------------------------+
      +---------------------- any state: error, cancel, interrupt ------------------------+

Every change publishes a ``state_changed`` event (from, to, reason, turn id). An illegal transition
raises :class:`~aria.errors.StateError`; :meth:`TurnStateMachine.reset` returns to IDLE from anywhere.
"""

from __future__ import annotations

import enum
import logging
from collections import deque

from aria.core.events import EventBus, EventType
from aria.errors import StateError

__all__ = ["TRANSITIONS", "TurnState", "TurnStateMachine"]

log = logging.getLogger(__name__)


class TurnState(enum.StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    PROCESSING = "processing"
    RESPONDING = "responding"


TRANSITIONS: dict[TurnState, frozenset[TurnState]] = {
    TurnState.IDLE: frozenset({TurnState.LISTENING, TurnState.PROCESSING}),
    TurnState.LISTENING: frozenset({TurnState.PROCESSING, TurnState.IDLE}),
    TurnState.PROCESSING: frozenset({TurnState.RESPONDING, TurnState.IDLE}),
    TurnState.RESPONDING: frozenset({TurnState.IDLE}),
}


class TurnStateMachine:
    def __init__(self, bus: EventBus | None = None, *, source: str = "turn") -> None:
        self._state = TurnState.IDLE
        self._bus = bus
        self._source = source
        #: The last transitions (from, to, reason), for debugging and tests.
        self.history: deque[tuple[TurnState, TurnState, str]] = deque(maxlen=64)

    @property
    def state(self) -> TurnState:
        return self._state

    def can(self, target: TurnState) -> bool:
        return target in TRANSITIONS[self._state]

    def transition(self, target: TurnState, reason: str = "", *, turn_id: str | None = None) -> None:
        if target not in TRANSITIONS[self._state]:
            raise StateError(f"cannot go from {self._state} to {target} ({reason or 'no reason given'})")
        self._set(target, reason, turn_id)

    def reset(self, reason: str, *, turn_id: str | None = None) -> None:
        """Back to IDLE from any state (error, cancel, interrupt); a no-op when already idle."""
        if self._state is not TurnState.IDLE:
            self._set(TurnState.IDLE, reason, turn_id)

    def _set(self, target: TurnState, reason: str, turn_id: str | None) -> None:
        previous, self._state = self._state, target
        self.history.append((previous, target, reason))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("state %s -> %s (%s)", previous, target, reason, extra={"turn_id": turn_id})
        if self._bus is not None:
            self._bus.emit_lazily(
                EventType.STATE_CHANGED,
                lambda: {"from": previous.value, "to": target.value, "reason": reason},
                source=self._source,
                correlation_id=turn_id,
            )
