"""``llm:llamacpp`` on the real llama-cpp-python, running tiny random-weight GGUF models written by
:func:`aria.testing.gguf.write_tiny_gguf` (milliseconds to make and load): loading, streaming, stop
sequences, cancellation, the KV cache prefix kept between turns, the GGUF's own chat template, tools in
the prompt and ``/no_think`` for models that think. The parsing of tool calls and ``<think>`` is tested on
crafted text in ``test_llamacpp_chat.py`` (a random model never writes them)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aria.core.aio import closing_stream
from aria.engines.base import LLMRequest
from aria.engines.llm.llamacpp import LlamaCppLLM
from aria.engines.llm.llamacpp_chat import NO_THINK
from aria.types import GeneratedToken, Message, ToolSpec

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")
pytest.importorskip("gguf", reason="the gguf package (dev extra) writes the test models")

from aria.testing.gguf import write_tiny_gguf  # noqa: E402  (needs gguf)

GREEDY = {"temperature": 0.0}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="module")
def tiny(models: Path) -> Path:
    return write_tiny_gguf(models / "tiny.gguf")


@pytest.fixture
async def llm(tiny: Path) -> AsyncIterator[LlamaCppLLM]:
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=tiny, n_threads=1, seed=7))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.aclose()


def ask(text: str, *, history: tuple[Message, ...] = (), max_tokens: int = 24, **options: Any) -> LLMRequest:
    return LLMRequest(
        (*history, Message("user", text)),
        system_prompt="You are Aria, a voice assistant. Answer in one short sentence.",
        max_tokens=max_tokens,
        **{**GREEDY, **options},
    )


async def answer(llm: LlamaCppLLM, request: LLMRequest) -> str:
    return "".join([item.text async for item in llm.stream(request) if isinstance(item, GeneratedToken)])


@contextlib.contextmanager
def counting_evals(llm: LlamaCppLLM) -> Iterator[list[int]]:
    """The size of every batch llama.cpp evaluates (the prompt's prefill first, then one per token)."""
    llama = llm._llama
    batches: list[int] = []
    original = llama.eval

    def eval(tokens: list[int]) -> None:
        batches.append(len(tokens))
        original(tokens)

    llama.eval = eval
    try:
        yield batches
    finally:
        del llama.eval


async def test_loads_and_streams_tokens(llm: LlamaCppLLM) -> None:
    assert (await llm.health()).ok
    tokens = [item async for item in llm.stream(ask("hello, what time is it?", max_tokens=12))]
    assert all(isinstance(t, GeneratedToken) for t in tokens)
    assert 1 <= len(tokens) <= 12
    assert "".join(t.text for t in tokens).strip()
    assert llm.last_stats is not None
    assert llm.last_stats.tokens == len(tokens)
    assert llm.last_stats.time_to_first_token_s is not None
    prefill = llm.last_prefill
    assert prefill is not None
    assert prefill.cached_tokens == 0
    assert prefill.seconds is not None


async def test_greedy_answers_are_repeatable_and_complete_matches_stream(tiny: Path) -> None:
    texts = []
    for _ in range(2):
        engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=tiny, n_threads=1))
        try:
            texts.append(await engine.complete(ask("tell me about the tower")))
        finally:
            await engine.aclose()
    assert texts[0] == texts[1] != ""


async def test_the_ggufs_chat_template_makes_the_prompt(models: Path) -> None:
    template = (
        "{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}[ASSISTANT]{% endif %}"
    )
    path = write_tiny_gguf(models / "custom.gguf", chat_template=template)
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=path, n_threads=1))
    try:
        await engine.start()
        request = ask("what is the weather", max_tokens=4)
        prompt = engine._prompt(request)
        assert prompt == (
            "[SYSTEM] You are Aria, a voice assistant. Answer in one short sentence.\n"
            "[USER] what is the weather\n[ASSISTANT]"
        )
        with counting_evals(engine) as batches:
            await answer(engine, request)
        prompt_tokens = len(engine._llama.tokenize(prompt.encode(), add_bos=False, special=True))
        assert batches[0] == prompt_tokens
        assert engine.last_prefill is not None
        assert engine.last_prefill.prompt_tokens == prompt_tokens
    finally:
        await engine.aclose()


async def test_chatml_template_from_the_gguf(llm: LlamaCppLLM) -> None:
    prompt = llm._prompt(ask("hello"))
    assert prompt.startswith("<|im_start|>system\nYou are Aria")
    assert prompt.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    assert NO_THINK not in prompt


