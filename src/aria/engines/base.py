"""Engine interfaces: small protocols, one per kind, plus capabilities and health.

Every engine has the same lifecycle (``start``, ``aclose``, ``health``) and one streaming method:

=======  ============================================================  ==========================
kind     streaming                                                     batch
=======  ============================================================  ==========================
vad      ``process(chunk) -> VADEvent | None`` (synchronous, per frame)
stt      ``stream(audio) -> AsyncIterator[Transcription]`` partials,    ``transcribe(chunk)``
         then one final when the audio stream ends
llm      ``stream(request) -> AsyncIterator[GeneratedToken | ToolCall]``  ``complete(request)``
vision   ``encode(frame) -> VisionEmbedding``
tts      ``synthesize(text, voice=...) -> AsyncIterator[AudioChunk]``
         for one sentence or clause
turn     ``predict(audio, text=None) -> TurnPrediction`` after a pause
=======  ============================================================  ==========================

Behaviour is added by wrapping (fallback chains, circuit breakers), never by subclassing these.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from aria.types import (
    AudioChunk,
    GeneratedToken,
    ImageFrame,
    Message,
    ToolCall,
    ToolSpec,
    Transcription,
    VisionEmbedding,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from aria.engines.options import EngineConfig

__all__ = [
    "API_VERSION",
    "KINDS",
    "LLM",
    "STT",
    "TTS",
    "VAD",
    "Availability",
    "Capabilities",
    "Engine",
    "EngineConfig",
    "EngineHealth",
    "EngineKind",
    "LLMChunk",
    "LLMRequest",
    "TurnDetector",
    "TurnPrediction",
    "VADEvent",
    "VADEventType",
    "VisionEncoder",
]

#: The engine API version; plugins declare the one they were built for (``aria_api_version``).
API_VERSION = "1.0"

EngineKind = Literal["vad", "stt", "llm", "vision", "tts", "turn"]
KINDS: tuple[EngineKind, ...] = ("vad", "stt", "llm", "vision", "tts", "turn")


def __getattr__(name: str) -> Any:
    """``EngineConfig`` (pydantic) is imported when an engine's options need it, not with the protocols."""
    if name == "EngineConfig":
        from aria.engines.options import EngineConfig

        globals()[name] = EngineConfig  # found directly from now on
        return EngineConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class Capabilities:
    streaming: bool = True
    partials: bool = False
    vision: bool = False
    tools: bool = False
    local: bool = True
    #: Input rate for VAD/STT, output rate for TTS.
    sample_rate: int | None = None
    languages: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()
    #: Rough resident memory, for the residency manager.
    memory_mb: int = 0


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether an engine can run on this machine, and if not, why and how to fix it. Engine classes
    provide it from a cheap ``check(config)`` classmethod that looks for packages and model files
    without loading anything heavy."""

    available: bool
    reason: str = ""
    fix: str = ""


@dataclass(frozen=True, slots=True)
class EngineHealth:
    ok: bool
    detail: str = ""


class VADEventType(enum.StrEnum):
    SPEECH_START = "speech_start"
    SPEECH_END = "speech_end"


@dataclass(frozen=True, slots=True)
class VADEvent:
    type: VADEventType
    #: Monotonic time of the frame that decided it.
    timestamp: float
    #: Speech probability of that frame.
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class TurnPrediction:
    """A turn detector's answer to "is the person's turn complete?" after a pause."""

    complete: bool
    #: Probability that the turn is complete, in [0, 1].
    probability: float
    #: What decided it, for logs and tests (``"audio 0.93"``, ``"trailing 'and'"``...).
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LLMRequest:
    messages: tuple[Message, ...]
    system_prompt: str | None = None
    temperature: float = 0.7
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""

    @property
    def images(self) -> tuple[ImageFrame, ...]:
        return tuple(image for message in self.messages for image in message.images)


LLMChunk = GeneratedToken | ToolCall


@runtime_checkable
class Engine(Protocol):
    kind: ClassVar[EngineKind]
    name: str
    capabilities: Capabilities

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def health(self) -> EngineHealth: ...


@runtime_checkable
class VAD(Engine, Protocol):
    """Voice activity detection with speech start/end events (the end after the minimum silence)."""

    def process(self, chunk: AudioChunk) -> VADEvent | None: ...

    def reset(self) -> None: ...


@runtime_checkable
class STT(Engine, Protocol):
    def stream(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcription]:
        """Partials while audio arrives; exactly one final transcription after the audio stream ends."""
        ...

    async def transcribe(self, audio: AudioChunk) -> Transcription: ...


@runtime_checkable
class LLM(Engine, Protocol):
    def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]: ...

    async def complete(self, request: LLMRequest) -> str: ...


@runtime_checkable
class VisionEncoder(Engine, Protocol):
    async def encode(self, frame: ImageFrame) -> VisionEmbedding: ...


@runtime_checkable
class TTS(Engine, Protocol):
    def synthesize(self, text: str, *, voice: str | None = None) -> AsyncIterator[AudioChunk]:
        """Audio for one sentence or clause, streamed as it is produced."""
        ...


@runtime_checkable
class TurnDetector(Engine, Protocol):
    """Semantic end of turn: asked when the VAD sees a short pause whether the turn is complete."""

    async def predict(self, audio: npt.NDArray[np.float32], text: str | None = None) -> TurnPrediction:
        """``audio``: the whole current utterance, 16 kHz mono float32 (engines use at most its last 8 s);
        ``text``: the transcript so far, when known."""
        ...
