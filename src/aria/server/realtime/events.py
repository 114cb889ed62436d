"""Client events of the OpenAI Realtime API (GA), as pydantic models in one discriminated union.

Unknown fields are errors (``extra="forbid"``), never silently dropped. Fields of the GA API that Aria does
not implement yet are declared with :func:`not_yet`: they are accepted only at the value that means "off"
(``null``, and ``"auto"`` where that is the API's default), otherwise the event is refused with an
``unsupported_parameter`` error that names the field. ``docs/realtime.md`` lists them (checked by a test).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "NOT_YET",
    "Audio",
    "AudioInput",
    "AudioOutput",
    "ClientEvent",
    "ContentPart",
    "ConversationItemCreate",
    "ConversationItemDelete",
    "ConversationItemRetrieve",
    "ConversationItemTruncate",
    "FunctionTool",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCommit",
    "ItemIn",
    "NotYetError",
    "OutputAudioBufferClear",
    "PcmFormat",
    "PcmaFormat",
    "PcmuFormat",
    "ResponseAudio",
    "ResponseAudioOutput",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseParams",
    "SemanticVad",
    "ServerVad",
    "SessionConfig",
    "SessionUpdate",
    "Transcription",
    "not_yet",
]

#: The GA fields accepted only when "off", as dotted paths (the docs list them as not yet supported).
NOT_YET: set[str] = set()


class NotYetError(ValueError):
    """A GA field Aria does not implement yet was given a value other than "off"."""


def not_yet(path: str, *off: object) -> Any:
    """A field accepted only at ``None`` or one of ``off``; registered in :data:`NOT_YET` as ``path``."""
    NOT_YET.add(path)

    def check(value: Any) -> Any:
        if value is None or value in off or value == []:
            return value
        raise NotYetError(f"{path} is not supported by Aria yet")

    return Annotated[Any, AfterValidator(check)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Event(_Model):
    event_id: str | None = Field(default=None, max_length=512)


# -- session configuration -----------------------------------------------------------------------------


class PcmFormat(_Model):
    type: Literal["audio/pcm"]
    rate: Literal[24000] = 24000


class PcmuFormat(_Model):
    type: Literal["audio/pcmu"]


class PcmaFormat(_Model):
    type: Literal["audio/pcma"]


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]


class Transcription(_Model):
    """Input transcription: Aria's STT engine transcribes, whatever ``model`` names (it is echoed)."""

    model: str | None = None
    language: not_yet("session.audio.input.transcription.language") = None  # type: ignore[valid-type]
    prompt: not_yet("session.audio.input.transcription.prompt") = None  # type: ignore[valid-type]
    languages: not_yet("session.audio.input.transcription.languages") = None  # type: ignore[valid-type]
    keywords: not_yet("session.audio.input.transcription.keywords") = None  # type: ignore[valid-type]
    delay: not_yet("session.audio.input.transcription.delay") = None  # type: ignore[valid-type]


class ServerVad(_Model):
    type: Literal["server_vad"]
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(default=None, ge=0, le=5000)
    silence_duration_ms: int | None = Field(default=None, ge=0, le=10000)
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = Field(default=None, ge=1000, le=300000)


class SemanticVad(_Model):
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class AudioInput(_Model):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: not_yet("session.audio.input.noise_reduction") = None  # type: ignore[valid-type]


class AudioOutput(_Model):
    format: AudioFormat | None = None
    voice: str | None = Field(default=None, max_length=200)
    speed: float | None = Field(default=None, ge=0.25, le=1.5)


class Audio(_Model):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class FunctionTool(_Model):
    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


ToolChoice = Literal["auto", "none"]


