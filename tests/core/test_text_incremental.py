"""The incremental ClauseChunker gives exactly what the rescanning algorithm it replaced gave.

``ReferenceChunker`` is that algorithm, verbatim (it rescanned the whole buffer after every token);
hypothesis drives both with the same token streams and settings and compares every push and the flush.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from aria.core.text import ClauseChunker

_SENTENCE_END = frozenset(".!?…")
_CLAUSE_END = frozenset(",;:—–")
_CLOSERS = frozenset("\"')]}»”’")
_ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "approx",
        "no",
        "fig",
        "mt",
    }
)


class ReferenceChunker:
    """The chunker before it became incremental: every push rescans the whole buffer."""

    def __init__(
        self,
        *,
        first_min_chars: int = 12,
        min_chars: int = 24,
        long_clause_chars: int = 100,
        max_chars: int = 220,
    ) -> None:
        if not 0 < first_min_chars <= max_chars or not 0 < min_chars <= max_chars:
            raise ValueError("chunk lengths must be positive and at most max_chars")
        self.first_min_chars = first_min_chars
        self.min_chars = min_chars
        self.long_clause_chars = long_clause_chars
        self.max_chars = max_chars
        self._buf = ""
        self.emitted = 0

    def push(self, token: str) -> list[str]:
        self._buf += token
        ready: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            chunk, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if chunk:
                ready.append(chunk)
                self.emitted += 1
        return ready

    def flush(self) -> list[str]:
        chunk, self._buf = self._buf.strip(), ""
        if chunk:
            self.emitted += 1
            return [chunk]
        return []

    # -- internals ---------------------------------------------------------------------------------

    def _find_cut(self) -> int | None:
        buf = self._buf
        first = self.emitted == 0
        sentence_min = self.first_min_chars if first else self.min_chars
        clause_min = self.first_min_chars if first else self.long_clause_chars
        for i, ch in enumerate(buf):
            if ch in _SENTENCE_END:
                needed = sentence_min
            elif ch in _CLAUSE_END:
                needed = clause_min
            else:
                continue
            end = i + 1
            while end < len(buf) and (buf[end] in _CLOSERS or buf[end] in _SENTENCE_END):
                end += 1
            length = len(buf[:end].strip())
            if length > self.max_chars:
                break  # this and every later boundary make too long a chunk: cut at a space below
            if length < needed:
                continue
            if end < len(buf):
                if buf[end].isspace() and not self._is_abbreviation(buf, i):
                    return end
            elif self._confident_at_end(buf, i):
                return end
        if len(buf) >= self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None

    @staticmethod
    def _last_word(buf: str, i: int) -> str:
        start = i
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        return buf[start:i]

    def _is_abbreviation(self, buf: str, i: int) -> bool:
        if buf[i] != ".":
            return False
        word = self._last_word(buf, i).lower().lstrip("(\"'")
        return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())

    def _confident_at_end(self, buf: str, i: int) -> bool:
        """Whether punctuation that ends the buffer surely ends a clause, before seeing what follows."""
        before = buf[i - 1] if i > 0 else ""
        if not before or before.isdigit():
            return False  # "3." may become "3.14", "1," may become "1,000"
        return not self._is_abbreviation(buf, i)


# Text rich in what the chunker decides on: sentence and clause ends, closers, digits, initials,
# abbreviations, spaces of several kinds, long words (the max_chars cut).
PIECES = st.one_of(
    st.sampled_from(
        [
            " ",
            "  ",
            "\n",
            ".",
            "!",
            "?",
            "…",
            ",",
            ";",
            ":",
            "—",
            "–",
            '"',
            "'",
            ")",
            "]",
            "»",
            "”",
            "’",
            "(",
            "Dr",
            "dr",
            "Mrs",
            "e.g",
            "i.e",
            "etc",
            "J",
            "a",
            "3",
            "1,000",
            "3.14",
            "word",
            "Hello",
            "there",
            "x" * 30,
            "and",
            "...",
            "?!",
            '."',
            ".)",
            "no",
            "St",
        ]
    ),
    st.text(alphabet=" .,!?;:abcXYZ019'\")…—", max_size=12),
)
TOKENS = st.lists(st.lists(PIECES, min_size=1, max_size=4).map("".join), max_size=80)


def _run(chunker: ClauseChunker | ReferenceChunker, tokens: list[str]) -> list[list[str]]:
    return [chunker.push(token) for token in tokens] + [chunker.flush()]


@settings(max_examples=400, deadline=None)
@given(
    tokens=TOKENS,
    first_min=st.integers(1, 40),
    min_chars=st.integers(1, 60),
    long_clause=st.integers(1, 120),
    max_chars=st.integers(60, 240),
)
@example(
    tokens=["Dr", ".", " Smith", " said", " 3", ".", "14", ". Yes", '."', " Ok"],
    first_min=3,
    min_chars=3,
    long_clause=10,
    max_chars=60,
)
@example(tokens=["a" * 70, " b", "."], first_min=1, min_chars=1, long_clause=1, max_chars=60)
def test_incremental_chunker_equals_the_rescanning_one(
    tokens: list[str], first_min: int, min_chars: int, long_clause: int, max_chars: int
) -> None:
    kwargs = {
        "first_min_chars": min(first_min, max_chars),
        "min_chars": min(min_chars, max_chars),
        "long_clause_chars": long_clause,
        "max_chars": max_chars,
    }
    assert _run(ClauseChunker(**kwargs), tokens) == _run(ReferenceChunker(**kwargs), tokens)


@settings(max_examples=100, deadline=None)
@given(tokens=TOKENS)
def test_incremental_chunker_equals_the_rescanning_one_with_defaults(tokens: list[str]) -> None:
    assert _run(ClauseChunker(), tokens) == _run(ReferenceChunker(), tokens)


def test_one_character_at_a_time_reads_each_character_a_bounded_number_of_times() -> None:
    """Fed a long answer one character at a time the chunker stays linear: no rescans of the buffer."""
    text = ("Well, this is a sentence that goes on for a while without stopping " * 3 + ". ") * 20
    chunker = ClauseChunker(max_chars=10_000, min_chars=10_000)
    chunker.push("Hi there, ")  # the first chunk goes; later ones need 10,000 characters
    scanned = 0
    for ch in text:
        before = chunker._scan
        chunker.push(ch)
        scanned += max(0, chunker._scan - before)
        assert len(chunker._buf) - chunker._scan <= 2  # only the pending tail is read again
    assert scanned <= len(text)
