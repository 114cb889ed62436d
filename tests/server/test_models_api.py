"""The model picker's REST side on a live server: ``GET /models/llm`` lists Ollama's pulled models (a real
HTTP server speaking Ollama's API), the GGUF files in the models folder and the configured model, the
current one marked; ``POST /models/llm`` switches what answers new turns, on connections already open too;
an unknown name and a model that fails to load are refused with the reason while the old model answers."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aria.testing.gguf import write_tiny_gguf
from tests.engines.llm_servers import OllamaServer, Script
from tests.server.conftest import Client, LiveServer, connect

FAKE_REPLY = "Sure, here is the answer. It has two sentences."


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaServer]:
    with OllamaServer(
        Script(tokens=["Bonjour", " from", " Ollama", "."], models=["tiny-chat", "big:7b"])
    ) as s:
        monkeypatch.setenv("OLLAMA_HOST", s.base_url)
        yield s


@pytest.fixture
def ggufs(tmp_path: Path) -> Path:
    """The models folder of the live server (its data_dir is tmp_path): a broken GGUF and, when
    llama-cpp-python is here, a tiny real one."""
    folder = tmp_path / "models" / "llm"
    folder.mkdir(parents=True)
    (folder / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # the magic, then nothing llama.cpp can load
    (folder / "mmproj-tiny.gguf").write_bytes(b"GGUF")  # a projector: not a model of its own
    write_tiny_gguf(folder / "tiny.gguf")
    return folder


async def turn(client: Client, text: str) -> tuple[str, dict[str, Any]]:
    await client.send({"type": "text", "text": text})
    done = await client.until("response_done", within=20)
    metrics = await client.until("metrics", within=20)
    return str(done.get("text", "")), metrics


async def models(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/models/llm")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_lists_ollama_ggufs_and_the_configured_model_with_the_current_marked(
    live: LiveServer, ollama: OllamaServer, ggufs: Path
) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        listed = await models(http)
    names = [m["name"] for m in listed["models"]]
    assert names == [
        "configured",
        "ollama:tiny-chat",
        "ollama:big:7b",
        "gguf:llm/broken.gguf",
        "gguf:llm/tiny.gguf",
        "builtin",
    ]
    assert listed["current"] == "configured"
    assert [m["name"] for m in listed["models"] if m["current"]] == ["configured"]
    assert listed["serving"] == "fake"
    assert listed["sources"]["ollama"] == {"url": ollama.base_url, "error": None}
    by_name = {m["name"]: m for m in listed["models"]}
    assert by_name["gguf:llm/tiny.gguf"]["size"] == (ggufs / "tiny.gguf").stat().st_size
    assert by_name["ollama:tiny-chat"]["label"] == "tiny-chat (Ollama)"


async def test_without_ollama_the_list_says_why(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, ggufs: Path
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nothing listens on the discard port
    async with httpx.AsyncClient(base_url=live.url) as http:
        listed = await models(http)
    assert "not reachable at http://127.0.0.1:9" in listed["sources"]["ollama"]["error"]
    assert not any(m["name"].startswith("ollama:") for m in listed["models"])
    assert "gguf:llm/tiny.gguf" in [m["name"] for m in listed["models"]]


async def test_switching_to_ollama_answers_new_turns_on_open_connections_and_back(
    live: LiveServer, ollama: OllamaServer, ggufs: Path
) -> None:
    ws, client = await connect(live)
    async with ws, httpx.AsyncClient(base_url=live.url, timeout=20) as http:
        text, metrics = await turn(client, "hello")
        assert text == FAKE_REPLY
        assert metrics["extra"]["model"] == "fake"

        switched = await http.post("/models/llm", json={"name": "ollama:tiny-chat"})
        assert switched.status_code == 200, switched.text
        assert switched.json() == {
            "current": "ollama:tiny-chat",
            "label": "tiny-chat (Ollama)",
            "model": "tiny-chat",
            "serving": "ollama",
        }
        listed = await models(http)
        assert listed["current"] == "ollama:tiny-chat"
        assert [m["name"] for m in listed["models"] if m["current"]] == ["ollama:tiny-chat"]
        assert listed["switched_at"] is not None
        health = (await http.get("/health")).json()
        assert health["engines"]["llm"]["name"] == "ollama"

        current = (await http.get("/models/llm/current")).json()
        assert current["current"] == "ollama:tiny-chat"
        assert current["model"] == "tiny-chat"
        assert current["serving"] == "ollama"
        assert current["switched_at"] == listed["switched_at"]
        text, metrics = await turn(client, "and now?")
        assert text == "Bonjour from Ollama."
        assert metrics["extra"]["model"] == "ollama (tiny-chat)"
        assert {r.body["model"] for r in ollama.chat_requests()} == {"tiny-chat"}

        back = await http.post("/models/llm", json={"name": "configured"})
        assert back.status_code == 200, back.text
        text, _ = await turn(client, "once more")
        assert text == FAKE_REPLY
        assert (await models(http))["current"] == "configured"


async def test_unknown_and_failing_models_are_refused_and_the_old_one_answers(
    live: LiveServer, ollama: OllamaServer, ggufs: Path
) -> None:
    ws, client = await connect(live)
    async with ws, httpx.AsyncClient(base_url=live.url, timeout=20) as http:
        unknown = await http.post("/models/llm", json={"name": "ollama:nope"})
        assert unknown.status_code == 400
        assert unknown.json()["code"] == "unknown_model"
        assert "ollama:tiny-chat" in unknown.json()["message"]
        empty = await http.post("/models/llm", json={"title": "x"})
        assert empty.status_code == 400
        assert empty.json()["code"] == "invalid_message"

        broken = await http.post("/models/llm", json={"name": "gguf:llm/broken.gguf"})
        assert broken.status_code == 422, broken.text
        error = broken.json()
        assert error["code"] == "model_failed"
        assert error["serving"] == "fake"
        assert "broken (GGUF) could not start, so fake still answers" in error["message"]
        assert (await models(http))["current"] == "configured"
        assert (await http.get("/models/llm/current")).json()["switched_at"] is None  # nothing changed
        assert (await http.get("/health")).json()["engines"]["llm"]["state"] == "ready"
        text, metrics = await turn(client, "still there?")
        assert text == FAKE_REPLY
        assert metrics["extra"]["model"] == "fake"


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
@pytest.mark.parametrize("server_overrides", [{"llm.max_tokens": 12}])  # random weights: keep it short
async def test_switching_to_a_gguf_runs_it_in_process(
    live: LiveServer, ollama: OllamaServer, ggufs: Path
) -> None:
    ws, client = await connect(live)
    async with ws, httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        switched = await http.post("/models/llm", json={"name": "gguf:llm/tiny.gguf"})
        assert switched.status_code == 200, switched.text
        assert switched.json()["serving"] == "llamacpp"
        _, metrics = await turn(client, "hello tiny model")
        assert metrics["extra"]["model"] == "llamacpp"
        assert live.runtime.engine_states()["llm"]["name"] == "llamacpp"


def test_a_vision_catalog_gguf_with_its_projector_is_offered_as_seeing(tmp_path: Path) -> None:
    from aria.engines.catalog import find_entry
    from aria.server.models_api import _ggufs

    entry = find_entry("qwen2.5-vl-3b")
    for file in entry.files:  # stand-ins at the catalog's paths (only the paths matter here)
        file.local_path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
        file.local_path(tmp_path).write_bytes(b"GGUF")
    (choice,) = _ggufs(tmp_path)
    assert choice.name == f"gguf:{entry.location}"
    assert choice.label == "qwen2.5-vl-3b (GGUF)"
    assert choice.vision
    assert choice.options["vision_handler"] == "qwen2.5-vl"
    projector = next(f for f in entry.files if "mmproj" in f.path)
    assert choice.options["clip_model_path"] == str(projector.local_path(tmp_path))
    projector.local_path(tmp_path).unlink()  # without its projector it is offered as a text model
    (choice,) = _ggufs(tmp_path)
    assert not choice.vision
    assert "clip_model_path" not in choice.options
