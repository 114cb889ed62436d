"""Which words of a clause the person heard: clause text + the engine's word marks + seconds -> characters.

A clause is the text the model wrote (what the page shows); the engine spoke ``prepare_text(clause)``,
which may differ (markdown and emoji dropped, a URL said as "link", numbers read out). Its
:class:`~aria.types.WordMark` s name the *spoken* words. The clause's words (whitespace-separated tokens
with a letter or digit in them; a lone ``-`` or emoji is not a word) are placed in time like this:

* **same count**: the engine marked as many words as the clause has: word ``k`` takes mark ``k``'s times;
* **different count** (the engine read a number or symbol as several words, or its phonemiser merged
  "of the" into one): the written and spoken words are aligned (:mod:`difflib`, on lower-case letters
  and digits); a word found on both sides takes its mark's times, and each run of written words between
  two such anchors is spread over the marks of the spoken run opposite by character proportion (a word
  that starts at fraction ``f`` of its run's characters starts where the marks reach fraction ``f`` of
  theirs, interpolated inside the mark found there); written words with nothing spoken opposite take
  zero length where the previous spoken word ended;
* **no marks** (OpenAI, or the engine gave none): by characters over the clause's audio: word ``k``
  starts at ``seconds * offset_k / len(clause)`` and lasts until the next word starts.

A mark without an end (``end_s == start_s``, espeak) lasts until the next mark starts. A word counts as
heard once at least half of it had played. What a clause yields is its text up to and
including the last heard word (punctuation attached to it included), the whole clause once every word
was heard.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aria.types import WordMark

__all__ = ["WordSpan", "clause_words", "heard_chars", "place_words"]

_TOKEN = re.compile(r"\S+")
_SPEAKABLE = re.compile(r"[^\W_]")  # a letter or digit


@dataclass(frozen=True, slots=True)
class WordSpan:
    """A clause word: its characters ``[begin, end)`` in the clause and its time in the clause's audio."""

    begin: int
    end: int
    start_s: float
    end_s: float

    @property
    def middle_s(self) -> float:
        return (self.start_s + self.end_s) / 2


def clause_words(clause: str) -> list[tuple[int, int]]:
    """Character spans of the clause's speakable words."""
    return [(m.start(), m.end()) for m in _TOKEN.finditer(clause) if _SPEAKABLE.search(m.group())]


def place_words(clause: str, marks: Sequence[WordMark], seconds: float) -> list[WordSpan]:
    """The clause's words with their times (seconds from the clause's first sample); see the module
    docstring for how. ``marks`` are relative to the clause too; ``seconds`` is its synthesised length."""
    spans = clause_words(clause)
    if not spans:
        return []
    marks = _with_ends(marks, seconds)
    if len(marks) == len(spans):
        return [WordSpan(b, e, m.start_s, m.end_s) for (b, e), m in zip(spans, marks, strict=True)]
    if marks:
        return _aligned(clause, spans, marks)
    size = max(len(clause), 1)
    starts = [seconds * b / size for b, _ in spans]
    ends = [*starts[1:], seconds]
    return [WordSpan(b, e, s, t) for (b, e), s, t in zip(spans, starts, ends, strict=True)]


def _with_ends(marks: Sequence[WordMark], seconds: float) -> Sequence[WordMark]:
    """A mark without an end (``end_s == start_s``: espeak) lasts until the next one starts, the last
    until the clause's audio ends."""
    if all(m.end_s > m.start_s for m in marks):
        return marks
    starts = [m.start_s for m in marks[1:]] + [max(seconds, marks[-1].start_s)]
    return [
        m if m.end_s > m.start_s else WordMark(m.text, m.start_s, nxt)
        for m, nxt in zip(marks, starts, strict=True)
    ]


def _aligned(clause: str, spans: list[tuple[int, int]], marks: Sequence[WordMark]) -> list[WordSpan]:
    written = [_norm(clause[b:e]) for b, e in spans]
    said = [_norm(m.text) for m in marks]
    placed: list[WordSpan] = []
    matcher = difflib.SequenceMatcher(None, written, said, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            placed += [
                WordSpan(*spans[i], marks[j].start_s, marks[j].end_s)
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
        elif tag == "replace":
            placed += _by_proportion(spans[i1:i2], marks[j1:j2])
        elif tag == "delete":  # written but not said: a zero-length word where the speech went on
            at = marks[j1 - 1].end_s if j1 > 0 else (marks[j1].start_s if j1 < len(marks) else 0.0)
            placed += [WordSpan(*spans[i], at, at) for i in range(i1, i2)]
    return placed


def _norm(word: str) -> str:
    return "".join(ch for ch in word.casefold() if ch.isalnum())


def _by_proportion(spans: list[tuple[int, int]], marks: Sequence[WordMark]) -> list[WordSpan]:
    """Written words over spoken marks by their characters' share of each side."""
    # The marks laid end to end as characters (one space between): mark j covers [at[j], at[j] + size_j).
    at: list[int] = []
    total = 0
    for mark in marks:
        at.append(total)
        total += max(len(mark.text), 1) + 1
    total -= 1

    def time_at(fraction: float) -> float:
        position = fraction * total
        j = max(0, bisect.bisect_right(at, position) - 1)
        mark = marks[j]
        inside = min(max((position - at[j]) / max(len(mark.text), 1), 0.0), 1.0)
        return mark.start_s + inside * (mark.end_s - mark.start_s)

    # Fractions of the stretch from the first word to the last, so markup around them shifts nothing.
    first, width = spans[0][0], max(spans[-1][1] - spans[0][0], 1)
    placed: list[WordSpan] = []
    for b, e in spans:
        start = time_at((b - first) / width)
        placed.append(WordSpan(b, e, start, max(time_at((e - first) / width), start)))
    return placed


def heard_chars(clause: str, marks: Sequence[WordMark], seconds: float, heard_s: float) -> int:
    """How many of the clause's characters were heard when ``heard_s`` seconds of its audio had played:
    the end of the last word at least half played (``len(clause)`` once all were)."""
    if not marks and heard_s >= seconds:
        return len(clause)  # by characters, every word ends within the clause's audio: all were heard
    words = place_words(clause, marks, seconds)
    if not words:
        return len(clause)
    count = 0
    for word in words:
        if word.middle_s > heard_s:
            break
        count += 1
    if count == 0:
        return 0
    if count == len(words):
        return len(clause)
    return words[count - 1].end
