r"""``llm:llamacpp``: a GGUF model run in process by llama-cpp-python.

The model loads and generates on one dedicated worker thread (:class:`ThreadWorker`); each streamed piece
is handed to the event loop with ``call_soon_threadsafe`` through a :class:`~aria.core.channels.Channel`, so
the loop never waits on llama.cpp. A consumer that stops early (or is cancelled) sets the generation's stop
flags: llama.cpp stops before its next token and the worker closes llama.cpp's generator.

Prompts are rendered here from the GGUF's own chat template (``tokenizer.chat_template``; see
:mod:`aria.engines.llm.llamacpp_chat`), tokenized and generated with ``create_completion``. The same
``Llama`` object serves every turn, so its KV cache still holds the previous prompt and answer: a new
turn of the same conversation only prefills the tokens after the longest common prefix
(:attr:`LlamaCppLLM.last_prefill` says how many). Tools are rendered into the prompt and
``<tool_call>`` blocks in the answer parsed into :class:`~aria.types.ToolCall`\ s; ``<think>`` blocks are
never spoken, and a model that thinks (Qwen3) is told ``/no_think`` unless ``thinking`` is set. With
``chat_format`` or a vision projector (``clip_model_path``: images, through llama-cpp-python's multimodal
chat handler named by ``vision_handler``) llama-cpp-python's ``create_chat_completion`` formats the prompt
instead.

llama-cpp-python is optional (``pip install 'aria-assistant[llamacpp]'``; it compiles llama.cpp, which takes
minutes) and imported only by :meth:`LlamaCppLLM.start`. ``model_path`` names a GGUF file; a relative path
is looked up in the models folder (:func:`~aria.engines.models.models_dir`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from aria.core.aio import closing_stream
from aria.engines.base import (
    Availability,
    Capabilities,
    EngineConfig,
    EngineHealth,
    EngineKind,
    LLMChunk,
    LLMRequest,
)
from aria.engines.llm.llamacpp_chat import (
    CHATML_TEMPLATE,
    NO_THINK,
    ReplyParser,
    render_prompt,
    template_messages,
    thinks,
    tool_instructions,
)
from aria.engines.llm.llamacpp_worker import ThreadWorker
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

__all__ = ["INSTALL_FIX", "VISION_HANDLERS", "LlamaCppLLM", "PrefillStats", "ThreadWorker", "physical_cores"]

log = logging.getLogger(__name__)
INSTALL_FIX = "pip install 'aria-assistant[llamacpp]'"
_GGUF_MAGIC = b"GGUF"
#: ``vision_handler`` names: llama-cpp-python's multimodal chat handlers (``llama_chat_format``).
VISION_HANDLERS = {
    "llava-1-5": "Llava15ChatHandler",
    "llava-1-6": "Llava16ChatHandler",
    "moondream": "MoondreamChatHandler",
    "nanollava": "NanoLlavaChatHandler",
    "llama-3-vision-alpha": "Llama3VisionAlphaChatHandler",
    "minicpm-v-2.6": "MiniCPMv26ChatHandler",
    "qwen2.5-vl": "Qwen25VLChatHandler",
    "gemma-4": "Gemma4ChatHandler",
}


@dataclass(frozen=True, slots=True)
class PrefillStats:
    """What one generation had to prefill: ``cached_tokens`` of its ``prompt_tokens`` were already in the
    KV cache (the previous turn's prefix); ``seconds`` to the first generated token."""

    prompt_tokens: int
    cached_tokens: int
    seconds: float | None = None

    @property
    def evaluated_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass(frozen=True, slots=True)
class _Loaded:
    llama: Any
    template: str
    bos_token: str
    eos_token: str
    thinks: bool


def physical_cores(
    topology: Path = Path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list"),
) -> int:
    """The physical cores this process may use: its CPUs over the hardware threads a core runs (SMT)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        siblings = topology.read_text().strip()
    except OSError:
        return max(1, cpus // 2)  # unknown topology: assume SMT, as llama.cpp does
    per_core = 0
    for part in siblings.split(","):
        low, _, high = part.partition("-")
        per_core += int(high) - int(low) + 1 if high else 1
    return max(1, cpus // max(1, per_core))


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
        #: CPU threads for decoding; one per physical core this process may use when unset
        #: (llama-cpp-python's own default, half the CPUs, leaves one of two unshared cores idle).
        n_threads: int | None = Field(default=None, ge=1)
        #: CPU threads for prefill (prompt batches); llama-cpp-python's default (every CPU) when unset. On a
        #: machine whose cores are busy with other work, fewer threads than cores prefill faster.
        n_threads_batch: int | None = Field(default=None, ge=1)
        #: Layers offloaded to the GPU (-1: all); needs a GPU build of llama-cpp-python.
        n_gpu_layers: int = Field(default=0, ge=-1)
        #: A llama-cpp-python chat format (``chatml``, ``llama-3``, ...) instead of the GGUF's own template.
        chat_format: str | None = None
        #: Vision projector (mmproj) for LLaVA-style models; images are refused without it.
        clip_model_path: Path | None = None
        #: The multimodal chat handler for the projector (a key of ``VISION_HANDLERS``).
        vision_handler: str = "llava-1-5"
        #: Let a thinking model (Qwen3) reason before answering: slower first audio; never spoken.
        thinking: bool = False
        seed: int | None = None
        verbose: bool = False

    def __init__(self, config: Config | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.engine = f"{self.kind}:{self.name}"
        if self.config.clip_model_path is not None:
            self.capabilities = Capabilities(streaming=True, vision=True, tools=True, local=True)
        self._llama: Any = None
        self._loaded: _Loaded | None = None
        self._worker: ThreadWorker | None = None
        self._loading = asyncio.Lock()
        #: Timing of the latest generation.
        self.last_stats: GenerationStats | None = None
        #: What the latest generation prefilled (template path only: llama-cpp-python's handlers hide it).
        self.last_prefill: PrefillStats | None = None
        #: Tokens generated since start, counted on the worker thread (cancellation checks use it).
        self.tokens_generated = 0

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
        if config.clip_model_path is not None and config.vision_handler not in VISION_HANDLERS:
            known = ", ".join(VISION_HANDLERS)
            problems.append((f"unknown vision_handler {config.vision_handler!r}", f"use one of {known}"))
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
            self._loaded = await worker.run(self._load)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineUnavailable(f"llama.cpp could not load the model: {exc}", engine=self.engine) from exc
        self._llama = self._loaded.llama
        log.info("%s: loaded %s in %.2f s", self.engine, self.config.model_path, time.monotonic() - began)

    def _load(self) -> _Loaded:
        import llama_cpp

        config = self.config
        assert config.model_path is not None
        options: dict[str, Any] = {
            "model_path": str(self._path(config, config.model_path)),
            "n_ctx": config.n_ctx,
            "n_gpu_layers": config.n_gpu_layers,
            "verbose": config.verbose,
        }
        options["n_threads"] = config.n_threads or physical_cores()
        if config.n_threads_batch is not None:
            options["n_threads_batch"] = config.n_threads_batch
        if config.chat_format is not None:
            options["chat_format"] = config.chat_format
        if config.seed is not None:
            options["seed"] = config.seed
        if config.clip_model_path is not None:
            from llama_cpp import llama_chat_format

            handler = getattr(llama_chat_format, VISION_HANDLERS[config.vision_handler], None)
            if handler is None:
                raise RuntimeError(f"this llama-cpp-python has no {VISION_HANDLERS[config.vision_handler]}")
            clip = str(self._path(config, config.clip_model_path))
            options["chat_handler"] = handler(clip_model_path=clip, verbose=config.verbose)
        llama = llama_cpp.Llama(**options)
        metadata: dict[str, str] = dict(llama.metadata or {})
        template = metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        return _Loaded(
            llama=llama,
            template=template,
            bos_token=self._token_text(llama, llama.token_bos()),
            eos_token=self._token_text(llama, llama.token_eos()),
            thinks=thinks(template, metadata.get("general.name", "") + " " + str(config.model_path)),
        )

    @staticmethod
    def _token_text(llama: Any, token: int) -> str:
        if token < 0:
            return ""
        return bytes(llama.detokenize([token], special=True)).decode("utf-8", errors="ignore")

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.aclose()
        self._llama = self._loaded = None

    async def health(self) -> EngineHealth:
        if self._llama is None:
            return EngineHealth(ok=False, detail="model not loaded; call start()")
        return EngineHealth(ok=True, detail=f"GGUF model {self.config.model_path} loaded")

    def _prompt(self, request: LLMRequest) -> str:
        """The request rendered with the model's chat template (pure: no llama.cpp call)."""
        loaded = self._loaded
        assert loaded is not None
        no_think = loaded.thinks and not self.config.thinking
        renders_tools = "tools" in loaded.template
        extra = tool_instructions(request.tools) if request.tools and not renders_tools else ""
        return render_prompt(
            loaded.template,
            template_messages(request, no_think=no_think, extra_system=extra),
            tools=request.tools if renders_tools else (),
            bos_token=loaded.bos_token,
            eos_token=loaded.eos_token,
            enable_thinking=not no_think,
        )

    def _handler_messages(self, request: LLMRequest) -> list[dict[str, Any]]:
        """OpenAI messages (images as data URLs) for llama-cpp-python's chat handlers."""
        messages = openai_messages(request)
        loaded = self._loaded
        if loaded is not None and loaded.thinks and not self.config.thinking:
            if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
                messages[0]["content"] = f"{messages[0]['content']}\n\n{NO_THINK}"
            else:
                messages.insert(0, {"role": "system", "content": NO_THINK})
        return messages

    def _chunks(self, request: LLMRequest, cancel: threading.Event) -> Iterator[dict[str, Any]]:
        """Runs on the worker thread: OpenAI-style chat chunks, from the GGUF's template or (with a
        ``chat_format`` or a projector) from llama-cpp-python's chat handler. Once ``cancel`` is set,
        llama.cpp stops before its next token."""
        import llama_cpp

        llama = self._llama
        began = time.monotonic()
        first: list[float] = []

        def generated() -> bool:  # once per generated token: counts it, or says to stop
            if cancel.is_set():
                return False
            self.tokens_generated += 1
            if not first:
                first.append(time.monotonic())
            return True

        if self.config.chat_format is not None or self.config.clip_model_path is not None:
            eos = llama.token_eos()

            def steer(_ids: Any, scores: Any) -> Any:  # the handlers take no stopping criteria
                if not generated():
                    scores[:] = -float("inf")
                    scores[eos] = 0.0
                return scores

            options = openai_request(request, self._handler_messages(request))
            chat = llama.create_chat_completion(
                **options, logits_processor=llama_cpp.LogitsProcessorList([steer])
            )
            yield from chat
            return
        stopping = llama_cpp.StoppingCriteriaList([lambda _ids, _logits: not generated()])
        tokens = llama.tokenize(self._prompt(request).encode("utf-8"), add_bos=False, special=True)
        # llama-cpp-python re-evaluates at least the prompt's last token (see Llama.generate). Only the
        # first n_tokens of input_ids are in the KV cache: the rest of that array is uninitialised
        # memory (np.ndarray), which can hold a freed engine's old prompt.
        cached = _common_prefix(llama.input_ids[: llama.n_tokens], tokens[:-1])
        completion = llama.create_completion(
            prompt=tokens,
            stream=True,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=list(request.stop) or None,
            stopping_criteria=stopping,
        )
        for chunk in completion:
            if first and self.last_prefill is None:
                self.last_prefill = PrefillStats(len(tokens), cached, first[0] - began)
            for choice in chunk.get("choices") or ():
                yield {
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": choice.get("text") or ""},
                            "finish_reason": choice.get("finish_reason"),
                        }
                    ]
                }
        if self.last_prefill is None:
            self.last_prefill = PrefillStats(len(tokens), cached, first[0] - began if first else None)

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        """Tokens as llama.cpp produces them (``<think>`` left out), then any tool calls."""
        if request.images and self.config.clip_model_path is None:
            raise EngineError(
                "this model cannot see images; set llm.options.clip_model_path to its vision projector",
                engine=self.engine,
                retryable=False,
            )
        await self.start()
        assert self._worker is not None
        stats = self.last_stats = GenerationStats()
        self.last_prefill = None
        assembler = ChunkAssembler(self.engine)
        parser = ReplyParser(self.engine)
        cancel = threading.Event()
        try:
            async with closing_stream(self._worker.iterate(lambda: self._chunks(request, cancel))) as chunks:
                async for chunk in chunks:
                    for item in assembler.feed(chunk):
                        for piece in parser.feed(item.text) if isinstance(item, GeneratedToken) else [item]:
                            if isinstance(piece, GeneratedToken):
                                stats.token()
                            yield piece
        except EngineError:
            raise
        except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than the context window
            raise EngineError(f"llama.cpp failed: {exc}", engine=self.engine, retryable=False) from exc
        finally:
            cancel.set()
        stats.finished_at = time.monotonic()
        for item in [*parser.finish(), *assembler.finish()]:
            if isinstance(item, GeneratedToken):
                stats.token()
            yield item

    async def complete(self, request: LLMRequest) -> str:
        return await complete_text(self.stream(request), self.engine)


def _common_prefix(cached: Any, tokens: list[int]) -> int:
    count = 0
    for a, b in zip(cached, tokens, strict=False):
        if a != b:
            break
        count += 1
    return count
