"""Checking Aria's Realtime events against the GA shapes, with the official SDK's own pydantic types.

:func:`ga_event` validates one server event as the SDK parses it and refuses any field the SDK's model
does not declare (at every level: the SDK's models accept extras silently, so they are looked for).
:class:`Recorder` is the test client over ``AsyncOpenAI(...).realtime.connect(...)``: it records every
event, raw and checked, and waits for a type. The other ``test_realtime_*`` modules use both.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)


def _no_extras(model: BaseModel, where: str) -> None:
    extra = model.model_extra or {}
    assert not extra, f"{where}: fields the GA API does not have: {sorted(extra)}"
    for name in type(model).model_fields:
        value = getattr(model, name)
        for index, inner in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(inner, BaseModel):
                _no_extras(inner, f"{where}.{name}" + (f"[{index}]" if isinstance(value, list) else ""))


def ga_event(event: dict[str, Any]) -> BaseModel:
    """``event`` parsed by the SDK as the GA type its ``type`` names, with nothing undeclared."""
    model = SERVER_EVENT.validate_python(event)
    assert isinstance(model, BaseModel)
    assert model.type == event["type"]  # type: ignore[attr-defined]
    _no_extras(model, event["type"])
    return model


class Recorder:
    """The official SDK's connection, with every server event recorded (raw JSON) and GA-checked."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), within)
        event: dict[str, Any] = json.loads(raw)
        ga_event(event)
        self.events.append(event)
        return event

    async def until(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            event = await self.next(max(0.01, deadline - asyncio.get_running_loop().time()))
            if event["type"] == kind:
                return event

    def types(self, since: int = 0) -> list[str]:
        return [e["type"] for e in self.events[since:]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def send_raw(self, text: str) -> None:
        await self.conn._connection.send(text)  # bytes the SDK would not let through: malformed events

    async def stream_audio(self, samples: np.ndarray, *, chunk_ms: int = 40, realtime: bool = True) -> None:
        """24 kHz float32 ``samples`` as ``input_audio_buffer.append`` events, paced to real time."""
        step = 24 * chunk_ms
        for start in range(0, samples.size, step):
            pcm = (np.clip(samples[start : start + step], -1, 1) * 32767).astype("<i2").tobytes()
            await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
            if realtime:
                await asyncio.sleep(chunk_ms / 1000)


@asynccontextmanager
async def realtime(
    port: int, *, model: str = "gpt-realtime", key: str = "sk-anything", **kw: Any
) -> AsyncIterator[Recorder]:
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    async with client.realtime.connect(model=model, max_retries=0, **kw) as conn:
        yield Recorder(conn)
    await client.close()


def pcm_seconds(events: list[dict[str, Any]], rate: int = 24000, width: int = 2) -> float:
    """How long the ``response.output_audio.delta`` audio among ``events`` plays."""
    data = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    return len(data) / width / rate


# -- the checker itself --------------------------------------------------------------------------------


def test_a_ga_event_passes_and_keeps_its_type() -> None:
    event = {"type": "input_audio_buffer.cleared", "event_id": "event_1"}
    assert ga_event(event).type == "input_audio_buffer.cleared"  # type: ignore[attr-defined]


def test_an_undeclared_field_fails_even_nested() -> None:
    with pytest.raises(AssertionError, match="bogus"):
        ga_event({"type": "input_audio_buffer.cleared", "event_id": "e", "bogus": 1})
    item = {
        "id": "item_1",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hi", "x": 1}],
    }
    with pytest.raises(AssertionError, match=r"item\.content\[0\]"):
        ga_event({"type": "conversation.item.added", "event_id": "e", "previous_item_id": None, "item": item})


def test_a_missing_required_field_fails() -> None:
    with pytest.raises(ValueError, match="item_id"):
        ga_event({"type": "input_audio_buffer.committed", "event_id": "e"})
