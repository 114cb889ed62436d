"""The pipeline runs the tools the model calls, reports each result and lets the model continue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aria.pipeline.outputs import ResponseDone, TextOut, ToolResultOut
from aria.pipeline.voice import PipelineConfig, VoicePipeline
from aria.testing import FakeLLM, TurnHarness
from aria.types import ToolCall, ToolSpec


@dataclass
class Outcome:
    ok: bool
    content: str
    data: Any = None


class AddTool:
    def __init__(self) -> None:
        self.calls: list[tuple[ToolCall, str]] = []

    def specs(self) -> tuple[ToolSpec, ...]:
        schema = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}
        return (ToolSpec("add", "Add two numbers", schema),)

    async def run_tool(self, call: ToolCall, turn_id: str) -> Outcome:
        self.calls.append((call, turn_id))
        args = json.loads(call.arguments)
        total = args["a"] + args["b"]
        return Outcome(True, str(total), {"sum": total})


async def test_tool_call_result_is_reported_and_fed_back() -> None:
    llm = FakeLLM(FakeLLM.Config(replies=('TOOL:add:{"a": 2, "b": 3}', "Two plus three is 5.")))
    tools = AddTool()
    pipeline = VoicePipeline(llm=llm, config=PipelineConfig(speak=False))
    pipeline.tools = tools
    async with TurnHarness(pipeline) as h:
        turn = pipeline.push_text("what is 2 plus 3?")
        done = await h.wait_for(ResponseDone)
        assert done.text == "Two plus three is 5."
        results = h.outputs(ToolResultOut, turn.id)
        assert [(r.tool, r.ok, r.content, r.data) for r in results] == [("add", True, "5", {"sum": 5})]
        kinds = h.kinds(turn.id)
        assert kinds.index("ToolResultOut") < kinds.index("TextOut")
        assert tools.calls[0][1] == turn.id
        # The first request offered the tool; the second carried the call and its result back.
        assert [t.name for t in llm.requests[0].tools] == ["add"]
        second = llm.requests[1].messages
        assert second[-2].role == "assistant"
        assert second[-2].metadata["tool_calls"][0].name == "add"
        assert (second[-1].role, second[-1].content, second[-1].metadata["tool_call_id"]) == (
            "tool",
            "5",
            "call_1",
        )
        assert h.texts(turn.id) == "Two plus three is 5."


async def test_tool_rounds_are_bounded() -> None:
    llm = FakeLLM(FakeLLM.Config(replies=('TOOL:add:{"a": 1, "b": 1}',)))  # the model never stops calling
    tools = AddTool()
    pipeline = VoicePipeline(llm=llm, config=PipelineConfig(speak=False))
    pipeline.tools = tools
    async with TurnHarness(pipeline) as h:
        pipeline.push_text("loop")
        done = await h.wait_for(ResponseDone)
        assert done.error is None
        assert len(tools.calls) == 4  # MAX_TOOL_ROUNDS rounds; the last call's result would go unseen
        assert h.outputs(TextOut) == []
