"""The events of one response, in the GA order: its items and content parts opened on their first text
or audio, closed (``.done`` events) when the next item starts or the response ends, then ``response.done``.
Part of the sans-I/O protocol (:mod:`aria.server.realtime.protocol`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aria.server.realtime import server_events as se
from aria.server.realtime.state import Conversation, Item, SessionState, Spoken, new_id

__all__ = ["Answering"]

Json = dict[str, Any]


@dataclass
class _Response:
    id: str
    modalities: tuple[str, ...]
    output_format: str
    metadata: dict[str, str] | None
    output: list[Item] = field(default_factory=list)
    #: The message item being written, its content type, its text so far, its audio seconds so far.
    open: Item | None = None
    text: str = ""
    audio_s: float = 0.0


class Answering:
    def __init__(self, event: Callable[..., Json], session: SessionState, conversation: Conversation) -> None:
        self.event, self.session, self.conversation = event, session, conversation
        self.response: _Response | None = None

    def begin(
        self, modalities: tuple[str, ...], output_format: str, metadata: dict[str, str] | None
    ) -> _Response:
        self.response = _Response(new_id("resp"), modalities, output_format, metadata)
        return self.response

    def response_json(self, response: _Response, status: str, details: Json | None = None) -> Json:
        return {
            "object": "realtime.response",
            "id": response.id,
            "status": status,
            "status_details": details,
            "output": [i.json for i in response.output],
            "conversation_id": "conv_" + self.session.id[5:],
            "output_modalities": list(response.modalities),
            "max_output_tokens": self.session.config["max_output_tokens"],
            "audio": {
                "output": {
                    "format": {"type": response.output_format}
                    | ({"rate": 24000} if response.output_format == "audio/pcm" else {}),
                    "voice": self.session.config["audio"]["output"]["voice"],
                }
            },
            "usage": None,
            "metadata": response.metadata,
        }

    def _part_fields(self, response: _Response, item: Item) -> Json:
        return {
            "response_id": response.id,
            "item_id": item.id,
            "output_index": response.output.index(item),
            "content_index": 0,
        }

    def _open(self) -> tuple[_Response, Item, list[Json]]:
        response = self.response
        assert response is not None, "no response in progress"
        if response.open is not None:
            return response, response.open, []
        audio = "audio" in response.modalities
        item = Item(
            {
                "id": new_id("item"),
                "type": "message",
                "object": "realtime.item",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
        )
        response.output.append(item)
        response.open, response.text, response.audio_s = item, "", 0.0
        previous = self.conversation.insert(item)
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        return (
            response,
            item,
            [
                self.event(
                    se.OutputItemAdded,
                    response_id=response.id,
                    output_index=len(response.output) - 1,
                    item=item.json,
                ),
                self.event(se.ItemAdded, previous_item_id=previous, item=item.json),
                self.event(se.ContentPartAdded, **self._part_fields(response, item), part=part),
            ],
        )

    def text(self, delta: str) -> list[Json]:
        """A piece of the answer's text (a text response)."""
        response, item, out = self._open()
        response.text += delta
        return [*out, self.event(se.OutputTextDelta, **self._part_fields(response, item), delta=delta)]

    def transcript(self, delta: str) -> list[Json]:
        """A piece of the spoken answer's transcript (before its audio)."""
        response, item, out = self._open()
        response.text += delta
        return [*out, self.event(se.TranscriptDelta, **self._part_fields(response, item), delta=delta)]

    def audio(self, b64: str, seconds: float) -> list[Json]:
        response, item, out = self._open()
        response.audio_s += seconds
        return [*out, self.event(se.OutputAudioDelta, **self._part_fields(response, item), delta=b64)]

    def spoken(self, clause: Spoken) -> None:
        """A clause's audio was all sent: kept for truncation."""
        if self.response is not None and self.response.open is not None:
            self.response.open.spoken.append(clause)

    def function_call(self, call_id: str, name: str, arguments: str) -> list[Json]:
        response = self.response
        assert response is not None, "no response in progress"
        out = self._close(response, "completed")
        item = Item(
            {
                "id": new_id("item"),
                "type": "function_call",
                "object": "realtime.item",
                "status": "in_progress",
                "call_id": call_id,
                "name": name,
                "arguments": "",
            }
        )
        response.output.append(item)
        previous = self.conversation.insert(item)
        index = len(response.output) - 1
        fields = {"response_id": response.id, "item_id": item.id, "output_index": index, "call_id": call_id}
        out += [
            self.event(se.OutputItemAdded, response_id=response.id, output_index=index, item=dict(item.json)),
            self.event(se.ItemAdded, previous_item_id=previous, item=dict(item.json)),
            self.event(se.ArgumentsDelta, **fields, delta=arguments),
            self.event(se.ArgumentsDone, **fields, name=name, arguments=arguments),
        ]
        item.json.update(arguments=arguments, status="completed")
        return [
            *out,
            self.event(se.OutputItemDone, response_id=response.id, output_index=index, item=item.json),
            self.event(se.ItemDone, previous_item_id=previous, item=item.json),
        ]

    def _close(self, response: _Response, status: str) -> list[Json]:
        item, response.open = response.open, None
        if item is None:
            return []
        fields = self._part_fields(response, item)
        if "audio" in response.modalities:
            part = {"type": "output_audio", "transcript": response.text}
            item.json["content"] = [part]
            done = [
                self.event(se.OutputAudioDone, **fields),
                self.event(se.TranscriptDone, **fields, transcript=response.text),
                self.event(se.ContentPartDone, **fields, part={"type": "audio", "transcript": response.text}),
            ]
        else:
            item.json["content"] = [{"type": "output_text", "text": response.text}]
            done = [
                self.event(se.OutputTextDone, **fields, text=response.text),
                self.event(se.ContentPartDone, **fields, part={"type": "text", "text": response.text}),
            ]
        item.json["status"] = status
        index = response.output.index(item)
        previous = (
            self.conversation.items[self.conversation.items.index(item) - 1].id
            if (self.conversation.get(item.id) is not None and self.conversation.items.index(item) > 0)
            else None
        )
        return [
            *done,
            self.event(se.OutputItemDone, response_id=response.id, output_index=index, item=item.json),
            self.event(se.ItemDone, previous_item_id=previous, item=item.json),
        ]

    def finish(
        self, status: str = "completed", *, reason: str | None = None, error: Json | None = None
    ) -> list[Json]:
        """The response ended: ``completed``, ``cancelled`` (``reason`` ``turn_detected`` or
        ``client_cancelled``) or ``failed`` (``error``); what is open is closed first."""
        response = self.response
        if response is None:
            return []
        out = self._close(response, "completed" if status == "completed" else "incomplete")
        self.response = None
        details: Json | None = None
        if status != "completed":
            details = {"type": status, "reason": reason, "error": error}
        return [*out, self.event(se.ResponseDone, response=self.response_json(response, status, details))]
