"""Model residency under a memory budget, with fake engines of declared sizes and a fake process whose
resident memory grows and shrinks as they load and unload; and the real memory probes."""

from __future__ import annotations

import asyncio
import os
import random
import stat
from pathlib import Path
from typing import ClassVar

import pytest

from aria.engines.base import Capabilities, Engine, EngineHealth, EngineKind, LLMRequest
from aria.errors import AriaError, EngineError, EngineUnavailable
from aria.pipeline import memory as memory_module
from aria.pipeline.memory import GPUMemory, gpu_memory_mb, measure_load, process_rss_mb
from aria.pipeline.residency import Device, ResidencyError, ResidencyEvent, ResidencyManager
from aria.pipeline.slots import SlotLLM
from aria.testing import FakeLLM
from aria.types import Message

# -- fakes ---------------------------------------------------------------------------------------------


class Process:
    """The fake process: its resident memory in MB, which fake engines grow as they load. Calling it
    reads the RSS, as :func:`process_rss_mb` does."""

    def __init__(self, rss_mb: float = 100.0) -> None:
        self.rss_mb = rss_mb
        self.reads = 0
        self.journal: list[str] = []
        self.loading = 0
        self.most_loading = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.rss_mb


class Model:
    """An engine that says it needs ``size_mb``, really takes ``actual_mb`` when it starts, and gives it
    back when closed. ``gate`` holds the start until set; ``fail`` makes the start raise after taking its
    memory (a half-done load)."""

    kind: ClassVar[EngineKind] = "llm"

    def __init__(
        self,
        name: str,
        size_mb: int,
        process: Process,
        *,
        actual_mb: float | None = None,
        gate: asyncio.Event | None = None,
        fail: Exception | None = None,
    ) -> None:
        self.name = name
        self.capabilities = Capabilities(memory_mb=size_mb)
        self.process = process
        self.actual_mb = float(size_mb) if actual_mb is None else actual_mb
        self.gate = gate
        self.fail = fail
        self.starts = 0
        self.closes = 0
        self.holding = False

    async def start(self) -> None:
        self.starts += 1
        p = self.process
        p.journal.append(f"start {self.name}")
        p.loading += 1
        p.most_loading = max(p.most_loading, p.loading)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            p.rss_mb += self.actual_mb
            self.holding = True
            if self.fail is not None:
                raise self.fail
        finally:
            p.loading -= 1
        p.journal.append(f"started {self.name}")

    async def aclose(self) -> None:
        self.closes += 1
        if self.holding:
            self.process.rss_mb -= self.actual_mb
            self.holding = False

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=self.holding)


class Speech(Model):
    kind: ClassVar[EngineKind] = "stt"


class Voice(Model):
    kind: ClassVar[EngineKind] = "tts"


class Setup:
    """A manager over a fake process that records every event as (kind, name)."""

    def __init__(self, budget_mb: float) -> None:
        self.process = Process()
        self.events: list[ResidencyEvent] = []
        self.manager = ResidencyManager(budget_mb, on_event=self.events.append, measure=self.process)
        self.models: dict[str, Model] = {}

    def add(
        self,
        name: str,
        size_mb: int,
        *,
        cls: type[Model] = Model,
        sticky: bool = False,
        device: Device = "cpu",
        actual_mb: float | None = None,
        gate: asyncio.Event | None = None,
        fail: Exception | None = None,
    ) -> Model:
        model = cls(name, size_mb, self.process, actual_mb=actual_mb, gate=gate, fail=fail)
        self.models[name] = model
        self.manager.register(name, model, kind=cls.kind, sticky=sticky, device=device)
        return model

    def trail(self) -> list[tuple[str, str]]:
        return [(event.kind, event.name) for event in self.events]

    def clear(self) -> None:
        self.events.clear()


def usage_within_budget(setup: Setup) -> None:
    usage = setup.manager.usage()
    assert usage["resident_mb"] <= usage["budget_mb"], usage


# -- loading, the basics -------------------------------------------------------------------------------


async def test_ensure_starts_the_missing_engines_and_returns_them_by_name() -> None:
    s = Setup(1000)
    llm = s.add("llm", 300)
    stt = s.add("stt", 100, cls=Speech, sticky=True)
    engines = await s.manager.ensure(["stt", "llm", "stt"])
    assert list(engines) == ["stt", "llm"]
    assert engines["llm"] is llm
    assert engines["stt"] is stt
    assert (llm.starts, stt.starts) == (1, 1)
    assert sorted(s.manager.resident()) == ["llm", "stt"]

    again = await s.manager.ensure(["llm"])
    assert again == {"llm": llm}
    assert llm.starts == 1, "a resident engine is not started twice"


