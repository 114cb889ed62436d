"""One ``aria talk`` conversation: an audio source, an audio sink, a camera and the ``/ws`` client, wired.

Tasks, in plain sight in :meth:`TalkSession.run`:

* the client (:class:`~aria.talk.client.TalkClient`): server messages into :meth:`_on_message` and
  answer audio into the sink, reconnecting when the connection drops;
* the microphone pump: each 20 ms block through the echo guard and canceller (with what the sink
  played, and when, as the reference) and the push-to-talk gate, then to the server;
* the camera pump, at the server's ``video_in.max_fps``;
* playback reports: what the sink has really played of the answer, a few times a second;
* with a file source, the end: once the file has been sent and the last answer is done.

Typed input and commands (``/mode``, ``/stop``, ``/quit``...) go through :meth:`submit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from aria.talk.camera import Camera
from aria.talk.client import TalkClient
from aria.talk.conversation import Conversation
from aria.talk.echo import EchoCanceller, PushToTalk
from aria.talk.files import WavSource
from aria.types import float32_samples, int16_samples

__all__ = ["COMMANDS", "Sink", "Source", "TalkSession"]

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
REPORT_EVERY_S = 0.3
FAST_RELEASE_S = 0.6

COMMANDS = {
    "/mode NAME [WATCH]": "switch mode (Tab cycles through the modes)",
    "/watch CONDITION": "what the active monitor watches for",
    "/stop": "stop the answer (Esc)",
    "/yes, /no": "answer the assistant's confirmation request",
    "/quit": "save the session and leave (Ctrl-C, Ctrl-D)",
}


class Source(Protocol):
    level: float

    def frames(self) -> AsyncIterator[tuple[float, Float32Array]]: ...
    async def aclose(self) -> None: ...


class Sink(Protocol):
    rate: int
    level: float
    first_audio_at: float | None

    def start(self) -> None: ...
    def play(self, samples: Float32Array, turn_id: str | None) -> None: ...
    def flush(self) -> None: ...
    def pause(self, paused: bool) -> None: ...
    def played_ms(self, turn_id: str | None) -> float: ...
    def buffered_s(self) -> float: ...
    def take_played(self) -> list[tuple[float, Float32Array]]: ...
    def latency_s(self) -> float: ...
    async def aclose(self) -> None: ...


class TalkSession:
    def __init__(
        self,
        client: Callable[..., TalkClient],
        *,
        source: Source | None,
        make_sink: Callable[[int], Sink] | None,
        camera: Camera | None = None,
        ptt: PushToTalk | None = None,
        canceller: EchoCanceller | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.conversation = Conversation()
        self.client = client(on_message=self._on_message, on_audio=self._on_audio, on_status=self.note)
        self.source = source
        self.make_sink = make_sink
        self.sink: Sink | None = None
        self.camera = camera
        self.ptt = ptt or PushToTalk(False)
        self.canceller = canceller
        self.on_change = on_change
        self.stopped = asyncio.Event()
        #: The answer whose audio is arriving: the turn of the latest ``state`` ``responding``.
        self.playing: str | None = None
        self._signal: str | None = None
        self._reported: dict[str, float] = {}
        #: Monotonic times of the first answer audio, per turn (the sink's clock for devices).
        self.first_audio: dict[str, float] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        #: Set once the connection's pipeline is ready (its first ``mode`` message): audio sent before
        #: is dropped by the server, so a file waits for it.
        self.ready = asyncio.Event()
        self._pongs: dict[str, asyncio.Future[None]] = {}
        self._pings = 0
        self._release: asyncio.TimerHandle | None = None
        if isinstance(source, WavSource):
            source.sync = self.sync

    # -- server side ----------------------------------------------------------------------------------

    def _on_message(self, m: dict[str, Any]) -> None:
        self.conversation.apply(m)
        kind = m.get("type")
        if kind == "session":
            self.ready.clear()
            rate = int(m["audio_out"]["sample_rate"])
            if self.make_sink is not None and (self.sink is None or self.sink.rate != rate):
                old, self.sink = self.sink, None
                if old is not None:
                    self._spawn(old.aclose(), "old-sink")
                try:
                    sink = self.make_sink(rate)
                    sink.start()
                    self.sink = sink
                except Exception as exc:  # PortAudio's errors (no such device, busy) have no stable type
                    self.conversation.note(f"cannot play the answers ({exc}): text only")
        elif kind == "mode":
            self.ready.set()
        elif kind == "pong":
            waiter = self._pongs.pop(str(m.get("id")), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == "state":
            if m["state"] == "responding":
                self.playing = m["turn_id"]
            self._hold_floor(m["state"] in ("processing", "responding"))
        elif kind == "response_done":
            if m.get("interrupted") and self.sink is not None:
                self.sink.flush()
                self._spawn(self._report(m["turn_id"]), "final-report")
        elif kind == "playback_control" and self.sink is not None:
            self.sink.pause(m["command"] == "pause")
        elif kind == "control_signal" and m.get("signal") == "confirm_action":
            self._signal = m["id"]
        self.on_change()

    def _on_audio(self, payload: bytes) -> None:
        if self.sink is None or len(payload) % 2:
            return
        samples = float32_samples(np.frombuffer(payload, dtype="<i2"))
        turn = self.playing
        if turn is not None and turn not in self.first_audio:
            self.first_audio[turn] = time.monotonic()
        self.sink.play(samples, turn)

    async def sync(self) -> None:
        """Wait until the server has received everything sent so far (a ``ping`` answered)."""
        self._pings += 1
        ident = f"talk-{self._pings}"
        waiter = self._pongs[ident] = asyncio.get_running_loop().create_future()
        await self.client.send_json({"type": "ping", "id": ident})
        try:
            await asyncio.wait_for(waiter, 5.0)
        except TimeoutError:
            self._pongs.pop(ident, None)  # a lost connection: the file goes on after the reconnect

    def note(self, text: str) -> None:
        self.conversation.note(text)
        self.on_change()

    def _hold_floor(self, held: bool) -> None:
        """Fast file mode: the input waits while the assistant holds the floor, and
        :data:`FAST_RELEASE_S` more after the answer: the server sends audio a bounded lead ahead of
        real time, and its echo guard takes what arrives while that audio would still be playing for
        its echo."""
        source = self.source
        if not isinstance(source, WavSource) or not source.fast:
            return
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if held:
            source.floor.clear()
        elif not source.floor.is_set():
            self._release = asyncio.get_running_loop().call_later(FAST_RELEASE_S, self._resume_file, source)

    def _resume_file(self, source: WavSource) -> None:
        self._release = None
        source.floor.set()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("aria talk task %s failed", task.get_name(), exc_info=task.exception())

    # -- person side ----------------------------------------------------------------------------------

    async def submit(self, line: str) -> bool:
        """Typed text or a command; False when it asks to leave."""
        line = line.strip()
        if not line:
            return True
        if not line.startswith("/"):
            self.conversation.typed(line)
            if self.sink is not None:
                self.sink.flush()
            await self.client.send_json({"type": "text", "text": line})
            self.on_change()
            return True
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        if command in ("/quit", "/exit", "/bye"):
            return False
        if command == "/stop":
            await self.interrupt()
        elif command == "/mode" and rest:
            name, _, watch = rest.partition(" ")
            await self.switch_mode(name, watch.strip() or None)
        elif command == "/watch":
            await self.client.send_json({"type": "control", "action": "set_watch", "watch": rest})
        elif command in ("/yes", "/no") and self._signal:
            accept, self._signal = command == "/yes", self._signal
            await self.client.send_json(
                {"type": "control", "action": "confirm_action", "id": self._signal, "accept": accept}
            )
            self._signal = None
        else:
            self.note("commands: " + "; ".join(f"{k}: {v}" for k, v in COMMANDS.items()))
        self.on_change()
        return True

    async def interrupt(self) -> None:
        if self.sink is not None:
            self.sink.flush()
        await self.client.send_json({"type": "control", "action": "interrupt"})

    async def switch_mode(self, mode: str, watch: str | None = None) -> None:
        message: dict[str, Any] = {"type": "control", "action": "switch_mode", "mode": mode}
        if watch:
            message["watch"] = watch
        await self.client.send_json(message)

    async def next_mode(self) -> None:
        modes = self.conversation.modes
        if modes:
            current = modes.index(self.conversation.mode) if self.conversation.mode in modes else -1
            await self.switch_mode(modes[(current + 1) % len(modes)])

    # -- the pumps ------------------------------------------------------------------------------------

    async def _microphone(self) -> None:
        assert self.source is not None
        wait_ready = isinstance(self.source, WavSource)
        if wait_ready:
            await self.ready.wait()
        async for at, block in self.source.frames():
            if wait_ready and not self.ready.is_set():
                await self.ready.wait()
            if self.canceller is not None and self.sink is not None:
                self.canceller.played(self.sink.take_played(), self.sink.rate)
                block = self.canceller.capture(block, at)
            block = self.ptt.gate(block)
            pcm = int16_samples(block).tobytes()
            await self.client.send_audio(pcm)

    async def _camera(self) -> None:
        assert self.camera is not None
        await self.client.connected.wait()
        fps = float(self.client.session.get("video_in", {}).get("max_fps", 1.0))
        async for jpeg in self.camera.frames(fps):
            await self.client.send_jpeg(jpeg)

    async def _report(self, turn_id: str) -> None:
        if self.sink is None:
            return
        played = self.sink.played_ms(turn_id)
        if played > self._reported.get(turn_id, 0.0):
            self._reported[turn_id] = played
            await self.client.send_json(
                {"type": "playback", "turn_id": turn_id, "played_ms": round(played, 1)}
            )

    async def _reports(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY_S)
            if self.playing is not None:
                await self._report(self.playing)
            self.on_change()  # level meters move

    async def _files_done(self, source: WavSource) -> None:
        """End a file conversation once the file is sent and every turn it started is answered."""
        await source.exhausted.wait()
        quiet_since: float | None = None
        while True:
            await asyncio.sleep(0.1)
            busy = self.conversation.state != "idle" or (self.sink is not None and self.sink.buffered_s() > 0)
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.5:
                self.stopped.set()
                return

    async def run(self) -> None:
        """Hold the conversation until :meth:`stop` (or the end of a file input)."""
        client = asyncio.create_task(self.client.run(), name="talk-client")
        self._tasks.append(asyncio.create_task(self._reports(), name="talk-reports"))
        if self.source is not None:
            self._tasks.append(asyncio.create_task(self._microphone(), name="talk-microphone"))
            if isinstance(self.source, WavSource):
                self._tasks.append(asyncio.create_task(self._files_done(self.source), name="talk-files"))
        if self.camera is not None:
            self._tasks.append(asyncio.create_task(self._camera(), name="talk-camera"))
        stop = asyncio.create_task(self.stopped.wait(), name="talk-stop")
        try:
            await asyncio.wait({client, stop}, return_when=asyncio.FIRST_COMPLETED)
            if client.done():
                client.result()  # a refused connection raises here
        finally:
            if self.playing is not None and self.sink is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._report(self.playing), 1)
            await self.client.close()
            for task in [client, stop, *self._tasks]:
                task.cancel()
            await asyncio.gather(client, stop, *self._tasks, return_exceptions=True)
            if self.source is not None:
                await self.source.aclose()
            if self.sink is not None:
                await self.sink.aclose()
            if self.camera is not None:
                self.camera.close()

    def stop(self) -> None:
        self.stopped.set()
