"""The built-in rule-based responder: answers, streaming, stop sequences and token limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from aria.engines.base import LLM, LLMRequest
from aria.engines.llm.builtin import NO_MODEL_MESSAGE, BuiltinLLM
from aria.types import GeneratedToken, Message

FIXED = datetime(2024, 3, 5, 15, 7, 30)  # a Tuesday afternoon


def ask(text: str, *, stop: tuple[str, ...] = (), max_tokens: int = 512) -> LLMRequest:
    return LLMRequest(messages=(Message("user", text),), stop=stop, max_tokens=max_tokens)


@pytest.fixture
def llm() -> BuiltinLLM:
    return BuiltinLLM(clock=lambda: FIXED)


async def tokens_of(llm: BuiltinLLM, request: LLMRequest) -> list[GeneratedToken]:
    return [token async for token in llm.stream(request)]


def test_implements_the_llm_protocol(llm: BuiltinLLM) -> None:
    assert isinstance(llm, LLM)
    assert llm.kind == "llm"
    assert llm.name == "builtin"
    assert llm.capabilities.streaming
    assert llm.capabilities.local


async def test_lifecycle_and_health(llm: BuiltinLLM) -> None:
    await llm.start()
    health = await llm.health()
    assert health.ok
    await llm.aclose()


@pytest.mark.parametrize("text", ["hello", "Hi!", "hey there", "HELLO, Aria.", "hiya"])
async def test_greetings(llm: BuiltinLLM, text: str) -> None:
    assert await llm.complete(ask(text)) == "Hello, I'm Aria. How can I help you?"


async def test_daytime_greeting_is_echoed(llm: BuiltinLLM) -> None:
    assert (await llm.complete(ask("Good morning!"))).startswith("Good morning, I'm Aria.")


async def test_assistant_name_is_configurable() -> None:
    llm = BuiltinLLM(BuiltinLLM.Config(assistant_name="Nova"), clock=lambda: FIXED)
    assert "I'm Nova" in await llm.complete(ask("who are you?"))


@pytest.mark.parametrize("text", ["What time is it?", "what's the time", "WHAT TIME IS IT???", "time now"])
async def test_time(llm: BuiltinLLM, text: str) -> None:
    assert await llm.complete(ask(text)) == "It is 3:07 PM."


@pytest.mark.parametrize(
    ("hour", "minute", "spoken"),
    [(0, 5, "12:05 AM"), (9, 30, "9:30 AM"), (12, 0, "12:00 PM"), (23, 59, "11:59 PM")],
)
async def test_time_uses_twelve_hour_clock(hour: int, minute: int, spoken: str) -> None:
    llm = BuiltinLLM(clock=lambda: datetime(2024, 1, 1, hour, minute))
    assert await llm.complete(ask("what time is it")) == f"It is {spoken}."


async def test_time_zone_converts_an_aware_clock() -> None:
    clock = lambda: datetime(2024, 3, 5, 23, 30, tzinfo=UTC)  # noqa: E731
    llm = BuiltinLLM(BuiltinLLM.Config(tz="Asia/Tokyo"), clock=clock)
    assert await llm.complete(ask("what time is it")) == "It is 8:30 AM."
    assert await llm.complete(ask("what's the date")) == "Today is Wednesday, March 6, 2024."


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ValidationError, match="IANA"):
        BuiltinLLM.Config(tz="Mars/Olympus")


@pytest.mark.parametrize("text", ["What's the date today?", "what day is it", "Which day of the week is it?"])
async def test_date(llm: BuiltinLLM, text: str) -> None:
    assert await llm.complete(ask(text)) == "Today is Tuesday, March 5, 2024."


async def test_identity_and_help(llm: BuiltinLLM) -> None:
    identity = await llm.complete(ask("Who are you?"))
    assert identity.startswith("I'm Aria")
    assert "no language model" in identity
    help_text = await llm.complete(ask("What can you do?"))
    assert "time" in help_text
    assert "arithmetic" in help_text
    assert "aria doctor" not in help_text
    assert await llm.complete(ask("help")) == help_text


async def test_thanks_and_goodbye(llm: BuiltinLLM) -> None:
    assert await llm.complete(ask("Thanks a lot!")) == "You're welcome."
    assert await llm.complete(ask("thank you")) == "You're welcome."
    assert await llm.complete(ask("Bye!")) == "Goodbye, talk to you soon."
    assert await llm.complete(ask("good night")) == "Goodbye, talk to you soon."


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("what is 12 times 7", "12 times 7 is 84."),
        ("2 + 3", "2 plus 3 is 5."),
        ("What's 10 divided by 4?", "10 divided by 4 is 2.5."),
        ("what is 9 minus 12?", "9 minus 12 is minus 3."),
        ("6 multiplied by 7", "6 times 7 is 42."),
        ("2 + 3 * 4", "2 plus 3 times 4 is 14."),
        ("10 / 3", "10 divided by 3 is about 3.333."),
        ("0.1 + 0.2", "0.1 plus 0.2 is 0.3."),
        ("what is twelve times seven", "12 times 7 is 84."),
        ("twenty-one plus 3", "21 plus 3 is 24."),
        ("1,000 * 3", "1000 times 3 is 3000."),
        ("3 x 4", "3 times 4 is 12."),
        ("-3 + 5", "minus 3 plus 5 is 2."),
        ("what is 7 divided by 0", "I can't divide by zero."),
    ],
)
async def test_arithmetic(llm: BuiltinLLM, text: str, answer: str) -> None:
    assert await llm.complete(ask(text)) == answer


async def test_arithmetic_is_never_evaluated_as_python(llm: BuiltinLLM) -> None:
    answer = await llm.complete(ask("__import__('os').system('true') + 1"))
    assert answer == NO_MODEL_MESSAGE


async def test_a_date_is_not_a_subtraction(llm: BuiltinLLM) -> None:
    assert await llm.complete(ask("what happened on 2024-03-05")) == NO_MODEL_MESSAGE


@pytest.mark.parametrize(
    "text",
    [
        "Tell me a joke.",
        "Summarise the news",
        "what is 5",
        "Tell me about the Eiffel Tower",
        "Write me a short poem",
        "Explain how a rainbow forms",
    ],
)
async def test_fallback_says_briefly_that_no_model_is_available(llm: BuiltinLLM, text: str) -> None:
    # Spoken aloud: one short sentence, no settings, variable names, commands or URLs (the page shows those).
    answer = await llm.complete(ask(text))
    assert answer == NO_MODEL_MESSAGE
    assert "no language model is available" in answer
    assert answer.count(".") == 1
    assert len(answer.split()) <= 12
    for word in ("ARIA_", "http", "backend", "ollama", "aria doctor", "="):
        assert word.lower() not in answer.lower()


@pytest.mark.parametrize("text", ["Who are you?", "What can you do?", "help"])
async def test_no_answer_names_configuration(llm: BuiltinLLM, text: str) -> None:
    answer = await llm.complete(ask(text))
    for word in ("ARIA_", "http", "backend", "ollama", "aria doctor"):
        assert word.lower() not in answer.lower()


async def test_answers_the_last_user_message(llm: BuiltinLLM) -> None:
    request = LLMRequest(
        messages=(
            Message("user", "hello"),
            Message("assistant", "Hello, I'm Aria. How can I help you?"),
            Message("user", "what is 2 plus 2"),
            Message("assistant", "2 plus 2 is 4."),
        )
    )
    assert await llm.complete(request) == "2 plus 2 is 4."


async def test_no_user_message_gets_a_greeting(llm: BuiltinLLM) -> None:
    request = LLMRequest(messages=(Message("system", "be brief"),))
    assert (await llm.complete(request)).startswith("Hello")


@pytest.mark.parametrize("text", ["hello", "what time is it", "2 + 2", "who are you", "tell me a joke"])
async def test_answers_are_speakable_sentences(llm: BuiltinLLM, text: str) -> None:
    answer = await llm.complete(ask(text))
    assert answer[0].isupper() or answer[0].isdigit()
    assert answer[-1] in ".!?"


async def test_tokens_are_words_with_leading_space(llm: BuiltinLLM) -> None:
    request = ask("what is 12 times 7")
    tokens = await tokens_of(llm, request)
    assert [t.text for t in tokens] == ["12", " times", " 7", " is", " 84."]
    assert "".join(t.text for t in tokens) == await llm.complete(request)


@pytest.mark.parametrize("text", ["hello", "tell me a joke", "what day is it"])
async def test_tokens_concatenate_to_complete(llm: BuiltinLLM, text: str) -> None:
    tokens = await tokens_of(llm, ask(text))
    assert len(tokens) > 1
    assert all(t.text.startswith(" ") for t in tokens[1:])
    assert "".join(t.text for t in tokens) == await llm.complete(ask(text))


async def test_stop_sequence_ends_before_it(llm: BuiltinLLM) -> None:
    assert await llm.complete(ask("tell me a joke", stop=("language",))) == "Sorry, I can't answer that: no"
    # The earliest of several stop sequences wins, even inside a word.
    assert await llm.complete(ask("what time is it", stop=("PM", ":"))) == "It is 3"
    assert await llm.complete(ask("hello", stop=("zebra",))) == "Hello, I'm Aria. How can I help you?"


async def test_stop_sequence_at_the_start_yields_nothing(llm: BuiltinLLM) -> None:
    assert await tokens_of(llm, ask("what time is it", stop=("It",))) == []


async def test_max_tokens_counts_word_tokens(llm: BuiltinLLM) -> None:
    tokens = await tokens_of(llm, ask("tell me a joke", max_tokens=4))
    assert [t.text for t in tokens] == ["Sorry,", " I", " can't", " answer"]
    assert await llm.complete(ask("tell me a joke", max_tokens=0)) == ""


async def test_deterministic(llm: BuiltinLLM) -> None:
    first = await llm.complete(ask("what's the time?"))
    assert all([await llm.complete(ask("what's the time?")) == first for _ in range(3)])
