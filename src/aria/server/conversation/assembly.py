"""A conversation's mode: its engines made resident, its pipeline put together from them in one place (the
model, wrapped by the latency governor when a faster one is configured; the tools; the context window;
the pictures and the monitor's commands; the end-of-turn model and a VAD tuned to it), and the switch
from one mode's pipeline to the next over the same history."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aria.core.config import Settings
from aria.core.modespec import ModeSpec
from aria.engines.base import LLM, VAD, TurnDetector
from aria.engines.chain import answered_by
from aria.engines.factory import create_engine
from aria.errors import AriaError, InvalidInput, ModeUnavailable
from aria.pipeline.mode_pipelines import Loadout, mode_pipeline
from aria.pipeline.outputs import NoticeOut
from aria.pipeline.quality import GovernedLLM, LatencyGovernor
from aria.pipeline.slots import SlotEngine
from aria.pipeline.voice import VoicePipeline
from aria.server.conversation import notices
from aria.server.conversation.tools import ClientTools, SessionTools, Toolbox
from aria.session.context import ContextWindow
from aria.tools.runner import ToolRunner
from aria.types import Message, ToolSpec

if TYPE_CHECKING:
    from aria.server.conversation.core import Conversation

__all__ = ["Assembly", "engine_of"]


class Assembly:
    def __init__(self, conversation: Conversation, tool_runner: Callable[..., ToolRunner]) -> None:
        self.conv = conversation
        self.tool_runner = tool_runner
        self.loadout: Loadout | None = None
        self.governed: GovernedLLM | None = None
        self._session_tools: SessionTools | None = None
        self._notes: list[NoticeOut] = []

    def slots(self) -> dict[str, str]:
        """The slot serving each role of the current mode."""
        return dict(self.loadout.slots) if self.loadout is not None else {}

    async def switch(self, mode: str, watch: str | None) -> None:
        """Make ``mode``'s engines resident, retire the current pipeline (speech being heard is kept as
        the person's turn, typed input waiting passes to the next) and build ``mode``'s. Raises (and
        changes nothing) when the engines cannot be had or the mode needs vision its model lacks."""
        conv = self.conv
        spec = conv.runtime.modes[mode]
        if watch is None and conv.eyes.monitor is not None and mode == conv.mode:
            watch = conv.eyes.watch  # a rebuild of the same mode keeps watching
        conv.save()  # the session is on disk before anything is loaded or unloaded
        loadout = await conv.runtime.acquire(conv, mode)
        llm = loadout.llm
        if spec.watches and (llm is None or not llm.capabilities.vision):
            name = llm.name if llm is not None else "none"
            raise ModeUnavailable(
                f"the {mode} mode needs a vision model, and {name} cannot see images; configure one "
                '(e.g. [llm] backend = "ollama", options = { model = "llava" }) and try again'
            )
        old, waiting = conv.pipeline, []
        if old is not None:
            waiting = await old.conclude("mode switch")
            await self.retire(old)
        await conv.eyes.stop_monitor()
        if spec.listens and conv.vad is None and loadout.stt is not None:
            conv.vad = await self.new_vad()
        elif conv.vad is not None:
            conv.vad.reset()
        if conv.echo is not None:
            conv.echo.reset()  # the old mode's answer was cut: none of its audio plays on
        conv.mode = conv.session.mode = mode
        conv.pipeline = pipeline = self.pipeline(mode, spec, loadout)
        for text in waiting:  # typed while the old mode listened: the new mode answers it
            try:
                pipeline.push_text(text)
            except InvalidInput:  # the new mode takes no text (dictation): keep the words in the history
                conv.session.history.append(Message("user", text, "text", mode=mode))
        if spec.watches and llm is not None:
            conv.eyes.start_monitor(llm, spec, watch if watch is not None else spec.watch)
        self._notes = [notices.without(role, why) for role, why in loadout.problems.items()]
        if spec.sees and llm is not None and not llm.capabilities.vision:
            self._notes.insert(0, notices.blind(llm.name))

    def announce(self) -> None:
        """Tell the person what the new mode lacks (a model that cannot see, engines that failed)."""
        notes, self._notes = self._notes, []
        for note in notes:
            self.conv.emit(note)

    def pipeline(self, mode: str, spec: ModeSpec, loadout: Loadout) -> VoicePipeline:
        conv = self.conv
        settings = conv.settings()
        llm_settings = settings.with_llm(spec.llm).llm
        self.loadout = loadout
        llm = loadout.llm
        if llm is not None and spec.answers:
            llm = self._governed(llm, settings)
        uses_tools = bool({"tools", "router"} & set(spec.steps))
        tools = self._tools(settings, loadout) if uses_tools else None
        pipeline = mode_pipeline(
            mode,
            spec,
            settings,
            Loadout(loadout.stt, llm, loadout.router, loadout.tts, loadout.slots, loadout.problems),
            vad=conv.vad,
            bus=conv.bus,
            history=conv.session.history,
            playback=conv.player,
            context=ContextWindow(
                context_tokens=llm_settings.context_tokens,
                reserve_tokens=min(llm_settings.max_tokens, llm_settings.context_tokens // 2),
                profile=lambda: conv.session.memory,
                summarizer=conv.runtime.summarizer,
            ),
            tools=tools,
            pictures=conv.eyes.picture if spec.sees else None,
            commands=conv.eyes.command if spec.watches else None,
            turn_detector=self.turn_detector(settings),
            echo=conv.echo,
        )
        return pipeline

    def reconfigure(self, settings: Settings, client_tools: Iterable[ToolSpec] | None) -> tuple[bool, bool]:
        """Take new base settings (and client tools): whether the pipeline must be rebuilt (turn detection
        or tools changed), and whether the VAD must be made again."""
        conv = self.conv
        before = conv.settings()
        conv.base_settings = settings
        after = conv.settings()
        vad_changed = before.vad != after.vad
        rebuild = vad_changed or before.turn != after.turn
        if client_tools is not None:
            specs = tuple(client_tools)
            rebuild = rebuild or conv.client_tools is None or conv.client_tools.specs() != specs
            if conv.client_tools is None:
                conv.client_tools = ClientTools(specs, conv.emit)
            else:
                conv.client_tools.set_specs(specs)
        return rebuild, vad_changed

    def _governed(self, llm: LLM, settings: Settings) -> LLM:
        """The mode's model behind the latency governor, when one is configured (each pipeline starts on
        its own model, with no history of slow turns)."""
        res = settings.resilience
        if res.slow_first_token_ms <= 0 or res.fast_llm is None:
            return llm
        runtime, holder = self.conv.runtime, self.conv
        governor = LatencyGovernor(
            res.slow_first_token_ms, window=res.slow_turns, probe_every_s=res.recovery_probe_s
        )

        async def fast() -> LLM | None:
            return await runtime.fast_llm(holder)

        self.governed = GovernedLLM(llm, governor, fast=fast, release=lambda: runtime.drop_fast_llm(holder))
        self.conv.later(self.conv.notices.quality_news(self.governed))
        return self.governed

    def _tools(self, settings: Settings, loadout: Loadout) -> Toolbox | None:
        client = self.conv.client_tools
        can_call = loadout.llm is not None and loadout.llm.capabilities.tools
        if can_call and settings.llm.tools and self._session_tools is None:
            # Tool discovery reads package metadata: once per conversation.
            self._session_tools = SessionTools(
                settings.llm.tools, self.conv.session, self.conv.confirmations, runner=self.tool_runner
            )
        own = self._session_tools if can_call and settings.llm.tools else None
        if own is None and (client is None or not client.specs()):
            return None
        return Toolbox(own, client)

    def turn_detector(self, settings: Settings) -> TurnDetector | None:
        """The server's end-of-turn model, unless these settings ask for none (``turn.backend =
        "silence"``: every pause ends the turn)."""
        if settings.turn.backend == "silence" and self.conv.base_settings is not None:
            return None
        return self.conv.runtime.turn_detector

    async def new_vad(self) -> VAD | None:
        """A VAD for this conversation (VADs keep per-stream state), from its settings when they are its
        own, else the server's."""
        runtime = self.conv.runtime
        if self.conv.base_settings is None:
            return await runtime.new_vad()
        settings = self.conv.settings()
        if self.turn_detector(settings) is not None:
            vad = settings.vad.model_copy(update={"min_silence_ms": settings.turn.pause_ms})
            settings = settings.model_copy(update={"vad": vad})
        try:
            engine = create_engine("vad", settings, runtime.registry)
            if engine is None:
                return None
            await engine.start()
        except AriaError:
            return await runtime.new_vad()
        return engine if isinstance(engine, VAD) else None

    async def retire(self, pipeline: VoicePipeline) -> None:
        await pipeline.aclose()
        if isinstance(pipeline.context, ContextWindow):
            await pipeline.context.aclose()
        governed = self.governed
        if governed is not None and pipeline.llm is governed:
            await governed.aclose()
            self.governed = None

    @staticmethod
    def answered_by(pipeline: VoicePipeline) -> str:
        """The name of the model that gave the latest answer (``extra.model`` of a turn's metrics)."""
        if pipeline.llm is None:
            return ""
        return answered_by(engine_of(pipeline.llm))


def engine_of(llm: LLM) -> LLM:
    """The engine behind the governor and the residency slot: what actually answers now."""
    if isinstance(llm, GovernedLLM):
        llm = llm.serving
    if isinstance(llm, SlotEngine):
        engine = llm.lookup(llm.slot)
        if isinstance(engine, LLM):
            return engine
    return llm