class SessionConfig(_Model):
    """``session`` of ``session.update`` (``type`` ``realtime`` or ``transcription``)."""

    type: Literal["realtime", "transcription"] | None = None
    model: str | None = Field(default=None, max_length=200)
    instructions: str | None = Field(default=None, max_length=100_000)
    output_modalities: list[Literal["text", "audio"]] | None = Field(default=None, min_length=1, max_length=1)
    audio: Audio | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    max_output_tokens: int | Literal["inf"] | None = Field(default=None)
    parallel_tool_calls: not_yet("session.parallel_tool_calls", True) = None  # type: ignore[valid-type]
    reasoning: not_yet("session.reasoning") = None  # type: ignore[valid-type]
    include: not_yet("session.include") = None  # type: ignore[valid-type]
    prompt: not_yet("session.prompt") = None  # type: ignore[valid-type]
    tracing: not_yet("session.tracing", "auto") = None  # type: ignore[valid-type]
    truncation: not_yet("session.truncation", "auto") = None  # type: ignore[valid-type]


class SessionUpdate(_Event):
    type: Literal["session.update"]
    session: SessionConfig


# -- input audio -------------------------------------------------------------------------------------


class InputAudioBufferAppend(_Event):
    type: Literal["input_audio_buffer.append"]
    audio: str = Field(max_length=15 * 1024 * 1024)


class InputAudioBufferCommit(_Event):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_Event):
    type: Literal["input_audio_buffer.clear"]


class OutputAudioBufferClear(_Event):
    type: Literal["output_audio_buffer.clear"]


# -- conversation items ------------------------------------------------------------------------------


class ContentPart(_Model):
    type: Literal["input_text", "input_audio", "input_image", "output_text", "output_audio", "text"]
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None
    image_url: str | None = None
    detail: not_yet("item.content[].detail", "auto") = None  # type: ignore[valid-type]


class ItemIn(_Model):
    """An item the client adds: a ``message`` (user/assistant/system), a ``function_call`` or its
    ``function_call_output``."""

    type: Literal["message", "function_call", "function_call_output"]
    id: str | None = Field(default=None, max_length=32)
    object: Literal["realtime.item"] | None = None
    status: Literal["completed", "incomplete", "in_progress"] | None = None
    role: Literal["user", "assistant", "system"] | None = None
    content: list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class ConversationItemCreate(_Event):
    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: ItemIn


class ConversationItemDelete(_Event):
    type: Literal["conversation.item.delete"]
    item_id: str


class ConversationItemRetrieve(_Event):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ConversationItemTruncate(_Event):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


# -- responses ---------------------------------------------------------------------------------------


class ResponseAudioOutput(_Model):
    format: AudioFormat | None = None
    voice: not_yet("response.audio.output.voice") = None  # type: ignore[valid-type]


class ResponseAudio(_Model):
    output: ResponseAudioOutput | None = None


class ResponseParams(_Model):
    """``response`` of ``response.create``: these settings apply to this response only."""

    instructions: str | None = Field(default=None, max_length=100_000)
    output_modalities: list[Literal["text", "audio"]] | None = Field(default=None, min_length=1, max_length=1)
    audio: ResponseAudio | None = None
    metadata: dict[str, str] | None = None
    tools: not_yet("response.tools") = None  # type: ignore[valid-type]
    tool_choice: not_yet("response.tool_choice", "auto") = None  # type: ignore[valid-type]
    max_output_tokens: not_yet("response.max_output_tokens", "inf") = None  # type: ignore[valid-type]
    parallel_tool_calls: not_yet("response.parallel_tool_calls", True) = None  # type: ignore[valid-type]
    reasoning: not_yet("response.reasoning") = None  # type: ignore[valid-type]
    conversation: not_yet("response.conversation", "auto") = None  # type: ignore[valid-type]
    input: not_yet("response.input") = None  # type: ignore[valid-type]
    prompt: not_yet("response.prompt") = None  # type: ignore[valid-type]


class ResponseCreate(_Event):
    type: Literal["response.create"]
    response: ResponseParams | None = None


class ResponseCancel(_Event):
    type: Literal["response.cancel"]
    response_id: str | None = None


ClientEvent = Annotated[
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | OutputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel,
    Field(discriminator="type"),
]
