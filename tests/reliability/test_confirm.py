"""A tool flagged ``confirm`` (the shell) runs only after the person's ``confirm_action`` on the same
connection: never after a refusal, a timeout, an interruption or a disconnect, never for another id or
another connection's answer. Checked by what the command would leave behind: a file."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from aria.server import ws as ws_module
from aria.tools.runner import ToolRunner
from tests.reliability.live import ServerThread, SyncClient


def tool_server(tmp_path: Path, marker: Path) -> ServerThread:
    call = "TOOL:shell:" + json.dumps({"command": f"touch {marker}"})
    return ServerThread(
        tmp_path / "data",
        {
            "llm.tools": ["shell"],
            "llm.options": {"replies": [call, "Done."]},
            "tts.options": {"ms_per_char": 1.0},
        },
    )


def ask(client: SyncClient) -> dict[str, Any]:
    client.send_json({"type": "text", "text": "make the file"})
    signal, _ = client.until("control_signal")
    assert signal["signal"] == "confirm_action"
    assert signal["payload"]["tool"] == "shell"
    return signal


def test_a_confirmed_tool_runs(tmp_path: Path) -> None:
    """The control: with the person's yes, the command runs."""
    marker = tmp_path / "ran"
    with tool_server(tmp_path, marker) as live, SyncClient(live) as client:
        signal = ask(client)
        assert not marker.exists()
        client.send_json({"type": "control", "action": "confirm_action", "id": signal["id"], "accept": True})
        result, _ = client.until("tool_result")
        client.until("response_done")
        assert result["ok"] is True
        assert marker.exists()


def test_a_refused_tool_never_runs_and_a_late_yes_changes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with tool_server(tmp_path, marker) as live, SyncClient(live) as client:
        signal = ask(client)
        client.send_json({"type": "control", "action": "confirm_action", "id": signal["id"], "accept": False})
        result, _ = client.until("tool_result")
        client.until("response_done")
        assert result["ok"] is False
        client.send_json({"type": "control", "action": "confirm_action", "id": signal["id"], "accept": True})
        error, _ = client.until("error")
        assert error["code"] == "unknown_action"
        client.ping()
    assert not marker.exists()


def test_no_other_id_and_no_other_connection_can_confirm(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with tool_server(tmp_path, marker) as live, SyncClient(live) as client:
        signal = ask(client)
        with SyncClient(live) as intruder:  # another session
            intruder.send_json(
                {"type": "control", "action": "confirm_action", "id": signal["id"], "accept": True}
            )
            error, _ = intruder.until("error")
            assert error["code"] == "unknown_action"
        client.send_json(
            {"type": "control", "action": "confirm_action", "id": "confirm_other", "accept": True}
        )
        error, _ = client.until("error")
        assert error["code"] == "unknown_action"
        assert not marker.exists()
        # The same session opened again (with its key) takes it over: the first connection is closed,
        # its pending confirmation dropped, and the new one cannot confirm it either.
        with SyncClient(live, f"?session_id={client.session['session_id']}") as same_session:
            same_session.send_json(
                {"type": "control", "action": "confirm_action", "id": signal["id"], "accept": True}
            )
            error, _ = same_session.until("error")
            assert error["code"] == "unknown_action"
        live.quiet()  # every connection closed and its tasks done: nothing is left that could still run it
        assert not marker.exists()


def test_a_tool_waiting_for_confirmation_never_runs_after_a_disconnect(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with tool_server(tmp_path, marker) as live:
        with SyncClient(live) as client:
            ask(client)
        live.quiet()
        with SyncClient(live, f"?session_id={client.session['session_id']}") as again:
            again.ping()
        live.quiet()  # every connection closed and its tasks done: nothing is left that could still run it
        assert not marker.exists()


def test_a_confirmation_that_times_out_means_no(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_module, "ToolRunner", functools.partial(ToolRunner, confirm_timeout_s=0.3))
    marker = tmp_path / "ran"
    with tool_server(tmp_path, marker) as live, SyncClient(live) as client:
        signal = ask(client)
        result, _ = client.until("tool_result")
        assert result["ok"] is False
        assert "not confirmed" in json.dumps(result["result"])
        client.until("response_done")
        client.send_json({"type": "control", "action": "confirm_action", "id": signal["id"], "accept": True})
        error, _ = client.until("error")
        assert error["code"] == "unknown_action"
    assert not marker.exists()
