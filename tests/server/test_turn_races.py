"""Races between turns on ONE connection: random interleavings of text, pictures with a question,
spoken utterances, interrupts, mode switches, configuration updates, pings and reconnects, against a
real server with fake engines (see :mod:`tests.server.races` for the steps and the invariants).

The number of random interleavings comes from ``ARIA_RACE_EXAMPLES`` (default 300, about a minute on
a small machine); the issue's acceptance run is 10,000::

    ARIA_RACE_EXAMPLES=10000 .venv/bin/pytest tests/server/test_turn_races.py -p no:randomly -x

(the test's timeout grows with the count). The fakes answer at once or after a few milliseconds (drawn
per example), the fake TTS says 1 ms of audio per character and the server sends up to 2 s of audio
ahead, so pacing never holds a turn up; each example settles by waiting for the response_done count,
never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.keys import OWNER
from tests.server.conftest import LiveServer, engine
from tests.server.races import MODES, Run, Step, describe, history_problems, problems

EXAMPLES = int(os.environ.get("ARIA_RACE_EXAMPLES", "300"))
#: Seconds per example the timeout allows (measured: about 0.1 s each on 2 busy cores).
PER_EXAMPLE_S = 0.5


@pytest.fixture
def server_overrides() -> dict[str, Any]:
    return {
        "server.audio_lead_ms": 2000,  # the most allowed: paced audio never holds a turn up
        "tts.options": {"ms_per_char": 1.0},
        "llm.options": {"replies": ["Sure, here is the answer. It has two sentences."]},
    }


pauses = st.sampled_from(["none", "none", "none", "yield", "1ms", "5ms", "20ms"])
steps = st.one_of(
    st.builds(Step, st.sampled_from(["text", "image", "speech"]), pauses),
    st.builds(Step, st.sampled_from(["text", "image", "image_only", "interrupt", "ping"]), pauses),
    st.builds(Step, st.just("switch"), pauses, st.sampled_from(MODES)),
    st.builds(Step, st.just("config"), pauses, st.just("llm.temperature"), st.sampled_from([0.2, 0.9])),
    st.builds(Step, st.just("config"), pauses, st.just("tts.voice"), st.sampled_from(["fake", None])),
    st.builds(Step, st.just("reconnect"), pauses),
)
#: (LLM first token, LLM between tokens, TTS first chunk) in seconds: how long a turn overlaps the next.
timings = st.tuples(
    st.sampled_from([0.0, 0.001, 0.005]),
    st.sampled_from([0.0, 0.0005, 0.002]),
    st.sampled_from([0.0, 0.002]),
)


def tune(live: LiveServer, timing: tuple[float, float, float]) -> None:
    ttft, interval, tts_first = timing
    llm, tts = engine(live, "llm"), engine(live, "tts")
    llm.config = llm.config.model_copy(update={"ttft_s": ttft, "token_interval_s": interval})
    tts.config = tts.config.model_copy(update={"first_chunk_delay_s": tts_first})


async def history(live: LiveServer, session_id: str) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    # The dropped connections' clean-up (it records their interrupted answers); the runtime has only a
    # counter to watch, so a bounded wait on it.
    while live.runtime.connections and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    async with httpx.AsyncClient(auth=OWNER, base_url=live.url, trust_env=False) as http:
        reply = await http.get(f"/sessions/{session_id}")
    reply.raise_for_status()
    entries: list[dict[str, Any]] = reply.json()["history"]
    return entries


async def play(live: LiveServer, sequence: list[Step], yields: dict[int, int] | None = None) -> list[str]:
    """Play ``sequence`` on a fresh session, settle, and list what broke (with the evidence). ``yields``
    gives the server that many event-loop turns after the step at that index."""
    run = Run(live)
    await run.connect()
    try:
        for index, step in enumerate(sequence):
            await run.step(step)
            for _ in range((yields or {}).get(index, 0)):
                await asyncio.sleep(0)
        await run.finish()
    finally:
        await run.close()
    turns = sum(conn.expected_turns() for conn in run.conns)  # the last question included
    unseen = sum(conn.speeches - conn.voice_turns() for conn in run.conns if conn.dropped)
    found = problems(run) + history_problems(await history(live, run.session_id), turns, unseen)
    if found:
        found.append(run.report())
    return found


@pytest.mark.timeout(120 + EXAMPLES * PER_EXAMPLE_S)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(sequence=st.lists(steps, min_size=1, max_size=10), timing=timings)
async def test_random_interleavings_keep_one_answer_per_turn(
    live: LiveServer, sequence: list[Step], timing: tuple[float, float, float]
) -> None:
    tune(live, timing)
    found = await play(live, sequence)
    assert not found, f"{describe(sequence)} with timing {timing}:\n" + "\n".join(found)


async def test_update_config_image_text_back_to_back_30_times(live: LiveServer) -> None:
    """The reported sequence: update_config, an image with a question, a text, back to back."""
    sequence = [
        Step("config", arg="llm.temperature", value=0.5),
        Step("image"),
        Step("text"),
    ]
    failures: list[str] = []
    started = time.monotonic()
    for attempt in range(30):
        # Between the picture and the text the server gets 0 to 29 turns of the event loop, so the text
        # lands in every phase of the picture's turn (being read, asking the model, answering).
        found = await play(live, sequence, {1: attempt})
        if found:
            failures.append(f"attempt {attempt}:\n" + "\n".join(found))
    assert not failures, f"{len(failures)} of 30 failed:\n" + "\n".join(failures[:3])
    assert time.monotonic() - started < 60
