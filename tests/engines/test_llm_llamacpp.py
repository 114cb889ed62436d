"""``llm:llamacpp`` without llama-cpp-python (it is not installed here: it compiles for minutes): the
checks and errors that say what is missing, and the worker thread that bridges llama.cpp's blocking
generator to the event loop, driven by real blocking iterators."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aria.core.aio import closing_stream
from aria.engines.base import LLM, LLMRequest
from aria.engines.llm.llamacpp import INSTALL_FIX, LlamaCppLLM, ThreadWorker
from aria.engines.models import models_dir
from aria.engines.registry import EngineRegistry
from aria.errors import EngineError, EngineUnavailable
from aria.types import ImageFrame, Message

NOT_INSTALLED = "llama-cpp-python is not installed; pip install 'aria-assistant[llamacpp]'"
without_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is not None, reason="llama-cpp-python is installed here"
)


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def test_implements_the_llm_protocol() -> None:
    llm = LlamaCppLLM()
    assert isinstance(llm, LLM)
    assert (llm.kind, llm.name) == ("llm", "llamacpp")
    assert not llm.capabilities.vision
    assert LlamaCppLLM(LlamaCppLLM.Config(clip_model_path=Path("mmproj.gguf"))).capabilities.vision


@without_llama_cpp
def test_check_says_the_package_is_missing(gguf: Path) -> None:
    availability = LlamaCppLLM.check(LlamaCppLLM.Config(model_path=gguf))
    assert not availability.available
    assert availability.reason == NOT_INSTALLED
    assert availability.fix == INSTALL_FIX


@without_llama_cpp
def test_check_reports_every_problem(tmp_path: Path) -> None:
    no_model = LlamaCppLLM.check(LlamaCppLLM.Config())
    assert no_model.reason == f"{NOT_INSTALLED}; no model_path is configured"
    assert "set llm.options.model_path" in no_model.fix
    not_gguf = tmp_path / "model.bin"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    assert (
        f"{not_gguf} is not a GGUF file" in LlamaCppLLM.check(LlamaCppLLM.Config(model_path=not_gguf)).reason
    )
    missing = LlamaCppLLM.check(
        LlamaCppLLM.Config(model_path=tmp_path / "absent.gguf", clip_model_path=not_gguf)
    )
    assert f"model_path {tmp_path / 'absent.gguf'} not found" in missing.reason


@without_llama_cpp
def test_relative_paths_are_looked_up_in_the_models_folder(tmp_path: Path) -> None:
    folder = models_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "tiny.gguf").write_bytes(b"GGUF" + bytes(12))
    assert (
        LlamaCppLLM.check(LlamaCppLLM.Config(model_path=Path("tiny.gguf"), data_dir=tmp_path)).reason
        == NOT_INSTALLED
    )
    absent = LlamaCppLLM.check(LlamaCppLLM.Config(model_path=Path("other.gguf"), data_dir=tmp_path))
    assert str(folder / "other.gguf") in absent.reason


@without_llama_cpp
async def test_start_and_stream_fail_with_the_fix(gguf: Path) -> None:
    llm = LlamaCppLLM(LlamaCppLLM.Config(model_path=gguf))
    with pytest.raises(EngineUnavailable, match="pip install 'aria-assistant"):
        await llm.start()
    with pytest.raises(EngineUnavailable, match="llama-cpp-python is not installed"):
        await llm.complete(LLMRequest(messages=(Message("user", "hi"),)))
    assert not (await llm.health()).ok
    await llm.aclose()
    with pytest.raises(EngineUnavailable) as caught:
        await LlamaCppLLM().start()
    assert "no model_path is configured (set llm.options.model_path to a GGUF file)" in str(caught.value)


@without_llama_cpp
def test_registry_availability(gguf: Path) -> None:
    registry = EngineRegistry(discover=False)
    availability = registry.availability("llm:llamacpp", {"model_path": str(gguf)})
    assert availability.reason == NOT_INSTALLED


async def test_images_need_a_vision_projector() -> None:
    image = ImageFrame(bytes.fromhex("ffd8ffe000104a464946"), format="JPEG")
    llm = LlamaCppLLM()
    with pytest.raises(EngineError, match="clip_model_path") as caught:
        await llm.complete(LLMRequest(messages=(Message("user", "what is it?", images=(image,)),)))
    assert not caught.value.retryable


# -- the worker thread --------------------------------------------------------------------------------


class Counting:
    """A blocking iterator (like llama.cpp's generator) that records how far it got and whether it
    was closed, and on which thread it ran."""

    def __init__(self, count: int, delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.count, self.delay_s, self.fail_at = count, delay_s, fail_at
        self.produced = 0
        self.closed = threading.Event()
        self.thread: str | None = None

    def __call__(self) -> Iterator[int]:
        self.thread = threading.current_thread().name
        try:
            for index in range(self.count):
                if index == self.fail_at:
                    raise ValueError(f"failed at {index}")
                if self.delay_s:
                    time.sleep(self.delay_s)
                self.produced += 1
                yield index
        finally:
            self.closed.set()


async def test_worker_streams_in_order_on_its_own_thread() -> None:
    worker = ThreadWorker("test-worker")
    source = Counting(50)
    try:
        items = [item async for item in worker.iterate(source)]
    finally:
        await worker.aclose()
    assert items == list(range(50))
    assert source.thread is not None
    assert source.thread.startswith("test-worker")
    assert source.thread != threading.current_thread().name


async def test_worker_hands_over_an_error_after_the_items_before_it() -> None:
    worker = ThreadWorker("test-worker")
    items: list[int] = []

    async def drain() -> None:
        async for item in worker.iterate(Counting(10, fail_at=3)):
            items.append(item)

    try:
        with pytest.raises(ValueError, match="failed at 3"):
            await drain()
    finally:
        await worker.aclose()
    assert items == [0, 1, 2]


async def test_leaving_early_stops_and_closes_the_iterator() -> None:
    worker = ThreadWorker("test-worker")
    source = Counting(1000, delay_s=0.005)
    try:
        async with closing_stream(worker.iterate(source)) as items:
            async for item in items:
                if item == 2:
                    break
        assert await asyncio.to_thread(source.closed.wait, 2.0)
        assert source.produced < 20
        assert [item async for item in worker.iterate(Counting(3))] == [0, 1, 2]  # ready for the next one
    finally:
        await worker.aclose()


async def test_the_loop_keeps_running_while_the_thread_blocks() -> None:
    worker = ThreadWorker("test-worker")
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    try:
        assert [item async for item in worker.iterate(Counting(2, delay_s=0.15))] == [0, 1]
        assert await worker.run(sum, [1, 2, 3]) == 6
    finally:
        beat.cancel()
        await worker.aclose()
    assert ticks >= 10  # about 30 expected in 0.3 s; a blocked loop would give 0 or 1


async def test_aclose_stops_a_running_iteration() -> None:
    worker = ThreadWorker("test-worker")
    source = Counting(10_000, delay_s=0.005)
    stream = worker.iterate(source)
    assert await anext(stream) == 0
    began = time.monotonic()
    await worker.aclose()
    assert source.closed.is_set()
    assert time.monotonic() - began < 1.0
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("siblings", "cpus", "cores"),
    [("0\n", 2, 2), ("0-1\n", 8, 4), ("0,4\n", 8, 4), ("0-3\n", 2, 1), (None, 8, 4), (None, 1, 1)],
)
def test_decode_threads_default_to_the_physical_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, siblings: str | None, cpus: int, cores: int
) -> None:
    from aria.engines.llm import llamacpp

    monkeypatch.setattr(llamacpp.os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    topology = tmp_path / "thread_siblings_list"
    if siblings is not None:
        topology.write_text(siblings)
    assert llamacpp.physical_cores(topology) == cores
