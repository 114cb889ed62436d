"""Test support shipped with Aria: fake engines on scripted timelines and a turn harness."""

from aria.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD, FakeVision, Fault, tokenize
from aria.testing.harness import Received, TurnHarness, run_stage, silence, tone

__all__ = [
    "FakeLLM",
    "FakeSTT",
    "FakeTTS",
    "FakeVAD",
    "FakeVision",
    "Fault",
    "Received",
    "TurnHarness",
    "run_stage",
    "silence",
    "tokenize",
    "tone",
]
