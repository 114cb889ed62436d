"""The server tells the truth about what answers: ``/health`` names each chain's serving member and lists
engines of limited quality (with the fix) under ``limited``, ``status`` is ``degraded`` while one serves, the
``session`` engine line names what really answers, each answer's ``metrics`` names its model, modes that
cannot work are marked before anyone picks them, and the builtin responder never speaks configuration.

A live server on 127.0.0.1 whose STT chain is ``whisper > pocketsphinx`` where "whisper" (a fake that fails
to start as Whisper does without its model) could not load, with the rule-based ``llm:builtin``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn

from aria.core.config import load_settings
from aria.engines.base import Engine
from aria.engines.chain import FallbackSTT
from aria.engines.registry import default_registry
from aria.errors import EngineUnavailable
from aria.server.app import create_app
from aria.server.honesty import LIMITED, limitation
from aria.server.runtime import Runtime
from aria.testing.fakes import FakeSTT
from tests.server.conftest import FAST_FAKES, LiveServer, connect, free_port, stop_server

WHISPER_ERROR = (
    "whisper model 'base.en' is not downloaded and the hub cannot be reached (https://huggingface.co); "
    "run `aria models pull whisper-base.en` on a connected machine, or set stt.options.model to a folder"
)
SPOKEN_CONFIG = ("ARIA_", "http", "backend", "=", "ollama", "aria doctor")


class MissingWhisper(FakeSTT):
    """Whisper as it is on a machine without its model: it cannot start."""

    name: str = "whisper"

    async def start(self) -> None:
        raise EngineUnavailable(WHISPER_ERROR, engine="stt:whisper")


class SmallSphinx(FakeSTT):
    """Stands in for PocketSphinx (the last-resort recogniser) by name."""

    name: str = "pocketsphinx"


LIMITED_SETUP: dict[str, Any] = {
    "stt.backend": "whisper",
    "stt.fallback": ["pocketsphinx"],
    "llm.backend": "builtin",
    "llm.options": {},
}


async def serve(tmp_path: Path, overrides: dict[str, Any]) -> tuple[LiveServer, uvicorn.Server, Any]:
    settings = load_settings(overrides={**FAST_FAKES, "data_dir": str(tmp_path), **overrides}, env={})
    registry = default_registry()
    registry.register("stt:whisper", f"{__name__}:MissingWhisper", replace=True)
    registry.register("stt:pocketsphinx", f"{__name__}:SmallSphinx", replace=True)
    runtime = Runtime(settings, registry=registry)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, runtime=runtime),
        host="127.0.0.1",
        port=port,
        log_config=None,
        ws="websockets-sansio",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started, "server did not start"
    await runtime.ready.wait()
    return LiveServer(settings, port, runtime), server, task


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[LiveServer]:
    info, server, task = await serve(tmp_path, LIMITED_SETUP)
    try:
        yield info
    finally:
        await stop_server(server, task)


async def test_health_names_the_serving_member_and_lists_limited_engines(limited: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=limited.url) as http:
        health = (await http.get("/health")).json()
    assert health["status"] == "degraded"
    stt = health["engines"]["stt"]
    assert stt["name"] == "pocketsphinx"  # what really answers, not whisper
    assert stt["chain"] == "whisper > pocketsphinx"
    assert stt["limited"] is True
    assert health["engines"]["llm"]["name"] == "builtin"
    assert health["engines"]["llm"]["limited"] is True
    assert health["engines"]["tts"]["limited"] is False
    found = {item["kind"]: item for item in health["limited"]}
    assert set(found) == {"stt", "llm"}
    assert found["stt"]["engine"] == "pocketsphinx"
    assert found["stt"]["command"] == "aria models pull whisper-base.en"
    assert found["stt"]["detail"].startswith("Whisper could not start: whisper model 'base.en'")
    assert found["stt"]["reason"].startswith("Speech is recognised by PocketSphinx")
    assert found["llm"]["engine"] == "builtin"
    assert found["llm"]["reason"].startswith("No language model is available")
    assert found["llm"]["command"] == LIMITED["llm:builtin"].command
    assert all(item["fix"] and item["command"] and item["slot"] == item["kind"] for item in found.values())


async def test_session_engine_line_and_each_answer_name_what_answers(limited: LiveServer) -> None:
    ws, client = await connect(limited)
    async with ws:
        engines = client.session["engines"]
        assert engines["stt"]["name"] == "pocketsphinx"
        assert engines["llm"]["name"] == "builtin"
        await client.send({"type": "text", "text": "Tell me about the Eiffel Tower"})
        done = await client.until("response_done")
        metrics = await client.until("metrics")
    assert metrics["extra"]["model"] == "builtin"
    assert metrics["turn_id"] == done["turn_id"]
    assert done["text"] == "Sorry, I can't answer that: no language model is available."
    for word in SPOKEN_CONFIG:
        assert word.lower() not in done["text"].lower()


@pytest.mark.parametrize(
    "question", ["Tell me about the Eiffel Tower", "Write me a short poem", "Explain how a rainbow forms"]
)
async def test_the_builtin_never_speaks_configuration(limited: LiveServer, question: str) -> None:
    ws, client = await connect(limited)
    async with ws:
        await client.send({"type": "text", "text": question})
        done = await client.until("response_done")
    assert "no language model is available" in done["text"]
    assert len(done["text"].split()) <= 12  # one short sentence, not 18 s of speech
    for word in SPOKEN_CONFIG:
        assert word.lower() not in done["text"].lower()


async def test_modes_that_need_vision_are_unavailable_before_anyone_picks_them(limited: LiveServer) -> None:
    ws, client = await connect(limited)
    async with ws:
        details = {d["name"]: d for d in client.session["mode_details"]}
        await client.send({"type": "control", "action": "switch_mode", "mode": "active_monitor"})
        refused = await client.until("error")
    for mode in ("visual_chat", "active_monitor"):
        assert details[mode]["available"] is False
        assert "builtin" in details[mode]["reason"]
        assert "cannot see images" in details[mode]["reason"]
    assert details["voice_chat"] == {**details["voice_chat"], "available": True, "reason": ""}
    assert details["broadcast"]["available"] is True
    # The refusal reads as written: single braces, the mode's name.
    assert refused["code"] == "mode_unavailable"
    assert "{{" not in refused["message"]
    assert 'options = { model = "llava" }' in refused["message"]
    assert "the active_monitor mode needs a vision model, and builtin cannot see images" in refused["message"]
    async with httpx.AsyncClient(base_url=limited.url) as http:
        modes = (await http.get("/health")).json()["modes"]
    assert modes["visual_chat"]["available"] is False
    assert modes["visual_chat"]["reason"] == details["visual_chat"]["reason"]
    assert modes["voice_chat"] == {"available": True, "reason": ""}


async def test_a_full_loadout_is_ok_and_nothing_is_limited(tmp_path: Path) -> None:
    info, server, task = await serve(tmp_path, {})
    try:
        async with httpx.AsyncClient(base_url=info.url) as http:
            health = (await http.get("/health")).json()
        assert health["status"] == "ok"
        assert health["limited"] == []
        assert all(m["available"] for m in health["modes"].values())  # the fake LLM can see
        assert health["engines"]["llm"]["name"] == "fake"
        assert "chain" not in health["engines"]["llm"]
        ws, client = await connect(info)
        async with ws:
            assert all(d["available"] for d in client.session["mode_details"])
            await client.send({"type": "text", "text": "hello"})
            metrics = await client.until("metrics")
        assert metrics["extra"]["model"] == "fake"
    finally:
        await stop_server(server, task)


async def test_a_failing_primary_makes_its_fallback_serve_and_says_why() -> None:
    """A chain whose first member's breaker is open serves from the next; the limitation says so."""
    registry = default_registry()
    registry.register("stt:pocketsphinx", f"{__name__}:SmallSphinx", replace=True)
    stt = FallbackSTT([FakeSTT(), SmallSphinx()])
    await stt.start()
    chain = cast(Engine, stt)
    assert stt.serving.name == "fake"
    assert limitation("stt", chain, registry=registry) is None
    breaker = stt.chain.breakers["fake"]
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert stt.serving.name == "pocketsphinx"
    found = limitation("stt", chain, registry=registry)
    assert found is not None
    assert found.engine == "pocketsphinx"
    assert found.detail == "Fake is failing, so pocketsphinx answers."
    assert found.command == "aria models pull whisper-base.en"
