"""create_engine and the fallback wrappers, built from real settings, real fakes and tiny real engines."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aria.core.config import Settings, load_settings
from aria.engines.base import LLM, STT, TTS, EngineHealth, LLMRequest
from aria.engines.chain import FallbackLLM, FallbackSTT, FallbackTTS, primary
from aria.engines.factory import _chain_member, create_engine, resolve_backend
from aria.engines.llm.builtin import BuiltinLLM
from aria.engines.registry import BUILTIN, EngineRegistry, default_registry
from aria.errors import AllEnginesFailed, EngineError, EngineTimeout, EngineUnavailable, RegistryError
from aria.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD, Fault
from aria.testing.harness import tone
from aria.types import AudioChunk, Message
from tests.engines.llm_servers import OllamaServer, Script

GREETING = "Hello, I'm Aria. How can I help you?"
FAILING = {"fault": {"always": True, "retryable": False}}


def settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from defaults plus dotted-key overrides; the real environment is ignored."""
    return load_settings(overrides=overrides, env={})


def ask(text: str) -> LLMRequest:
    return LLMRequest(messages=(Message("user", text),))


async def answer(llm: Any, text: str = "hello") -> str:
    return "".join([token.text async for token in llm.stream(ask(text))])


class Recorder:
    """An ``on_fallback`` callback that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, BaseException]] = []

    def __call__(self, kind: str, name: str, error: BaseException) -> None:
        self.calls.append((kind, name, error))

    @property
    def names(self) -> list[tuple[str, str]]:
        return [(kind, name) for kind, name, _ in self.calls]


# Tiny engines registered by import path in test registries (``f"{__name__}:Class"``).


class BrokenStartLLM:
    """An LLM whose server is never reachable: ``start`` fails and ``stream`` must not be called."""

    kind = "llm"
    name = "brokenstart"

    def __init__(self) -> None:
        self.capabilities = BuiltinLLM.capabilities
        self.streamed = 0

    async def start(self) -> None:
        raise EngineUnavailable("server at 127.0.0.1:9 refused the connection", engine=self.name)

    async def aclose(self) -> None:
        pass

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=False, detail="unreachable")

    async def stream(self, request: LLMRequest) -> AsyncIterator[Any]:
        self.streamed += 1
        raise AssertionError("an engine that failed to start was called")
        yield  # pragma: no cover

    async def complete(self, request: LLMRequest) -> str:
        raise AssertionError("an engine that failed to start was called")


class OtherBrokenStartLLM(BrokenStartLLM):
    name = "otherbroken"


class FailingLLM(FakeLLM):
    """A FakeLLM that always fails before its first token, whatever options it gets."""

    name = "failing"

    class Config(FakeLLM.Config):
        fault: Fault | None = Fault(always=True, retryable=False, message="model crashed")


class FailingSTT(FakeSTT):
    name = "failingstt"

    class Config(FakeSTT.Config):
        fault: Fault | None = Fault(always=True, retryable=False, message="decoder crashed")


class FailingTTS(FakeTTS):
    name = "failingtts"

    class Config(FakeTTS.Config):
        fault: Fault | None = Fault(always=True, retryable=False, message="vocoder crashed")


@pytest.fixture
def registry() -> EngineRegistry:
    registry = EngineRegistry(discover=False)
    for name, cls in {
        "llm:brokenstart": BrokenStartLLM,
        "llm:otherbroken": OtherBrokenStartLLM,
        "llm:failing": FailingLLM,
        "stt:failing": FailingSTT,
        "tts:failing": FailingTTS,
    }.items():
        registry.register(name, f"{__name__}:{cls.__name__}", origin="test")
    registry.register("stt:notinstalled", "aria_test_sdk_that_is_not_installed:Recogniser", origin="test")
    return registry


# -- what gets built --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("llm", {"llm.backend": "none"}),
        ("stt", {"stt.backend": "none"}),
        ("tts", {"tts.backend": "none", "tts.fallback": ["fake"]}),
        ("vad", {"vad.backend": "none"}),
        ("vision", {}),  # vision is off by default
    ],
)
def test_backend_none_builds_nothing(kind: Any, overrides: dict[str, Any]) -> None:
    assert create_engine(kind, settings(overrides)) is None


def test_resolve_backend_keeps_a_configured_backend() -> None:
    assert resolve_backend("llm", settings({"llm.backend": "ollama"})) == "ollama"
    assert resolve_backend("stt", settings({"stt.backend": "fake"})) == "fake"


def test_resolve_backend_auto_llm_is_builtin_without_a_server() -> None:
    assert resolve_backend("llm", settings()) == "builtin"


def test_resolve_backend_auto_skips_engines_that_cannot_run_here() -> None:
    only_energy = EngineRegistry({"vad:energy": BUILTIN["vad:energy"]}, discover=False)
    assert resolve_backend("vad", settings({"vad.backend": "auto"}), only_energy) == "energy"
    with pytest.raises(EngineUnavailable, match="no stt engine can run here"):
        resolve_backend("stt", settings({"stt.backend": "auto"}), only_energy)


def test_auto_llm_is_the_builtin_responder_behind_a_breaker() -> None:
    llm = create_engine("llm", settings())  # backend auto, fallback ["builtin"]: one engine
    assert isinstance(llm, FallbackLLM)
    assert isinstance(primary(llm), BuiltinLLM)
    assert llm.name == "builtin"
    llm = create_engine("llm", settings({"llm.fallback": []}))
    assert isinstance(primary(llm), BuiltinLLM)


def test_a_single_engine_is_wrapped_with_its_options() -> None:
    llm = create_engine(
        "llm", settings({"llm.backend": "fake", "llm.fallback": [], "llm.options": {"replies": ["Hi."]}})
    )
    assert isinstance(llm, FallbackLLM)
    engine = primary(llm)
    assert isinstance(engine, FakeLLM)
    assert engine.config == FakeLLM.Config(replies=("Hi.",))
    assert llm.capabilities == engine.capabilities


async def test_a_single_engine_gets_a_breaker_timeouts_and_a_bulkhead() -> None:
    llm = create_engine(
        "llm",
        settings(
            {
                "llm.backend": "fake",
                "llm.fallback": [],
                "llm.options": FAILING,
                "resilience.failure_threshold": 2,
                "resilience.max_concurrency": 3,
            }
        ),
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    for _ in range(2):
        with pytest.raises(AllEnginesFailed, match="injected failure"):
            await answer(llm)
    assert llm.chain.breakers["fake"].state == "open"
    with pytest.raises(AllEnginesFailed, match="CircuitOpenError"):
        await answer(llm)  # not called again while the breaker is open
    assert primary(llm).calls == 2  # type: ignore[attr-defined]
    assert llm.chain.max_concurrency == 3


def test_backend_plus_fallback_is_a_fallback_chain_in_order() -> None:
    llm = create_engine(
        "llm",
        settings(
            {
                "llm.backend": "builtin",
                "llm.fallback": ["fake", "llm:builtin", "fake"],
                "llm.options": {"assistant_name": "Nova"},
            }
        ),
    )
    assert isinstance(llm, FallbackLLM)
    assert isinstance(llm, LLM)
    assert llm.name == "builtin > fake"
    assert [type(e) for e in llm.engines] == [BuiltinLLM, FakeLLM]
    # The section's options belong to the primary; fallbacks get their defaults.
    assert llm.engines[0].config == BuiltinLLM.Config(assistant_name="Nova")  # type: ignore[attr-defined]
    assert llm.engines[1].config == FakeLLM.Config()  # type: ignore[attr-defined]


def test_an_unavailable_primary_leaves_the_fallbacks_with_their_defaults(registry: EngineRegistry) -> None:
    stt = create_engine(
        "stt",
        settings({"stt.backend": "notinstalled", "stt.fallback": ["fake"], "stt.options": {"texts": ["x"]}}),
        registry,
    )
    assert isinstance(stt, FallbackSTT)
    assert [type(e) for e in stt.engines] == [FakeSTT]  # the lone engine left, behind its breaker
    assert stt.engines[0].config == FakeSTT.Config()  # type: ignore[attr-defined]


def test_no_engine_at_all_is_all_engines_failed(registry: EngineRegistry) -> None:
    with pytest.raises(AllEnginesFailed) as info:
        create_engine("stt", settings({"stt.backend": "notinstalled", "stt.fallback": []}), registry)
    assert str(info.value).startswith("stt: every stt engine failed (EngineUnavailable: stt:notinstalled: ")
    assert [type(e) for e in info.value.errors] == [EngineUnavailable]
    assert "aria_test_sdk_that_is_not_installed is missing" in str(info.value.errors[0])


def test_kinds_without_a_wrapper_use_the_primary() -> None:
    vad = create_engine("vad", settings({"vad.backend": "fake", "vad.fallback": ["energy"]}))
    assert isinstance(vad, FakeVAD)


def test_an_unknown_fallback_is_a_registry_error_at_start_up() -> None:
    with pytest.raises(RegistryError, match="unknown engine 'llm:bultin'; did you mean 'llm:builtin'"):
        create_engine("llm", settings({"llm.backend": "fake", "llm.fallback": ["bultin"]}))


def test_a_fallback_of_another_kind_is_refused() -> None:
    with pytest.raises(RegistryError, match="'tts:fake' is not a llm engine"):
        create_engine("llm", settings({"llm.backend": "fake", "llm.fallback": ["tts:fake"]}))


# -- falling back ------------------------------------------------------------------------------------


async def test_stream_falls_back_from_a_failing_engine_to_the_next() -> None:
    seen = Recorder()
    llm = create_engine(
        "llm",
        settings({"llm.backend": "fake", "llm.options": FAILING, "llm.fallback": ["builtin"]}),
        on_fallback=seen,
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    try:
        assert await answer(llm) == GREETING
        fake = llm.engines[0]
        assert isinstance(fake, FakeLLM)
        assert fake.calls == 1
        assert llm.chain.last_used == "builtin"
        assert seen.names == [("llm", "fake")]
        error = seen.calls[0][2]
        assert isinstance(error, EngineError)
        assert str(error) == "fake: injected failure"
    finally:
        await llm.aclose()


async def test_complete_falls_back_too() -> None:
    llm = create_engine(
        "llm", settings({"llm.backend": "fake", "llm.options": FAILING, "llm.fallback": ["builtin"]})
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    assert await llm.complete(ask("what is 2 plus 3")) == "2 plus 3 is 5."


async def test_a_primary_that_fails_to_start_is_left_out_and_reported(registry: EngineRegistry) -> None:
    seen = Recorder()
    llm = create_engine(
        "llm",
        settings({"llm.backend": "brokenstart", "llm.fallback": ["builtin"]}),
        registry,
        on_fallback=seen,
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    broken = llm.engines[0]
    assert isinstance(broken, BrokenStartLLM)

    assert await answer(llm) == GREETING

    assert broken.streamed == 0
    assert seen.calls == []  # never tried, so never fallen back from
    assert [e.name for e in llm.chain.engines] == ["builtin"]
    health = await llm.health()
    assert health.ok is True
    assert health.detail == (
        "builtin: closed; "
        "brokenstart: unavailable (brokenstart: server at 127.0.0.1:9 refused the connection)"
    )
    await llm.aclose()


async def test_every_engine_failing_to_start_is_all_engines_failed(registry: EngineRegistry) -> None:
    llm = create_engine(
        "llm", settings({"llm.backend": "brokenstart", "llm.fallback": ["otherbroken"]}), registry
    )
    assert isinstance(llm, FallbackLLM)
    with pytest.raises(AllEnginesFailed) as info:
        await llm.start()
    assert [e.engine for e in info.value.errors] == ["brokenstart", "otherbroken"]  # type: ignore[attr-defined]
    assert str(info.value).startswith("llm: every llm engine failed (EngineUnavailable: brokenstart: server")


async def test_every_engine_failing_to_stream_is_all_engines_failed(registry: EngineRegistry) -> None:
    seen = Recorder()
    llm = create_engine(
        "llm",
        settings({"llm.backend": "fake", "llm.options": FAILING, "llm.fallback": ["failing"]}),
        registry,
        on_fallback=seen,
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    with pytest.raises(AllEnginesFailed) as info:
        await answer(llm)
    assert [str(e) for e in info.value.errors] == ["fake: injected failure", "failing: model crashed"]
    assert seen.names == [("llm", "fake"), ("llm", "failing")]
    with pytest.raises(AllEnginesFailed):
        await llm.complete(ask("hello"))


async def test_breaker_opens_after_the_failure_threshold(registry: EngineRegistry) -> None:
    seen = Recorder()
    llm = create_engine(
        "llm",
        settings(
            {
                "llm.backend": "fake",
                "llm.options": FAILING,
                "llm.fallback": ["builtin"],
                "resilience.failure_threshold": 2,
                "resilience.recovery_s": 600,
            }
        ),
        registry,
        on_fallback=seen,
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    fake = llm.engines[0]
    assert isinstance(fake, FakeLLM)

    answers = [await answer(llm) for _ in range(5)]

    assert answers == [GREETING] * 5
    assert fake.calls == 2  # the open breaker skips it without calling it
    assert seen.names == [("llm", "fake")] * 2  # skipping is not failing
    assert llm.chain.breakers["fake"].state == "open"
    assert (await llm.health()).detail == "fake: open; builtin: closed"


async def test_slow_first_token_falls_back_after_the_first_token_timeout() -> None:
    seen = Recorder()
    llm = create_engine(
        "llm",
        settings(
            {
                "llm.backend": "fake",
                "llm.options": {"ttft_s": 60},
                "llm.fallback": ["builtin"],
                "llm.first_token_timeout_s": 0.3,
                "resilience.retry_attempts": 0,
            }
        ),
        on_fallback=seen,
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    started = time.monotonic()

    assert await answer(llm) == GREETING

    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 20
    fake = llm.engines[0]
    assert isinstance(fake, FakeLLM)
    assert fake.calls == 1
    assert seen.names == [("llm", "fake")]
    error = seen.calls[0][2]
    assert isinstance(error, EngineTimeout)
    # The abandoned wait was cut short, not left running.
    assert [label for label, _, _ in fake.waits] == ["llm_ttft"]
    assert fake.waits[0][2] - fake.waits[0][1] < 20


async def test_a_timed_out_first_token_is_retried_before_falling_back() -> None:
    llm = create_engine(
        "llm",
        settings(
            {
                "llm.backend": "fake",
                "llm.options": {"ttft_s": 60},
                "llm.first_token_timeout_s": 0.2,
                "resilience.retry_attempts": 2,
                "resilience.retry_base_delay_s": 0.01,
            }
        ),
    )
    assert isinstance(llm, FallbackLLM)  # default fallback: builtin
    await llm.start()
    assert await answer(llm) == GREETING
    assert llm.engines[0].calls == 2  # type: ignore[attr-defined]


async def test_a_fast_primary_is_used_and_the_fallback_never_called() -> None:
    seen = Recorder()
    llm = create_engine(
        "llm",
        settings(
            {
                "llm.backend": "fake",
                "llm.options": {"replies": ["From the model."]},
                "llm.first_token_timeout_s": 5,
            }
        ),
        on_fallback=seen,
    )
    assert isinstance(llm, FallbackLLM)
    await llm.start()
    assert await answer(llm) == "From the model."
    assert seen.calls == []
    assert llm.chain.last_used == "fake"


async def test_stt_falls_back_from_a_failing_recogniser(registry: EngineRegistry) -> None:
    seen = Recorder()
    stt = create_engine(
        "stt", settings({"stt.backend": "failing", "stt.fallback": ["fake"]}), registry, on_fallback=seen
    )
    assert isinstance(stt, FallbackSTT)
    assert isinstance(stt, STT)
    await stt.start()

    async def audio() -> AsyncIterator[AudioChunk]:
        for chunk in tone(200):
            yield chunk

    results = [t async for t in stt.stream(audio())]

    assert [(t.text, t.is_final) for t in results][-1] == ("hello there", True)
    assert [t.is_final for t in results] == [False] * (len(results) - 1) + [True]
    assert seen.names == [("stt", "failingstt")]
    assert str(seen.calls[0][2]) == "failingstt: decoder crashed"
    final = await stt.transcribe(tone(20)[0])
    assert (final.text, final.is_final) == ("hello there", True)


async def test_tts_falls_back_from_a_failing_voice(registry: EngineRegistry) -> None:
    seen = Recorder()
    tts = create_engine(
        "tts", settings({"tts.backend": "failing", "tts.fallback": ["fake"]}), registry, on_fallback=seen
    )
    assert isinstance(tts, FallbackTTS)
    assert isinstance(tts, TTS)
    await tts.start()

    chunks = [c async for c in tts.synthesize("Hi.", voice="fake")]

    # FakeTTS: 60 ms a character in 20 ms blocks.
    assert len(chunks) == 9
    assert sum(c.frames for c in chunks) == 16000 * 180 // 1000
    assert seen.names == [("tts", "failingtts")]
    failing, fake = tts.engines
    assert isinstance(fake, FakeTTS)
    assert [(text, voice) for text, voice, _ in fake.requests] == [("Hi.", "fake")]
    assert failing.calls == 1  # type: ignore[attr-defined]


async def test_a_chain_of_two_models_of_one_backend_uses_the_primarys_server() -> None:
    with OllamaServer(Script(tokens=["From", " the", " small", " one", "."])) as server:
        server.script.models = ["qwen2.5:3b"]  # the 14b model is not pulled: its start fails
        llm = create_engine(
            "llm",
            settings(
                {
                    "llm.backend": "ollama",
                    "llm.options": {"base_url": server.base_url, "model": "qwen2.5:14b"},
                    "llm.fallback": ["ollama:qwen2.5:3b", "builtin"],
                }
            ),
        )
        assert isinstance(llm, FallbackLLM)
        assert llm.name == "ollama > ollama:qwen2.5:3b > builtin"
        await llm.start()
        try:
            assert "ollama" in llm.unavailable  # not pulled: left out of the chain
            assert await answer(llm) == "From the small one."
            body = next(r.body for r in server.requests if r.path == "/api/chat")
            assert body["model"] == "qwen2.5:3b"
        finally:
            await llm.aclose()


def test_fallback_entries_name_a_backend_and_optionally_a_model() -> None:
    registry = default_registry()
    assert _chain_member("builtin", "llm", registry) == ("llm:builtin", None)
    assert _chain_member("llm:builtin", "llm", registry) == ("llm:builtin", None)
    assert _chain_member("ollama:qwen2.5:3b", "llm", registry) == ("llm:ollama", "qwen2.5:3b")
    assert _chain_member("llm:ollama:llava:7b", "llm", registry) == ("llm:ollama", "llava:7b")
    with pytest.raises(RegistryError):
        _chain_member("tts:espeak", "llm", registry)
