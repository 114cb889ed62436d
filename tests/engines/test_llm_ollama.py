"""``llm:ollama`` against a real local server speaking Ollama's native API (NDJSON ``/api/chat``)."""

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
from aria.engines.llm.messages import ollama_messages
from aria.engines.llm.ollama import OllamaLLM, has_model
from aria.errors import EngineError, EngineTimeout, EngineUnavailable
from aria.types import GeneratedToken, ImageFrame, Message, ToolCall, ToolSpec
from tests.engines.llm_servers import OllamaServer

WEATHER = ToolSpec("get_weather", "The weather in a city", {"type": "object", "properties": {"city": {}}})


def ask(text: str = "Hi!", *, tools: tuple[ToolSpec, ...] = ()) -> LLMRequest:
    return LLMRequest(messages=(Message("user", text),), tools=tools)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> Iterator[OllamaServer]:
    with OllamaServer() as running:
        running.script.models = ["llama3.2:latest", "llava:7b"]
        yield running


def make(server: OllamaServer, **options: object) -> OllamaLLM:
    return OllamaLLM(
        OllamaLLM.Config.model_validate({"base_url": server.base_url, "timeout_s": 5, **options})
    )


@pytest.fixture
async def llm(server: OllamaServer) -> AsyncIterator[OllamaLLM]:
    engine = make(server)
    await engine.start()
    yield engine
    await engine.aclose()


async def drain(llm: OllamaLLM, request: LLMRequest, into: list[LLMChunk]) -> None:
    async for item in llm.stream(request):
        into.append(item)


async def collect_until_error(llm: OllamaLLM, request: LLMRequest) -> tuple[list[LLMChunk], EngineError]:
    items: list[LLMChunk] = []
    with pytest.raises(EngineError) as caught:
        await drain(llm, request, items)
    return items, caught.value


def texts(items: list[LLMChunk]) -> list[str]:
    return [item.text for item in items if isinstance(item, GeneratedToken)]


# -- the happy path -----------------------------------------------------------------------------------


def test_implements_the_llm_protocol() -> None:
    llm = OllamaLLM()
    assert isinstance(llm, LLM)
    assert (llm.kind, llm.name) == ("llm", "ollama")
    assert llm.config.model == "llama3.2"
    assert llm.config.base_url == "http://127.0.0.1:11434"


async def test_streams_tokens_and_records_the_decoding_speed(llm: OllamaLLM, server: OllamaServer) -> None:
    items: list[LLMChunk] = []
    await drain(llm, ask(), items)
    assert texts(items) == server.script.tokens
    assert llm.last_stats is not None
    assert llm.last_stats.tokens == 5
    assert llm.last_stats.tokens_per_s == pytest.approx(5 / 0.25)  # eval_count / eval_duration
    assert await llm.complete(ask()) == "Hello there, friend."


async def test_request_body(server: OllamaServer) -> None:
    llm = make(server, keep_alive="10m", options={"num_ctx": 8192, "top_p": 0.5})
    request = LLMRequest(
        messages=(Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Weather?")),
        system_prompt="Be brief.",
        temperature=0.1,
        max_tokens=32,
        stop=("\n\n",),
        tools=(WEATHER,),
    )
    try:
        await llm.complete(request)
    finally:
        await llm.aclose()
    body = server.last_body
    assert body["model"] == "llama3.2"
    assert body["stream"] is True
    assert body["keep_alive"] == "10m"
    assert body["options"] == {
        "temperature": 0.1,
        "num_predict": 32,
        "stop": ["\n\n"],
        "num_ctx": 8192,
        "top_p": 0.5,
    }
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather?"},
    ]
    assert body["tools"][0]["function"]["name"] == "get_weather"


async def test_defaults_leave_out_keep_alive_stop_and_tools(llm: OllamaLLM, server: OllamaServer) -> None:
    await llm.complete(ask())
    assert set(server.last_body) == {"model", "messages", "stream", "options"}
    assert set(server.last_body["options"]) == {"temperature", "num_predict"}


