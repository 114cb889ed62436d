"""Word-exact heard text: Turn.add_audio / withdraw_audio / output_text / heard_split and the mapping in
aria.pipeline.heard."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aria.engines.tts.textprep import prepare_text
from aria.pipeline.heard import place_words
from aria.pipeline.turn import Turn
from aria.testing.fakes import FakeTTS
from aria.types import AudioChunk, WordMark

RATE = 16000
SURE = "Sure, here is the answer to your question."
# Word starts and ends (s) as an engine would mark them, with a pause after "Sure,".
SURE_TIMES = [(0.00, 0.30), (0.45, 0.65), (0.65, 0.75), (0.75, 0.85), (0.85, 1.25), (1.25, 1.40)]
SURE_TIMES += [(1.40, 1.60), (1.60, 2.20)]


def silence(seconds: float, words: tuple[WordMark, ...] = ()) -> AudioChunk:
    return AudioChunk(np.zeros(round(seconds * RATE), np.float32), RATE, words=words)


def marks(text: str, times: list[tuple[float, float]]) -> tuple[WordMark, ...]:
    return tuple(WordMark(w, s, e) for w, (s, e) in zip(text.split(), times, strict=True))


def chunked(words: tuple[WordMark, ...], seconds: float, block_s: float = 0.1) -> list[AudioChunk]:
    """The clause's audio in blocks, each carrying the words that start in it (times relative to it)."""
    chunks = []
    count = round(seconds / block_s)
    for i in range(count):
        begin = i * block_s
        inside = tuple(
            w.shifted(-begin)
            for w in words
            if begin <= w.start_s < begin + block_s or (i == 0 and w.start_s < 0)
        )
        chunks.append(silence(block_s, inside))
    return chunks


def spoken_turn(*clauses: tuple[str, tuple[WordMark, ...], float]) -> Turn:
    turn = Turn("voice")
    for text, words, seconds in clauses:
        index = turn.add_clause(text)
        for chunk in chunked(words, seconds):
            turn.add_audio(index, chunk)
    turn.generated.append(" ".join(text for text, _, _ in clauses))
    return turn


@pytest.mark.parametrize(
    ("heard_s", "expected"),
    [
        (0.0, ""),
        (0.14, ""),
        (0.16, "Sure,"),  # more than half of "Sure" played
        (0.50, "Sure,"),  # in the pause, "here" barely started
        (0.56, "Sure, here"),
        (0.80, "Sure, here is the"),
        (1.04, "Sure, here is the"),
        (1.06, "Sure, here is the answer"),
        (1.85, "Sure, here is the answer to your"),
        (1.95, SURE),
        (10.0, SURE),
    ],
)
def test_heard_text_is_word_exact(heard_s: float, expected: str) -> None:
    turn = spoken_turn((SURE, marks(SURE, SURE_TIMES), 2.4))
    assert turn.output_text(spoken=True, heard_s=heard_s) == expected
    heard, rest = turn.heard_split(heard_s)
    assert heard == expected
    assert heard + rest == SURE


def test_without_heard_seconds_everything_sent_counts() -> None:
    turn = spoken_turn((SURE, marks(SURE, SURE_TIMES), 2.4))
    assert turn.output_text(spoken=True) == SURE
    assert turn.heard_split(None) == (SURE, "")
    assert turn.output_text(spoken=False) == SURE
    assert turn.clause_audio == [24]
    assert turn.clause_seconds == [pytest.approx(2.4)]
    assert turn.audio_seconds == pytest.approx(2.4)


def test_withdrawn_audio_is_never_heard() -> None:
    turn = spoken_turn((SURE, marks(SURE, SURE_TIMES), 2.4))
    chunks = chunked(marks(SURE, SURE_TIMES), 2.4)
    for chunk in chunks[9:]:  # everything from 0.9 s on was still queued
        turn.withdraw_audio(0, chunk)
    assert turn.clause_audio == [9]
    assert turn.clause_seconds[0] == pytest.approx(0.9)
    assert turn.audio_seconds == pytest.approx(0.9)
    # The player reports more than went out: only the audio sent can have been heard.
    assert turn.output_text(spoken=True, heard_s=5.0) == "Sure, here is the"
    assert turn.output_text(spoken=True, heard_s=0.6) == "Sure, here"


def test_no_marks_splits_the_clause_by_characters() -> None:
    turn = spoken_turn((SURE, (), 4.2))  # 42 characters, 0.1 s each
    # "answer" starts at character 18 (1.8 s) and ends at the next word's start (25: 2.5 s).
    assert turn.output_text(spoken=True, heard_s=2.1) == "Sure, here is the"
    assert turn.output_text(spoken=True, heard_s=2.2) == "Sure, here is the answer"
    assert turn.output_text(spoken=True, heard_s=0.25) == ""  # "Sure, " lasts until 0.6 s
    assert turn.output_text(spoken=True, heard_s=0.35) == "Sure,"
    # Withdrawn audio does not squeeze the split into what is left.
    for chunk in chunked((), 4.2)[30:]:
        turn.withdraw_audio(0, chunk)
    assert turn.output_text(spoken=True, heard_s=9.0) == "Sure, here is the answer to"


