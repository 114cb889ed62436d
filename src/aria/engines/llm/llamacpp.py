"""``llm:llamacpp``: a GGUF model run in process by llama-cpp-python.

The model loads and generates on one dedicated worker thread (:class:`ThreadWorker`); each streamed
``create_chat_completion(stream=True)`` chunk is handed to the event loop with ``call_soon_threadsafe``
through a :class:`~aria.core.channels.Channel`, so the loop never waits on llama.cpp. A consumer that stops
early (or is cancelled) sets the generation's stop flag: the worker stops after the chunk in progress and
closes llama.cpp's generator. Chunks are in the OpenAI format, so tokens and tool calls are assembled by the
same :class:`~aria.engines.llm.messages.ChunkAssembler` as ``llm:openai``.

llama-cpp-python is optional (``pip install 'aria-assistant[llamacpp]'``; it compiles llama.cpp, which takes
minutes) and imported only by :meth:`LlamaCppLLM.start`. ``model_path`` names a GGUF file; a relative path
is looked up in the models folder (:func:`~aria.engines.models.models_dir`). Images need a vision projector
(``clip_model_path``, LLaVA-style models).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import Field

from aria.core.aio import closing_stream
from aria.core.channels import Channel
from aria.engines.base import (
    Availability,
    Capabilities,
    EngineConfig,
    EngineHealth,
    EngineKind,
    LLMChunk,
    LLMRequest,
)
from aria.engines.llm.messages import (
    ChunkAssembler,
    GenerationStats,
    complete_text,
    openai_messages,
    openai_request,
)
from aria.engines.models import models_dir
from aria.errors import EngineError, EngineUnavailable
from aria.types import GeneratedToken

__all__ = ["INSTALL_FIX", "LlamaCppLLM", "ThreadWorker"]

log = logging.getLogger(__name__)
T = TypeVar("T")
INSTALL_FIX = "pip install 'aria-assistant[llamacpp]'"
_GGUF_MAGIC = b"GGUF"


class ThreadWorker:
    """One dedicated thread that runs blocking calls and blocking iterators for the event loop, one at a
    time and in order."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._jobs: set[asyncio.Future[None]] = set()
        self._stops: set[threading.Event] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def iterate(self, produce: Callable[[], Iterable[T]]) -> AsyncIterator[T]:
        """Items of ``produce()`` iterated on the worker thread, as they come. Leaving early stops the
        iteration after the item in progress (and closes the iterator); an exception raised on the thread
        is raised here after the items before it."""
        loop = asyncio.get_running_loop()
        channel: Channel[T] = Channel(maxsize=None, name="thread-worker")
        stop = threading.Event()

        def hand_over(call: Callable[..., Any], *args: Any) -> bool:
            try:
                loop.call_soon_threadsafe(call, *args)
                return True
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return False

        def work() -> None:
            error: BaseException | None = None
            iterator: Any = None
            try:
                if stop.is_set():
                    return
                iterator = iter(produce())
                for item in iterator:
                    if stop.is_set() or not hand_over(channel.send_nowait, item):
                        break
            except BaseException as exc:  # handed to the consumer, never lost
                error = exc
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception as exc:
                        error = error or exc
                hand_over(channel.close, error)

        job = loop.run_in_executor(self._executor, work)
        self._jobs.add(job)
        self._stops.add(stop)
        job.add_done_callback(self._jobs.discard)
        try:
            async for item in channel:
                yield item
        finally:
            stop.set()
            self._stops.discard(stop)

    async def aclose(self) -> None:
        """Stop every iteration and wait for the thread to finish what it is doing."""
        for stop in list(self._stops):
            stop.set()
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)
        self._executor.shutdown(wait=False)


