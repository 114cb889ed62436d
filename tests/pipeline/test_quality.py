"""The latency governor: degrade after a run of slow first tokens, recover when a probe is fast."""

from __future__ import annotations

import asyncio

import pytest

from aria.engines.base import LLMRequest
from aria.pipeline.quality import GovernedLLM, LatencyGovernor, first_token_ms
from aria.testing import FakeLLM
from aria.testing.fakes import Fault
from aria.types import GeneratedToken, Message


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_degrades_only_after_a_whole_window_of_slow_turns() -> None:
    governor = LatencyGovernor(500, window=3, clock=Clock())
    assert [governor.observe(ms) for ms in (900, 900, 100, 900, 900)] == [None] * 5
    assert governor.observe(900) == "degrade"
    assert governor.degraded
    assert governor.observe(10) is None  # turns on the faster model do not count


async def test_probes_are_spaced_and_recover_only_within_the_bound() -> None:
    clock = Clock()
    governor = LatencyGovernor(50, window=1, probe_every_s=10, clock=clock)
    assert governor.observe(80) == "degrade"
    assert not governor.probe_due()
    clock.now = 10
    assert governor.probe_due()
    slow = FakeLLM(FakeLLM.Config(ttft_s=0.08))
    assert await governor.probe(slow) is None
    assert governor.degraded
    assert not governor.probe_due()  # the probe itself restarts the wait
    clock.now = 20
    assert await governor.probe(FakeLLM()) == "recover"
    assert not governor.degraded


async def test_a_failing_probe_keeps_the_faster_model() -> None:
    governor = LatencyGovernor(50, window=1, clock=Clock())
    governor.observe(80)
    broken = FakeLLM(FakeLLM.Config(fault=Fault(always=True)))
    assert await governor.probe(broken) is None
    assert governor.degraded


async def test_first_token_ms_measures_the_wait() -> None:
    assert await first_token_ms(FakeLLM(FakeLLM.Config(ttft_s=0.05))) >= 45


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="bound_ms"):
        LatencyGovernor(0)
    with pytest.raises(ValueError, match="window"):
        LatencyGovernor(100, window=0)


async def test_governed_llm_switches_to_the_faster_model_and_back() -> None:
    """The wrapper times first tokens itself, brings the faster model after a slow run, announces each
    switch, and goes back once a probe of the usual model is within the bound."""
    clock = Clock()
    usual = FakeLLM(FakeLLM.Config(replies=("usual",), ttft_s=0.06))
    fast = FakeLLM(FakeLLM.Config(replies=("fast",)))
    released: list[bool] = []

    async def bring() -> FakeLLM:
        return fast

    governed = GovernedLLM(
        usual,
        LatencyGovernor(50, window=2, probe_every_s=10, clock=clock),
        fast=bring,
        release=lambda: released.append(True),
    )
    request = LLMRequest(messages=(Message("user", "hi"),))

    async def answer() -> str:
        return "".join([c.text async for c in governed.stream(request) if isinstance(c, GeneratedToken)])

    assert [await answer(), await answer()] == ["usual", "usual"]
    change = await asyncio.wait_for(governed.changes.receive(), 2)
    assert (change.state, change.model, change.usual) == ("degraded", "fake", "fake")
    assert governed.serving is fast
    assert await answer() == "fast"
    usual.config = usual.config.model_copy(update={"ttft_s": 0.0})
    assert await answer() == "fast"  # the probe is not due yet
    clock.now = 10
    assert await answer() == "fast"  # this answer starts the probe beside it
    change = await asyncio.wait_for(governed.changes.receive(), 2)
    assert change.state == "recovered"
    assert released == [True]
    assert await answer() == "usual"
    await governed.aclose()
    assert governed.changes.closed
