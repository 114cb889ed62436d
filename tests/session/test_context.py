"""Tests for aria.session.context (the token window with a background summary) and aria.session.tokens."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aria.core.history import History
from aria.engines.base import LLMRequest
from aria.errors import ConfigError, InvalidInput
from aria.pipeline.outputs import ResponseDone
from aria.pipeline.voice import PipelineConfig
from aria.session.context import SUMMARY_HEADER, TRUNCATION_MARKER, ContextWindow
from aria.session.tokens import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    estimate_tokens,
    message_tokens,
    request_tokens,
)
from aria.testing import FakeLLM, Fault, TurnHarness
from aria.types import ImageFrame, Message

NOW = datetime(2024, 5, 14, 15, 42, tzinfo=UTC)
SYSTEM = "You are Aria, a helpful voice assistant. Answer briefly."
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "ducks"]


def clock() -> datetime:
    return NOW


def text_of(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def synthetic(turns: int, seed: int = 7) -> list[Message]:
    """A long conversation: mostly short turns, some long answers, an occasional huge paste."""
    rng = random.Random(seed)
    out: list[Message] = []
    for turn in range(turns):
        size = rng.choice([3, 8, 20, 60]) if turn % 37 else 2500  # a paste larger than the whole window
        out.append(Message("user", f"u{turn} " + text_of(rng, size)))
        if rng.random() < 0.1:
            out.append(Message("tool", f"t{turn} " + text_of(rng, 15)))
        out.append(Message("assistant", f"a{turn} " + text_of(rng, rng.choice([5, 30, 120, 400]))))
    return out


def budget(window: ContextWindow) -> int:
    return window.context_tokens - window.reserve_tokens


def check_window(
    history: History, messages: tuple[Message, ...], system: str | None, window: ContextWindow
) -> None:
    """Within budget, ends with the last turn (or its cut user message), starts at a turn boundary."""
    everything = list(history)
    assert request_tokens(messages, system) <= budget(window)
    users = [i for i, m in enumerate(everything) if m.role == "user"]
    if not users:
        return
    last_user = everything[users[-1]]
    if messages and messages[-1] is not everything[-1]:  # the last turn alone did not fit
        assert len(messages) == 1
        assert messages[0].role == "user"
        content = messages[0].content
        if content.startswith(TRUNCATION_MARKER):
            assert last_user.content.endswith(content[len(TRUNCATION_MARKER) :])
        else:
            assert content == last_user.content  # only what followed it was left out
        return
    n = len(messages)
    assert n >= 1
    assert all(a is b for a, b in zip(messages, everything[-n:], strict=True)), "not a suffix of the history"
    start = len(everything) - n
    assert start in users or start == 0, "the window cuts inside a turn"
    assert last_user in messages
    assert start >= window.summarized_upto


# -- tokens ---------------------------------------------------------------------------------------------


def test_estimate_tokens_is_about_four_characters_a_token_with_a_word_floor() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hello") == 2
    prose = "The quick brown fox jumps over the lazy dog near the riverbank today."
    assert estimate_tokens(prose) == (len(prose) + 3) // 4
    assert estimate_tokens("a b c d e f g h") == 8  # eight words beat ceil(15 / 4)
    assert estimate_tokens("日本語のテキスト") == (len("日本語のテキスト".encode()) + 3) // 4  # UTF-8 bytes
    assert estimate_tokens(prose) == estimate_tokens(prose)


def test_message_and_request_tokens_add_the_template_overhead_and_images() -> None:
    frame = ImageFrame(b"\xff\xd8\xff\xe0", format="JPEG")
    assert message_tokens(Message("user", "hello")) == 2 + MESSAGE_OVERHEAD
    assert message_tokens(Message("user", "hello", images=(frame,))) == 2 + MESSAGE_OVERHEAD + IMAGE_TOKENS
    assert message_tokens(Message("user", "hello"), lambda text: 100) == 100 + MESSAGE_OVERHEAD
    messages = (Message("user", "hello"), Message("assistant", "hi"))
    assert request_tokens(messages, None) == REPLY_PRIMING + 6 + 5
    assert request_tokens(messages, "be brief") == REPLY_PRIMING + 6 + 5 + 2 + MESSAGE_OVERHEAD


# -- the window -----------------------------------------------------------------------------------------


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigError, match="reserve_tokens"):
        ContextWindow(context_tokens=512, reserve_tokens=512)
    with pytest.raises(ConfigError, match="min_recent_turns"):
        ContextWindow(min_recent_turns=0)
    with pytest.raises(ConfigError, match="context_tokens"):
        ContextWindow(context_tokens=0)


def test_empty_history_gives_no_messages_and_the_system_prompt_with_the_time() -> None:
    messages, system = ContextWindow(clock=clock).build(History(), SYSTEM)
    assert messages == ()
    assert system == f"{SYSTEM}\n\nCurrent date and time: Tuesday 14 May 2024, 15:42 UTC"


def test_date_time_and_profile_facts_are_appended_to_the_system_prompt() -> None:
    memory = {"name": "Sam", "city": "Lisbon\nPortugal"}
    window = ContextWindow(clock=clock, profile=lambda: memory)
    history = History([Message("user", "hi")])
    _, system = window.build(history, SYSTEM)
    assert system is not None
    assert system.startswith(SYSTEM + "\n\n")
    assert "- name: Sam\n- city: Lisbon Portugal" in system
    assert system.endswith("Current date and time: Tuesday 14 May 2024, 15:42 UTC")  # the clock last
    memory["name"] = "Samantha"  # read on every build
    _, system = window.build(history, None)
    assert system is not None
    assert "- name: Samantha" in system
    assert system.startswith("What you know about the user:")


def test_a_failing_profile_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Mapping[str, str]:
        raise RuntimeError("memory unavailable")

    window = ContextWindow(clock=clock, profile=broken)
    with caplog.at_level(logging.WARNING, logger="aria.session.context"):
        messages, system = window.build(History([Message("user", "hi")]), SYSTEM)
    assert [m.content for m in messages] == ["hi"]
    assert system is not None
    assert "user:" not in system
    assert "memory unavailable" in caplog.text


@pytest.mark.parametrize("with_summarizer", [False, True])
async def test_every_history_length_stays_within_budget(with_summarizer: bool) -> None:
    summarizer = FakeLLM(FakeLLM.Config(replies=("Sam asked about foxes and dogs.",)))
    window = ContextWindow(
        context_tokens=2048,
        reserve_tokens=256,
        clock=clock,
        profile=lambda: {"name": "Sam"},
        summarizer=summarizer if with_summarizer else None,
        summarize_every=3,
    )
    history = History()
    for message in synthetic(300):
        history.append(message)
        messages, system = window.build(history, SYSTEM)
        check_window(history, messages, system, window)
        await asyncio.sleep(0)  # let a background summary run now and then
    await window.wait_summary()
    if with_summarizer:
        assert summarizer.calls > 5
        assert window.summary == "Sam asked about foxes and dogs."
        assert window.summarized_upto > 0
    else:
        assert window.summary is None
        assert window.summarized_upto == 0
    await window.aclose()


roles = st.sampled_from(["user", "user", "assistant", "assistant", "tool", "system"])


@settings(max_examples=150, deadline=None)
@given(
    spec=st.lists(st.tuples(roles, st.integers(0, 3000)), max_size=80),
    context=st.integers(256, 8192),
    reserve_share=st.floats(0.0, 0.5),
    min_recent=st.integers(1, 4),
    summary=st.one_of(st.none(), st.integers(1, 400)),
    profile_size=st.integers(0, 5),
)
def test_any_history_fits_any_budget(
    spec: list[tuple[str, int]],
    context: int,
    reserve_share: float,
    min_recent: int,
    summary: int | None,
    profile_size: int,
) -> None:
    rng = random.Random(len(spec))
    history = History([Message(role, text_of(rng, size), timestamp=i) for i, (role, size) in enumerate(spec)])  # type: ignore[arg-type]
    window = ContextWindow(
        context_tokens=context,
        reserve_tokens=int(context * reserve_share),
        min_recent_turns=min_recent,
        clock=clock,
        profile=lambda: {f"fact{i}": "some value" for i in range(profile_size)},
    )
    if summary is not None:
        window.restore(text_of(rng, summary), 0)
    messages, system = window.build(history, SYSTEM)
    check_window(history, messages, system, window)


def test_older_turns_are_trimmed_whole_without_a_summarizer() -> None:
    history = History()
    for turn in range(10):
        history.append(Message("user", f"question {turn} " + "word " * 40))
        history.append(Message("assistant", f"answer {turn} " + "word " * 40))
    window = ContextWindow(context_tokens=400, reserve_tokens=100, clock=clock)
    messages, _ = window.build(history, SYSTEM)
    assert messages[0].role == "user"
    assert messages[-1].content.startswith("answer 9")
    assert 2 <= len(messages) < 20
    assert len(messages) % 2 == 0


def test_a_huge_last_user_message_is_cut_from_its_start_with_a_marker() -> None:
    history = History(
        [
            Message("user", "earlier"),
            Message("assistant", "reply"),
            Message("user", "start " + "filler " * 3000 + "the actual question?"),
        ]
    )
    window = ContextWindow(context_tokens=1024, reserve_tokens=256, clock=clock)
    messages, system = window.build(history, SYSTEM)
    assert len(messages) == 1
    assert messages[0].content.startswith(TRUNCATION_MARKER)
    assert messages[0].content.endswith("filler the actual question?")
    total = request_tokens(messages, system)
    assert budget(window) - 10 <= total <= budget(window)  # cut to fill the room, no more


def test_a_system_prompt_too_long_for_the_context_is_logged_and_the_question_still_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = ContextWindow(context_tokens=512, reserve_tokens=128, clock=clock)
    history = History([Message("user", "word " * 100 + "the question?")])
    with caplog.at_level(logging.WARNING, logger="aria.session.context"):
        messages, system = window.build(history, "rule " * 500)
    assert system is not None
    assert system.startswith("rule rule")
    assert len(messages) == 1
    assert messages[0].content.startswith(TRUNCATION_MARKER)
    assert messages[0].content.endswith("the question?")
    assert "shorten the system prompt" in caplog.text


def test_recent_turns_take_priority_over_the_summary() -> None:
    history = History()
    for turn in range(2):
        history.append(Message("user", f"q{turn} " + "word " * 120))
        history.append(Message("assistant", f"a{turn} " + "word " * 120))
    window = ContextWindow(context_tokens=1100, reserve_tokens=256, clock=clock, min_recent_turns=2)
    window.restore("A long summary " + "fact " * 240, 0)
    messages, system = window.build(history, SYSTEM)
    assert system is not None
    assert SUMMARY_HEADER not in system  # it would have pushed out the previous turn
    assert len(messages) == 4
    window.min_recent_turns = 1
    messages, system = window.build(history, SYSTEM)
    assert system is not None
    assert SUMMARY_HEADER in system
    assert len(messages) == 2


def test_build_is_fast_for_a_200_turn_history() -> None:
    history = History(synthetic(200))
    window = ContextWindow(context_tokens=32768, reserve_tokens=1024, clock=clock, profile=lambda: {"a": "b"})
    window.build(history, SYSTEM)  # counts every message once
    timings = []
    for _ in range(50):
        start = time.perf_counter()
        messages, _ = window.build(history, SYSTEM)
        timings.append(time.perf_counter() - start)
    assert len(messages) > 50
    timings.sort()
    assert timings[len(timings) // 2] < 0.005, f"median build {timings[len(timings) // 2] * 1000:.2f} ms"


# -- the background summary ------------------------------------------------------------------------------


def chat(turns: int, words: int = 60) -> list[Message]:
    out: list[Message] = []
    for turn in range(turns):
        out.append(Message("user", f"question {turn} " + "word " * words))
        out.append(Message("assistant", f"answer {turn} " + "word " * words))
    return out


def summary_state(window: ContextWindow) -> tuple[str | None, int]:
    return window.summary, window.summarized_upto


def small_window(summarizer: FakeLLM, **kw: int) -> ContextWindow:
    return ContextWindow(
        context_tokens=kw.get("context_tokens", 600),
        reserve_tokens=100,
        summarizer=summarizer,
        summarize_every=kw.get("summarize_every", 2),
        clock=clock,
    )


async def test_the_summary_reaches_the_system_prompt_once_it_has_run() -> None:
    summarizer = FakeLLM(FakeLLM.Config(replies=("Sam asked ten questions.", "Sam asked more questions.")))
    window = small_window(summarizer)
    history = History(chat(10))
    messages, system = window.build(history, SYSTEM)
    assert window.summarizing
    assert system is not None
    assert SUMMARY_HEADER not in system
    first_kept = len(history) - len(messages)
    await asyncio.wait_for(window.summary_ready.wait(), 1)

    assert window.summary == "Sam asked ten questions."
    assert window.summarized_upto == first_kept  # everything that fell out
    request = summarizer.requests[0]
    assert request.max_tokens == window.summary_tokens
    prompt = request.messages[0].content
    assert "Previous summary:\n(none yet)" in prompt
    assert "User: question 0 word" in prompt
    assert f"Assistant: answer {first_kept // 2 - 1}" in prompt
    assert f"question {first_kept // 2} " not in prompt

    messages, system = window.build(history, SYSTEM)
    assert system is not None
    assert f"{SUMMARY_HEADER}Sam asked ten questions." in system
    check_window(history, messages, system, window)

    for message in chat(14)[20:]:  # four more turns push older ones out
        history.append(message)
        window.build(history, SYSTEM)
    await window.wait_summary()
    assert window.summary == "Sam asked more questions."
    assert "Previous summary:\nSam asked ten questions." in summarizer.requests[1].messages[0].content
    await window.aclose()


async def test_build_never_waits_for_the_summary() -> None:
    summarizer = FakeLLM(FakeLLM.Config(replies=("A summary.",), ttft_s=0.5))
    window = small_window(summarizer)
    history = History(chat(10))
    start = time.perf_counter()
    window.build(history, SYSTEM)
    _, system = window.build(history, SYSTEM)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05
    assert window.summarizing
    assert system is not None
    assert SUMMARY_HEADER not in system
    for message in chat(16)[20:]:  # more turns drop out while it runs: still one summary at a time
        history.append(message)
        window.build(history, SYSTEM)
        await asyncio.sleep(0.01)
    assert summarizer.calls == 1
    await window.wait_summary()
    assert time.perf_counter() - start >= 0.5
    assert window.summary == "A summary."
    _, system = window.build(history, SYSTEM)
    assert system is not None
    assert SUMMARY_HEADER in system
    assert window.summarizing  # the backlog that piled up meanwhile
    await window.wait_summary()
    assert summarizer.calls == 2
    await window.aclose()


async def test_a_failed_summary_keeps_the_previous_one_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    summarizer = FakeLLM(FakeLLM.Config(replies=("First summary.", "Second."), fault=Fault(calls=(2,))))
    window = small_window(summarizer)
    history = History(chat(10))
    window.build(history, SYSTEM)
    await window.wait_summary()
    assert window.summary == "First summary."
    covered = window.summarized_upto

    with caplog.at_level(logging.WARNING, logger="aria.session.context"):
        for message in chat(13)[20:]:
            history.append(message)
            window.build(history, SYSTEM)
        await window.wait_summary()
    assert summarizer.calls == 2
    assert window.summary == "First summary."
    assert window.summarized_upto == covered
    assert window.summary_failures == 1
    assert "keeping the previous summary" in caplog.text
    assert "injected failure" in caplog.text

    _, system = window.build(history, SYSTEM)
    assert system is not None
    assert f"{SUMMARY_HEADER}First summary." in system
    assert summarizer.calls == 2  # no retry until more turns fall out
    for message in chat(16)[26:]:
        history.append(message)
        window.build(history, SYSTEM)
    await window.wait_summary()
    assert summarizer.calls == 3
    assert window.summary == "Second."
    await window.aclose()


async def test_a_summary_that_times_out_counts_as_a_failure() -> None:
    summarizer = FakeLLM(FakeLLM.Config(fault=Fault(always=True, hang=True)))
    window = ContextWindow(
        context_tokens=600,
        reserve_tokens=100,
        summarizer=summarizer,
        summarize_every=2,
        summary_timeout_s=0.05,
    )
    window.build(History(chat(10)), SYSTEM)
    await window.wait_summary()
    assert window.summary_failures == 1
    assert window.summary is None


async def test_aclose_cancels_a_running_summary() -> None:
    summarizer = FakeLLM(FakeLLM.Config(fault=Fault(always=True, hang=True)))
    window = small_window(summarizer)
    history = History(chat(10))
    window.build(history, SYSTEM)
    await asyncio.sleep(0.01)
    assert window.summarizing
    await window.aclose()
    assert (window.summarizing, window.summary, window.summary_failures) == (False, None, 0)
    window.build(history, SYSTEM)  # still builds, starts nothing
    assert not window.summarizing


async def test_a_replaced_history_drops_the_summary() -> None:
    window = small_window(FakeLLM(FakeLLM.Config(replies=("About the old chat.",))))
    old = History(chat(10))
    window.build(old, SYSTEM)
    await window.wait_summary()
    assert window.summary == "About the old chat."
    new = History(chat(3))
    messages, system = window.build(new, SYSTEM)
    assert summary_state(window) == (None, 0)
    assert system is not None
    assert SUMMARY_HEADER not in system
    assert messages[-1] is new[-1]
    await window.aclose()


async def test_a_restored_summary_is_used_with_its_history() -> None:
    window = ContextWindow(context_tokens=600, reserve_tokens=100, clock=clock)
    history = History(chat(10))
    window.restore("Sam likes tea.", 12)
    messages, system = window.build(history, SYSTEM)
    assert system is not None
    assert f"{SUMMARY_HEADER}Sam likes tea." in system
    assert len(history) - len(messages) >= 12
    check_window(history, messages, system, window)
    window.restore("Everything so far.", len(history))  # covers it all: the last turn is still sent
    messages, _ = window.build(history, SYSTEM)
    assert messages[-2:] == tuple(history)[-2:]
    with pytest.raises(InvalidInput):
        window.restore(None, 3)


async def test_the_pipeline_sends_what_the_window_builds() -> None:
    window = ContextWindow(
        context_tokens=600, reserve_tokens=128, clock=clock, profile=lambda: {"name": "Sam"}
    )
    history = History(chat(20))
    config = PipelineConfig(system_prompt=SYSTEM, max_tokens=128, speak=False)
    async with TurnHarness.with_fakes(config=config, history=history) as h:
        h.pipeline.context = window
        h.pipeline.push_text("what is my name?")
        await h.wait_for(ResponseDone)
    llm = h.pipeline.llm
    assert isinstance(llm, FakeLLM)
    request: LLMRequest = llm.requests[-1]
    assert request.system_prompt is not None
    assert "- name: Sam" in request.system_prompt
    assert "Tuesday 14 May 2024, 15:42" in request.system_prompt
    assert request.messages[-1].content == "what is my name?"
    assert request_tokens(request.messages, request.system_prompt) <= 600 - 128