async def test_stop_sequence_ends_the_answer(tiny: Path, llm: LlamaCppLLM) -> None:
    full = await answer(llm, ask("play some music", max_tokens=40))
    assert len(full) > 20
    stop = full[12:16]
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=tiny, n_threads=1))
    try:
        cut = await answer(engine, ask("play some music", max_tokens=40, stop=(stop,)))
    finally:
        await engine.aclose()
    assert cut == full[: full.index(stop)]


async def test_cancelling_the_stream_stops_generation_within_a_token_or_two(models: Path) -> None:
    # Wider than the others so that a token takes long enough to count what runs after cancelling.
    path = write_tiny_gguf(models / "wide.gguf", dim=512, ff=1024, layers=4, heads=8, kv_heads=8)
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=path, n_threads=1))
    await engine.start()
    seen = asyncio.Event()
    received: list[str] = []

    async def consume() -> None:
        async for item in engine.stream(ask("count to a thousand", max_tokens=2000)):
            assert isinstance(item, GeneratedToken)
            received.append(item.text)
            if len(received) == 3:
                seen.set()

    try:
        task = asyncio.create_task(consume())
        await asyncio.wait_for(seen.wait(), 10)
        at_cancel = engine.tokens_generated
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine._worker is not None
        await asyncio.wait_for(engine._worker.run(lambda: None), 5)  # the worker is free again
        assert engine.tokens_generated - at_cancel <= 2
        assert engine.tokens_generated < 100
    finally:
        await engine.aclose()


async def test_leaving_the_stream_early_frees_the_worker(llm: LlamaCppLLM) -> None:
    async with closing_stream(llm.stream(ask("tell me a long poem", max_tokens=2000))) as tokens:
        async for _ in tokens:
            break
    assert llm._worker is not None
    await asyncio.wait_for(llm._worker.run(lambda: None), 5)
    assert llm.tokens_generated < 2000
    assert await answer(llm, ask("and now?", max_tokens=4))  # the model still works


async def test_a_new_turn_only_prefills_its_new_tokens(tiny: Path, llm: LlamaCppLLM) -> None:
    first = ask("hello, what is the weather today in paris?")
    reply = await answer(llm, first)
    assert llm.last_prefill is not None
    turn_one_prompt = llm.last_prefill.prompt_tokens
    second = ask(
        "and tomorrow in london?", history=(*first.messages, Message("assistant", reply)), max_tokens=8
    )
    with counting_evals(llm) as warm:
        await answer(llm, second)
    warm_prefill = llm.last_prefill
    assert warm_prefill is not None

    cold_engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=tiny, n_threads=1))
    try:
        await cold_engine.start()
        with counting_evals(cold_engine) as cold:
            await answer(cold_engine, second)
        cold_prefill = cold_engine.last_prefill
    finally:
        await cold_engine.aclose()

    assert cold_prefill is not None
    assert cold_prefill.cached_tokens == 0
    assert cold[0] == cold_prefill.prompt_tokens == warm_prefill.prompt_tokens
    assert warm[0] == warm_prefill.evaluated_tokens < cold[0]
    assert warm_prefill.cached_tokens >= turn_one_prompt  # the whole first prompt was kept


async def test_a_fresh_engine_counts_nothing_cached_whatever_its_buffer_holds(tiny: Path) -> None:
    """llama-cpp-python allocates ``input_ids`` uninitialised: a fresh engine's buffer may hold a freed
    engine's old prompt. Only the first ``n_tokens`` are in the KV cache, so nothing counts as cached."""
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=tiny, n_threads=1))
    try:
        await engine.start()
        request = ask("hello, what is the weather today in paris?", max_tokens=2)
        llama = engine._llama
        stale = llama.tokenize(engine._prompt(request).encode("utf-8"), add_bos=False, special=True)
        llama.input_ids[: len(stale)] = stale  # what a freed engine's memory may look like
        assert llama.n_tokens == 0
        with counting_evals(engine) as batches:
            await answer(engine, request)
        assert engine.last_prefill is not None
        assert engine.last_prefill.cached_tokens == 0
        assert batches[0] == engine.last_prefill.prompt_tokens == len(stale)
    finally:
        await engine.aclose()


