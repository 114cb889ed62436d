"""Observers turn a real turn's events into Prometheus metrics and structured log lines."""

from __future__ import annotations

import logging

import pytest

from aria.core.metrics import MetricsRegistry
from aria.pipeline.observers import EventLogger, TurnMetricsRecorder
from aria.pipeline.outputs import MetricsOut, ResponseDone
from aria.testing import FakeLLM, Fault, TurnHarness


async def test_metrics_recorder_counts_turns_stages_and_errors() -> None:
    registry = MetricsRegistry()
    llm = FakeLLM.Config(replies=("Fine answer.", "Broken"), fault=Fault(calls=(2,), after=1))
    async with TurnHarness.with_fakes(llm=llm) as h:
        sub = TurnMetricsRecorder(registry).attach(h.pipeline.bus)
        await h.speak()
        await h.wait_for(MetricsOut)
        mark = len(h.received)
        h.pipeline.push_text("again")
        await h.wait_for(MetricsOut, after=mark)
        await sub.drained()
    text = registry.render()
    assert 'aria_turns_total{outcome="completed"} 1' in text
    assert 'aria_turns_total{outcome="error"} 1' in text
    assert 'aria_errors_total{code="engine_error"} 1' in text
    # The failed turn still speaks: its partial answer and the apology after it.
    assert 'aria_turn_stage_seconds_count{stage="first_audio_out"} 2' in text
    assert 'aria_turn_stage_seconds_count{stage="first_token"} 2' in text


async def test_event_logger_writes_turn_ids(caplog: pytest.LogCaptureFixture) -> None:
    async with TurnHarness.with_fakes() as h:
        sub = EventLogger().attach(h.pipeline.bus)
        with caplog.at_level(logging.DEBUG, logger="aria.pipeline.observers"):
            turn = h.pipeline.push_text("hello")
            await h.wait_for(ResponseDone)
            await sub.drained()
    records = [r for r in caplog.records if r.name == "aria.pipeline.observers"]
    assert [r.__dict__["event"] for r in records][:2] == ["state_changed", "llm_request"]
    assert all(r.__dict__["turn_id"] == turn.id for r in records)
