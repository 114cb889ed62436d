"""OpenAI-compatible endpoints over Aria's engines, so other local apps can use them (``docs/realtime.md``).

==================================  ==========================================================================
``GET /v1/models``                   the models this server answers as (any name is accepted and echoed)
``POST /v1/audio/transcriptions``    multipart ``file`` (WAV; any format with PyAV), ``model``, ``language``,
                                     ``prompt``, ``response_format`` json|text|verbose_json|srt|vtt
``POST /v1/audio/speech``            JSON ``input``, ``voice``, ``model``, ``response_format``
                                     wav|pcm|mp3|opus|aac|flac, ``speed`` 0.25-4
``WS /v1/realtime``                  the Realtime API (GA): :mod:`aria.server.realtime.ws`
==================================  ==========================================================================

Errors have OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``. The token, when one is
set, is checked by the app's guard (``Authorization: Bearer``), as for every API route.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aria.core.aio import closing_stream
from aria.errors import AriaError, InvalidInput
from aria.server.realtime.files import CONTENT_TYPES, decode_file, encode_file
from aria.server.realtime.state import OPENAI_VOICES
from aria.server.realtime.tempo import stretch
from aria.server.realtime.ws import CHAT_MODE, TRANSCRIPTION_MODE, serve_realtime
from aria.server.runtime import Runtime
from aria.types import AudioChunk

__all__ = ["SpeechRequest", "models", "realtime", "router", "speech", "transcriptions"]

router = APIRouter()
#: The most text one speech request may say.
MAX_INPUT_CHARS = 4096


def _error(
    status: int, message: str, *, param: str | None = None, code: str = "invalid_value"
) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status)


def _runtime(request: Request | WebSocket) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    await serve_realtime(websocket, _runtime(websocket))


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    rt = _runtime(request)
    names = ["aria"] + [
        str(state["name"])
        for kind, state in rt.engine_states().items()
        if kind in ("llm", "stt", "tts") and state.get("name")
    ]
    unique = list(dict.fromkeys(names))
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "aria"} for name in unique],
    }


async def _engines(rt: Runtime, mode: str, holder: object) -> Any:
    await rt.ready.wait()
    return await rt.acquire(holder, mode)


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    rt = _runtime(request)
    async with request.form() as form:  # closes the uploaded file's spool
        upload = form.get("file")
        data = None if upload is None or isinstance(upload, str) else await upload.read()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if data is None:
        return _error(400, "send the audio as the multipart field 'file'", param="file", code="missing_file")
    response_format = fields.get("response_format") or "json"
    if response_format not in ("json", "text", "verbose_json", "srt", "vtt"):
        return _error(400, f"unknown response_format {response_format!r}", param="response_format")
    for name in ("timestamp_granularities[]", "stream", "chunking_strategy", "include[]"):
        if fields.get(name) not in (None, "", "false", "segment"):
            return _error(
                400, f"{name} is not supported by Aria yet", param=name, code="unsupported_parameter"
            )
    try:
        samples = await asyncio.to_thread(decode_file, data)
    except InvalidInput as exc:
        return _error(400, str(exc), param="file", code="invalid_file")
    holder = object()
    try:
        loadout = await _engines(
            rt, TRANSCRIPTION_MODE if TRANSCRIPTION_MODE in rt.modes else CHAT_MODE, holder
        )
        if loadout.stt is None:
            return _error(503, "no speech recognition engine is available", code="engine_unavailable")
        result = await loadout.stt.transcribe(AudioChunk(samples, 16000))
    except AriaError as exc:
        return _error(503, str(exc), code=exc.code)
    finally:
        rt.release(holder)
    text, seconds = result.text.strip(), round(samples.size / 16000, 3)
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format in ("srt", "vtt"):
        end = time.strftime("%H:%M:%S", time.gmtime(seconds)) + (
            ",%03d" if response_format == "srt" else ".%03d"
        ) % (seconds % 1 * 1000)
        start = "00:00:00,000" if response_format == "srt" else "00:00:00.000"
        body = (
            f"1\n{start} --> {end}\n{text}\n"
            if response_format == "srt"
            else f"WEBVTT\n\n{start} --> {end}\n{text}\n"
        )
        return PlainTextResponse(body)
    if response_format == "verbose_json":
        segment = {"id": 0, "start": 0.0, "end": seconds, "text": text}
        body_json = {
            "task": "transcribe",
            "language": result.language or "",
            "duration": seconds,
            "text": text,
        }
        return JSONResponse(body_json | {"segments": [segment]})
    return JSONResponse({"text": text, "usage": {"type": "duration", "seconds": seconds}})


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    model: str = "aria"
    voice: str | dict[str, Any] | None = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: Literal["audio"] | None = None


@router.post("/v1/audio/speech")
async def speech(request: Request) -> Response:
    rt = _runtime(request)
    try:
        body = SpeechRequest.model_validate(await request.json())
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            code = "unknown_parameter" if first["type"] == "extra_forbidden" else "invalid_value"
            return _error(400, f"{param}: {first['msg']}", param=param, code=code)
        return _error(400, "the body must be a JSON object", code="invalid_json")
    if body.instructions:
        return _error(
            400,
            "instructions are not supported by Aria's voices yet",
            param="instructions",
            code="unsupported_parameter",
        )
    holder = object()
    try:
        loadout = await _engines(rt, CHAT_MODE if CHAT_MODE in rt.modes else rt.settings.mode, holder)
        tts = loadout.tts
        if tts is None:
            return _error(503, "no speech synthesis engine is available", code="engine_unavailable")
        voices = tuple(tts.capabilities.voices)
        voice = body.voice if isinstance(body.voice, str) else None
        if voice is not None and voice not in voices and voice not in OPENAI_VOICES:
            return _error(
                400, f"unknown voice {voice!r}; Aria's voices: {', '.join(voices) or 'none'}", param="voice"
            )
        blocks: list[npt.NDArray[np.float32]] = []
        rate = tts.capabilities.sample_rate or 16000
        async with closing_stream(
            tts.synthesize(body.input, voice=voice if voice in voices else None)
        ) as audio:
            async for chunk in audio:
                blocks.append(chunk.to_mono().as_float32())
                rate = chunk.sample_rate
    except AriaError as exc:
        return _error(503, str(exc), code=exc.code)
    finally:
        rt.release(holder)
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    samples = await asyncio.to_thread(stretch, samples, rate, body.speed)
    try:
        data = await asyncio.to_thread(encode_file, samples, rate, body.response_format)
    except InvalidInput as exc:
        return _error(400, str(exc), param="response_format", code="unsupported_format")
    return Response(data, media_type=CONTENT_TYPES[body.response_format])