async def test_estimates_come_from_capabilities_and_factories_give_fresh_engines() -> None:
    process = Process()
    made: list[Model] = []

    def factory() -> Engine:
        made.append(Model("llm", 250, process))
        return made[-1]

    manager = ResidencyManager(1000, measure=process)
    manager.register("llm", factory, kind="llm")
    manager.register("tts", Voice("tts", 80, process), kind="tts", sticky=True)
    assert manager.usage()["engines"]["tts"]["estimate_mb"] == 80
    assert manager.usage()["engines"]["llm"]["estimate_mb"] is None, "unknown until the factory runs"

    first = (await manager.ensure(["llm"]))["llm"]
    assert manager.usage()["engines"]["llm"]["estimate_mb"] == 250
    await manager.ensure(["tts"], exclusive=True)
    assert manager.resident() == ["tts"]
    second = (await manager.ensure(["llm"]))["llm"]
    assert second is not first
    assert [m.starts for m in made] == [1, 1]
    assert made[0].closes == 1


class RemoteModel(Model):
    """A model served by another process (Ollama): it learns its size only when it starts, and its
    memory never shows in this process's RSS."""

    async def start(self) -> None:
        self.starts += 1
        self.capabilities = Capabilities(memory_mb=700)


async def test_an_engines_own_estimate_is_refreshed_after_it_starts() -> None:
    process = Process()
    manager = ResidencyManager(1000, measure=process)
    manager.register("remote", RemoteModel("remote", 0, process), kind="llm")
    manager.register("other", Model("other", 400, process), kind="llm")
    await manager.ensure(["remote"])
    assert manager.usage()["engines"]["remote"]["cost_mb"] == 700
    await manager.ensure(["other"])  # 700 + 400 > 1000: the remote model makes room
    assert manager.resident() == ["other"]


async def test_a_given_estimate_wins_over_capabilities() -> None:
    process = Process()
    manager = ResidencyManager(1000, measure=process)
    manager.register("llm", Model("llm", 250, process), kind="llm", estimate_mb=600)
    assert manager.usage()["engines"]["llm"]["estimate_mb"] == 600


