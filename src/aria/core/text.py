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

__all__ = ["ClauseChunker"]

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