class LlamaCppLLM:
    """A GGUF chat model in process; see the module docstring."""

    kind: ClassVar[EngineKind] = "llm"
    name: str = "llamacpp"
    capabilities: Capabilities = Capabilities(streaming=True, tools=True, local=True)

    class Config(EngineConfig):
        #: The GGUF file; a relative path is looked up in the models folder.
        model_path: Path | None = None
        data_dir: Path | None = None
        n_ctx: int = Field(default=4096, ge=64)
        #: CPU threads; llama.cpp's default (the physical cores) when unset.
        n_threads: int | None = Field(default=None, ge=1)
        #: Layers offloaded to the GPU (-1: all); needs a GPU build of llama-cpp-python.
        n_gpu_layers: int = Field(default=0, ge=-1)
        #: Chat template name (``chatml``, ``llama-3``, ...); the GGUF's own template when unset.
        chat_format: str | None = None
        #: Vision projector (mmproj) for LLaVA-style models; images are refused without it.
        clip_model_path: Path | None = None
        seed: int | None = None
        verbose: bool = False

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.engine = f"{self.kind}:{self.name}"
        if self.config.clip_model_path is not None:
            self.capabilities = Capabilities(streaming=True, vision=True, tools=True, local=True)
        self._llama: Any = None
        self._worker: ThreadWorker | None = None
        self._loading = asyncio.Lock()
        #: Timing of the latest generation.
        self.last_stats: GenerationStats | None = None

    @classmethod
    def _path(cls, config: Config, path: Path) -> Path:
        path = path.expanduser()
        return path if path.is_absolute() else models_dir(config.data_dir) / path

    @classmethod
    def _problems(cls, config: Config) -> list[tuple[str, str]]:
        """``(what is wrong, how to fix it)`` for everything that stops the engine from starting."""
        problems: list[tuple[str, str]] = []
        if importlib.util.find_spec("llama_cpp") is None:
            problems.append((f"llama-cpp-python is not installed; {INSTALL_FIX}", INSTALL_FIX))
        if config.model_path is None:
            problems.append(("no model_path is configured", "set llm.options.model_path to a GGUF file"))
            return problems
        for option, given in (("model_path", config.model_path), ("clip_model_path", config.clip_model_path)):
            if given is None:
                continue
            path = cls._path(config, given)
            if not path.is_file():
                problems.append((f"{option} {path} not found", f"download the GGUF file to {path}"))
            elif option == "model_path":
                with path.open("rb") as file:
                    if file.read(4) != _GGUF_MAGIC:
                        problems.append((f"{path} is not a GGUF file", "convert the model to GGUF"))
        return problems

    @classmethod
    def check(cls, config: Config) -> Availability:
        problems = cls._problems(config)
        if problems:
            return Availability(False, "; ".join(p for p, _ in problems), "; ".join(f for _, f in problems))
        assert config.model_path is not None
        return Availability(True, f"GGUF model {cls._path(config, config.model_path)}")

    async def start(self) -> None:
        """Load the model on the worker thread (seconds for a large model)."""
        async with self._loading:
            if self._llama is None:
                await self._start()

    async def _start(self) -> None:
        problems = await asyncio.to_thread(self._problems, self.config)
        if problems:
            detail = "; ".join(p if f in p else f"{p} ({f})" for p, f in problems)
            raise EngineUnavailable(detail, engine=self.engine)
        worker = self._worker = self._worker or ThreadWorker("llamacpp")
        began = time.monotonic()
        try:
            self._llama = await worker.run(self._load)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineUnavailable(f"llama.cpp could not load the model: {exc}", engine=self.engine) from exc
        log.info("%s: loaded %s in %.2f s", self.engine, self.config.model_path, time.monotonic() - began)

    def _load(self) -> Any:
        import llama_cpp

        config = self.config
        assert config.model_path is not None
        options: dict[str, Any] = {
            "model_path": str(self._path(config, config.model_path)),
            "n_ctx": config.n_ctx,
            "n_gpu_layers": config.n_gpu_layers,
            "verbose": config.verbose,
        }
        if config.n_threads is not None:
            options["n_threads"] = config.n_threads
        if config.chat_format is not None:
            options["chat_format"] = config.chat_format
        if config.seed is not None:
            options["seed"] = config.seed
        if config.clip_model_path is not None:
            from llama_cpp.llama_chat_format import Llava15ChatHandler

            clip = str(self._path(config, config.clip_model_path))
            options["chat_handler"] = Llava15ChatHandler(clip_model_path=clip, verbose=config.verbose)
        return llama_cpp.Llama(**options)

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.aclose()
        self._llama = None

    async def health(self) -> EngineHealth:
        if self._llama is None:
            return EngineHealth(ok=False, detail="model not loaded; call start()")
        return EngineHealth(ok=True, detail=f"GGUF model {self.config.model_path} loaded")

    def _chunks(self, request: LLMRequest) -> Iterable[dict[str, Any]]:
        """Runs on the worker thread: builds the prompt (encoding images) and starts generating."""
        options = openai_request(request, openai_messages(request))
        chunks: Iterable[dict[str, Any]] = self._llama.create_chat_completion(**options)
        return chunks

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        """Tokens as llama.cpp produces them, then any tool calls."""
        if request.images and self.config.clip_model_path is None:
            raise EngineError(
                "this model cannot see images; set llm.options.clip_model_path to its vision projector",
                engine=self.engine,
                retryable=False,
            )
        await self.start()
        assert self._worker is not None
        stats = self.last_stats = GenerationStats()
        assembler = ChunkAssembler(self.engine)
        try:
            async with closing_stream(self._worker.iterate(lambda: self._chunks(request))) as chunks:
                async for chunk in chunks:
                    for item in assembler.feed(chunk):
                        if isinstance(item, GeneratedToken):
                            stats.token()
                        yield item
        except EngineError:
            raise
        except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than the context window
            raise EngineError(f"llama.cpp failed: {exc}", engine=self.engine, retryable=False) from exc
        stats.finished_at = time.monotonic()
        for call in assembler.finish():
            yield call

    async def complete(self, request: LLMRequest) -> str:
        return await complete_text(self.stream(request), self.engine)
