"""Tests for aria.core.text: clause chunking of a token stream for speech."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aria.core.streams import buffer_until
from aria.core.text import ClauseChunker

PUNCTUATION = set(".!?…,;:—–\"')]}»”’")

PARAGRAPH = (
    "Sure, here is the answer. Dr. Smith met Prof. J. R. R. Tolkien at 3.15 pm, e.g. on a Monday, "
    "and they talked about trees for a while... Was it fun? Yes! It cost 1,000 dollars, which is a lot "
    "of money for a short trip to the coast, the hills, the lakes, the old town and the little harbour "
    "where the boats were painted blue and green and red. The weather was mild; the food was good: bread, "
    'cheese and wine. He said "we should come back next year." (Mrs. Smith agreed.) '
    "Then they walked along the long quiet road past the mill and the farm and the church and the school "
    "and the bakery and the bridge and the river and the fields until the evening came and the lights of "
    "the village went on one by one. Really!? That is how it ended."
)


def run(tokens: Iterable[str], chunker: ClauseChunker | None = None) -> tuple[list[list[str]], list[str]]:
    """What each push returned, and what the flush returned."""
    chunker = chunker or ClauseChunker()
    pushed = [chunker.push(token) for token in tokens]
    return pushed, chunker.flush()


def chunks_of(tokens: Iterable[str], chunker: ClauseChunker | None = None) -> list[str]:
    pushed, flushed = run(tokens, chunker)
    return [chunk for ready in pushed for chunk in ready] + flushed


def words(text: str) -> list[str]:
    """Whitespace tokens with their leading space, the way an LLM streams text."""
    parts = text.split(" ")
    return [parts[0]] + [" " + p for p in parts[1:]]


def started(chunker: ClauseChunker) -> ClauseChunker:
    """A chunker that has already emitted its first chunk (later-chunk rules apply)."""
    assert chunker.push("Okay, let me see. ") == ["Okay, let me see."]
    return chunker


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_min_chars": 0},
        {"min_chars": 0},
        {"first_min_chars": 300},
        {"min_chars": 300},
        {"max_chars": 10},  # below the default minimums
        {"first_min_chars": -1},
    ],
)
def test_invalid_lengths_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="chunk lengths must be positive and at most max_chars"):
        ClauseChunker(**kwargs)


# -- the first chunk ------------------------------------------------------------------------------


def test_first_chunk_waits_for_a_boundary_with_enough_characters() -> None:
    pushed, flushed = run(["Sure,", " here", " is", " the", " answer."])
    # "Sure," is too short; the sentence end is long enough and at the end of the buffer: out at once
    assert pushed == [[], [], [], [], ["Sure, here is the answer."]]
    assert flushed == []


def test_first_chunk_takes_a_long_enough_clause() -> None:
    pushed, _ = run(["Well", " you", " know,", " it", " depends."])
    assert pushed == [[], [], ["Well you know,"], [], []]


@pytest.mark.parametrize("mark", [",", ";", ":", "—", "–"])
def test_first_chunk_at_any_clause_mark(mark: str) -> None:
    chunker = ClauseChunker(first_min_chars=5)
    assert chunker.push(f"One two three{mark} four") == [f"One two three{mark}"]
    assert chunker.flush() == ["four"]


def test_first_min_chars_counts_the_whole_chunk() -> None:
    chunker = ClauseChunker(first_min_chars=12)
    assert chunker.push("Hi. ") == []
    assert chunker.push("Yes. ") == []  # "Hi. Yes." is 8 characters
    assert chunker.push("Of course. ") == ["Hi. Yes. Of course."]


def test_sentence_end_at_the_end_of_the_buffer_is_emitted_without_the_next_token() -> None:
    chunker = started(ClauseChunker())
    assert chunker.push("The capital of France is Paris") == []
    assert chunker.push(".") == ["The capital of France is Paris."]
    assert chunker.flush() == []


def test_emitted_counts_chunks() -> None:
    chunker = ClauseChunker()
    assert chunker.emitted == 0
    chunker.push("Sure, here is the answer. And this is the rest of it. ")
    assert chunker.emitted == 2
    chunker.push("tail")
    chunker.flush()
    assert chunker.emitted == 3


# -- things that look like boundaries but are not --------------------------------------------------


@pytest.mark.parametrize(
    ("first", "rest", "whole"),
    [
        ("I will ask Dr.", " Smith about it.", "I will ask Dr. Smith about it."),
        ("We met Mrs.", " Jones today at noon.", "We met Mrs. Jones today at noon."),
        ("Bring some fruit e.g.", " apples or pears.", "Bring some fruit e.g. apples or pears."),
        ("Bring some fruit e.", "g. apples or pears.", "Bring some fruit e.g. apples or pears."),
        ("Bring some fruit i.e.", " apples.", "Bring some fruit i.e. apples."),
        ("A book written by J.", " R. R. Tolkien is here.", "A book written by J. R. R. Tolkien is here."),
        ("The value of pi is 3.", "14 or so.", "The value of pi is 3.14 or so."),
        ("It costs about 1,", "000 dollars.", "It costs about 1,000 dollars."),
        ("The meeting is at 10:", "30 tomorrow.", "The meeting is at 10:30 tomorrow."),
        ("Fruit like apples etc.", " are sweet.", "Fruit like apples etc. are sweet."),
        ("See the notes (Fig.", " 3) for this.", "See the notes (Fig. 3) for this."),
    ],
)
def test_ambiguous_marks_at_the_end_wait_for_the_next_character(first: str, rest: str, whole: str) -> None:
    chunker = ClauseChunker(first_min_chars=12)
    assert chunker.push(first) == []
    assert chunker.push(rest) == [whole]


@pytest.mark.parametrize(
    "text",
    [
        "I will ask Dr. Smith about it.",
        "A book written by J. R. R. Tolkien is here.",
        "The value of pi is 3.14 or so.",
        "It costs about 1,000 dollars.",
        "Use a fruit, e.g. an apple.",
        "Go to St. Mary's church and Mt. Fuji.",
    ],
)
def test_abbreviations_and_numbers_are_not_split_mid_buffer(text: str) -> None:
    chunker = started(ClauseChunker(min_chars=10))
    assert chunker.push(text + " And") == [text]
    assert chunker.flush() == ["And"]


def test_a_number_that_ends_a_sentence_is_split_once_the_next_word_comes() -> None:
    chunker = ClauseChunker()
    assert chunker.push("The answer is 42.") == []  # might still become 42.5
    assert chunker.push(" Next") == ["The answer is 42."]


# -- later chunks ---------------------------------------------------------------------------------


def test_later_chunks_join_short_sentences_up_to_min_chars() -> None:
    chunker = started(ClauseChunker(min_chars=24))
    assert chunker.push("Yes. No. Maybe. ") == []
    assert chunker.push("I think that works. And") == ["Yes. No. Maybe. I think that works."]
    assert chunker.flush() == ["And"]


def test_later_chunks_do_not_split_at_short_clauses() -> None:
    chunker = started(ClauseChunker(min_chars=24))
    assert chunker.push("First, second, and third, ") == []
    assert chunker.push("all of them arrive.") == ["First, second, and third, all of them arrive."]


def test_long_sentence_is_split_at_a_clause_after_long_clause_chars() -> None:
    chunker = started(ClauseChunker(min_chars=10, long_clause_chars=40, max_chars=200))
    early = "The first part, which is short"  # comma at 15: below 40
    later = ", keeps going for quite a while longer"  # comma at 30: below 40
    ready = chunker.push(early + later + ", and then some more")
    assert ready == [early + later + ","]  # the first clause mark past 40 characters
    assert len(ready[0]) >= 40
    assert chunker.flush() == ["and then some more"]


def test_hard_split_at_max_chars_on_a_space() -> None:
    chunker = started(ClauseChunker(min_chars=10, long_clause_chars=100, max_chars=30))
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"
    chunks = [c for token in words(text) for c in chunker.push(token)] + chunker.flush()
    # At 30 characters "epsilon" might still grow, so the cut is at the space before it.
    assert chunks == ["alpha beta gamma delta", "epsilon zeta eta theta iota", "kappa lambda mu"]
    assert all(len(c) <= 30 for c in chunks)


def test_hard_split_without_a_space_cuts_at_max_chars() -> None:
    chunker = ClauseChunker(first_min_chars=5, min_chars=5, max_chars=20)
    assert chunker.push("x" * 45) == ["x" * 20, "x" * 20]
    assert chunker.flush() == ["x" * 5]


def test_a_sentence_that_ends_past_max_chars_is_still_cut_at_max_chars() -> None:
    chunker = ClauseChunker(first_min_chars=5, min_chars=10, max_chars=40)
    assert chunker.push("x" * 35) == []
    ready = chunker.push(" abcdefghij.")
    assert ready == ["x" * 35, "abcdefghij."]
    assert all(len(c) <= 40 for c in ready)


def test_many_sentences_in_one_push_never_exceed_max_chars() -> None:
    chunker = ClauseChunker(first_min_chars=5, min_chars=10, max_chars=40)
    ready = chunker.push("Hello world. " + "word " * 20 + "end. Bye")
    assert ready[0] == "Hello world."
    assert all(len(c) <= 40 for c in ready)
    assert " ".join(ready + chunker.flush()) == "Hello world. " + "word " * 20 + "end. Bye"


def test_flush_returns_the_rest_stripped() -> None:
    chunker = ClauseChunker()
    assert chunker.push("  no boundary here yet ") == []
    assert chunker.flush() == ["no boundary here yet"]
    assert chunker.flush() == []


def test_flush_of_whitespace_is_empty() -> None:
    chunker = ClauseChunker()
    chunker.push("   ")
    assert chunker.flush() == []
    assert chunker.emitted == 0


# -- punctuation runs and closers ------------------------------------------------------------------


def test_question_and_exclamation_runs_stay_together() -> None:
    pushed, _ = run(["Did you really do that", "!?", " Wow"])
    assert pushed == [[], ["Did you really do that!?"], []]
    chunker = started(ClauseChunker(min_chars=10))
    assert chunker.push("That is really great!? Yes") == ["That is really great!?"]


def test_ellipsis_stays_with_its_sentence() -> None:
    chunker = ClauseChunker()
    assert chunker.push("Well, I am not sure... maybe") == ["Well, I am not sure..."]
    chunker = ClauseChunker()
    assert chunker.push("Well, I am not sure… maybe") == ["Well, I am not sure…"]


def test_ellipsis_mid_word_is_not_a_boundary() -> None:
    chunker = ClauseChunker()
    assert chunker.push("It was around two...three hours") == []


@pytest.mark.parametrize("closer", ['"', "'", ")", "”", "’", "»", '")'])
def test_closing_quotes_and_brackets_go_with_the_sentence(closer: str) -> None:
    chunker = ClauseChunker()
    text = f"He said (or wrote) stop right now.{closer}"
    assert chunker.push(text + " Then he left.") == [text]
    assert chunker.flush() == ["Then he left."]


def test_closing_quote_at_the_end_of_the_buffer() -> None:
    chunker = ClauseChunker()
    assert chunker.push('She answered "not today."') == ['She answered "not today."']


def test_abbreviation_after_an_opening_bracket() -> None:
    chunker = ClauseChunker(first_min_chars=5)
    assert chunker.push("Ask him (Dr.") == []
    assert chunker.push(" Who) now.") == ["Ask him (Dr. Who) now."]


# -- with buffer_until ------------------------------------------------------------------------------


async def test_chunker_as_a_stream_buffer() -> None:
    async def tokens() -> AsyncIterator[str]:
        for token in words("Sure, here is the answer. It has two sentences that are long enough. Bye"):
            yield token

    chunks = [c async for c in buffer_until(tokens(), ClauseChunker())]
    assert chunks == ["Sure, here is the answer.", "It has two sentences that are long enough.", "Bye"]


# -- properties -----------------------------------------------------------------------------------


def _allowed_cuts(text: str) -> list[int]:
    """Positions where a tokenizer may split: anywhere except inside a run of punctuation."""
    return [i for i in range(1, len(text)) if not (text[i - 1] in PUNCTUATION and text[i] in PUNCTUATION)]


CUTS = _allowed_cuts(PARAGRAPH)
NORMALISED = " ".join(PARAGRAPH.split())
WHOLE = chunks_of([PARAGRAPH])


def _tokens(cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(PARAGRAPH)]
    return [PARAGRAPH[a:b] for a, b in itertools.pairwise(bounds)]


def test_paragraph_in_one_push_and_word_by_word() -> None:
    whole = chunks_of([PARAGRAPH])
    assert " ".join(whole) == NORMALISED
    assert chunks_of(words(PARAGRAPH)) == whole
    assert whole[0] == "Sure, here is the answer."
    assert "Dr. Smith met Prof. J. R. R. Tolkien at 3.15 pm, e.g. on a Monday," in whole[1]
    assert all(len(c) <= 220 for c in whole)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.sampled_from(CUTS), max_size=120))
def test_random_token_splits_preserve_the_text(cuts: list[int]) -> None:
    chunks = chunks_of(_tokens(cuts))
    assert " ".join(chunks) == NORMALISED
    assert chunks == WHOLE  # the chunks do not depend on how the text was tokenized
    assert all(c and c == c.strip() for c in chunks)
    assert all(len(c) <= 220 for c in chunks)


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.sampled_from(CUTS), max_size=120),
    first_min=st.integers(1, 40),
    min_chars=st.integers(1, 80),
    long_clause=st.integers(1, 200),
    max_chars=st.integers(80, 250),
)
def test_random_splits_and_settings_preserve_the_text_and_respect_max_chars(
    cuts: list[int], first_min: int, min_chars: int, long_clause: int, max_chars: int
) -> None:
    chunker = ClauseChunker(
        first_min_chars=first_min, min_chars=min_chars, long_clause_chars=long_clause, max_chars=max_chars
    )
    chunks = chunks_of(_tokens(cuts), chunker)
    assert " ".join(chunks) == NORMALISED
    assert all(c and len(c) <= max_chars for c in chunks)
