"""Tests for aria.core.state: the turn state machine and its state_changed events."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from aria.core.events import Event, EventBus, EventType
from aria.core.state import TRANSITIONS, TurnState, TurnStateMachine
from aria.errors import StateError

IDLE, LISTENING, PROCESSING, RESPONDING = (
    TurnState.IDLE,
    TurnState.LISTENING,
    TurnState.PROCESSING,
    TurnState.RESPONDING,
)

LEGAL = [
    (IDLE, LISTENING),
    (IDLE, PROCESSING),  # text input
    (LISTENING, PROCESSING),
    (LISTENING, IDLE),  # speech was noise
    (PROCESSING, RESPONDING),
    (PROCESSING, IDLE),
    (RESPONDING, IDLE),
]
ILLEGAL = [pair for pair in itertools.product(TurnState, TurnState) if pair not in LEGAL]

#: How to reach each state from IDLE.
PATH = {IDLE: [], LISTENING: [LISTENING], PROCESSING: [PROCESSING], RESPONDING: [PROCESSING, RESPONDING]}


def machine_in(state: TurnState, bus: EventBus | None = None) -> TurnStateMachine:
    machine = TurnStateMachine(bus)
    for step in PATH[state]:
        machine.transition(step, "setup")
    assert machine.state is state
    return machine


class StateEvents:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def moves(self) -> list[tuple[str, str, str]]:
        return [(e.payload["from"], e.payload["to"], e.payload["reason"]) for e in self.events]


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    bus = EventBus()
    yield bus
    await bus.aclose(0.1)


def test_the_table_matches_the_documented_diagram() -> None:
    table = {(src, dst) for src, targets in TRANSITIONS.items() for dst in targets}
    assert table == set(LEGAL)
    assert set(TRANSITIONS) == set(TurnState)


def test_starts_idle_with_empty_history() -> None:
    machine = TurnStateMachine()
    assert machine.state is IDLE
    assert list(machine.history) == []


@pytest.mark.parametrize(("src", "dst"), LEGAL)
def test_legal_transitions(src: TurnState, dst: TurnState) -> None:
    machine = machine_in(src)
    assert machine.can(dst)
    machine.transition(dst, "because")
    assert machine.state is dst
    assert machine.history[-1] == (src, dst, "because")


@pytest.mark.parametrize(("src", "dst"), ILLEGAL)
def test_illegal_transitions_raise_and_change_nothing(src: TurnState, dst: TurnState) -> None:
    machine = machine_in(src)
    before = list(machine.history)
    assert not machine.can(dst)
    with pytest.raises(StateError, match=f"cannot go from {src} to {dst} \\(oops\\)"):
        machine.transition(dst, "oops")
    assert machine.state is src
    assert list(machine.history) == before


def test_illegal_transition_message_without_reason() -> None:
    with pytest.raises(StateError, match="cannot go from idle to responding \\(no reason given\\)"):
        TurnStateMachine().transition(RESPONDING)


def test_state_error_has_its_code() -> None:
    with pytest.raises(StateError) as excinfo:
        TurnStateMachine().transition(IDLE)
    assert excinfo.value.code == "invalid_state"


@pytest.mark.parametrize("state", [LISTENING, PROCESSING, RESPONDING])
def test_reset_returns_to_idle_from_every_state(state: TurnState) -> None:
    machine = machine_in(state)
    machine.reset("interrupted")
    assert machine.state is IDLE
    assert machine.history[-1] == (state, IDLE, "interrupted")
    machine.transition(LISTENING, "next turn")  # usable again
    assert machine.state is LISTENING


def test_reset_when_idle_is_a_no_op() -> None:
    machine = TurnStateMachine()
    machine.reset("nothing to do")
    assert machine.state is IDLE
    assert list(machine.history) == []


def test_history_keeps_the_last_64_transitions() -> None:
    machine = TurnStateMachine()
    for i in range(50):
        machine.transition(LISTENING, f"speech {i}")
        machine.transition(IDLE, f"noise {i}")
    assert len(machine.history) == 64
    assert machine.history[-1] == (LISTENING, IDLE, "noise 49")
    assert machine.history[0] == (IDLE, LISTENING, "speech 18")  # transitions 36..99


async def test_a_full_turn_publishes_state_changed_events_in_order(bus: EventBus) -> None:
    seen = StateEvents()
    bus.subscribe(seen, EventType.STATE_CHANGED)
    machine = TurnStateMachine(bus, source="voice")
    machine.transition(LISTENING, "speech started", turn_id="t1")
    machine.transition(PROCESSING, "speech ended", turn_id="t1")
    machine.transition(RESPONDING, "first token", turn_id="t1")
    machine.transition(IDLE, "done", turn_id="t1")
    machine.transition(PROCESSING, "text input", turn_id="t2")
    machine.reset("cancelled", turn_id="t2")
    await bus.drained()
    assert seen.moves == [
        ("idle", "listening", "speech started"),
        ("listening", "processing", "speech ended"),
        ("processing", "responding", "first token"),
        ("responding", "idle", "done"),
        ("idle", "processing", "text input"),
        ("processing", "idle", "cancelled"),
    ]
    assert [e.correlation_id for e in seen.events] == ["t1"] * 4 + ["t2"] * 2
    assert {e.source for e in seen.events} == {"voice"}
    assert {e.type for e in seen.events} == {"state_changed"}
    stamps = [e.timestamp for e in seen.events]
    assert stamps == sorted(stamps)


async def test_no_event_for_illegal_transition_or_idle_reset(bus: EventBus) -> None:
    seen = StateEvents()
    bus.subscribe(seen)
    machine = TurnStateMachine(bus)
    with pytest.raises(StateError):
        machine.transition(RESPONDING, "too early")
    machine.reset("already idle")
    await bus.drained()
    assert seen.events == []
    assert bus.published == 0


async def test_event_defaults(bus: EventBus) -> None:
    seen = StateEvents()
    bus.subscribe(seen)
    TurnStateMachine(bus).transition(LISTENING)
    await bus.drained()
    (event,) = seen.events
    assert event.source == "turn"
    assert event.correlation_id is None
    assert dict(event.payload) == {"from": "idle", "to": "listening", "reason": ""}
