"""A Realtime session's settings as Aria's, and the answer audio of one response.

:func:`aria_settings` maps the session (instructions, voice, turn detection, output token limit) onto
Aria's settings for the conversation core. :class:`AnswerAudio` turns the core's answer audio into the
session's output format clause by clause (stretched to the session's ``speed``), and records each clause's
timing and word marks for ``conversation.item.truncate``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from aria.core.config import Settings
from aria.pipeline.outputs import AudioOut
from aria.server.realtime.codecs import Encoder
from aria.server.realtime.listening import EAGERNESS
from aria.server.realtime.state import SessionState, Spoken
from aria.server.realtime.tempo import stretch
from aria.types import WordMark

__all__ = ["AnswerAudio", "aria_settings"]


def aria_settings(base: Settings, session: SessionState) -> Settings:
    """The session as Aria's settings: instructions, voice, turn detection, output tokens. Aria's own
    tools are left out: a Realtime client sees (and confirms) only the functions it defined."""
    cfg = session.config
    llm = base.llm.model_copy(
        update={"system_prompt": cfg["instructions"] or base.llm.system_prompt, "tools": []}
    )
    if cfg["max_output_tokens"] != "inf":
        llm = llm.model_copy(update={"max_tokens": int(cfg["max_output_tokens"])})
    speak = "audio" in cfg["output_modalities"]  # a text session's turns are not synthesised
    tts = base.tts.model_copy(update={"voice": session.voice or base.tts.voice, "enabled": speak})
    vad, turn, td = base.vad, base.turn, session.turn_detection or {}
    if td.get("type") == "server_vad":
        vad = vad.model_copy(
            update={"threshold": td["threshold"], "min_silence_ms": td["silence_duration_ms"]}
        )
        turn = turn.model_copy(update={"backend": "silence"})  # every pause the VAD reports ends the turn
    elif td.get("type") == "semantic_vad":
        probability, longest = EAGERNESS[td.get("eagerness") or "auto"]
        turn = turn.model_copy(update={"threshold": probability, "max_wait_ms": longest})
    if td and not td.get("interrupt_response", True):
        turn = turn.model_copy(update={"interruption": "off"})
    return base.model_copy(update={"llm": llm, "tts": tts, "vad": vad, "turn": turn})


@dataclass
class AnswerAudio:
    """The response a core turn is writing: its modalities, its format, its clauses' audio so far."""

    turn_id: str
    modalities: tuple[str, ...]
    encoder: Encoder
    speed: float = 1.0
    #: The text of each clause sent to the TTS, in order.
    clauses: list[str] = field(default_factory=list)
    clause: int = -1
    clause_start: float = 0.0
    clause_s: float = 0.0
    marks: list[WordMark] = field(default_factory=list)
    held: list[npt.NDArray[np.float32]] = field(default_factory=list)
    rate: int = 16000
    #: Seconds of answer audio sent so far.
    seconds: float = 0.0

    @property
    def speaks(self) -> bool:
        return "audio" in self.modalities

    def add(self, out: AudioOut) -> tuple[list[tuple[str, float]], Spoken | None]:
        """A block of the answer's speech -> the audio deltas to send (base64, seconds), and the clause it
        ended (when it starts a new one)."""
        ended = self.end_clause() if out.clause != self.clause and self.clause >= 0 else None
        deltas = ended[0] if ended else []
        if out.clause != self.clause:
            self.clause, self.clause_start, self.clause_s, self.marks = out.clause, self.seconds, 0.0, []
        chunk = out.chunk.to_mono()
        samples, self.rate = chunk.as_float32(), chunk.sample_rate
        self.marks += [
            WordMark(m.text, (m.start_s + self.clause_s) / self.speed, (m.end_s + self.clause_s) / self.speed)
            for m in chunk.words
        ]
        self.clause_s += samples.size / chunk.sample_rate
        if self.speed != 1.0:
            self.held.append(samples)  # a clause is stretched whole
        else:
            deltas += self._encode(samples)
        return deltas, ended[1] if ended else None

    def end_clause(self) -> tuple[list[tuple[str, float]], Spoken] | None:
        """The clause in progress is complete: its (stretched) audio's last deltas, and its timing."""
        if self.clause < 0:
            return None
        held, self.held = self.held, []
        tail = stretch(np.concatenate(held), self.rate, self.speed) if held else np.zeros(0, np.float32)
        deltas = self._encode(tail, last=True)
        played = self.clause_s / self.speed
        text = self.clauses[self.clause] if self.clause < len(self.clauses) else ""
        spoken = Spoken(text, self.clause_start, played, tuple(self.marks))
        self.seconds += played
        self.clause = -1
        return deltas, spoken

    def _encode(self, samples: npt.NDArray[np.float32], *, last: bool = False) -> list[tuple[str, float]]:
        data = self.encoder.encode(samples, self.rate, last=last)
        return [(base64.b64encode(data).decode("ascii"), self.encoder.seconds(data))] if data else []
