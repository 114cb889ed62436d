"""The runtime's answers to critical failures, with engines that break in scripted ways: a model that runs
out of memory while loading is loaded again once everything else it does not need is unloaded."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from aria.core.config import load_settings
from aria.engines.registry import EngineRegistry
from aria.server.runtime import Runtime
from aria.testing import FakeLLM


class HungryLLM(FakeLLM):
    """Runs out of memory the first time it loads (anywhere in the process), then loads fine."""

    starts: ClassVar[int] = 0

    async def start(self) -> None:
        type(self).starts += 1
        if type(self).starts == 1:
            raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        await super().start()


async def test_a_model_out_of_memory_at_load_is_retried_after_unloading_the_rest(tmp_path: Path) -> None:
    registry = EngineRegistry(discover=True)
    registry.register("llm:hungry", f"{__name__}:HungryLLM")
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "vad.backend": "fake",
            "stt.backend": "fake",
            "stt.fallback": [],
            "tts.backend": "fake",
            "tts.fallback": [],
            "llm.backend": "fake",
            "llm.fallback": [],
            "modes": {"deep_dive": {"llm": {"backend": "hungry"}}},
        },
        env={},
    )
    runtime = Runtime(settings, registry=registry)
    await runtime.start()
    await runtime.ready.wait()
    try:
        holder = object()
        assert set(runtime.residency.resident()) == {"stt", "llm", "tts"}
        loadout = await runtime.acquire(holder, "deep_dive")
        assert loadout.slots["llm"] == "llm:deep_dive"
        assert HungryLLM.starts == 2  # failed once, loaded on the retry
        # The retry unloaded what the mode does not need (the main model); sticky STT/TTS it needs stay.
        assert set(runtime.residency.resident()) == {"stt", "tts", "llm:deep_dive"}
    finally:
        await runtime.aclose()
