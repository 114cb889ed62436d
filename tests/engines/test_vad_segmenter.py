"""SpeechSegmenter: probabilities in, speech start/end events out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aria.engines.base import VADEvent, VADEventType
from aria.engines.vad.segmenter import SpeechSegmenter

FRAME_S = 0.032  # 32 ms frames: min_speech 64 ms = 2 frames, min_silence 320 ms = 10 frames


def feed(seg: SpeechSegmenter, probabilities: list[float], frame_s: float = FRAME_S) -> dict[int, VADEvent]:
    """Feed frames timestamped ``index * frame_s``; return the events by frame index."""
    events: dict[int, VADEvent] = {}
    for index, p in enumerate(probabilities):
        event = seg.update(p, frame_s, index * frame_s)
        if event is not None:
            events[index] = event
    return events


def kinds(events: dict[int, VADEvent]) -> list[tuple[int, VADEventType]]:
    return [(index, event.type) for index, event in events.items()]


START, END = VADEventType.SPEECH_START, VADEventType.SPEECH_END


def test_defaults() -> None:
    seg = SpeechSegmenter()
    assert seg.threshold == 0.5
    assert seg.neg_threshold == pytest.approx(0.35)
    assert seg.min_speech_ms == 64
    assert seg.min_silence_ms == 320
    assert not seg.in_speech


def test_start_only_after_min_speech() -> None:
    seg = SpeechSegmenter()
    assert seg.update(0.9, FRAME_S, 0.0) is None
    assert not seg.in_speech
    event = seg.update(0.8, FRAME_S, 0.032)
    assert event == VADEvent(START, 0.032, 0.8)
    assert seg.in_speech


def test_end_only_after_min_silence() -> None:
    seg = SpeechSegmenter()
    events = feed(seg, [0.9] * 5 + [0.1] * 12)
    # Speech starts on frame 1; silence begins at frame 5 and reaches 320 ms on its tenth frame (14).
    assert kinds(events) == [(1, START), (14, END)]
    assert events[14].timestamp == pytest.approx(14 * FRAME_S)
    assert events[14].probability == 0.1
    assert not seg.in_speech


def test_pause_shorter_than_min_silence_keeps_speech() -> None:
    seg = SpeechSegmenter()
    events = feed(seg, [0.9] * 3 + [0.1] * 9 + [0.9] * 2 + [0.1] * 10)
    assert kinds(events) == [(1, START), (23, END)]


def test_short_blips_are_ignored() -> None:
    seg = SpeechSegmenter(min_speech_ms=96)  # three 32 ms frames
    events = feed(seg, [0.1, 0.9, 0.9, 0.1, 0.9, 0.1, 0.9, 0.9, 0.2] * 4)
    assert events == {}
    assert not seg.in_speech


def test_hysteresis_ambiguous_frames_keep_speech() -> None:
    seg = SpeechSegmenter(threshold=0.5, neg_threshold=0.3)
    # 0.4 is neither speech nor silence: 50 such frames never end the utterance.
    events = feed(seg, [0.9, 0.9] + [0.4] * 50)
    assert kinds(events) == [(1, START)]
    assert seg.in_speech


def test_hysteresis_ambiguous_frames_do_not_reset_the_silence_run() -> None:
    seg = SpeechSegmenter(min_silence_ms=320)
    probabilities = [0.9, 0.9] + [0.1] * 5 + [0.4] * 3 + [0.1] * 5
    events = feed(seg, probabilities)
    # 5 + 5 silent frames (ambiguous ones in between neither count nor reset): ends on the last frame.
    assert kinds(events) == [(1, START), (len(probabilities) - 1, END)]


def test_ambiguous_frames_do_not_start_speech() -> None:
    seg = SpeechSegmenter()
    assert feed(seg, [0.45] * 100) == {}


def test_ambiguous_frames_neither_add_to_nor_reset_the_speech_run() -> None:
    seg = SpeechSegmenter(min_speech_ms=96)
    events = feed(seg, [0.9, 0.4, 0.9, 0.4, 0.9])
    assert kinds(events) == [(4, START)]


def test_silence_resets_the_speech_run() -> None:
    seg = SpeechSegmenter(min_speech_ms=96)
    events = feed(seg, [0.9, 0.9, 0.1, 0.9, 0.9, 0.9])
    assert kinds(events) == [(5, START)]


def test_speech_resets_the_silence_run() -> None:
    seg = SpeechSegmenter(min_silence_ms=96)
    events = feed(seg, [0.9, 0.9, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1])
    assert kinds(events) == [(1, START), (7, END)]


def test_exact_threshold_counts_as_speech_and_neg_threshold_is_not_silence() -> None:
    seg = SpeechSegmenter(threshold=0.5, neg_threshold=0.35, min_speech_ms=0, min_silence_ms=0)
    assert seg.update(0.5, 0.02, 1.0) == VADEvent(START, 1.0, 0.5)
    assert seg.update(0.35, 0.02, 1.02) is None
    assert seg.update(0.349, 0.02, 1.04) == VADEvent(END, 1.04, 0.349)


def test_float_durations_accumulate_without_drift() -> None:
    # 16 frames of 20 ms are exactly 320 ms even though 0.02 is not exact in binary.
    seg = SpeechSegmenter(min_speech_ms=60, min_silence_ms=320)
    events = feed(seg, [0.9] * 3 + [0.0] * 16, frame_s=0.02)
    assert kinds(events) == [(2, START), (18, END)]


def test_frames_of_mixed_length() -> None:
    seg = SpeechSegmenter(min_speech_ms=64, min_silence_ms=320)
    assert seg.update(0.9, 0.010, 5.000) is None
    assert seg.update(0.9, 0.050, 5.010) is None
    assert seg.update(0.9, 0.004, 5.060) == VADEvent(START, 5.060, 0.9)
    assert seg.update(0.0, 0.300, 5.064) is None
    assert seg.update(0.0, 0.020, 5.364) == VADEvent(END, 5.364, 0.0)


def test_reset() -> None:
    seg = SpeechSegmenter()
    feed(seg, [0.9, 0.9, 0.9])
    was_in_speech = seg.in_speech
    seg.reset()
    assert was_in_speech
    assert not seg.in_speech
    # The speech run was cleared too: one frame is not enough to start again.
    assert seg.update(0.9, FRAME_S, 10.0) is None
    assert seg.update(0.9, FRAME_S, 10.032) is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"neg_threshold": 0.6},
        {"neg_threshold": 0.0},
        {"min_speech_ms": -1},
        {"min_silence_ms": -10},
    ],
)
def test_invalid_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SpeechSegmenter(**kwargs)


def test_low_threshold_keeps_a_positive_neg_threshold() -> None:
    seg = SpeechSegmenter(threshold=0.1)
    assert 0 < seg.neg_threshold < 0.1


@pytest.mark.parametrize(
    ("probability", "duration"), [(-0.1, 0.02), (1.1, 0.02), (0.5, -0.02), (0.5, float("inf"))]
)
def test_invalid_frames(probability: float, duration: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        SpeechSegmenter().update(probability, duration, 0.0)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=300))
def test_events_alternate_and_track_state(probabilities: list[float]) -> None:
    seg = SpeechSegmenter(min_speech_ms=40, min_silence_ms=100)
    expected = START
    for index, p in enumerate(probabilities):
        event = seg.update(p, 0.02, float(index))
        if event is not None:
            assert event.type == expected
            assert event.timestamp == float(index)
            expected = END if expected == START else START
        assert seg.in_speech == (expected == END)
