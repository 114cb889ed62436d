"""One conversation, whatever carries it: a session's mode, pipeline, tools, pictures, monitor and notices.

A shell (``/ws``, ``/v1/realtime``) makes one per connection and is left with the wire::

    conversation = Conversation(runtime, session, playback=pacer, echo=echo)
    start = asyncio.create_task(conversation.start())   # engines, then the session's mode
    async for event in conversation:                    # one ordered stream of events
        ...                                             # encode and send
    conversation.push_audio(chunk)                      # and text, images, camera frames, controls
    await conversation.aclose()                         # the session is saved

Events (:data:`~aria.server.conversation.events.Event`) are the current pipeline's outputs, in order, with
the conversation's own in between: notices, errors, engine loading states, the mode in effect, tool
confirmations and client tool calls. A mode switch retires the pipeline and builds the next over the same
history; its events simply continue the stream. Requests the conversation turns down raise an
:class:`~aria.errors.AriaError` (the shell reports it; the conversation goes on).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from aria.core.audio import resample
from aria.core.channels import Channel, Overflow
from aria.core.config import Settings, apply_update
from aria.core.events import EventBus
from aria.engines.base import VAD
from aria.errors import AriaError, InvalidInput, ModeUnavailable, ResidencyError
from aria.pipeline.config import Playback
from aria.pipeline.echo import EchoGuard
from aria.pipeline.outputs import AudioOut, ErrorOut, MetricsOut, NoticeOut, Output, ResponseDone, TextOut
from aria.pipeline.voice import PipelineConfig, VoicePipeline
from aria.server.conversation import notices
from aria.server.conversation.assembly import Assembly
from aria.server.conversation.events import Event, ModeOut
from aria.server.conversation.history import Items
from aria.server.conversation.notices import Notices
from aria.server.conversation.playback import Player
from aria.server.conversation.tools import ClientTools, Confirmations, Refused
from aria.server.conversation.watching import Eyes
from aria.server.runtime import Runtime
from aria.session.store import Session
from aria.tools.runner import ToolRunner
from aria.types import AudioChunk, ImageFrame, Message, ToolSpec

__all__ = ["LISTEN_RATE", "Conversation"]

log = logging.getLogger(__name__)
#: The rate the pipeline listens at; other rates are resampled.
LISTEN_RATE = 16000


class Conversation:
    """``settings``: this conversation's base settings (the server's by default; the session's overrides
    apply on top). ``playback``: the shell's player, which knows what the person heard (else what the
    shell took counts). ``echo``: the echo guard fed by that player. ``client_tools``: tools the client
    runs itself (see :meth:`tool_output`). ``tool_runner`` makes the runner of the configured tools."""

    def __init__(
        self,
        runtime: Runtime,
        session: Session,
        *,
        playback: Playback | None = None,
        echo: EchoGuard | None = None,
        settings: Settings | None = None,
        client_tools: Iterable[ToolSpec] | None = None,
        tool_runner: Callable[..., ToolRunner] = ToolRunner,
        bus: EventBus | None = None,
        max_pending: int = 256,
    ) -> None:
        self.runtime, self.session = runtime, session
        self.base_settings = settings
        self.bus = bus or EventBus()
        self.mode = session.mode if session.mode in runtime.modes else runtime.settings.mode
        #: Everything for the shell, in order (see :meth:`__aiter__`).
        self.outputs: Channel[Event] = Channel(max_pending, Overflow.BLOCK, name="conversation")
        self.player = Player(playback, self._withdraw)
        self.echo = echo
        self.notices = Notices(self)
        self.confirmations = Confirmations(self.emit)
        self.client_tools = ClientTools(client_tools, self.emit) if client_tools is not None else None
        self.eyes = Eyes(
            session, emit=self.emit, save=self.save, mode=lambda: self.mode, on_watch=self._watch_changed
        )
        self.parts = Assembly(self, tool_runner)
        #: The history as items a client adds, deletes and truncates.
        self.items = Items(session, save=self.save)
        self.pipeline: VoicePipeline | None = None
        self.vad: VAD | None = None
        self._ready = asyncio.Event()
        self._switch_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._forwarder: asyncio.Task[None] | None = None
        self._audio_refused = False
        self._after_turn: list[Event] = []
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Wait for the engines, then build the pipeline of the session's mode. When that cannot be done
        an error event says why; the conversation stays (a switch to another mode may work)."""
        if self._forwarder is None:
            self._forwarder = asyncio.get_running_loop().create_task(self._forward(), name="conversation")
        rt = self.runtime
        await rt.ready.wait()
        if self._closed:
            return
        self.notices.attach()
        try:
            await self.switch(self.mode)
        except (ModeUnavailable, ResidencyError) as exc:
            if rt.load_error is not None:
                why = f"no language model is available: {rt.load_error}"
                self.emit(ErrorOut("engine_unavailable", why))
            else:
                self.emit(_error(exc))
        except Exception:
            log.exception("could not set up the conversation of session %s", self.session.id)
            raise
        finally:
            self._ready.set()

    async def ready(self) -> VoicePipeline | None:
        """The pipeline once :meth:`start` is done (None when no mode could be set up)."""
        await self._ready.wait()
        return self.pipeline

    def settings(self) -> Settings:
        """This conversation's settings: the base with the session's overrides."""
        base = self.base_settings or self.runtime.settings
        return apply_update(base, self.session.overrides) if self.session.overrides else base

    def save(self) -> None:
        try:
            self.runtime.sessions.save(self.session)
        except OSError as exc:  # a full disk must not end the conversation
            log.error("could not save session %s: %s", self.session.id, exc)

    async def aclose(self) -> None:
        """Stop: an answer cut off here is kept as heard so far, typed input not yet answered is kept,
        the session is saved and the event stream ends."""
        if self._closed:
            return
        self._closed = True
        self.notices.detach()
        self.runtime.release(self)
        await self.eyes.stop_monitor()
        if self.pipeline is not None:
            for text in await self.pipeline.conclude("connection closed"):  # typed, never started
                self.session.history.append(Message("user", text, "text", mode=self.mode))
            await self.parts.retire(self.pipeline)
        if self.vad is not None:
            await self.vad.aclose()
        tasks = [*self._background, *([self._forwarder] if self._forwarder is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.outputs.close()
        self.save()

    # -- the events --------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for event in self.outputs:
            if isinstance(event, AudioOut):
                self.player.handed(event.turn_id, event.chunk.duration)
            yield event

    def emit(self, event: Event) -> None:
        """Queue one of the conversation's own events (never waits, never dropped)."""
        if not self.outputs.closed:
            self.outputs.force(event)

    def _withdraw(self, turn_id: str) -> None:
        """A stopped answer: its audio not yet taken by the shell never reaches it."""
        self.outputs.discard(lambda e: isinstance(e, AudioOut) and e.turn_id == turn_id)

    async def _forward(self) -> None:
        """Pass each pipeline's outputs on; after a mode switch, go on with the new pipeline's."""
        done: VoicePipeline | None = None
        while True:
            await self._changed.wait()
            self._changed.clear()
            pipeline = self.pipeline
            if pipeline is None or pipeline is done:
                continue
            done = pipeline
            async for out in pipeline.outputs:
                await self._pass(out, pipeline)

    async def _pass(self, out: Output, pipeline: VoicePipeline) -> None:
        if isinstance(out, AudioOut | TextOut):
            self.items.seen(pipeline, out.turn_id)
        if isinstance(out, MetricsOut) and pipeline.llm is not None and "model" not in out.extra:
            out = MetricsOut(
                out.turn_id, out.waterfall, {**out.extra, "model": self.parts.answered_by(pipeline)}
            )
        if isinstance(out, ResponseDone):
            self.save()  # every completed or interrupted turn is on disk before the next one
            if out.error == "engine_crashed":  # the turn (and its apology) is over: restart
                self.later(self.notices.recover())
        if isinstance(out, AudioOut):
            await self.outputs.send(out)
        else:
            self.emit(out)
        if isinstance(out, MetricsOut):
            waiting, self._after_turn = self._after_turn, []
            for event in waiting:
                self.emit(event)

    def between_turns(self, event: Event) -> None:
        """Emit ``event`` once no answer is in progress (after the current turn's last event)."""
        pipeline = self.pipeline
        if pipeline is not None and pipeline.answer_in_progress() is not None:
            self._after_turn.append(event)
        elif pipeline is not None and not pipeline.outputs.closed and isinstance(event, NoticeOut):
            pipeline.outputs.force(event)  # behind what the finished turn still has to say
        else:
            self.emit(event)

    def later(self, coro: Any) -> None:
        """Run ``coro`` in the background (cancelled at :meth:`aclose`)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- input -------------------------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk) -> None:
        """Microphone audio at any rate (resampled to 16 kHz). Audio before :meth:`start` is done is
        dropped, as a microphone's would be; in a mode that does not listen it gets one error."""
        pipeline = self.pipeline if self._ready.is_set() else None
        if pipeline is None or pipeline.vad is None:
            if self._ready.is_set() and not self._audio_refused:
                self._audio_refused = True  # once per mode, not once per frame
                self.emit(
                    ErrorOut("engine_unavailable", f"speech input is unavailable in the {self.mode} mode")
                )
            return
        if chunk.sample_rate != LISTEN_RATE:
            chunk = AudioChunk(resample(chunk.as_float32(), chunk.sample_rate, LISTEN_RATE), LISTEN_RATE)
        pipeline.push_audio(chunk)

    async def push_text(self, text: str) -> None:
        """A typed message: a turn of its own (an answer in progress stops, or it waits its turn)."""
        pipeline = await self.ready()
        if pipeline is not None:
            pipeline.push_text(text)

    async def push_image(self, data: bytes, image_format: str = "jpeg", text: str | None = None) -> None:
        """An uploaded picture (PNG or JPEG), with an optional question about it."""
        try:
            image = ImageFrame(data, "PNG" if image_format.lower() == "png" else "JPEG")
        except InvalidInput as exc:
            raise Refused("bad_image", str(exc)) from exc
        self.eyes.uploaded(image)
        if not text:
            return
        pipeline = await self.ready()
        if pipeline is not None:
            pipeline.push_text(text)  # first: the question is kept even if the client is gone
        if not self.runtime.modes[self.mode].sees:
            self.emit(notices.not_looking(self.mode))

    def push_camera(self, jpeg: bytes) -> None:
        """A camera frame: the picture for questions while fresh, and what the monitor watches."""
        self.eyes.seen(ImageFrame(jpeg, "JPEG"))

    async def interrupt(self, reason: str = "client interrupt") -> bool:
        """Stop the answer in progress (what was heard of it is kept)."""
        pipeline = await self.ready()
        return await pipeline.interrupt(reason) if pipeline is not None else False

    def confirm(self, signal_id: str, accept: bool) -> None:
        """The person's answer to a :class:`~aria.server.conversation.events.ConfirmOut`."""
        self.confirmations.answer(signal_id, accept)

    def tool_output(self, call_id: str, content: str, *, ok: bool = True, data: Any = None) -> bool:
        """The client's output for a :class:`~aria.server.conversation.events.ToolCallOut`; False when no
        call waits for it."""
        if self.client_tools is None:
            return False
        return self.client_tools.deliver(call_id, content, ok=ok, data=data)

    async def update_config(self, changes: Mapping[str, Any]) -> Settings:
        """Change live settings for this session (``tts.voice``, ``llm.system_prompt``...): a bad key
        raises :class:`~aria.errors.ConfigError` and changes nothing."""
        pipeline = await self.ready()
        base = self.base_settings or self.runtime.settings
        settings = self.session.update_overrides(dict(changes), base)
        if pipeline is not None:
            self._apply_config(pipeline, settings)
        return settings

    def _apply_config(self, pipeline: VoicePipeline, settings: Settings) -> None:
        spec = self.runtime.modes[self.mode]
        speak = settings.tts.enabled and pipeline.tts is not None
        pipeline.config = PipelineConfig.from_settings(
            settings.with_llm(spec.llm), speak=speak, mode=self.mode
        )

    # -- items and responses (what a Realtime client does besides talking) -------------------------

    async def respond(self, *, instructions: str | None = None, speak: bool = True) -> str | None:
        """Answer the history as it stands, with no new input (``instructions``: this answer's system
        prompt; ``speak`` False: in text only). An answer in progress stops first. Returns the turn id
        (None without a pipeline)."""
        pipeline = await self.ready()
        if pipeline is None:
            return None
        config = pipeline.config
        if instructions is not None:  # the request is built before respond() returns
            pipeline.config = dataclasses.replace(config, system_prompt=instructions)
        try:
            return pipeline.respond(speak=speak).id
        finally:
            pipeline.config = config

    async def reconfigure(
        self, settings: Settings, *, client_tools: Iterable[ToolSpec] | None = None
    ) -> None:
        """New base settings (and client tools) mid-conversation. Live ones (instructions, voice,
        temperature, whether to speak) apply to the next answer; a change of turn detection or of the
        tools rebuilds the pipeline (an answer in progress stops there, as heard)."""
        rebuild, vad_changed = self.parts.reconfigure(settings, client_tools)
        pipeline = await self.ready()
        if pipeline is None:
            return
        if not rebuild:
            self._apply_config(pipeline, self.settings())
            return
        if self.vad is not None and vad_changed:
            await self.vad.aclose()
            self.vad = None
        await self.switch(self.mode)

    async def transcribe(self, audio: AudioChunk) -> str:
        """The words in ``audio`` (a client's committed buffer, with turn detection off)."""
        stt = self.parts.loadout.stt if self.parts.loadout is not None else None
        if stt is None:
            raise Refused("engine_unavailable", f"speech input is unavailable in the {self.mode} mode")
        if audio.sample_rate != LISTEN_RATE:
            audio = AudioChunk(resample(audio.as_float32(), audio.sample_rate, LISTEN_RATE), LISTEN_RATE)
        return (await stt.transcribe(audio)).text

    # -- modes -------------------------------------------------------------------------------------

    async def switch_mode(self, mode: str, *, watch: str | None = None) -> None:
        """Switch to ``mode`` over the same session. When its engines cannot be had the error and the
        mode still in effect are emitted (no exception): the conversation goes on as it was."""
        await self.ready()
        if mode not in self.runtime.modes:
            known = ", ".join(self.runtime.modes)
            raise Refused("unknown_mode", f"unknown mode {mode!r}; available: {known}")
        try:
            await self.switch(mode, watch=watch)
        except (ModeUnavailable, ResidencyError) as exc:
            self.emit(_error(exc))
            self.emit(self.mode_event())

    async def switch(self, mode: str, *, watch: str | None = None) -> None:
        """Rebuild the pipeline for ``mode`` (a known one) over the same session: its history and
        settings survive. The new mode's engines are made resident first; when they cannot be, the
        current mode stays and :class:`ModeUnavailable` or :class:`ResidencyError` says why."""
        async with self._switch_lock:
            await self.parts.switch(mode, watch)
            self._audio_refused = False
            self._changed.set()
        self.parts.announce()
        self.emit(self.mode_event())
        self.save()

    @property
    def switching(self) -> bool:
        """A mode switch (or rebuild) is under way."""
        return self._switch_lock.locked()

    def mode_event(self) -> ModeOut:
        """The mode in effect, what the monitor watches, the slot serving each role."""
        return ModeOut(self.mode, self.eyes.watch, dict(self.parts.slots()))

    async def set_watch(self, condition: str | None) -> None:
        """What the monitor of a watching mode looks for (None: nothing)."""
        await self.ready()
        if self.eyes.monitor is None:
            raise InvalidInput(f"the {self.mode} mode does not watch the camera; switch to a watching mode")
        self.eyes.monitor.set_condition(condition)
        self.emit(self.mode_event())

    def _watch_changed(self) -> None:
        self.emit(self.mode_event())


def _error(exc: AriaError) -> ErrorOut:
    return ErrorOut(
        exc.code, str(exc) or type(exc).__name__, retryable=bool(getattr(exc, "retryable", False))
    )
