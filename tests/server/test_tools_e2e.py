"""Tool calling end to end: a real OpenAI-compatible streaming server on 127.0.0.1 asks for a tool, the
server runs it (with the person's confirmation where the tool needs it), and the model answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.engines.llm_servers import OpenAIServer, Script
from tests.server.conftest import connect, start_server


class TwoStepServer(OpenAIServer):
    """First request: the model calls a tool. Later requests: it answers with text."""

    def __init__(self, first: Script, then: Script) -> None:
        super().__init__(first)
        self.scripts = (first, then)

    def route(self, handler: Any, path: str, body: Any) -> None:
        if handler.command == "POST":
            self.script = self.scripts[0 if len(self.chat_requests()) <= 1 else 1]
        super().route(handler, path, body)


def llm_overrides(server: OpenAIServer, tools: list[str]) -> dict[str, Any]:
    return {
        "llm.backend": "openai",
        "llm.options": {"base_url": server.base_url, "model": "tiny-chat"},
        "llm.tools": tools,
        "tts.options": {"ms_per_char": 1.0},
    }


async def test_calculator_tool_runs_and_the_answer_uses_it(tmp_path: Path) -> None:
    first = Script(tokens=[], tool_calls=[("calculator", json.dumps({"expression": "6 * 7"}))])
    then = Script(tokens=["The", " answer", " is", " 42", "."])
    with TwoStepServer(first, then) as llm:
        info, server, task = await start_server(tmp_path, llm_overrides(llm, ["calculator"]))
        try:
            ws, client = await connect(info)
            async with ws:
                await client.send({"type": "text", "text": "what is six times seven?"})
                result = await client.until("tool_result")
                done = await client.until("response_done")
            assert result["tool"] == "calculator"
            assert result["ok"] is True
            assert "42" in json.dumps(result["result"])
            assert done["text"] == "The answer is 42."
            # The first request offered the tools; the second carried the call and its result back.
            bodies = [r.body for r in llm.chat_requests()]
            assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["calculator"]
            roles = [m["role"] for m in bodies[1]["messages"]]
            assert roles[-2:] == ["assistant", "tool"]
            assert "42" in bodies[1]["messages"][-1]["content"]
        finally:
            server.should_exit = True
            await task


@pytest.mark.parametrize("accept", [True, False])
async def test_a_confirm_tool_runs_only_after_confirm_action(tmp_path: Path, accept: bool) -> None:
    first = Script(tokens=[], tool_calls=[("shell", json.dumps({"command": "echo confirmed-run"}))])
    then = Script(tokens=["Done", "."])
    with TwoStepServer(first, then) as llm:
        info, server, task = await start_server(tmp_path, llm_overrides(llm, ["shell"]))
        try:
            ws, client = await connect(info)
            async with ws:
                await client.send({"type": "text", "text": "run echo"})
                signal = await client.until("control_signal")
                assert signal["signal"] == "confirm_action"
                assert signal["payload"]["tool"] == "shell"
                assert "echo confirmed-run" in signal["payload"]["prompt"]
                await client.send(
                    {"type": "control", "action": "confirm_action", "id": signal["id"], "accept": accept}
                )
                result = await client.until("tool_result")
                await client.until("response_done")
            assert result["ok"] is accept
            tool_message = llm.chat_requests()[1].body["messages"][-1]["content"]
            if accept:
                assert "confirmed-run" in tool_message
            else:
                assert "not confirmed" in tool_message
        finally:
            server.should_exit = True
            await task
