"""Sentence and clause chunking of a token stream, for speaking an answer while it is generated.

:class:`ClauseChunker` is a :class:`~aria.core.streams.Buffer` of tokens. The first chunk goes out at
the first clause or sentence boundary once it has ``first_min_chars`` characters (the earliest point
where speech sounds natural, which sets the time to first audio); later chunks prefer whole sentences of
at least ``min_chars``, break long sentences at a clause after ``long_clause_chars``, and never exceed
``max_chars`` (then cut at a space).

A boundary at the very end of the buffer is taken at once when it is unambiguous (``word.``) rather
than waiting for the next token: abbreviations (``Dr.``), initials (``J.``) and numbers (``3.``, ``1,``)
wait for the following character.
"""

from __future__ import annotations

import re

__all__ = ["ClauseChunker"]

_SENTENCE_END = frozenset(".!?…")
_CLAUSE_END = frozenset(",;:—–")
_CLOSERS = frozenset("\"')]}»”’")
#: A boundary character, and the closers and sentence ends that may follow one (``?!"``, ``...)``).
_BOUNDARY = re.compile("[" + re.escape("".join(sorted(_SENTENCE_END | _CLAUSE_END))) + "]")
_RUN = re.compile("[" + re.escape("".join(sorted(_CLOSERS | _SENTENCE_END))) + "]*")
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


class ClauseChunker:
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
        self._scan = 0  # every boundary before this index was passed over for good
        self.emitted = 0

    def push(self, token: str) -> list[str]:
        self._buf += token
        ready: list[str] = []
        while (cut := self._find_cut()) is not None:
            chunk, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            self._scan = 0
            if chunk:
                ready.append(chunk)
                self.emitted += 1
        return ready

    def flush(self) -> list[str]:
        chunk, self._buf = self._buf.strip(), ""
        self._scan = 0
        if chunk:
            self.emitted += 1
            return [chunk]
        return []

    # -- internals ---------------------------------------------------------------------------------

    def _find_cut(self) -> int | None:
        """Where the next chunk ends, or None. Incremental: a boundary followed by a character is
        decided for good (cut, or never), so the scan resumes at ``_scan``, the first boundary that
        still waits for what follows it (one at the end of the buffer); only new text is read."""
        buf = self._buf
        size = len(buf)
        first = self.emitted == 0
        sentence_min = self.first_min_chars if first else self.min_chars
        clause_min = self.first_min_chars if first else self.long_clause_chars
        pos, settled = self._scan, True
        while (match := _BOUNDARY.search(buf, pos)) is not None:
            i = match.start()
            pos = i + 1
            needed = sentence_min if buf[i] in _SENTENCE_END else clause_min
            end = _RUN.match(buf, pos).end()  # type: ignore[union-attr]  # always matches
            length = len(buf[:end].strip())
            if length > self.max_chars:
                break  # this and every later boundary make too long a chunk: cut at a space below
            if end < size:
                if length >= needed and buf[end].isspace() and not self._is_abbreviation(buf, i):
                    return end
                if settled:
                    self._scan = pos  # passed over for good
            else:  # at the end: what follows may change the answer, so it is read again next time
                if length >= needed and self._confident_at_end(buf, i):
                    return end
                if settled:
                    self._scan, settled = i, False
        if settled and match is None:
            self._scan = size
        if size >= self.max_chars:
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
