"""A turn: one user input and the answer to it, with its latency waterfall."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from random import getrandbits
from typing import Any, Literal

from aria.core.metrics import TurnWaterfall
from aria.pipeline.heard import heard_chars
from aria.types import AudioChunk, WordMark

__all__ = ["Turn"]


def _turn_id() -> str:
    # 48 random bits, as uuid4().hex[:12] gave; a name, not a secret (a session's key guards it), so no
    # system call for it on the path from input to the model.
    return f"turn_{getrandbits(48):012x}"


@dataclass(slots=True, eq=False)
class Turn:
    source: Literal["voice", "text"]
    id: str = field(default_factory=_turn_id)
    user_text: str = ""
    #: Every text piece the model generated, in order.
    generated: list[str] = field(default_factory=list)
    #: Text chunks sent to TTS, in order; ``clause`` in AudioOut indexes this list.
    clauses: list[str] = field(default_factory=list)
    #: Audio blocks handed out per clause (and withdrawn ones subtracted on interrupt).
    clause_audio: list[int] = field(default_factory=list)
    #: Seconds of audio handed out per clause (same index as ``clauses``).
    clause_seconds: list[float] = field(default_factory=list)
    audio_seconds: float = 0.0
    interrupted: bool = False
    speech_failed: bool = False
    #: Answered in text only, even where the pipeline speaks (a client asked for a text response).
    silent: bool = False
    finished: bool = False
    error: str | None = None
    #: Results of the tools the model called during this turn.
    tool_results: list[Any] = field(default_factory=list)
    #: With a router: how it handled the turn ("answer", "tool" or "hand_off").
    route: str | None = None
    #: Where the answer's playback was held for speech over it (seconds heard by then); None: playing.
    paused_heard_s: float | None = None
    waterfall: TurnWaterfall = field(init=False)
    #: Per clause: the engine's word marks placed in the clause's audio, and the seconds synthesised
    #: (withdrawn audio included), both filled by :meth:`add_audio`.
    _words: dict[int, list[WordMark]] = field(default_factory=dict, init=False, repr=False)
    _made: dict[int, float] = field(default_factory=dict, init=False, repr=False)
    #: While the answer is paused for speech over it: set when it may play again (see :meth:`pause`).
    _resumed: asyncio.Event | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.waterfall = TurnWaterfall(self.id)

    @property
    def paused(self) -> bool:
        """The answer's playback is held (speech over it is being judged): its speech waits."""
        return self._resumed is not None

    def pause(self) -> None:
        if self._resumed is None:
            self._resumed = asyncio.Event()

    def resume(self) -> None:
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.set()

    async def until_resumed(self) -> None:
        """Wait while the answer is paused (at once when it is not)."""
        if self._resumed is not None:
            await self._resumed.wait()

    def stopped(self) -> bool:
        """Whether the turn was interrupted (a call, so checks after an ``await`` are not narrowed away)."""
        return self.interrupted

    @property
    def generated_text(self) -> str:
        return "".join(self.generated).strip()

    def add_clause(self, text: str) -> int:
        """Start a clause sent to TTS; returns its index (``clause`` in AudioOut)."""
        self.clauses.append(text)
        self.clause_audio.append(0)
        self.clause_seconds.append(0.0)
        return len(self.clauses) - 1

    def add_audio(self, clause_index: int, chunk: AudioChunk) -> None:
        """A block of the clause's audio handed out; its word marks are placed after the clause's
        audio so far."""
        offset = self.clause_seconds[clause_index]
        if chunk.words:
            self._words.setdefault(clause_index, []).extend(w.shifted(offset) for w in chunk.words)
        seconds = chunk.duration
        self.clause_audio[clause_index] += 1
        self.clause_seconds[clause_index] = offset + seconds
        self.audio_seconds += seconds
        self._made[clause_index] = self._made.get(clause_index, 0.0) + seconds

    def withdraw_audio(self, clause_index: int, chunk: AudioChunk) -> None:
        """A block handed out but taken back before it went out (always the clause's latest audio):
        its words lie past the clause's remaining audio and so are never heard."""
        self.clause_audio[clause_index] -= 1
        self.clause_seconds[clause_index] -= chunk.duration
        self.audio_seconds -= chunk.duration

    def output_text(self, *, spoken: bool, heard_s: float | None = None) -> str:
        """What the person got: when spoken, the clauses whose audio went out, and with ``heard_s`` (the
        seconds of the answer played) only up to the last word at least half played (see
        :mod:`aria.pipeline.heard`); else the text shown."""
        if not spoken:
            return self.generated_text
        return " ".join(text for _, text in self._heard(heard_s))

    def heard_split(self, heard_s: float | None) -> tuple[str, str]:
        """The generated text cut where the person stopped hearing it: ``(heard, rest)``, with
        ``heard + rest == generated_text`` (``rest`` keeps the whitespace at the cut)."""
        text = self.generated_text
        cut = 0
        for index, piece in self._heard(heard_s):
            at = text.find(self.clauses[index], cut)
            if at < 0:  # not a piece of the text (cannot happen with the chunker): count words instead
                return _split_by_words(text, len(self.output_text(spoken=True, heard_s=heard_s).split()))
            cut = at + len(piece)
        return text[:cut], text[cut:]

    def _heard(self, heard_s: float | None) -> list[tuple[int, str]]:
        """``(clause index, heard part)`` of each clause heard, in order; a cut clause ends the list."""
        heard: list[tuple[int, str]] = []
        start = 0.0
        for index, (clause, blocks, sent) in enumerate(
            zip(self.clauses, self.clause_audio, self.clause_seconds, strict=True)
        ):
            if blocks <= 0 or (heard_s is not None and start >= heard_s):
                break
            if heard_s is None:
                heard.append((index, clause))
            else:
                made = max(self._made.get(index, 0.0), sent)
                played = min(heard_s - start, sent)
                count = heard_chars(clause, self._words.get(index, ()), made, played)
                if count:
                    heard.append((index, clause[:count]))
                if count < len(clause):
                    break
            start += sent
        return heard


def _split_by_words(text: str, words: int) -> tuple[str, str]:
    cut = 0
    for index, match in enumerate(re.finditer(r"\S+", text)):
        if index == words:
            break
        cut = match.end()
    return text[:cut], text[cut:]
