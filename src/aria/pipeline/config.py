"""What a voice pipeline is given by its owner: its configuration and the hooks a transport provides
(playback tracking, the request context). The pipeline calls them; they never call into it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aria.core.history import History
from aria.types import Message

if TYPE_CHECKING:  # the settings model (pydantic-settings) is the server's; the pipeline takes this dataclass
    from aria.core.config import Settings

__all__ = ["ContextBuilder", "PipelineConfig", "Playback"]


class Playback(Protocol):
    """What a transport that plays answer audio to a person does for the pipeline."""

    def heard_seconds(self, turn_id: str) -> float | None:
        """How much of the turn's answer audio the person has heard (None: unknown)."""
        ...

    def cancel(self, turn_id: str) -> None:
        """Stop that turn's audio now: nothing not yet played may reach the person."""
        ...

    async def wait_sent(self, turn_id: str, blocks: int) -> None:
        """Until that many audio blocks of the turn have gone out to the person (or it was cancelled)."""
        ...


class ContextBuilder(Protocol):
    """Builds what a request carries from the history (a token window, a summary, profile facts)."""

    def build(self, history: History, system_prompt: str | None) -> tuple[tuple[Message, ...], str | None]:
        """The messages and the system prompt for the next request."""
        ...


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    sample_rate: int = 16000
    first_clause_min_chars: int = 12
    sentence_min_chars: int = 24
    max_chunk_chars: int = 220
    history_turns: int = 20
    preroll_ms: int = 200
    max_utterance_s: float = 60.0
    system_prompt: str | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    voice: str | None = None
    speak: bool = True
    mode: str = "voice_chat"
    output_maxsize: int = 256
    #: An incomplete turn (per the end-of-turn model) ends anyway after this much silence: the full
    #: ``max_wait_ms`` when the model is sure it is unfinished, down to ``min_wait_ms`` when it is unsure.
    max_wait_ms: int = 2500
    min_wait_ms: int = 300
    #: The completion probability at which the end-of-turn model calls a turn complete.
    turn_threshold: float = 0.5
    #: Start the answer at a pause, held back until the turn is confirmed complete.
    preemptive: bool = True
    #: Typed input while an answer is in progress: stop the answer, or wait for it.
    busy_input: Literal["supersede", "queue"] = "supersede"
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PipelineConfig:
        p, llm, turn = settings.pipeline, settings.llm, settings.turn
        config = cls(
            first_clause_min_chars=p.first_clause_min_chars,
            sentence_min_chars=p.sentence_min_chars,
            max_chunk_chars=p.max_chunk_chars,
            history_turns=p.history_turns,
            preroll_ms=p.preroll_ms,
            max_utterance_s=p.max_utterance_s,
            system_prompt=llm.system_prompt,
            temperature=llm.temperature,
            max_tokens=llm.max_tokens,
            stop=tuple(llm.stop),
            voice=settings.tts.voice,
            speak=settings.tts.enabled,
            mode=settings.mode,
            max_wait_ms=turn.max_wait_ms,
            min_wait_ms=min(turn.min_wait_ms, turn.max_wait_ms),
            turn_threshold=turn.threshold,
            preemptive=turn.preemptive,
            busy_input=turn.busy_input,
        )
        return replace(config, **overrides)
