"""The pure chat side of ``llm:llamacpp``: the answer parser (tool calls, ``<think>``) on crafted text split
at every position, and prompts rendered from chat templates (needs jinja2, which llama-cpp-python brings)."""

from __future__ import annotations

import json

import pytest

from aria.engines.base import LLMChunk, LLMRequest
from aria.engines.llm.llamacpp_chat import (
    CHATML_TEMPLATE,
    NO_THINK,
    ReplyParser,
    render_prompt,
    template_messages,
    thinks,
    tool_instructions,
)
from aria.errors import EngineError
from aria.types import GeneratedToken, Message, ToolCall, ToolSpec

WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def parse(pieces: list[str], *, in_think: bool = False) -> tuple[str, list[ToolCall]]:
    parser = ReplyParser("llm:llamacpp", in_think=in_think)
    out: list[LLMChunk] = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    out.extend(parser.finish())
    text = "".join(item.text for item in out if isinstance(item, GeneratedToken))
    return text, [item for item in out if isinstance(item, ToolCall)]


def splits(text: str) -> list[list[str]]:
    """The text whole, one character at a time, and cut in two at every position."""
    return [[text], list(text)] + [[text[:i], text[i:]] for i in range(1, len(text))]


QWEN_CALL = (
    "Let me check.\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
)


@pytest.mark.parametrize("pieces", splits(QWEN_CALL))
def test_tool_calls_are_parsed_however_the_stream_is_cut(pieces: list[str]) -> None:
    text, calls = parse(pieces)
    assert text.strip() == "Let me check."
    assert [(c.id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_0", "get_weather", {"city": "Paris"}),
        ("call_1", "get_time", {}),
    ]


THOUGHT = "<think>\nThe user wants a greeting. <tool_call> is not needed.\n</think>\n\nHello there."


@pytest.mark.parametrize("pieces", splits(THOUGHT))
def test_thinking_is_never_spoken(pieces: list[str]) -> None:
    assert parse(pieces) == ("Hello there.", [])


def test_a_prompt_that_opened_the_think_block() -> None:
    assert parse(["reasoning...", "</think>", "\n\nYes."], in_think=True) == ("Yes.", [])


def test_text_that_only_looks_like_a_tag_is_spoken() -> None:
    assert parse(["1 <", " 2 and <t", "ag> <thin", "k-less"]) == ("1 < 2 and <tag> <think-less", [])


def test_plain_text_streams_at_once() -> None:
    parser = ReplyParser()
    assert [t.text for t in parser.feed("Hello")] == ["Hello"]
    assert [t.text for t in parser.feed(" <")] == [" "]  # "<" may open a tag: held back
    assert [t.text for t in parser.feed("3")] == ["<3"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<tool_call>{not json}</tool_call>", "not JSON"),
        ('<tool_call>{"arguments": {}}</tool_call>', "without a name"),
        ('<tool_call>{"name": "x", "argu', "middle of a tool call"),
    ],
)
def test_broken_tool_calls_are_errors(text: str, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        parse([text])


def test_thinks() -> None:
    assert thinks("{% if enable_thinking is defined and enable_thinking is false %}")
    assert thinks(CHATML_TEMPLATE, "Qwen3-4B-Instruct")
    assert thinks("", "qwen3 1.7b")
    assert not thinks(CHATML_TEMPLATE, "Qwen2.5-1.5B-Instruct")


def test_template_messages_add_no_think_and_decode_tool_arguments() -> None:
    request = LLMRequest(
        (
            Message("user", "weather?"),
            Message(
                "assistant", "", metadata={"tool_calls": [ToolCall("c1", "get_weather", '{"city": "Oslo"}')]}
            ),
            Message("tool", "sunny", metadata={"tool_call_id": "c1"}),
        ),
        system_prompt="Be brief.",
    )
    messages = template_messages(request, no_think=True)
    assert messages[0] == {"role": "system", "content": f"Be brief.\n\n{NO_THINK}"}
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}
    without_system = template_messages(LLMRequest((Message("user", "hi"),)), no_think=True)
    assert without_system[0] == {"role": "system", "content": NO_THINK}


def test_chatml_prompt_with_tools_and_history() -> None:
    pytest.importorskip("jinja2")
    request = LLMRequest(
        (
            Message("user", "weather in Oslo?"),
            Message(
                "assistant", "", metadata={"tool_calls": [ToolCall("c1", "get_weather", '{"city": "Oslo"}')]}
            ),
            Message("tool", "sunny", metadata={"tool_call_id": "c1"}),
        ),
        system_prompt="Be brief.",
        tools=(WEATHER,),
    )
    prompt = render_prompt(CHATML_TEMPLATE, template_messages(request), tools=request.tools)
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert '"name": "get_weather"' in prompt
    assert prompt.endswith(
        "<|im_start|>user\nweather in Oslo?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
        "</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = render_prompt(CHATML_TEMPLATE, template_messages(LLMRequest((Message("user", "hi"),))))
    assert plain == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_a_template_that_fails_is_an_engine_error() -> None:
    pytest.importorskip("jinja2")
    with pytest.raises(EngineError, match="chat template failed: no tools here"):
        render_prompt("{{ raise_exception('no tools here') }}", [])


def test_tool_instructions_list_the_tools() -> None:
    text = tool_instructions([WEATHER])
    assert "<tools>" in text
    assert json.loads(text.split("<tools>\n")[1].split("\n</tools>")[0])["function"]["name"] == "get_weather"