def test_textprep_changed_text_maps_word_by_word() -> None:
    """textprep drops markup and says "link" for a URL, but keeps one spoken word per written word."""
    clause = "- **Step one**: open [the settings page](https://x.y/z) 🙂 now."
    spoken = prepare_text(clause)
    assert spoken == "Step one: open the settings page now."
    words = marks(spoken, [(0.4 * i, 0.4 * i + 0.3) for i in range(7)])
    placed = place_words(clause, words, 3.0)
    assert [clause[p.begin : p.end] for p in placed][:2] == ["**Step", "one**:"]
    turn = spoken_turn((clause, words, 3.0))
    assert turn.output_text(spoken=True, heard_s=0.1) == ""
    assert turn.output_text(spoken=True, heard_s=0.2) == "- **Step"
    assert (
        turn.output_text(spoken=True, heard_s=2.2)
        == "- **Step one**: open [the settings page](https://x.y/z)"
    )
    assert turn.output_text(spoken=True, heard_s=2.6) == clause


def test_different_counts_map_by_character_proportion() -> None:
    """A phonemiser that merged "of the" and read "42" as two words: aligned, the rest by proportion."""
    clause = "The top of the list has 42 items."
    spoken = marks(  # and one more word said at the end: 9 marks for 8 written words
        "The top ofthe list has forty two items now",
        [
            (0.0, 0.2),
            (0.2, 0.5),
            (0.5, 0.7),
            (0.7, 1.0),
            (1.0, 1.2),
            (1.2, 1.5),
            (1.5, 1.7),
            (1.7, 2.1),
            (2.1, 2.3),
        ],
    )
    placed = place_words(clause, spoken, 2.4)
    got = {clause[p.begin : p.end]: (p.start_s, p.end_s) for p in placed}
    assert len(placed) == 8
    assert got["The"] == (0.0, 0.2)
    assert got["list"] == (0.7, 1.0)  # found on both sides
    assert got["of"][0] == pytest.approx(0.5)
    assert 0.55 < got["the"][0] < 0.65  # inside "ofthe"
    assert got["42"] == pytest.approx((1.2, 1.7))  # over "forty two"
    assert got["items."] == (1.7, 2.1)
    assert all(a.start_s <= b.start_s for a, b in itertools.pairwise(placed))
    turn = spoken_turn((clause, spoken, 2.4))
    assert turn.output_text(spoken=True, heard_s=9.0) == clause
    assert turn.output_text(spoken=True, heard_s=1.4) == "The top of the list has"
    assert turn.output_text(spoken=True, heard_s=1.5) == "The top of the list has 42"


def test_same_count_maps_by_index_even_when_the_words_differ() -> None:
    clause = "It costs $5 today."
    spoken = "It costs five dollars"  # the engine read the number: the counts differ -> proportion
    placed = place_words(clause, marks(spoken, [(0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.2)]), 1.5)
    assert [clause[p.begin : p.end] for p in placed] == ["It", "costs", "$5", "today."]
    same = place_words(
        clause, marks("It costs five today", [(0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.2)]), 1.5
    )
    assert [(p.start_s, p.end_s) for p in same] == [(0, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.2)]


def test_multi_clause_answer() -> None:
    first, second = "Sure, here is the answer to your question.", "It is forty two."
    turn = spoken_turn(
        (first, marks(first, SURE_TIMES), 2.4),
        (second, marks(second, [(0.0, 0.1), (0.1, 0.2), (0.2, 0.5), (0.5, 0.8)]), 1.0),
    )
    turn.generated[:] = [first + "\n\n" + second]
    assert turn.output_text(spoken=True, heard_s=2.3) == first  # the pause after the question
    assert turn.output_text(spoken=True, heard_s=2.4 + 0.16) == first + " It is"
    heard, rest = turn.heard_split(2.4 + 0.16)
    assert (heard, rest) == (first + "\n\nIt is", " forty two.")
    assert turn.output_text(spoken=True, heard_s=3.4) == first + " " + second
    assert turn.output_text(spoken=True) == first + " " + second


def test_a_clause_with_no_audio_ends_what_was_heard() -> None:
    turn = spoken_turn((SURE, marks(SURE, SURE_TIMES), 2.4))
    turn.add_clause("Unsaid.")
    assert turn.output_text(spoken=True, heard_s=9.0) == SURE
    assert turn.heard_split(9.0) == (SURE, "")


def test_the_old_list_poking_still_works() -> None:
    """voice.py appends to the lists itself until it uses add_clause/add_audio: characters split."""
    turn = Turn("voice")
    turn.clauses.append(SURE)
    turn.clause_audio.append(3)
    turn.clause_seconds.append(4.2)
    turn.generated.append(SURE)
    assert turn.output_text(spoken=True, heard_s=2.2) == "Sure, here is the answer"
    assert turn.output_text(spoken=True) == SURE


async def test_fake_tts_marks_words_by_characters() -> None:
    tts = FakeTTS(FakeTTS.Config(ms_per_char=50, chunk_ms=20))
    chunks = [chunk async for chunk in tts.synthesize(SURE)]
    turn = Turn("voice")
    index = turn.add_clause(SURE)
    found: list[WordMark] = []
    for chunk in chunks:
        assert all(0 <= w.start_s < chunk.duration for w in chunk.words)
        found += [w.shifted(turn.clause_seconds[index]) for w in chunk.words]
        turn.add_audio(index, chunk)
    assert [w.text for w in found] == SURE.split()
    assert found[1].start_s == pytest.approx(6 * 0.05)
    assert found[1].end_s == pytest.approx(10 * 0.05)
    turn.generated.append(SURE)
    assert turn.output_text(spoken=True, heard_s=0.41) == "Sure, here"