async def test_images_are_base64_strings(server: OllamaServer) -> None:
    llm = make(server, model="llava:7b")
    jpeg_buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (10, 200, 30)).save(jpeg_buffer, format="JPEG")
    jpeg = jpeg_buffer.getvalue()
    gray = np.full((5, 7), 77, np.uint8)
    images = (ImageFrame(jpeg, format="JPEG"), ImageFrame(gray, format="GRAY"))
    try:
        await llm.complete(LLMRequest(messages=(Message("user", "What do you see?", images=images),)))
    finally:
        await llm.aclose()
    message = server.last_body["messages"][0]
    assert message["content"] == "What do you see?"
    sent = [base64.b64decode(item) for item in message["images"]]
    assert sent[0] == jpeg
    decoded = Image.open(io.BytesIO(sent[1]))
    assert (decoded.format, decoded.mode, decoded.size) == ("JPEG", "L", (7, 5))


async def test_tool_calls(llm: OllamaLLM, server: OllamaServer) -> None:
    server.script.tokens = []
    server.script.tool_calls = [("get_weather", '{"city": "Paris"}'), ("get_time", "{}")]
    items: list[LLMChunk] = []
    await drain(llm, ask("Weather in Paris?", tools=(WEATHER,)), items)
    assert items == [
        ToolCall("call_0", "get_weather", '{"city": "Paris"}'),
        ToolCall("call_1", "get_time", "{}"),
    ]


def test_tool_history_becomes_ollama_messages() -> None:
    request = LLMRequest(
        messages=(
            Message("user", "Weather?"),
            Message(
                "assistant", "", metadata={"tool_calls": [ToolCall("c1", "get_weather", '{"city": "Oslo"}')]}
            ),
            Message("tool", "-3 C", metadata={"tool_call_id": "c1", "tool_name": "get_weather"}),
        )
    )
    assert ollama_messages(request)[1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "-3 C", "tool_name": "get_weather"},
    ]


# -- failures -----------------------------------------------------------------------------------------


async def test_a_model_that_is_not_pulled(server: OllamaServer) -> None:
    llm = make(server, model="qwen2.5:0.5b")
    try:
        with pytest.raises(EngineUnavailable) as at_start:
            await llm.start()
        assert "model qwen2.5:0.5b is not pulled; run `ollama pull qwen2.5:0.5b`" in str(at_start.value)
        with pytest.raises(EngineUnavailable) as caught:
            await llm.complete(ask())  # the server's own 404 says the same
        assert "run `ollama pull qwen2.5:0.5b`" in str(caught.value)
        assert not caught.value.retryable
        assert not (await llm.health()).ok
    finally:
        await llm.aclose()
    availability = OllamaLLM.check(llm.config)
    assert not availability.available
    assert availability.fix == "ollama pull qwen2.5:0.5b"


async def test_refused_connection() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    llm = OllamaLLM(OllamaLLM.Config(base_url=url))
    began = time.monotonic()
    try:
        with pytest.raises(EngineUnavailable) as caught:
            await llm.complete(ask())
    finally:
        await llm.aclose()
    assert time.monotonic() - began < 2.0
    assert caught.value.retryable
    assert url in str(caught.value)
    availability = OllamaLLM.check(OllamaLLM.Config(base_url=url))
    assert not availability.available
    assert "ollama serve" in availability.fix


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (500, True)])
async def test_error_statuses(llm: OllamaLLM, server: OllamaServer, status: int, retryable: bool) -> None:
    server.script.status, server.script.error = status, f"llama runner failed ({status})"
    with pytest.raises(EngineError, match=rf"llama runner failed \({status}\)") as caught:
        await llm.complete(ask())
    assert caught.value.retryable is retryable


@pytest.mark.parametrize("cut", ["abrupt", "clean"])
async def test_a_stream_cut_mid_answer(llm: OllamaLLM, server: OllamaServer, cut: str) -> None:
    server.script.cut_after, server.script.cut = 2, cut  # type: ignore[assignment]
    items, error = await collect_until_error(llm, ask())
    assert texts(items) == ["Hello", " there"]
    assert "stream ended early" in str(error)
    assert error.retryable


