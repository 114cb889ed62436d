"""A turn: one user input and the answer to it, with its latency waterfall."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from aria.core.metrics import TurnWaterfall

__all__ = ["Turn"]


def _turn_id() -> str:
    return "turn_" + uuid.uuid4().hex[:12]


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
    finished: bool = False
    error: str | None = None
    #: Results of the tools the model called during this turn.
    tool_results: list[Any] = field(default_factory=list)
    #: With a router: how it handled the turn ("answer", "tool" or "hand_off").
    route: str | None = None
    waterfall: TurnWaterfall = field(init=False)

    def __post_init__(self) -> None:
        self.waterfall = TurnWaterfall(self.id)

    def stopped(self) -> bool:
        """Whether the turn was interrupted (a call, so checks after an ``await`` are not narrowed away)."""
        return self.interrupted

    @property
    def generated_text(self) -> str:
        return "".join(self.generated).strip()

    def output_text(self, *, spoken: bool, heard_s: float | None = None) -> str:
        """What the person got: the clauses whose audio went out when spoken (with ``heard_s``, those
        whose audio had started playing by then), else the text shown."""
        if not spoken:
            return self.generated_text
        heard: list[str] = []
        start = 0.0
        for clause, blocks, seconds in zip(self.clauses, self.clause_audio, self.clause_seconds, strict=True):
            if blocks <= 0 or (heard_s is not None and start >= heard_s):
                break
            heard.append(clause)
            start += seconds
        return " ".join(heard)
