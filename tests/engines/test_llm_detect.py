"""Finding a local language model server: real fake servers on random ports, and ports with nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from aria.engines.base import LLMRequest
from aria.engines.llm.detect import OPENAI_PORTS, detect_local_llm, pick_model
from aria.engines.llm.ollama import OllamaLLM
from aria.engines.llm.openai import OpenAILLM
from aria.types import Message
from tests.engines.llm_servers import OllamaServer, OpenAIServer, Script

HELLO = LLMRequest(messages=(Message("user", "hello"),))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (in the kernel's backlog) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


async def test_ollama_wins_over_openai_compatible_servers() -> None:
    with (
        OllamaServer(Script(models=["llama3.2:latest"])) as ollama,
        OpenAIServer(Script(models=["qwen"])) as openai,
    ):
        found = await detect_local_llm(ollama_ports=[ollama.port], openai_ports=[openai.port])
    assert found == ("ollama", {"base_url": ollama.root, "model": "llama3.2:latest"})


async def test_openai_compatible_servers_in_port_order() -> None:
    with OpenAIServer(Script(models=["a"])) as first, OpenAIServer(Script(models=["b"])) as second:
        nothing = free_port()
        found = await detect_local_llm(ollama_ports=[nothing], openai_ports=[second.port, first.port])
        assert found == ("openai", {"base_url": second.base_url, "model": "b"})
        found = await detect_local_llm(ollama_ports=[nothing], openai_ports=[first.port, second.port])
        assert found == ("openai", {"base_url": first.base_url, "model": "a"})
        assert [r.path for r in first.requests] == ["/v1/models", "/v1/models"]


async def test_servers_without_a_chat_model_are_passed_over() -> None:
    with (
        OllamaServer(Script(models=[])) as empty_ollama,
        OpenAIServer(Script(models=["nomic-embed-text"])) as embeddings_only,
        OpenAIServer(Script(models=["bge-m3", "mistral-7b"])) as chat,
    ):
        found = await detect_local_llm(
            ollama_ports=[empty_ollama.port], openai_ports=[embeddings_only.port, chat.port]
        )
    assert found == ("openai", {"base_url": chat.base_url, "model": "mistral-7b"})


async def test_a_server_of_the_wrong_kind_is_passed_over() -> None:
    # An Ollama server on an "OpenAI" port answers 404 at /v1/models, and the other way round.
    with OllamaServer() as ollama, OpenAIServer() as openai:
        found = await detect_local_llm(ollama_ports=[openai.port], openai_ports=[ollama.port])
    assert found is None


async def test_nothing_listening_is_none_quickly() -> None:
    began = time.monotonic()
    found = await detect_local_llm(ollama_ports=[free_port()], openai_ports=[free_port(), free_port()])
    assert found is None
    assert time.monotonic() - began < 1.0


async def test_a_server_that_never_answers_costs_only_the_timeout(silent_port: int) -> None:
    with OpenAIServer(Script(models=["m"])) as openai:
        began = time.monotonic()
        found = await detect_local_llm(
            0.3, ollama_ports=[silent_port], openai_ports=[silent_port, openai.port]
        )
        elapsed = time.monotonic() - began
    assert found == ("openai", {"base_url": openai.base_url, "model": "m"})
    assert 0.25 < elapsed < 1.2


async def test_the_answer_builds_a_working_engine() -> None:
    with OllamaServer(Script(models=["llama3.2:latest"], tokens=["Hi", "!"])) as ollama:
        found = await detect_local_llm(ollama_ports=[ollama.port], openai_ports=[])
        assert found is not None
        backend, options = found
        assert backend == "ollama"
        llm = OllamaLLM(OllamaLLM.Config.model_validate(options))
        try:
            assert await llm.complete(HELLO) == "Hi!"
        finally:
            await llm.aclose()
    with OpenAIServer(Script(models=["m"], tokens=["Yo"])) as openai:
        found = await detect_local_llm(ollama_ports=[], openai_ports=[openai.port])
        assert found is not None
        engine = OpenAILLM(OpenAILLM.Config.model_validate(found[1]))
        try:
            assert await engine.complete(HELLO) == "Yo"
        finally:
            await engine.aclose()


def test_defaults_and_pick_model() -> None:
    assert OPENAI_PORTS[:3] == (8080, 8000, 1234)
    assert pick_model(["all-minilm-embed", "llama3.2:latest"]) == "llama3.2:latest"
    assert pick_model(["nomic-embed-text:latest"]) is None
    assert pick_model([]) is None


def test_the_llm_modules_import_no_sdk() -> None:
    code = (
        "import sys\n"
        "import aria.engines.llm.openai, aria.engines.llm.ollama, aria.engines.llm.llamacpp\n"
        "import aria.engines.llm.detect, aria.engines.llm.messages\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'PIL', 'llama_cpp'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
