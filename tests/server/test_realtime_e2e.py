"""``/v1/realtime`` through the official ``openai`` SDK against a live server with scripted fake engines.

Every event received is checked against the SDK's GA types (:func:`ga_event`, via :class:`Recorder`).
Speech is espeak-ng's, streamed as 24 kHz base64 PCM at real-time pace.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
import websockets
from PIL import Image
from websockets.exceptions import InvalidStatus

from aria.server.realtime.codecs import ulaw_decode
from aria.testing.speech import say
from tests.server.conftest import LiveServer, engine
from tests.server.test_realtime_ga import pcm_seconds, realtime

REPLY = "Sure, here is the answer. It has two sentences."
LONG = "Sure, here is the answer. It has several sentences, and it goes on for a while so it can be cut."


def speech(text: str = "what time is it", *, lead_s: float = 0.3, tail_s: float = 0.8) -> np.ndarray:
    spoken = say(text, sample_rate=24000)
    return np.concatenate(
        [np.zeros(int(lead_s * 24000), np.float32), spoken, np.zeros(int(tail_s * 24000), np.float32)]
    )


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def collapsed(types: list[str]) -> list[str]:
    """Runs of the same delta type as one entry."""
    out: list[str] = []
    for kind in types:
        if not (out and out[-1] == kind and kind.endswith(".delta")):
            out.append(kind)
    return out


async def test_a_text_turn_streams_transcript_and_audio_in_ga_order(live: LiveServer) -> None:
    async with realtime(live.port, model="gpt-realtime-mini") as rt:
        created = await rt.next()
        assert created["type"] == "session.created"
        assert created["session"]["model"] == "gpt-realtime-mini"  # any name, echoed
        await rt.send({"type": "conversation.item.create", "item": user_text("hello")})
        await rt.send({"type": "response.create"})
        done = await rt.until("response.done")
    types = collapsed(rt.types(1))
    assert types == [
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    deltas = "".join(e["delta"] for e in rt.of("response.output_audio_transcript.delta"))
    assert deltas == REPLY == rt.of("response.output_audio_transcript.done")[0]["transcript"]
    assert done["response"]["status"] == "completed"
    assert done["response"]["output"][0]["content"][0] == {"type": "output_audio", "transcript": REPLY}
    # the fake TTS says 10 ms a character; the audio comes as 24 kHz PCM
    assert pcm_seconds(rt.events) == pytest.approx(len(REPLY.replace(" I", "I")) * 0.01, abs=0.03)
    response_ids = {e["response_id"] for e in rt.events if "response_id" in e}
    assert response_ids == {done["response"]["id"]}


@pytest.mark.parametrize("server_overrides", [{"llm.options": {"replies": [LONG], "token_interval_s": 0.05}}])
async def test_response_cancel(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        await rt.send({"type": "conversation.item.create", "item": user_text("go on")})
        await rt.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        created = await rt.until("response.created")
        await rt.until("response.output_text.delta")
        await rt.send({"type": "response.cancel", "response_id": created["response"]["id"]})
        done = await rt.until("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        partial = done["response"]["output"][0]["content"][0]["text"]
        assert partial
        assert LONG.startswith(partial)
        assert partial != LONG
        await rt.send({"type": "response.cancel"})
        assert (await rt.until("error"))["error"]["code"] == "response_cancel_not_active"
        await rt.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        again = await rt.until("response.done", within=15)
        assert again["response"]["status"] == "completed"


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.mark.parametrize(
    "server_overrides",
    [{"llm.options": {"replies": ['TOOL:get_weather:{"city": "Paris"}', "It is sunny in Paris."]}}],
)
async def test_a_client_function_call_round_trip(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        await rt.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "tools": [WEATHER], "tool_choice": "auto"},
            }
        )
        await rt.send({"type": "conversation.item.create", "item": user_text("weather in Paris?")})
        await rt.send({"type": "response.create"})
        call = await rt.until("response.function_call_arguments.done")
        assert call["name"] == "get_weather"
        assert json.loads(call["arguments"]) == {"city": "Paris"}
        done = await rt.until("response.done")
        assert [i["type"] for i in done["response"]["output"]] == ["function_call"]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky": "sunny"}'}
        await rt.send({"type": "conversation.item.create", "item": output})
        await rt.send({"type": "response.create"})
        answer = await rt.until("response.done")
    assert answer["response"]["output"][0]["content"][0]["transcript"] == "It is sunny in Paris."
    first, second = engine(live).requests[-2:]
    assert [t.name for t in first.tools] == ["get_weather"]
    assert first.tools[0].parameters == WEATHER["parameters"]
    assert [m.role for m in second.messages] == ["user", "assistant", "tool"]
    assert second.messages[1].metadata["tool_calls"][0].id == call["call_id"]
    assert second.messages[2].content == '{"sky": "sunny"}'


def png(level: int) -> str:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (level, level, level)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize(
    "server_overrides", [{"llm.options": {"vision_replies": ["A bright picture.", "A dark picture."]}}]
)
async def test_an_image_item_is_answered_by_the_vision_model(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        for level, expected in ((250, "A bright picture."), (5, "A dark picture.")):
            content = [
                {"type": "input_text", "text": "what is this?"},
                {"type": "input_image", "image_url": png(level)},
            ]
            await rt.send(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": content},
                }
            )
            added = await rt.until("conversation.item.added")
            assert added["item"]["content"][1]["type"] == "input_image"
            await rt.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
            assert (await rt.until("response.output_text.done"))["text"] == expected
            await rt.until("response.done")
    assert engine(live, "tts").calls == 0  # text responses are not synthesised


async def test_a_transcription_session_transcribes_and_never_answers(live: LiveServer) -> None:
    async with realtime(live.port, model="gpt-4o-transcribe", extra_query={"intent": "transcription"}) as rt:
        created = await rt.next()
        assert created["session"]["type"] == "transcription"
        assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        await rt.stream_audio(speech())
        completed = await rt.until("conversation.item.input_audio_transcription.completed")
        assert completed["transcript"] == "what time is it"
        await rt.send({"type": "response.create"})
        error = await rt.until("error")
        assert "transcription session" in error["error"]["message"]
    assert not [t for t in rt.types() if t.startswith("response.")]
    assert engine(live, "stt").calls >= 1


@pytest.mark.parametrize(
    "server_overrides", [{"tts.options": {"ms_per_char": 10.0, "voices": ["amy", "bob"]}}]
)
async def test_session_update_mid_session_changes_voice_instructions_and_turn_detection(
    live: LiveServer,
) -> None:
    tts = engine(live, "tts")
    async with realtime(live.port) as rt:
        await rt.next()
        await rt.send({"type": "conversation.item.create", "item": user_text("hi")})
        await rt.send({"type": "response.create"})
        await rt.until("response.done")
        assert {voice for _text, voice, _at in tts.requests} == {None}  # Aria's default voice
        update = {
            "type": "realtime",
            "instructions": "Speak like a pirate.",
            "audio": {"output": {"voice": "bob"}, "input": {"turn_detection": None}},
        }
        await rt.send({"type": "session.update", "session": update})
        session = (await rt.until("session.updated"))["session"]
        assert session["audio"]["output"]["voice"] == "bob"
        assert session["audio"]["input"]["turn_detection"] is None
        before = len(rt.events)
        await rt.stream_audio(speech(), realtime=False)  # no turn detection: nothing happens by itself
        await rt.send({"type": "input_audio_buffer.commit"})
        committed = await rt.until("input_audio_buffer.committed")
        assert "input_audio_buffer.speech_started" not in rt.types(before)
        await rt.send({"type": "response.create"})
        await rt.until("response.done")
        assert (
            "response.created"
            not in rt.types(before)[: rt.types(before).index("input_audio_buffer.committed")]
        )
    assert tts.requests[-1][1] == "bob"
    request = engine(live).requests[-1]
    assert request.system_prompt.startswith("Speak like a pirate.")
    assert request.messages[-1].content == "what time is it"
    assert committed["item_id"]


async def test_malformed_events_each_get_an_error_and_the_session_survives(live: LiveServer) -> None:
    bad = [
        ("{not json", "invalid_json"),
        ('{"type": "session.update", "session": {"modalities": ["text"]}}', "unknown_parameter"),
        ('{"type": "no.such.event"}', "unknown_event"),
        ('{"type": "conversation.item.delete", "item_id": "item_missing"}', "invalid_value"),
        ('{"type": "input_audio_buffer.append", "audio": "%%%"}', "invalid_value"),
        ('{"type": "session.update", "session": {"prompt": {"id": "pmpt_1"}}}', "unsupported_parameter"),
    ]
    async with realtime(live.port) as rt:
        await rt.next()
        for text, code in bad:
            await rt.send_raw(text)
            error = await rt.until("error")
            assert error["error"]["code"] == code, text
            assert error["error"]["type"] == "invalid_request_error"
        await rt.send(
            {"type": "conversation.item.create", "item": user_text("still there?"), "event_id": "evt_1"}
        )
        await rt.send({"type": "response.create"})
        assert (await rt.until("response.done"))["response"]["status"] == "completed"


async def test_pcmu_output_is_8k_g711(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        fmt = {
            "audio": {
                "output": {"format": {"type": "audio/pcmu"}},
                "input": {"format": {"type": "audio/pcma"}},
            }
        }
        await rt.send({"type": "session.update", "session": {"type": "realtime", **fmt}})
        await rt.until("session.updated")
        await rt.send({"type": "conversation.item.create", "item": user_text("hello")})
        await rt.send({"type": "response.create"})
        done = await rt.until("response.done")
    assert done["response"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert pcm_seconds(rt.events, rate=8000, width=1) == pytest.approx(
        len(REPLY.replace(" I", "I")) * 0.01, abs=0.03
    )
    data = b"".join(base64.b64decode(e["delta"]) for e in rt.of("response.output_audio.delta"))
    tone = ulaw_decode(data).astype(np.float32) / 32768
    assert np.sqrt(np.mean(tone**2)) == pytest.approx(0.2 / np.sqrt(2), rel=0.1)  # the fake TTS's 0.2 tone


@pytest.mark.parametrize("server_overrides", [{"server.token": "s3cret-token"}])
async def test_the_server_token_is_the_api_key(live: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with realtime(live.port, key="wrong") as rt:
            await rt.next()
    assert refused.value.response.status_code == 403
    async with realtime(live.port, key="s3cret-token") as rt:
        assert (await rt.next())["type"] == "session.created"


async def test_deleted_items_leave_the_models_context(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        for text in ("my name is Ada", "I like tea"):
            await rt.send({"type": "conversation.item.create", "item": user_text(text)})
        first = (await rt.until("conversation.item.done"))["item"]["id"]
        await rt.until("conversation.item.done")
        await rt.send({"type": "conversation.item.delete", "item_id": first})
        assert (await rt.until("conversation.item.deleted"))["item_id"] == first
        await rt.send({"type": "response.create"})
        await rt.until("response.done")
    said = [m.content for m in engine(live).requests[-1].messages]
    assert "I like tea" in said
    assert "my name is Ada" not in said


async def test_speed_shortens_the_answer_audio(live: LiveServer) -> None:
    async with realtime(live.port) as rt:
        await rt.next()
        await rt.send({"type": "session.update", "session": {"audio": {"output": {"speed": 1.5}}}})
        await rt.until("session.updated")
        await rt.send({"type": "conversation.item.create", "item": user_text("hello")})
        await rt.send({"type": "response.create"})
        await rt.until("response.done")
    natural = len(REPLY.replace(" I", "I")) * 0.01
    assert pcm_seconds(rt.events) == pytest.approx(natural / 1.5, abs=0.03)


@pytest.mark.parametrize("server_overrides", [{"server.token": "s3cret-token"}])
async def test_a_browser_client_authenticates_with_the_key_subprotocol(live: LiveServer) -> None:
    url = f"ws://127.0.0.1:{live.port}/v1/realtime?model=gpt-realtime"
    keyed = ["realtime", "openai-insecure-api-key.s3cret-token"]
    async with websockets.connect(url, subprotocols=keyed) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "realtime"
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(b"\x00\x01")  # binary frames are not events
        error = json.loads(await ws.recv())
        assert error["error"]["code"] == "invalid_event"
    wrong = ["realtime", "openai-insecure-api-key.nope"]
    with pytest.raises(InvalidStatus):
        async with websockets.connect(url, subprotocols=wrong):  # type: ignore[list-item]
            pass


async def test_an_audio_item_is_transcribed_before_the_response_reads_it(live: LiveServer) -> None:
    pcm = (say("what time is it", sample_rate=24000) * 32767).astype("<i2").tobytes()
    content = [{"type": "input_audio", "audio": base64.b64encode(pcm).decode()}]
    async with realtime(live.port) as rt:
        await rt.next()
        await rt.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": content},
            }
        )
        await rt.send({"type": "response.create"})  # at once: the transcript is not there yet
        await rt.until("response.done")
        added = rt.of("conversation.item.added")[0]["item"]
        assert added["content"] == [{"type": "input_audio", "transcript": None}]
        await rt.send({"type": "conversation.item.retrieve", "item_id": added["id"]})
        item = (await rt.until("conversation.item.retrieved"))["item"]
    assert item["content"][0]["transcript"] == "what time is it"
    assert engine(live).requests[-1].messages[-1].content == "what time is it"
