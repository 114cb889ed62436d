"""Core data types that flow through every layer.

Plain frozen dataclasses (cheap on the audio path) that validate themselves on construction and raise
:class:`~aria.errors.InvalidInput` with a message that says what was wrong.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from aria.errors import InvalidInput

if TYPE_CHECKING:  # NumPy is imported by the methods that use it: importing the types stays cheap
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "SAMPLE_RATES",
    "AudioChunk",
    "GeneratedToken",
    "ImageFrame",
    "Message",
    "MultimodalInput",
    "ToolCall",
    "ToolSpec",
    "Transcription",
    "VisionEmbedding",
    "WordMark",
    "float32_samples",
    "int16_samples",
]

#: Sample rates Aria accepts anywhere in the pipeline.
SAMPLE_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})

Role = Literal["system", "user", "assistant", "tool"]
Modality = Literal["text", "audio", "image"]
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class WordMark:
    """When a word is heard in synthesised speech: ``text`` as spoken, ``start_s``/``end_s`` in seconds
    from the first sample of the chunk (or clause audio) that carries it. ``end_s == start_s`` when the
    engine knows only where words start: the word then lasts until the next one starts."""

    text: str
    start_s: float
    end_s: float

    def shifted(self, offset_s: float) -> WordMark:
        return WordMark(self.text, self.start_s + offset_s, self.end_s + offset_s)


def float32_samples(data: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Audio samples (``float32`` in [-1, 1] or ``int16``) as float32 in [-1, 1]: a view when already
    float32."""
    import numpy as np

    if data.dtype == np.float32:
        return data
    return (data.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


def int16_samples(data: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    """Audio samples (``float32`` in [-1, 1] or ``int16``) as little-endian int16, the wire's PCM16:
    out-of-range samples are clipped and NaN becomes silence (it would cast to an arbitrary integer)."""
    import numpy as np

    pcm: npt.NDArray[np.int16]
    if data.dtype == np.int16:
        pcm = data.astype("<i2", copy=False)
    else:
        pcm = (np.clip(np.nan_to_num(data, nan=0.0), -1.0, 1.0) * 32767.0).astype("<i2")
    return pcm


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A block of PCM audio: ``float32`` in [-1, 1] or ``int16``; shape ``(n,)`` mono or ``(n, channels)``.

    ``words``: from a TTS engine that knows them, the words whose audio *starts* in this chunk, times
    relative to its first sample (they may end after it)."""

    data: npt.NDArray[Any]
    sample_rate: int
    channels: int = 1
    timestamp: float = field(default_factory=_now)
    is_speech: bool | None = None
    words: tuple[WordMark, ...] = ()

    def __post_init__(self) -> None:
        import numpy as np

        if not isinstance(self.data, np.ndarray):
            raise InvalidInput(f"audio data must be a numpy array, got {type(self.data).__name__}")
        if self.data.dtype not in (np.float32, np.int16):
            raise InvalidInput(f"audio dtype must be float32 or int16, got {self.data.dtype}")
        if self.sample_rate not in SAMPLE_RATES:
            raise InvalidInput(
                f"unsupported sample rate {self.sample_rate} Hz; use one of {sorted(SAMPLE_RATES)}"
            )
        if not 1 <= self.channels <= 8:
            raise InvalidInput(f"channels must be 1..8, got {self.channels}")
        expected_ndim = 1 if self.channels == 1 else 2
        if self.data.ndim != expected_ndim or (self.channels > 1 and self.data.shape[1] != self.channels):
            raise InvalidInput(
                f"audio shape {self.data.shape} does not match {self.channels} channel(s): "
                "use (n,) for mono or (n, channels)"
            )

    @property
    def frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    @classmethod
    def from_pcm16(cls, payload: bytes, sample_rate: int = 16000, channels: int = 1, **kw: Any) -> AudioChunk:
        """Build a chunk from little-endian signed 16-bit PCM bytes (the wire format)."""
        import numpy as np

        if not 1 <= channels <= 8:
            raise InvalidInput(f"channels must be 1..8, got {channels}")
        frame_bytes = 2 * channels
        if len(payload) % frame_bytes:
            raise InvalidInput(
                f"PCM16 payload of {len(payload)} bytes is not a whole number of {frame_bytes}-byte frames"
            )
        data = np.frombuffer(payload, dtype="<i2")
        if channels > 1:
            data = data.reshape(-1, channels)
        return cls(data=data, sample_rate=sample_rate, channels=channels, **kw)

    def to_pcm16(self) -> bytes:
        """Little-endian signed 16-bit PCM bytes."""
        return int16_samples(self.data).tobytes()

    def as_float32(self) -> npt.NDArray[np.float32]:
        """Samples as float32 in [-1, 1] (a view when already float32)."""
        return float32_samples(self.data)

    def to_mono(self) -> AudioChunk:
        import numpy as np

        if self.channels == 1:
            return self
        mono = self.as_float32().mean(axis=1, dtype=np.float32)
        return AudioChunk(mono, self.sample_rate, 1, self.timestamp, self.is_speech, self.words)


_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ImageFormat = Literal["RGB", "BGR", "RGBA", "GRAY", "JPEG", "PNG"]


@dataclass(frozen=True, slots=True)
class ImageFrame:
    """An image: a decoded ``uint8`` array ``(h, w, c)`` (RGB/BGR/RGBA) or ``(h, w)`` (GRAY), or encoded
    JPEG/PNG bytes. ``width``/``height`` are taken from the array, and must be given for encoded bytes
    when known (0 means unknown until decoded)."""

    data: npt.NDArray[np.uint8] | bytes
    format: ImageFormat = "RGB"
    width: int = 0
    height: int = 0
    timestamp: float = field(default_factory=_now)
    frame_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        import numpy as np

        if isinstance(self.data, bytes | bytearray | memoryview):
            payload = bytes(self.data)
            if self.format == "JPEG" and not payload.startswith(_JPEG_MAGIC):
                raise InvalidInput("image is not a JPEG (missing FFD8FF start-of-image marker)")
            if self.format == "PNG" and not payload.startswith(_PNG_MAGIC):
                raise InvalidInput("image is not a PNG (missing PNG signature)")
            if self.format not in ("JPEG", "PNG"):
                raise InvalidInput(f"encoded image bytes need format JPEG or PNG, got {self.format}")
            if self.width < 0 or self.height < 0:
                raise InvalidInput("image width and height must not be negative")
            object.__setattr__(self, "data", payload)
            return
        if not isinstance(self.data, np.ndarray):
            raise InvalidInput(f"image data must be bytes or a numpy array, got {type(self.data).__name__}")
        if self.data.dtype != np.uint8:
            raise InvalidInput(f"image array dtype must be uint8, got {self.data.dtype}")
        channels = {"RGB": 3, "BGR": 3, "RGBA": 4, "GRAY": None}.get(self.format, -1)
        if channels == -1:
            raise InvalidInput(f"array images need format RGB, BGR, RGBA or GRAY, got {self.format}")
        if channels is None and self.data.ndim != 2:
            raise InvalidInput(f"GRAY image must have shape (h, w), got {self.data.shape}")
        if channels is not None and (self.data.ndim != 3 or self.data.shape[2] != channels):
            raise InvalidInput(
                f"{self.format} image must have shape (h, w, {channels}), got {self.data.shape}"
            )
        h, w = int(self.data.shape[0]), int(self.data.shape[1])
        if h == 0 or w == 0:
            raise InvalidInput("image must not be empty")
        if (self.width and self.width != w) or (self.height and self.height != h):
            raise InvalidInput(f"declared size {self.width}x{self.height} does not match array {w}x{h}")
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "height", h)

    @property
    def encoded(self) -> bool:
        return isinstance(self.data, bytes)


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    is_final: bool = False
    confidence: float = 1.0
    language: str | None = None
    timestamp: float = field(default_factory=_now)
    alternatives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise InvalidInput(f"confidence must be within [0, 1], got {self.confidence}")


@dataclass(frozen=True, slots=True)
class VisionEmbedding:
    vector: npt.NDArray[np.float32]
    image_id: str
    timestamp: float = field(default_factory=_now)
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        import numpy as np

        if not isinstance(self.vector, np.ndarray) or self.vector.ndim != 1 or self.vector.size == 0:
            raise InvalidInput("embedding must be a non-empty 1-D numpy array")
        if not np.all(np.isfinite(self.vector)):
            raise InvalidInput("embedding contains NaN or infinite values")

    @property
    def dimension(self) -> int:
        return int(self.vector.shape[0])


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call, in the OpenAI tools format (JSON-schema ``parameters``)."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call requested by the model; ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class GeneratedToken:
    text: str
    token_id: int | None = None
    logprob: float | None = None
    is_stop: bool = False
    timestamp: float = field(default_factory=_now)


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of a conversation. ``interrupted`` marks an assistant turn cut short by the user; its
    ``content`` is then what was actually output."""

    role: Role
    content: str
    modality: Modality = "text"
    timestamp: float = field(default_factory=time.time)
    interrupted: bool = False
    mode: str | None = None
    images: tuple[ImageFrame, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant", "tool"):
            raise InvalidInput(f"unknown message role {self.role!r}")
        if self.modality not in ("text", "audio", "image"):
            raise InvalidInput(f"unknown message modality {self.modality!r}")


@dataclass(frozen=True, slots=True)
class MultimodalInput:
    """Everything a model needs for one generation."""

    text: str = ""
    images: tuple[ImageFrame, ...] = ()
    vision_embedding: VisionEmbedding | None = None
    history: tuple[Message, ...] = ()
    system_prompt: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if not (self.text or self.images or self.vision_embedding is not None):
            raise InvalidInput("a multimodal input needs text, an image or an embedding")
