"""The Realtime protocol as a sans-I/O state machine: client JSON in, GA server events and actions out.

:meth:`RealtimeProtocol.receive` parses one client event and returns what follows from it, in order:
server events (plain JSON objects, to send) and actions for the shell (audio to listen to, a response to
generate or stop). The shell reports what the engines did through the other methods (speech started and
stopped, a transcript, each piece of an answer, its end), and gets back the server events to send, with
event, item and response ids and in the order the GA API uses::

    response.created, rate_limits.updated
      response.output_item.added, conversation.item.added
        response.content_part.added
          response.output_audio_transcript.delta / response.output_audio.delta ... (or output_text.delta)
          response.output_audio.done, response.output_audio_transcript.done (or output_text.done)
        response.content_part.done
      response.output_item.done, conversation.item.done
    response.done

No sockets, no engines, no asyncio: the tests drive it with JSON text and check the events.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from aria.errors import InvalidInput
from aria.server.realtime import events as ev
from aria.server.realtime import server_events as se
from aria.server.realtime.actions import (
    AddItem,
    AudioIn,
    Cancel,
    ClearInput,
    Commit,
    Configure,
    DeleteItem,
    Respond,
    TranscribeItem,
    TruncateItem,
)
from aria.server.realtime.answering import Answering
from aria.server.realtime.codecs import Decoder, b64decode_audio
from aria.server.realtime.state import (
    Conversation,
    Item,
    SessionState,
    image_of,
    item_json,
    new_id,
)

__all__ = [
    "ERROR_CODES",
    "AddItem",
    "AudioIn",
    "Cancel",
    "ClearInput",
    "Commit",
    "Configure",
    "DeleteItem",
    "RealtimeProtocol",
    "Respond",
    "TranscribeItem",
    "TruncateItem",
]

Json = dict[str, Any]
_CLIENT: TypeAdapter[Any] = TypeAdapter(ev.ClientEvent)
#: The engines hear 16 kHz.
ENGINE_RATE = 16000
#: The ``code`` of every ``error`` event (``docs/realtime.md`` lists them; a test checks both ways).
ERROR_CODES = frozenset(
    {
        "invalid_json",
        "invalid_event",
        "unknown_event",
        "unknown_parameter",
        "missing_required_parameter",
        "unsupported_parameter",
        "invalid_value",
        "input_audio_buffer_commit_empty",
        "conversation_already_has_active_response",
        "response_cancel_not_active",
        "no_active_response",
        "engine_unavailable",
        "too_many_connections",
        "idle_timeout",
        "idle_evicted",
    }
)
#: The shortest input buffer a client may commit.
MIN_COMMIT_MS = 100
#: Union tags pydantic puts in an error's location: not field names.
_TAGS = {"server_vad", "semantic_vad", "audio/pcm", "audio/pcmu", "audio/pcma", "function", "int", "str"}


class RealtimeProtocol:
    def __init__(
        self,
        *,
        model: str,
        kind: str = "realtime",
        voices: tuple[str, ...] = (),
        default_voice: str | None = None,
    ) -> None:
        self.session = SessionState(model=model, kind=kind, voices=voices, default_voice=default_voice)
        self.conversation = Conversation()
        self.decoder = Decoder(self.session.input_format, ENGINE_RATE)
        self.answers = Answering(self.event, self.session, self.conversation)
        #: The item id the input buffer will become (announced with ``speech_started``).
        self.pending_item: str | None = None
        #: How much audio the input buffer holds (as the client sent it).
        self.buffered_ms = 0.0
        self._events = 0

    # -- output helpers ------------------------------------------------------------------------------

    def event(self, model: type[se.ServerEvent], **fields: Any) -> Json:
        self._events += 1
        built = model(event_id=f"event_{self._events:06d}{new_id('')[1:9]}", **fields)
        body = built.model_dump()
        return {"type": body.pop("type"), "event_id": body.pop("event_id"), **body}

    def error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
        kind: str = "invalid_request_error",
    ) -> Json:
        error = {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}
        return self.event(se.ErrorEvent, error=error)

    def created(self) -> list[Json]:
        return [self.event(se.SessionCreated, session=self.session.to_json())]

    # -- client events -------------------------------------------------------------------------------

    def receive(self, text: str) -> list[Any]:
        """One client event -> server events (dicts) and actions, in order. Never raises."""
        try:
            raw = json.loads(text)
        except ValueError as exc:
            return [self.error("invalid_json", f"the event is not JSON: {exc}")]
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        try:
            event = _CLIENT.validate_python(raw)
        except ValidationError as exc:
            return [self._invalid(exc, raw, event_id)]
        try:
            handler = getattr(self, "_on_" + event.type.replace(".", "_"))
            out: list[Any] = handler(event)
        except InvalidInput as exc:
            head, _, rest = str(exc).partition(": ")
            param = head if rest and re.fullmatch(r"[\w.\[\]]+", head) else None
            return [self.error("invalid_value", rest if param else str(exc), param=param, event_id=event_id)]
        return out

    def _invalid(self, exc: ValidationError, raw: Any, event_id: str | None) -> Json:
        first = exc.errors()[0]
        loc = [
            str(p)
            for p in first["loc"]
            if str(p) not in _TAGS and not str(p).startswith(("literal[", "function-"))
        ]
        kind = raw.get("type") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or "type" not in raw:
            return self.error(
                "missing_required_parameter", "every event needs a type", param="type", event_id=event_id
            )
        if first["type"] == "union_tag_invalid" and not loc:
            return self.error(
                "unknown_event", f"unknown event type {kind!r}", param="type", event_id=event_id
            )
        loc = loc[1:] if loc and loc[0] == kind else loc
        param = ".".join(loc) or None
        cause = first.get("ctx", {}).get("error")
        if first["type"] == "extra_forbidden":
            return self.error(
                "unknown_parameter", f"{kind}: unknown parameter {param}", param=param, event_id=event_id
            )
        if first["type"] == "missing":
            return self.error(
                "missing_required_parameter", f"{kind}: {param} is required", param=param, event_id=event_id
            )
        if isinstance(cause, ev.NotYetError):
            return self.error("unsupported_parameter", str(cause), param=param, event_id=event_id)
        return self.error("invalid_value", f"{kind}: {param}: {first['msg']}", param=param, event_id=event_id)

    def _on_session_update(self, event: ev.SessionUpdate) -> list[Any]:
        before = (self.session.input_format, self.session.output_format)
        self.session.apply(event.session)
        if self.session.input_format != before[0]:
            self.decoder = Decoder(self.session.input_format, ENGINE_RATE)
        return [self.event(se.SessionUpdated, session=self.session.to_json()), Configure()]

    def _on_input_audio_buffer_append(self, event: ev.InputAudioBufferAppend) -> list[Any]:
        data = b64decode_audio(event.audio)
        self.buffered_ms += self.decoder.samples_of(data) * 1000 / self.decoder.wire_rate
        return [AudioIn(self.decoder.decode(data))]

    def _on_input_audio_buffer_commit(self, event: ev.InputAudioBufferCommit) -> list[Any]:
        if self.buffered_ms < MIN_COMMIT_MS:
            message = (
                f"the input audio buffer holds {self.buffered_ms:.0f} ms; commit needs {MIN_COMMIT_MS} ms"
            )
            return [self.error("input_audio_buffer_commit_empty", message, event_id=event.event_id)]
        return self.commit()

    def _on_input_audio_buffer_clear(self, _event: ev.InputAudioBufferClear) -> list[Any]:
        self.pending_item, self.buffered_ms = None, 0.0
        return [ClearInput(), self.event(se.BufferCleared)]

    def _on_output_audio_buffer_clear(self, _event: ev.OutputAudioBufferClear) -> list[Any]:
        if self.answers.response is None:
            return [self.error("no_active_response", "there is no response audio to clear")]
        return [
            Cancel(self.answers.response.id, "client_cancelled"),
            self.event(se.OutputBufferCleared, response_id=self.answers.response.id),
        ]

    def _on_conversation_item_create(self, event: ev.ConversationItemCreate) -> list[Any]:
        item_id = event.item.id or new_id("item")
        if self.conversation.get(item_id) is not None:
            raise InvalidInput(f"item.id: an item {item_id!r} exists already")
        item = Item(item_json(event.item, item_id))
        out: list[Any] = []
        for index, part in enumerate(event.item.content or ()):
            if part.type == "input_image":
                if part.image_url is None:
                    raise InvalidInput(f"item.content[{index}].image_url: an input_image needs image_url")
                item.images += (image_of(part.image_url),)
            if part.type == "input_audio" and part.transcript is None:
                if part.audio is None:
                    raise InvalidInput(f"item.content[{index}].audio: an input_audio needs audio")
                decoder = Decoder(self.session.input_format, ENGINE_RATE)
                out.append(TranscribeItem(item_id, decoder.decode(b64decode_audio(part.audio))))
                item.json["content"][index]["transcript"] = None
            item.json["content"][index].pop("audio", None)
        previous = self.conversation.insert(item, event.previous_item_id)
        return [
            self.event(se.ItemAdded, previous_item_id=previous, item=item.json),
            self.event(se.ItemDone, previous_item_id=previous, item=item.json),
            *out,
            AddItem(item),
        ]

    def _on_conversation_item_delete(self, event: ev.ConversationItemDelete) -> list[Any]:
        item = self.conversation.get(event.item_id)
        if item is None:
            raise InvalidInput(f"item_id: no item {event.item_id!r}")
        self.conversation.delete(event.item_id)
        return [self.event(se.ItemDeleted, item_id=event.item_id), DeleteItem(item)]

    def _on_conversation_item_retrieve(self, event: ev.ConversationItemRetrieve) -> list[Any]:
        item = self.conversation.get(event.item_id)
        if item is None:
            raise InvalidInput(f"item_id: no item {event.item_id!r}")
        return [self.event(se.ItemRetrieved, item=item.json)]

    def _on_conversation_item_truncate(self, event: ev.ConversationItemTruncate) -> list[Any]:
        item = self.conversation.get(event.item_id)
        if item is None:
            raise InvalidInput(f"item_id: no item {event.item_id!r}")
        content = item.json.get("content") or []
        if (
            item.json.get("role") != "assistant"
            or event.content_index >= len(content)
            or (content[event.content_index]["type"] != "output_audio")
        ):
            raise InvalidInput("content_index: only an assistant message's output_audio can be truncated")
        total_ms = round(item.audio_seconds() * 1000)
        if event.audio_end_ms > total_ms:
            raise InvalidInput(f"audio_end_ms: {event.audio_end_ms} is past the audio's end ({total_ms} ms)")
        heard = item.heard(event.audio_end_ms / 1000)
        content[event.content_index]["transcript"] = heard
        item.spoken = [s for s in item.spoken if s.start_s * 1000 < event.audio_end_ms]
        if event.audio_end_ms < total_ms:
            item.json["status"] = "incomplete"
        return [
            self.event(
                se.ItemTruncated,
                item_id=item.id,
                content_index=event.content_index,
                audio_end_ms=event.audio_end_ms,
            ),
            TruncateItem(item.id, event.audio_end_ms),
        ]

    def _on_response_create(self, event: ev.ResponseCreate) -> list[Any]:
        if self.session.kind == "transcription":
            raise InvalidInput("type: a transcription session makes no responses")
        if self.answers.response is not None:
            return [
                self.error(
                    "conversation_already_has_active_response",
                    f"response {self.answers.response.id} is still in progress",
                    event_id=event.event_id,
                )
            ]
        return self.start_response(event.response or ev.ResponseParams())

    def _on_response_cancel(self, event: ev.ResponseCancel) -> list[Any]:
        response = self.answers.response
        if response is None or (event.response_id is not None and event.response_id != response.id):
            return [
                self.error(
                    "response_cancel_not_active",
                    "there is no active response to cancel",
                    param="response_id",
                    event_id=event.event_id,
                )
            ]
        return [Cancel(response.id, "client_cancelled")]

    # -- input, as the listener and the STT report it -----------------------------------------------------

    def speech_started(self, audio_start_ms: int) -> list[Json]:
        self.pending_item = self.pending_item or new_id("item")
        return [self.event(se.SpeechStarted, audio_start_ms=audio_start_ms, item_id=self.pending_item)]

    def speech_stopped(self, audio_end_ms: int) -> list[Json]:
        self.pending_item = self.pending_item or new_id("item")
        return [self.event(se.SpeechStopped, audio_end_ms=audio_end_ms, item_id=self.pending_item)]

    def timeout_triggered(self, audio_start_ms: int, audio_end_ms: int) -> list[Json]:
        self.pending_item = self.pending_item or new_id("item")
        return [
            self.event(
                se.TimeoutTriggered,
                audio_start_ms=audio_start_ms,
                audio_end_ms=audio_end_ms,
                item_id=self.pending_item,
            )
        ]

    def commit(self) -> list[Any]:
        """The input buffer becomes a user item (``committed``, ``item.added``, ``item.done``)."""
        item_id, self.pending_item = self.pending_item or new_id("item"), None
        self.buffered_ms = 0.0
        content = [{"type": "input_audio", "transcript": None}]
        item = Item(
            {
                "id": item_id,
                "type": "message",
                "object": "realtime.item",
                "status": "completed",
                "role": "user",
                "content": content,
            }
        )
        previous = self.conversation.insert(item)
        return [
            self.event(se.BufferCommitted, previous_item_id=previous, item_id=item_id),
            self.event(se.ItemAdded, previous_item_id=previous, item=item.json),
            self.event(se.ItemDone, previous_item_id=previous, item=item.json),
            Commit(item_id),
        ]

    def transcribed(self, item_id: str, text: str, seconds: float) -> list[Json]:
        """The STT's transcript of an audio item: stored in it; events only when transcription is on."""
        item = self.conversation.get(item_id)
        if item is not None:
            for part in item.json["content"]:
                if part["type"] == "input_audio":
                    part["transcript"] = text
        if self.session.transcription is None:
            return []
        usage = {"type": "duration", "seconds": round(seconds, 3)}
        return [
            self.event(se.TranscriptionDelta, item_id=item_id, delta=text),
            self.event(se.TranscriptionCompleted, item_id=item_id, transcript=text, usage=usage),
        ]

    def transcription_failed(self, item_id: str, message: str) -> list[Json]:
        error = {"type": "transcription_error", "code": "stt_failed", "message": message, "param": None}
        return [self.event(se.TranscriptionFailed, item_id=item_id, error=error)]

    # -- responses -------------------------------------------------------------------------------------

    def start_response(self, params: ev.ResponseParams) -> list[Any]:
        cfg = self.session.config
        modalities = tuple(params.output_modalities or cfg["output_modalities"])
        if "audio" in modalities and "audio" not in cfg["output_modalities"]:
            raise InvalidInput(
                "response.output_modalities: this session answers in text; set session.output_modalities"
            )
        out_cfg = params.audio.output if params.audio is not None and params.audio.output else None
        output_format = (
            out_cfg.format.type if out_cfg is not None and out_cfg.format else self.session.output_format
        )
        tools = () if cfg["tool_choice"] == "none" else tuple(cfg["tools"])
        limit = cfg["max_output_tokens"]
        response = self.answers.begin(modalities, output_format, params.metadata)
        instructions = params.instructions if params.instructions is not None else cfg["instructions"]
        action = Respond(
            response.id,
            instructions,
            modalities,
            self.session.voice,
            float(cfg["audio"]["output"]["speed"]),
            output_format,
            tools,
            None if limit == "inf" else int(limit),
        )
        return [
            self.event(se.ResponseCreated, response=self.answers.response_json(response, "in_progress")),
            self.event(se.RateLimitsUpdated, rate_limits=[]),
            action,
        ]
