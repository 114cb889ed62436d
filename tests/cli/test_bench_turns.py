"""``aria bench turns --quick``: the real pipeline, Silero VAD, Smart Turn and espeak, a few items."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

import pytest

from aria.engines.tts.espeak_lib import espeak_available

_espeak_ok, _espeak_why = espeak_available()
pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("pipecat") is None,
        reason="the Smart Turn model comes from the pipecat-ai wheel: pip install --no-deps pipecat-ai",
    ),
    pytest.mark.skipif(not _espeak_ok, reason=f"espeak-ng is missing: {_espeak_why}"),
    pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is missing"),
]

FIGURES: dict[str, tuple[type, ...]] = {
    "false_cutoff_rate": (float,),
    "eot_latency_ms_p50": (float,),
    "eot_latency_ms_p95": (float,),
    "preemptive_saving_ms_p50": (float,),
    "words_lost_at_bargein": (int,),
    "heard_text_error_words": (int,),
    "self_interruptions_from_echo": (int,),
    "bargein_recall_over_echo": (float,),
    "false_interruptions_from_backchannels": (int,),
    "echo_guard_us_per_frame": (float,),
    "turn_model_ms_per_call": (float,),
}


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    from aria.bench.turns import TurnsBench

    return asyncio.run(TurnsBench(quick=True).run())


def test_figures_and_what_they_were_measured_on(result: dict[str, Any]) -> None:
    for key, types in FIGURES.items():
        assert isinstance(result[key], types), (key, result[key])
    assert set(result["measured_on"]) >= {"false_cutoff_rate", "eot_latency_ms", "words_lost_at_bargein"}
    assert all(isinstance(v, str) and v for v in result["measured_on"].values())
    corpus = result["corpus"]
    assert corpus["quick"] is True
    assert corpus["utterances"] >= 5
    assert len(corpus["voices"]) >= 2
    assert 140 <= corpus["rates_wpm"][0] <= corpus["rates_wpm"][1] <= 190
    assert set(result["goals"]) <= set(FIGURES)


def test_invariants_on_a_small_corpus(result: dict[str, Any]) -> None:
    assert result["false_interruptions_from_backchannels"] == 0
    assert result["heard_text_error_words"] <= 1
    assert result["self_interruptions_from_echo"] == 0
    # every word of a barge-in reaches some final transcript (none is dropped outright)
    assert sum(result["details"]["barge_in_words_in_no_transcript"]) == 0
    assert result["details"]["barge_in_not_interrupted"] == 0
    assert 0 < result["eot_latency_ms_p50"] < 2500 + 1000  # the turn ends, at the latest after max_wait
    assert result["turn_model_ms_per_call"] > 0
    assert result["echo_guard_us_per_frame"] > 0


def test_no_words_lost_at_bargein(result: dict[str, Any]) -> None:
    assert result["words_lost_at_bargein"] == 0