async def test_tools_go_into_the_prompt(llm: LlamaCppLLM) -> None:
    weather = ToolSpec("get_weather", "The weather in a city", {"type": "object", "properties": {}})
    request = ask("what is the weather in paris?", max_tokens=6, tools=(weather,))
    prompt = llm._prompt(request)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in prompt
    assert "<tool_call>" in prompt
    assert await answer(llm, request)  # a random model writes no call: text only


async def test_tools_reach_a_template_that_ignores_them(models: Path) -> None:
    template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
    path = write_tiny_gguf(models / "no_tools.gguf", chat_template=template)
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=path, n_threads=1))
    try:
        await engine.start()
        weather = ToolSpec("get_weather", "The weather in a city")
        prompt = engine._prompt(ask("weather?", tools=(weather,)))
        assert prompt.startswith("system: You are Aria")
        assert "# Tools" in prompt
        assert '"name": "get_weather"' in prompt
    finally:
        await engine.aclose()


@pytest.mark.parametrize("thinking", [False, True])
async def test_qwen3_is_told_not_to_think(models: Path, thinking: bool) -> None:
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n"
        "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    )
    path = write_tiny_gguf(models / f"qwen3-{thinking}.gguf", name="Qwen3 Tiny", chat_template=template)
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=path, n_threads=1, thinking=thinking))
    try:
        await engine.start()
        prompt = engine._prompt(ask("hi"))
        assert (f"one short sentence.\n\n{NO_THINK}<|im_end|>" in prompt) is not thinking
        assert prompt.endswith("<think>\n\n</think>\n\n") is not thinking
        assert await answer(engine, ask("hi", max_tokens=4))
    finally:
        await engine.aclose()


async def test_a_prompt_longer_than_the_context_is_an_engine_error(tiny: Path) -> None:
    from aria.errors import EngineError

    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=tiny, n_threads=1, n_ctx=64))
    try:
        with pytest.raises(EngineError, match=r"llama\.cpp failed"):
            await answer(engine, ask("hello " * 100))
    finally:
        await engine.aclose()


async def test_a_named_chat_format_uses_llama_cpp_pythons_handler(tiny: Path) -> None:
    engine = LlamaCppLLM(LlamaCppLLM.Config(model_path=tiny, n_threads=1, chat_format="chatml"))
    try:
        text = await answer(engine, ask("hello", max_tokens=8))
        assert text
        assert engine.last_stats is not None
        assert 1 <= engine.last_stats.tokens <= 8
        async with closing_stream(engine.stream(ask("a long poem", max_tokens=2000))) as tokens:
            async for _ in tokens:
                break
        assert engine._worker is not None
        await asyncio.wait_for(engine._worker.run(lambda: None), 5)
        assert engine.tokens_generated < 100
    finally:
        await engine.aclose()


async def test_an_unknown_vision_handler_is_refused(tiny: Path) -> None:
    config = LlamaCppLLM.Config(model_path=tiny, clip_model_path=tiny, vision_handler="nope")
    availability = LlamaCppLLM.check(config)
    assert not availability.available
    assert "unknown vision_handler 'nope'" in availability.reason
    assert "qwen2.5-vl" in availability.fix


async def test_a_whole_text_turn_through_a_live_server(tmp_path: Path, tiny: Path) -> None:
    from aria.engines.chain import primary
    from tests.server.conftest import connect, start_server, stop_server

    overrides = {
        "llm.backend": "llamacpp",
        "llm.options": {"model_path": str(tiny), "n_threads": 1, "seed": 3},
        "llm.max_tokens": 12,
    }
    live, server, task = await start_server(tmp_path, overrides)
    try:
        ws, client = await connect(live)
        async with ws:
            for question in ("hello, what time is it?", "and the weather?"):
                await client.send({"type": "text", "text": question})
                done = await client.until("response_done", within=30)
                assert done["text"].strip()
                assert done["interrupted"] is False
            tokens = "".join(m["text"] for m in client.of_type("text_token"))
            assert tokens.strip().startswith(client.of_type("response_done")[0]["text"])
            assert any(isinstance(m, bytes) for _, m in client.messages)  # spoken by the fake TTS
        served = live.runtime.residency.engine("llm")
        assert served is not None
        llm = primary(served)
        assert isinstance(llm, LlamaCppLLM)
        assert llm.last_prefill is not None
        assert llm.last_prefill.cached_tokens > llm.last_prefill.evaluated_tokens  # the first turn was kept
    finally:
        await stop_server(server, task)
