"""``llm:openai`` against a real local server speaking OpenAI's streamed chat completions (SSE)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from aria.core.aio import closing_stream
from aria.engines.base import LLM, LLMChunk, LLMRequest
from aria.engines.llm.messages import ChunkAssembler, error_detail, openai_messages
from aria.engines.llm.openai import OpenAILLM, SSEDecoder, is_loopback
from aria.engines.registry import EngineRegistry
from aria.errors import EngineError, EngineTimeout, EngineUnavailable
from aria.types import GeneratedToken, ImageFrame, Message, ToolCall, ToolSpec
from tests.engines.llm_servers import OpenAIServer

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str = "Hi!", *, tools: tuple[ToolSpec, ...] = (), temperature: float = 0.7) -> LLMRequest:
    return LLMRequest(messages=(Message("user", text),), tools=tools, temperature=temperature)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


def make(server: OpenAIServer, **options: object) -> OpenAILLM:
    return OpenAILLM(
        OpenAILLM.Config.model_validate({"base_url": server.base_url, "timeout_s": 5, **options})
    )


@pytest.fixture
async def llm(server: OpenAIServer) -> AsyncIterator[OpenAILLM]:
    engine = make(server)
    await engine.start()
    yield engine
    await engine.aclose()


async def collect(llm: OpenAILLM, request: LLMRequest) -> list[LLMChunk]:
    return [item async for item in llm.stream(request)]


async def drain(llm: OpenAILLM, request: LLMRequest, into: list[LLMChunk]) -> None:
    async for item in llm.stream(request):
        into.append(item)


async def collect_until_error(llm: OpenAILLM, request: LLMRequest) -> tuple[list[LLMChunk], EngineError]:
    items: list[LLMChunk] = []
    with pytest.raises(EngineError) as caught:
        await drain(llm, request, items)
    return items, caught.value


# -- the happy path -----------------------------------------------------------------------------------


def test_implements_the_llm_protocol() -> None:
    llm = OpenAILLM()
    assert isinstance(llm, LLM)
    assert (llm.kind, llm.name) == ("llm", "openai")
    assert llm.capabilities.streaming
    assert llm.capabilities.tools
    assert llm.capabilities.local
    assert not OpenAILLM(OpenAILLM.Config(base_url="https://api.example.com/v1")).capabilities.local


async def test_streams_the_tokens_in_order(llm: OpenAILLM, server: OpenAIServer) -> None:
    items = await collect(llm, ask())
    assert all(isinstance(item, GeneratedToken) for item in items)
    assert [item.text for item in items if isinstance(item, GeneratedToken)] == server.script.tokens
    assert llm.last_stats is not None
    assert llm.last_stats.tokens == len(server.script.tokens)
    assert await llm.complete(ask()) == server.script.reply == "Hello there, friend."


async def test_start_picks_the_first_listed_model(server: OpenAIServer) -> None:
    server.script.models = ["first-model", "second-model"]
    llm = make(server)
    try:
        assert await llm.list_models() == ["first-model", "second-model"]
        await llm.start()
        assert llm.model == "first-model"
        await llm.complete(ask())
        assert server.last_body["model"] == "first-model"
    finally:
        await llm.aclose()


async def test_a_configured_model_is_sent_as_given(server: OpenAIServer) -> None:
    llm = make(server, model="my-model")
    try:
        await llm.complete(ask())  # without start(): the client is made on first use
        assert server.last_body["model"] == "my-model"
    finally:
        await llm.aclose()


async def test_request_body_carries_the_settings(llm: OpenAILLM, server: OpenAIServer) -> None:
    request = LLMRequest(
        messages=(Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Weather?")),
        system_prompt="You are terse.",
        temperature=0.2,
        max_tokens=64,
        stop=("\nUser:", "END"),
        tools=(WEATHER,),
    )
    await llm.complete(request)
    body = server.last_body
    assert body["stream"] is True
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.2, 64, ["\nUser:", "END"])
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather?"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    await llm.complete(ask())
    assert "stop" not in server.last_body
    assert "tools" not in server.last_body


async def test_extra_body_and_logprobs_options(server: OpenAIServer) -> None:
    server.script.logprobs = [-0.5, -1.0, -0.25, -2.0, -0.125]
    llm = make(server, extra_body={"top_p": 0.9, "temperature": 0.0}, logprobs=True)
    try:
        tokens = await collect(llm, ask(temperature=0.8))
    finally:
        await llm.aclose()
    assert server.last_body["top_p"] == 0.9
    assert server.last_body["temperature"] == 0.0  # extra_body wins
    assert server.last_body["logprobs"] is True
    assert [t.logprob for t in tokens if isinstance(t, GeneratedToken)] == server.script.logprobs


async def test_api_key_is_sent_but_never_shown(server: OpenAIServer) -> None:
    secret = "sk-test-0123456789"
    llm = make(server, api_key=secret)
    try:
        await llm.complete(ask())
        assert server.requests[-1].headers["authorization"] == f"Bearer {secret}"
        server.script.status, server.script.error = 401, "Incorrect API key provided"
        with pytest.raises(EngineError) as caught:
            await llm.complete(ask())
    finally:
        await llm.aclose()
    assert "Incorrect API key provided" in str(caught.value)
    assert not caught.value.retryable
    assert secret not in str(caught.value)
    assert secret not in repr(llm.config)
    availability = OpenAILLM.check(llm.config)
    assert not availability.available or secret not in availability.reason


# -- images and tools ---------------------------------------------------------------------------------


def decode_data_url(url: str) -> tuple[str, bytes]:
    head, _, payload = url.partition(",")
    assert head.endswith(";base64")
    return head.removeprefix("data:").removesuffix(";base64"), base64.b64decode(payload)


async def test_images_are_sent_as_data_url_parts(llm: OpenAILLM, server: OpenAIServer) -> None:
    red_bgr = np.zeros((16, 24, 3), np.uint8)
    red_bgr[..., 2] = 255  # pure red, in BGR order
    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), (0, 0, 255)).save(buffer, format="PNG")
    png = buffer.getvalue()
    rgba = np.full((8, 8, 4), 128, np.uint8)
    images = (
        ImageFrame(red_bgr, format="BGR"),
        ImageFrame(png, format="PNG"),
        ImageFrame(rgba, format="RGBA"),
    )
    await llm.complete(LLMRequest(messages=(Message("user", "What is this?", images=images),)))
    content = server.last_body["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert [part["type"] for part in content[1:]] == ["image_url"] * 3
    mime, jpeg = decode_data_url(content[1]["image_url"]["url"])
    assert mime == "image/jpeg"
    assert jpeg.startswith(b"\xff\xd8\xff")
    decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    assert decoded.shape == (16, 24, 3)
    assert decoded[8, 12, 0] > 240
    assert decoded[8, 12, 2] < 15
    assert decode_data_url(content[2]["image_url"]["url"]) == ("image/png", png)  # sent untouched
    mime, rgba_png = decode_data_url(content[3]["image_url"]["url"])
    assert mime == "image/png"
    assert Image.open(io.BytesIO(rgba_png)).mode == "RGBA"


async def test_tool_calls_are_assembled_by_index(llm: OpenAILLM, server: OpenAIServer) -> None:
    weather = json.dumps({"city": "Paris", "unit": "celsius"})
    clock = json.dumps({"timezone": "Europe/Paris"})
    server.script.tokens = ["Let me", " check."]
    server.script.tool_calls = [("get_weather", weather), ("get_time", clock)]
    server.script.interleave_tool_calls = True
    items = await collect(llm, ask("Weather and time in Paris?", tools=(WEATHER,)))
    assert [t.text for t in items[:2] if isinstance(t, GeneratedToken)] == ["Let me", " check."]
    assert items[2:] == [
        ToolCall("call_0_x", "get_weather", weather),
        ToolCall("call_1_x", "get_time", clock),
    ]
    assert await llm.complete(ask()) == "Let me check."  # tool calls are left out of the text


def test_tool_history_becomes_openai_messages() -> None:
    call = ToolCall("call_7", "get_weather", '{"city": "Oslo"}')
    request = LLMRequest(
        messages=(
            Message("user", "Weather in Oslo?"),
            Message("assistant", "", metadata={"tool_calls": [call]}),
            Message("tool", '{"temp": -3}', metadata={"tool_call_id": "call_7"}),
        )
    )
    assert openai_messages(request)[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"temp": -3}', "tool_call_id": "call_7"},
    ]


def test_chunk_assembler_edge_cases() -> None:
    assembler = ChunkAssembler("llm:test")
    piece = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": {"a": 1}}}
    assert assembler.feed({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]}) == []
    assert assembler.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) == [
        ToolCall("c1", "f", '{"a": 1}')
    ]
    nameless = ChunkAssembler("llm:test")
    nameless.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]})
    with pytest.raises(EngineError, match="without a name"):
        nameless.finish()
    truncated = ChunkAssembler("llm:test")
    piece = {"index": 0, "id": "c2", "function": {"name": "f", "arguments": '{"a": '}}
    truncated.feed({"choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
    with pytest.raises(EngineError, match="max_tokens in the middle of a tool call"):
        truncated.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    with pytest.raises(EngineError, match="overloaded"):
        ChunkAssembler().feed({"error": {"message": "overloaded"}})
    assert error_detail(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert error_detail({"detail": "Not Found"}) == "Not Found"


def test_sse_decoder_follows_the_spec() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "event: message", 'data: {"a":', "data:1}", "", "", "data: [DONE]", ""]
    events = [event for event in map(decoder.feed, lines) if event is not None]
    assert events == ['{"a":\n1}', "[DONE]"]
    assert decoder.feed("data: cut off") is None  # an event without its blank line is never dispatched


# -- failures -----------------------------------------------------------------------------------------


async def test_refused_connection_is_a_retryable_unavailable_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAILLM(OpenAILLM.Config(base_url=url, model="m"))
    began = time.monotonic()
    try:
        with pytest.raises(EngineUnavailable) as caught:
            await llm.complete(ask())
    finally:
        await llm.aclose()
    assert time.monotonic() - began < 2.0
    assert caught.value.retryable
    assert url in str(caught.value)
    with pytest.raises(EngineUnavailable):
        await OpenAILLM(OpenAILLM.Config(base_url=url)).start()


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (404, False), (429, True), (500, True), (503, True)]
)
async def test_error_statuses(llm: OpenAILLM, server: OpenAIServer, status: int, retryable: bool) -> None:
    server.script.status, server.script.error = status, f"failure number {status}"
    with pytest.raises(EngineError) as caught:
        await llm.complete(ask())
    assert caught.value.retryable is retryable
    assert f"HTTP {status}" in str(caught.value)
    assert f"failure number {status}" in str(caught.value)


@pytest.mark.parametrize("cut", ["abrupt", "clean"])
async def test_a_stream_cut_mid_answer_yields_what_arrived_then_fails(
    llm: OpenAILLM, server: OpenAIServer, cut: str
) -> None:
    server.script.cut_after, server.script.cut = 3, cut  # type: ignore[assignment]
    items, error = await collect_until_error(llm, ask())
    assert [t.text for t in items if isinstance(t, GeneratedToken)] == server.script.tokens[:3]
    assert "stream ended early" in str(error)
    assert error.retryable


async def test_an_error_event_mid_stream(llm: OpenAILLM, server: OpenAIServer) -> None:
    server.script.error_after, server.script.error = 2, "out of memory"
    items, error = await collect_until_error(llm, ask())
    assert len(items) == 2
    assert "out of memory" in str(error)


async def test_a_slow_first_byte_times_out(server: OpenAIServer) -> None:
    server.script.first_byte_delay_s = 3.0
    llm = make(server, model="m", timeout_s=0.3)
    began = time.monotonic()
    try:
        with pytest.raises(EngineTimeout) as caught:
            await llm.complete(ask())
    finally:
        await llm.aclose()
    assert 0.25 < time.monotonic() - began < 1.5
    assert caught.value.retryable


async def test_a_stall_between_chunks_times_out_after_the_first_tokens(server: OpenAIServer) -> None:
    server.script.token_delay_s = 3.0
    llm = make(server, model="m", timeout_s=0.3)
    began = time.monotonic()
    try:
        items: list[LLMChunk] = []
        with pytest.raises(EngineTimeout):
            await drain(llm, ask(), items)
    finally:
        await llm.aclose()
    assert [t.text for t in items if isinstance(t, GeneratedToken)] == ["Hello"]
    assert time.monotonic() - began < 1.5


async def test_the_connection_is_kept_alive_between_answers(llm: OpenAILLM, server: OpenAIServer) -> None:
    await llm.complete(ask())
    await llm.complete(ask())
    first, second = server.chat_requests()[-2:]
    assert first.client_port == second.client_port


async def test_a_body_held_open_after_done_does_not_delay_the_end(
    llm: OpenAILLM, server: OpenAIServer
) -> None:
    server.script.hold_open_s = 5.0
    began = time.monotonic()
    assert await llm.complete(ask()) == server.script.reply
    assert time.monotonic() - began < 1.0


async def test_stopping_early_closes_the_response(llm: OpenAILLM, server: OpenAIServer) -> None:
    server.script.tokens = [f" t{i}" for i in range(200)]
    server.script.token_delay_s = 0.01
    received: list[LLMChunk] = []
    async with closing_stream(llm.stream(ask())) as items:
        async for item in items:
            received.append(item)
            if len(received) == 3:
                break
    assert await asyncio.to_thread(server.disconnected.wait, 5.0)
    assert server.chunks_sent < 100
    server.script.token_delay_s = 0.0
    assert await llm.complete(ask("again")) == server.script.reply  # the engine is still usable


async def test_cancelling_the_consumer_closes_the_response(llm: OpenAILLM, server: OpenAIServer) -> None:
    server.script.tokens = [f" t{i}" for i in range(200)]
    server.script.token_delay_s = 0.01
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in llm.stream(ask()):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.disconnected.wait, 5.0)


# -- check, health, configuration ---------------------------------------------------------------------


async def test_check_and_health(llm: OpenAILLM, server: OpenAIServer) -> None:
    assert OpenAILLM.check(llm.config).available
    assert (await llm.health()).ok
    down = OpenAILLM.Config(base_url=f"http://127.0.0.1:{free_port()}/v1")
    began = time.monotonic()
    availability = OpenAILLM.check(down)
    assert time.monotonic() - began < 1.0
    assert not availability.available
    assert down.base_url in availability.reason
    assert "start the server" in availability.fix
    engine = OpenAILLM(down)
    try:
        health = await engine.health()
    finally:
        await engine.aclose()
    assert not health.ok
    assert down.base_url in health.detail


def test_registry_builds_it_and_validates_options(server: OpenAIServer) -> None:
    registry = EngineRegistry(discover=False)
    engine = registry.create("llm:openai", {"base_url": server.base_url + "/", "model": "x"})
    assert isinstance(engine, OpenAILLM)
    assert engine.config.base_url == server.base_url
    assert registry.availability("openai", {"base_url": server.base_url}, kind="llm").available
    with pytest.raises(ValidationError):
        OpenAILLM.Config(base_url="localhost:8080")
    with pytest.raises(ValidationError):
        OpenAILLM.Config.model_validate({"base_url": "http://x", "tempreature": 1})


def test_loopback_detection() -> None:
    assert is_loopback("http://127.0.0.1:8080/v1")
    assert is_loopback("http://localhost:1/")
    assert is_loopback("http://[::1]:8000/v1")
    assert not is_loopback("https://api.openai.com/v1")
    assert not is_loopback("http://192.168.1.2:8000")