def test_registration_errors() -> None:
    process = Process()
    manager = ResidencyManager(1000, measure=process)
    manager.register("llm", Model("llm", 100, process), kind="llm")
    with pytest.raises(ResidencyError, match="already registered"):
        manager.register("llm", Model("llm", 100, process), kind="llm")
    with pytest.raises(ResidencyError, match="registered as stt but its engine is llm"):
        manager.register("stt", Model("stt", 100, process), kind="stt")
    with pytest.raises(TypeError, match="expected an engine"):
        manager.register("odd", 42, kind="llm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        manager.register("neg", Model("neg", 1, process), kind="llm", estimate_mb=-1)
    with pytest.raises(ValueError, match="positive"):
        ResidencyManager(0)


async def test_unknown_names_are_refused() -> None:
    s = Setup(1000)
    s.add("llm", 100)
    with pytest.raises(ResidencyError, match="unknown engine vlm; registered: llm") as caught:
        await s.manager.ensure(["llm", "vlm"])
    assert caught.value.engines == ("vlm",)
    assert s.events == []
    with pytest.raises(ResidencyError, match="unknown engine"):
        s.manager.touch("vlm")
    with pytest.raises(TypeError, match="not one string"):
        await s.manager.ensure("llm")


# -- eviction ------------------------------------------------------------------------------------------


async def test_least_recently_used_engines_are_unloaded_first_and_only_as_many_as_needed() -> None:
    s = Setup(1000)
    a, b, c = s.add("a", 400), s.add("b", 400), s.add("c", 400)
    await s.manager.ensure(["a"])
    await s.manager.ensure(["b"])
    s.manager.touch("a")  # b is now the least recently used
    assert s.manager.resident() == ["b", "a"]
    s.clear()

    await s.manager.ensure(["c"])
    assert s.trail() == [("unloading", "b"), ("unloaded", "b"), ("loading", "c"), ("loaded", "c")]
    assert (a.closes, b.closes, c.closes) == (0, 1, 0)
    assert s.manager.resident() == ["a", "c"]
    usage_within_budget(s)

    s.clear()
    await s.manager.ensure(["b"])  # a was used before c was loaded
    assert s.trail()[:2] == [("unloading", "a"), ("unloaded", "a")]
    assert s.manager.resident() == ["c", "b"]
    assert b.starts == 2


async def test_engines_that_fit_stay_resident_unless_exclusive() -> None:
    s = Setup(1000)
    s.add("a", 300)
    s.add("b", 300)
    s.add("stt", 100, cls=Speech, sticky=True)
    await s.manager.ensure(["a", "stt"])
    await s.manager.ensure(["b"])
    assert sorted(s.manager.resident()) == ["a", "b", "stt"], "a cache: nothing needed the room"
    s.clear()

    await s.manager.ensure(["b"], exclusive=True)
    assert s.trail() == [("unloading", "a"), ("unloaded", "a")]
    assert s.events[0].reason == "not needed by the current mode"
    assert sorted(s.manager.resident()) == ["b", "stt"], "sticky engines survive a mode switch"


async def test_never_over_budget_after_any_ensure() -> None:
    budget = 1200
    s = Setup(budget)
    rng = random.Random(7)
    names = []
    for index in range(8):
        cls = (Speech, Voice, Model)[index % 3]
        s.add(f"e{index}", rng.randrange(100, 900), cls=cls, sticky=cls is not Model)
        names.append(f"e{index}")
    fitting = 0
    for _ in range(60):
        wanted = rng.sample(names, rng.randrange(1, 4))
        exclusive = rng.random() < 0.2
        need = sum(s.manager.usage()["engines"][name]["cost_mb"] for name in wanted)
        if need > budget:
            before = s.manager.resident()
            with pytest.raises(ResidencyError, match="over the 1200 MB memory budget"):
                await s.manager.ensure(wanted, exclusive=exclusive)
            assert s.manager.resident() == before
            continue
        engines = await s.manager.ensure(wanted, exclusive=exclusive)
        fitting += 1
        assert set(engines) == set(wanted)
        assert set(wanted) <= set(s.manager.resident())
        assert all(s.models[name].holding for name in s.manager.resident())
        usage_within_budget(s)
        if rng.random() < 0.3:
            s.manager.touch(rng.choice(names))
    assert 30 < fitting < 60, "both outcomes are exercised"
    held = sum(m.actual_mb for m in s.models.values() if m.holding)
    assert s.process.rss_mb == pytest.approx(100 + held)


# -- sticky engines -------------------------------------------------------------------------------------


async def test_sticky_engines_are_kept_while_non_sticky_ones_can_make_room() -> None:
    s = Setup(1000)
    stt = s.add("stt", 200, cls=Speech, sticky=True)
    tts = s.add("tts", 200, cls=Voice, sticky=True)
    small = s.add("small", 300)
    s.add("medium", 400)
    await s.manager.ensure(["stt", "tts", "small"])
    await s.manager.ensure(["small"])  # stt and tts are now the least recently used
    s.clear()

    await s.manager.ensure(["medium"])  # 1100 MB: 100 over
    assert s.trail()[:2] == [("unloading", "small"), ("unloaded", "small")]
    assert (stt.closes, tts.closes, small.closes) == (0, 0, 1)
    assert sorted(s.manager.resident()) == ["medium", "stt", "tts"]


async def test_sticky_engines_give_way_to_a_required_big_model_least_recently_used_first() -> None:
    s = Setup(1000)
    stt = s.add("stt", 200, cls=Speech, sticky=True)
    tts = s.add("tts", 200, cls=Voice, sticky=True)
    s.add("small", 300)
    s.add("big", 500)
    await s.manager.ensure(["stt", "tts", "small"])
    s.manager.touch("tts")
    s.clear()

    await s.manager.ensure(["big"])  # 1200 MB: small alone makes the room
    assert s.trail() == [("unloading", "small"), ("unloaded", "small"), ("loading", "big"), ("loaded", "big")]
    assert (stt.closes, tts.closes) == (0, 0)

    s.add("huge", 700)
    s.clear()
    await s.manager.ensure(["huge"])  # stt 200 + tts 200 + big 500 + huge 700: big, then stt (LRU sticky)
    assert s.trail()[:4] == [
        ("unloading", "big"),
        ("unloaded", "big"),
        ("unloading", "stt"),
        ("unloaded", "stt"),
    ]
    assert "making room for huge" in s.events[0].reason
    assert (stt.closes, tts.closes) == (1, 0)
    assert sorted(s.manager.resident()) == ["huge", "tts"]
    usage_within_budget(s)


async def test_a_required_engine_is_never_unloaded() -> None:
    s = Setup(1000)
    s.add("stt", 300, cls=Speech, sticky=True)
    s.add("old", 300)
    s.add("llm", 600)
    await s.manager.ensure(["old", "stt"])
    s.clear()
    await s.manager.ensure(["stt", "llm"])
    assert [name for kind, name in s.trail() if kind == "unloading"] == ["old"]
    assert sorted(s.manager.resident()) == ["llm", "stt"]


async def test_an_engine_bigger_than_announced_is_trimmed_after_loading_and_budgeted_at_its_real_size() -> (
    None
):
    s = Setup(1000)
    s.add("stt", 200, cls=Speech, sticky=True)
    s.add("other", 300)
    s.add("liar", 100, actual_mb=600)
    await s.manager.ensure(["stt", "other"])
    s.clear()

    await s.manager.ensure(["liar"])  # planned 600 MB; really 1100 MB
    assert s.trail() == [
        ("loading", "liar"),
        ("loaded", "liar"),
        ("unloading", "other"),
        ("unloaded", "other"),
    ]
    assert "after loading (measured)" in s.events[2].reason
    assert s.manager.usage()["engines"]["liar"]["cost_mb"] == 600
    usage_within_budget(s)

    await s.manager.ensure(["stt"], exclusive=True)
    with pytest.raises(ResidencyError, match="liar"):
        await s.manager.ensure(["liar", "other", "stt"])  # 600 + 300 + 200, on its measured size


# -- refusing ------------------------------------------------------------------------------------------


async def test_a_required_set_over_budget_is_refused_naming_the_engines_and_changing_nothing() -> None:
    s = Setup(1000)
    stt = s.add("stt", 300, cls=Speech, sticky=True)
    s.add("vlm", 800)
    s.add("tts", 150, cls=Voice, sticky=True)
    await s.manager.ensure(["stt"])
    s.clear()
    with pytest.raises(ResidencyError) as caught:
        await s.manager.ensure(["stt", "vlm", "tts"])
    error = caught.value
    assert isinstance(error, AriaError)
    assert error.code == "residency_error"
    assert error.engines == ("stt", "vlm", "tts")
    assert error.over_by_mb == pytest.approx(250)
    message = str(error)
    assert "vlm (800 MB), stt (300 MB), tts (150 MB)" in message
    assert "1250 MB, 250 MB over the 1000 MB memory budget" in message
    assert s.events == []
    assert stt.closes == 0
    assert s.manager.resident() == ["stt"]


# -- events and measurement ----------------------------------------------------------------------------


async def test_events_pair_up_in_order_and_carry_sizes_and_reasons() -> None:
    s = Setup(1000)
    s.add("a", 600)
    s.add("b", 500, actual_mb=450)
    await s.manager.ensure(["a"], reason="voice chat mode")
    await s.manager.ensure(["b"])
    await s.manager.aclose()
    assert s.trail() == [
        ("loading", "a"),
        ("loaded", "a"),
        ("unloading", "a"),
        ("unloaded", "a"),
        ("loading", "b"),
        ("loaded", "b"),
        ("unloading", "b"),
        ("unloaded", "b"),
    ]
    loading_a, loaded_a = s.events[0], s.events[1]
    assert (loading_a.mb, loading_a.reason) == (600, "voice chat mode")
    assert loaded_a.mb == 600
    assert s.events[5].mb == 450, "loaded carries the measured growth"
    assert s.events[6].reason == "shutting down"
    assert s.manager.resident() == []
    assert s.process.rss_mb == 100


async def test_usage_reports_measured_growth_next_to_estimates() -> None:
    s = Setup(4000)
    s.add("llm", 1000, actual_mb=1234.5)
    s.add("stt", 200, cls=Speech, actual_mb=150)
    s.add("tts", 600, cls=Voice, actual_mb=650)
    await s.manager.ensure(["llm"])
    await s.manager.ensure(["stt", "tts"])  # one batch: 800 MB grown, split 1:3 by estimate

    usage = s.manager.usage()
    llm = usage["engines"]["llm"]
    assert (llm["estimate_mb"], llm["measured_mb"], llm["shared"]) == (1000, 1234.5, False)
    assert llm["cost_mb"] == 1234.5
    assert usage["engines"]["stt"]["measured_mb"] == pytest.approx(200)
    assert usage["engines"]["tts"]["measured_mb"] == pytest.approx(600)
    assert usage["engines"]["stt"]["shared"] is True
    assert usage["measured_mb"] == pytest.approx(1234.5 + 800)
    assert usage["estimated_mb"] == 1800
    assert usage["rss_mb"] == pytest.approx(100 + 1234.5 + 800)
    assert usage["budget_mb"] == 4000


async def test_a_failing_event_listener_does_not_stop_loading(caplog: pytest.LogCaptureFixture) -> None:
    process = Process()

    def broken(event: ResidencyEvent) -> None:
        raise RuntimeError("listener down")

    manager = ResidencyManager(1000, on_event=broken, measure=process)
    manager.register("llm", Model("llm", 100, process), kind="llm")
    assert list(await manager.ensure(["llm"])) == ["llm"]
    assert "listener failed" in caplog.text


# -- concurrency ---------------------------------------------------------------------------------------


async def test_concurrent_ensure_calls_run_one_at_a_time() -> None:
    s = Setup(1000)
    gate = asyncio.Event()
    s.add("a", 600, gate=gate)
    s.add("b", 600)
    first = asyncio.create_task(s.manager.ensure(["a"]))
    second = asyncio.create_task(s.manager.ensure(["b"]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert s.process.journal == ["start a"], "b waits for a's ensure to finish"
    gate.set()
    assert list(await first) == ["a"]
    assert list(await second) == ["b"]
    assert s.process.journal == ["start a", "started a", "start b", "started b"]
    assert s.trail() == [
        ("loading", "a"),
        ("loaded", "a"),
        ("unloading", "a"),
        ("unloaded", "a"),
        ("loading", "b"),
        ("loaded", "b"),
    ]


async def test_cpu_engines_load_together_and_gpu_engines_one_at_a_time() -> None:
    s = Setup(10000)
    gate = asyncio.Event()
    for name in ("stt", "tts", "vad"):
        s.add(name, 100, gate=gate)
    load = asyncio.create_task(s.manager.ensure(["stt", "tts", "vad"]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert s.process.loading == 3
    gate.set()
    await load

    s.process.most_loading = 0
    for name in ("llm", "vlm"):
        s.add(name, 1000, device="gpu")
    await s.manager.ensure(["llm", "vlm"])
    assert s.process.most_loading == 1
    assert s.process.journal[-4:] == ["start llm", "started llm", "start vlm", "started vlm"]


async def test_a_failing_start_is_cleaned_up_reported_and_leaves_the_others_resident() -> None:
    s = Setup(1000)
    ok = s.add("ok", 200)
    bad = s.add("bad", 300, fail=EngineError("model file is corrupt", engine="bad", retryable=False))
    with pytest.raises(ResidencyError, match=r"could not load bad \(bad: model file is corrupt\)") as caught:
        await s.manager.ensure(["ok", "bad"])
    error = caught.value
    assert error.engines == ("bad",)
    assert isinstance(error.errors["bad"], EngineError)
    assert error.__cause__ is error.errors["bad"]

    assert s.manager.resident() == ["ok"]
    assert ok.holding
    assert (bad.starts, bad.closes, bad.holding) == (1, 1, False), "what the failed load took is given back"
    assert s.process.rss_mb == 100 + 200
    assert ("unloaded", "bad") in s.trail()
    failed = next(e for e in s.events if e.kind == "unloaded")
    assert failed.reason.startswith("load failed: ")
    assert not s.manager.usage()["engines"]["bad"]["resident"]

    bad.fail = None
    engines = await s.manager.ensure(["ok", "bad"])
    assert engines["bad"] is bad
    assert bad.holding


async def test_a_factory_that_raises_is_reported_before_anything_changes() -> None:
    process = Process()

    def broken() -> Engine:
        raise OSError("no such model file")

    manager = ResidencyManager(1000, measure=process)
    manager.register("llm", broken, kind="llm", estimate_mb=100)
    with pytest.raises(ResidencyError, match="could not create llm: no such model file"):
        await manager.ensure(["llm"])
    assert manager.resident() == []


async def test_a_cancelled_ensure_cleans_up_the_half_loaded_engine_and_releases_the_lock() -> None:
    s = Setup(1000)
    gate = asyncio.Event()
    slow = s.add("slow", 300, gate=gate)
    s.add("next", 300)
    task = asyncio.create_task(s.manager.ensure(["slow"]))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.closes == 1
    assert s.manager.resident() == []
    assert s.trail() == [("loading", "slow"), ("unloaded", "slow")]
    assert s.events[-1].reason == "load cancelled"
    assert list(await asyncio.wait_for(s.manager.ensure(["next"]), 1)) == ["next"]


async def test_async_with_unloads_everything() -> None:
    process = Process()
    model = Model("llm", 100, process)
    async with ResidencyManager(1000, measure=process) as manager:
        manager.register("llm", model, kind="llm")
        await manager.ensure(["llm"])
        assert model.holding
    assert model.closes == 1
    assert manager.resident() == []


# -- the real memory probes ----------------------------------------------------------------------------


def test_process_rss_is_real_and_grows_with_allocation() -> None:
    before = process_rss_mb()
    assert 5 < before < 1_000_000
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    assert process_rss_mb() - before > 32
    del block


def test_process_rss_falls_back_to_the_peak_without_proc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(memory_module, "_STATM", tmp_path / "missing")
    assert process_rss_mb() > 5


async def test_measure_load_returns_the_result_and_the_growth() -> None:
    process = Process(rss_mb=500)

    async def load() -> str:
        process.rss_mb += 120
        return "model"

    assert await measure_load(load(), measure=process) == ("model", 120)

    async def frees() -> int:
        process.rss_mb -= 50
        return 1

    assert await measure_load(frees(), measure=process) == (1, 0.0)


def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), "/usr/bin", "/bin"]))


@pytest.mark.skipif(os.name != "posix", reason="a shell script stands in for nvidia-smi")
def test_gpu_memory_parses_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = tmp_path / "args"
    fake_nvidia_smi(
        tmp_path, monkeypatch, f'echo "$@" > {args}\nprintf "1024, 81559\\n[N/A], [N/A]\\n0, 40960\\n"'
    )
    assert gpu_memory_mb() == [GPUMemory(0, 1024, 81559), GPUMemory(2, 0, 40960)]
    assert args.read_text().split() == [
        "--query-gpu=memory.used,memory.total",
        "--format=csv,noheader,nounits",
    ]
    assert GPUMemory(0, 1024, 81559).free_mb == 80535


@pytest.mark.skipif(os.name != "posix", reason="a shell script stands in for nvidia-smi")
@pytest.mark.parametrize(
    "body",
    [
        'echo "NVIDIA-SMI has failed" >&2; exit 9',
        "echo garbage",
        "exit 0",
        "exec sleep 5",
    ],
    ids=["fails", "garbage", "silent", "hangs"],
)
def test_gpu_memory_is_none_when_nvidia_smi_misbehaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    fake_nvidia_smi(tmp_path, monkeypatch, body)
    assert gpu_memory_mb(timeout_s=0.3) is None


def test_gpu_memory_is_none_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_memory_mb() is None


async def test_a_handle_follows_the_engine_its_slot_holds_across_a_reload() -> None:
    """What pipelines hold: a handle of the slot's kind whose calls go to the engine the slot holds now,
    so a restart (a reload from the factory) swaps the engine under it; unloaded, a call fails clearly."""
    made: list[FakeLLM] = []

    def factory() -> FakeLLM:
        made.append(FakeLLM(FakeLLM.Config(replies=(f"engine {len(made) + 1}",))))
        return made[-1]

    manager = ResidencyManager(1000, measure=Process())
    manager.register("llm", factory, kind="llm")
    await manager.ensure(["llm"])
    handle = manager.handle("llm")
    assert isinstance(handle, SlotLLM)
    request = LLMRequest(messages=(Message("user", "hi"),))
    assert await handle.complete(request) == "engine 1"
    await manager.reload("llm", reason="restarting after a crash")
    assert await handle.complete(request) == "engine 2"
    assert made[0].closed
    assert handle.name == made[1].name
    await manager.aclose()
    with pytest.raises(EngineUnavailable, match="llm is not loaded"):
        await handle.complete(request)
    assert not (await handle.health()).ok
