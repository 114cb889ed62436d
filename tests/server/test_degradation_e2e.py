"""Engines failing under a live server: each degradation path is announced, breakers open and close
again, a crashed engine is restarted, and no turn is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from aria.pipeline.answer import APOLOGY_MID
from aria.pipeline.voice import NOT_UNDERSTOOD
from aria.session.journal import JournalFileStore
from tests.engines.llm_servers import OpenAIServer, Script
from tests.server.conftest import Client, LiveServer, connect, engine, start_server, stop_server
from tests.server.test_endpoint import pcm_frames

REPLY = "Sure, here is the answer. It has two sentences."


async def ask(client: Client, text: str) -> dict[str, Any]:
    await client.send({"type": "text", "text": text})
    return await client.until("response_done")


async def saved_history(info: LiveServer, session_id: str) -> list[dict[str, Any]]:
    """What is on disk: the snapshot and its journal (the session store's writer thread has written
    what was saved by the time it runs the flush)."""
    await asyncio.to_thread(info.runtime.sessions.flush)
    snapshot = JournalFileStore(info.settings.data_dir / "sessions").load(session_id)
    assert snapshot is not None
    return list(snapshot["history"])


async def test_a_failing_llm_opens_its_breaker_the_fallback_answers_and_it_closes_after_recovery(
    tmp_path: Path,
) -> None:
    overrides = {
        "llm.options": {"replies": ["The primary is back."], "fault": {"calls": [1, 2, 3], "message": "503"}},
        "llm.fallback": ["builtin"],
        "resilience.failure_threshold": 3,
        "resilience.recovery_s": 1.0,
        "resilience.retry_attempts": 0,
        "tts.options": {"ms_per_char": 0.5},
    }
    info, server, task = await start_server(tmp_path, overrides)
    try:
        ws, client = await connect(info)
        async with ws, httpx.AsyncClient(base_url=info.url) as http:
            for index in range(3):
                done = await ask(client, f"hello {index}")
                assert done["text"]
                assert done["error"] is None  # the builtin fallback answered
            health = (await http.get("/health")).json()
            assert health["status"] == "degraded"
            fake = next(m for m in health["breakers"]["llm"] if m["engine"] == "fake")
            assert fake["state"] == "open"
            assert fake["opened"] == 1
            metrics = (await http.get("/metrics")).text
            assert 'aria_breaker_state{engine="fake",slot="llm"} 2.0' in metrics  # labels sorted by name
            notices = [n for n in client.of_type("notification") if n["data"].get("kind") == "fallback"]
            assert len(notices) == 1  # said once, not every turn
            assert notices[0]["data"]["engine"] == "fake"
            await asyncio.sleep(
                max(0.0, fake["retry_after_s"]) + 0.05
            )  # the breaker half-opens: the next turn tries the primary again
            assert (await ask(client, "are you back?"))["text"] == "The primary is back."
            health = (await http.get("/health")).json()
            fake = next(m for m in health["breakers"]["llm"] if m["engine"] == "fake")
            assert fake["state"] == "closed"
            assert health["status"] == "ok"
            session_id = client.session["session_id"]
        history = await saved_history(info, session_id)
        assert [m["role"] for m in history] == ["user", "assistant"] * 4  # no turn lost
    finally:
        await stop_server(server, task)


async def test_tts_down_answers_in_text_and_says_so(tmp_path: Path) -> None:
    overrides = {"tts.options": {"fault": {"always": True, "message": "voice crashed"}}}
    info, server, task = await start_server(tmp_path, overrides)
    try:
        ws, client = await connect(info)
        async with ws:
            done = await ask(client, "hi")
            again = await ask(client, "still text?")
        assert done["text"] == REPLY
        assert again["text"] == REPLY
        errors = client.of_type("error")
        assert [e["code"] for e in errors] == ["tts_failed", "tts_failed"]
        assert "text only" in errors[0]["message"]
        assert not [m for _, m in client.messages if isinstance(m, bytes)]
    finally:
        await stop_server(server, task)


async def test_stt_down_asks_to_repeat_and_typing_still_works(tmp_path: Path) -> None:
    overrides = {"stt.options": {"texts": ["never heard"], "fault": {"always": True, "message": "asr died"}}}
    info, server, task = await start_server(tmp_path, overrides)
    try:
        ws, client = await connect(info)
        async with ws:
            await client.until("mode")
            for frame in [*pcm_frames(400, 0.2), *pcm_frames(300, 0.0)]:
                await ws.send(frame)
            error = await client.until("error")
            said = await client.until("response_done")
            typed = await ask(client, "typing works")
            session_id = client.session["session_id"]
        assert error["code"] == "stt_failed"
        assert said["text"] == NOT_UNDERSTOOD
        assert said["audio_ms"] > 0  # spoken too
        assert typed["text"] == REPLY
        history = await saved_history(info, session_id)
        assert [(m["role"], m["content"]) for m in history] == [
            ("user", "typing works"),
            ("assistant", REPLY),
        ]
    finally:
        await stop_server(server, task)


async def test_an_llm_server_dying_mid_answer_keeps_the_partial_apologises_and_the_next_turn_works(
    tmp_path: Path,
) -> None:
    cut = Script(tokens=["The", " answer", " is", " forty", " two", "."], cut_after=3)
    with OpenAIServer(cut) as llm:
        overrides = {
            "llm.backend": "openai",
            "llm.options": {"base_url": llm.base_url, "model": "tiny-chat"},
            "llm.fallback": [],
            "tts.options": {"ms_per_char": 1.0},
        }
        info, server, task = await start_server(tmp_path, overrides)
        try:
            ws, client = await connect(info)
            async with ws:
                done = await ask(client, "what is the answer?")
                llm.script = Script(tokens=["Back", " again", "."])
                again = await ask(client, "try again")
                session_id = client.session["session_id"]
            assert done["text"] == f"The answer is... {APOLOGY_MID}"
            assert done["error"] is not None
            assert [e["turn_id"] for e in client.of_type("error")] == [done["turn_id"]]
            assert again["text"] == "Back again."
            assert again["error"] is None
            history = await saved_history(info, session_id)
            assert history[1]["content"] == done["text"]
            assert history[1]["metadata"]["error"] == done["error"]  # the turn is marked
            assert history[3]["content"] == "Back again."
        finally:
            await stop_server(server, task)


async def test_a_crashed_engine_is_restarted_after_the_session_is_saved_and_the_talk_goes_on(
    tmp_path: Path,
) -> None:
    crash = {"calls": [2], "after": 2, "crash": True, "message": "segfault in the model"}
    info, server, task = await start_server(tmp_path, {"llm.options": {"fault": crash}})
    try:
        ws, client = await connect(info)
        async with ws:
            assert (await ask(client, "one"))["text"] == REPLY
            first = engine(info)
            crashed = await ask(client, "two")
            assert crashed["error"] == "engine_crashed"
            assert crashed["text"].endswith(APOLOGY_MID)
            notice = await client.until("notification", within=5)
            assert notice["data"] == {"kind": "restarted", "slot": "llm"}
            assert engine(info) is not first  # a fresh engine
            assert first.closed
            assert (await ask(client, "three"))["text"] == REPLY
            session_id = client.session["session_id"]
        history = await saved_history(info, session_id)
        assert [m["content"] for m in history if m["role"] == "user"] == ["one", "two", "three"]
    finally:
        await stop_server(server, task)


async def test_slow_answers_switch_to_the_faster_model_and_back_when_the_usual_one_recovers(
    tmp_path: Path,
) -> None:
    overrides = {
        "llm.options": {"replies": ["From the usual model."], "ttft_s": 0.15},
        "resilience.slow_first_token_ms": 100,
        "resilience.slow_turns": 2,
        "resilience.recovery_probe_s": 0.2,
        "resilience.fast_llm": {"options": {"replies": ["From the fast model."], "ttft_s": 0.0}},
        "tts.options": {"ms_per_char": 0.5},
    }
    info, server, task = await start_server(tmp_path, overrides)
    try:
        ws, client = await connect(info)
        async with ws:
            assert (await ask(client, "one"))["text"] == "From the usual model."
            assert (await ask(client, "two"))["text"] == "From the usual model."
            degraded = await client.until("notification")
            assert degraded["data"]["kind"] == "quality"
            assert degraded["data"]["state"] == "degraded"
            assert (await ask(client, "three"))["text"] == "From the fast model."
            # The usual model gets fast again: a background probe notices, and answers come from it.
            usual = engine(info)
            usual.config = usual.config.model_copy(update={"ttft_s": 0.0})
            await asyncio.sleep(0.25)
            # Still the fast model; this turn's metrics start the probe.
            assert (await ask(client, "four"))["text"] == "From the fast model."
            recovered = await client.until("notification", within=5)
            assert recovered["data"]["state"] == "recovered"
            assert (await ask(client, "five"))["text"] == "From the usual model."
    finally:
        await stop_server(server, task)