async def test_an_error_line_mid_stream(llm: OllamaLLM, server: OllamaServer) -> None:
    server.script.error_after, server.script.error = 1, "CUDA error: out of memory"
    items, error = await collect_until_error(llm, ask())
    assert texts(items) == ["Hello"]
    assert "CUDA error: out of memory" in str(error)


async def test_a_slow_first_byte_times_out(server: OllamaServer) -> None:
    server.script.first_byte_delay_s = 3.0
    llm = make(server, timeout_s=0.3)
    began = time.monotonic()
    try:
        with pytest.raises(EngineTimeout):
            await llm.complete(ask())
    finally:
        await llm.aclose()
    assert 0.25 < time.monotonic() - began < 1.5


async def test_keep_alive_and_a_body_held_open_after_done(llm: OllamaLLM, server: OllamaServer) -> None:
    await llm.complete(ask())
    await llm.complete(ask())
    first, second = server.chat_requests()[-2:]
    assert first.client_port == second.client_port
    server.script.hold_open_s = 5.0
    began = time.monotonic()
    assert await llm.complete(ask()) == server.script.reply
    assert time.monotonic() - began < 1.0


async def test_stopping_early_closes_the_response(llm: OllamaLLM, server: OllamaServer) -> None:
    server.script.tokens = [f" w{i}" for i in range(200)]
    server.script.token_delay_s = 0.01
    received: list[LLMChunk] = []
    async with closing_stream(llm.stream(ask())) as items:
        async for item in items:
            received.append(item)
            if len(received) == 2:
                break
    assert await asyncio.to_thread(server.disconnected.wait, 5.0)
    assert server.chunks_sent < 100


# -- models, health, configuration --------------------------------------------------------------------


async def test_list_models_check_and_health(llm: OllamaLLM, server: OllamaServer) -> None:
    assert await llm.list_models() == ["llama3.2:latest", "llava:7b"]
    assert (await llm.health()).ok
    assert OllamaLLM.check(llm.config).available
    assert server.requests[0].path == "/api/tags"


def test_has_model() -> None:
    assert has_model(["llama3.2:latest"], "llama3.2")
    assert has_model(["llama3.2:latest"], "llama3.2:latest")
    assert not has_model(["llama3.2:1b"], "llama3.2")
    assert not has_model(["llama3.2:latest"], "llama3")


def test_config_validation() -> None:
    assert OllamaLLM.Config(base_url="http://box:11434/").base_url == "http://box:11434"
    with pytest.raises(ValidationError, match="without /v1"):
        OllamaLLM.Config(base_url="http://127.0.0.1:11434/v1")
    assert json.loads(OllamaLLM.Config(keep_alive=-1).model_dump_json())["keep_alive"] == -1


# -- residency: load at start, unload at close ----------------------------------------------------------


async def test_start_loads_the_model_and_close_unloads_it_in_ollama(server: OllamaServer) -> None:
    engine = make(server, model="llava:7b", keep_alive="10m")
    await engine.start()
    assert engine.capabilities.memory_mb == 1  # Ollama's reported size: 1,000,000 bytes
    await engine.aclose()
    generate = [r.body for r in server.requests if r.path == "/api/generate"]
    assert generate == [
        {"model": "llava:7b", "stream": False, "keep_alive": "10m"},
        {"model": "llava:7b", "keep_alive": 0, "stream": False},
    ]
    await engine.aclose()  # closing twice asks nothing more
    assert len([r for r in server.requests if r.path == "/api/generate"]) == 2


async def test_preload_and_unload_can_be_turned_off(server: OllamaServer) -> None:
    engine = make(server, preload=False, unload_on_close=False)
    await engine.start()
    await engine.aclose()
    assert not [r for r in server.requests if r.path == "/api/generate"]


async def test_an_unreachable_ollama_at_close_does_not_raise(server: OllamaServer) -> None:
    engine = make(server)
    await engine.start()
    server.close()
    started = time.perf_counter()
    await engine.aclose()
    assert time.perf_counter() - started < 3.0
