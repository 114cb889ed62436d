"""What a conversation sees: the newest uploaded picture and camera frame, and the active monitor of a
watching mode (its lifecycle, its alerts, "tell me when ..." by voice)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aria.core.channels import Channel, Overflow
from aria.core.modespec import ModeSpec
from aria.engines.base import LLM
from aria.pipeline.mode_pipelines import watch_command
from aria.pipeline.monitor import Alert, Monitor, MonitorConfig
from aria.pipeline.outputs import NoticeOut
from aria.session.store import Session
from aria.types import ImageFrame, Message

__all__ = ["CAMERA_FRESH_S", "Eyes"]

log = logging.getLogger(__name__)
#: How long a camera frame counts as what the camera sees now.
CAMERA_FRESH_S = 10.0


class Eyes:
    """Pictures for questions and the monitor. Each alert goes into the session's history (saved) and out
    as a notice through ``emit``; ``on_watch`` hears each change of the watched condition made by voice."""

    def __init__(
        self,
        session: Session,
        *,
        emit: Callable[[NoticeOut], None],
        save: Callable[[], None],
        mode: Callable[[], str],
        on_watch: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self._emit, self._save, self._mode = emit, save, mode
        self._on_watch, self._clock = on_watch, clock
        #: The newest uploaded image and camera frame, with when they came.
        self.image: tuple[float, ImageFrame] | None = None
        self.camera: tuple[float, ImageFrame] | None = None
        self.monitor: Monitor | None = None
        #: Camera frames for the monitor (a watching mode only): two slots, the oldest dropped.
        self.frames: Channel[ImageFrame] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def watch(self) -> str | None:
        return self.monitor.condition if self.monitor is not None else None

    def uploaded(self, image: ImageFrame) -> None:
        self.image = (self._clock(), image)

    def seen(self, frame: ImageFrame) -> None:
        """A camera frame: kept for questions, and passed to the monitor when one watches."""
        self.camera = (self._clock(), frame)
        if self.frames is not None:
            self.frames.send_nowait(frame)

    def picture(self) -> ImageFrame | None:
        """The picture for a question: the newer of the last uploaded image and the last camera frame
        (a camera frame only while fresh: the camera may have been turned off)."""
        now = self._clock()
        camera = self.camera if self.camera is not None and now - self.camera[0] <= CAMERA_FRESH_S else None
        candidates = [c for c in (self.image, camera) if c is not None]
        return max(candidates, key=lambda c: c[0])[1] if candidates else None

    def start_monitor(self, llm: LLM, spec: ModeSpec, condition: str | None) -> None:
        config = MonitorConfig(
            every_frames=spec.every_frames,
            every_s=spec.every_s,
            change_gated=spec.change_gated,
            cooldown_s=spec.cooldown_s,
            dedup_s=spec.dedup_s,
            webhook_url=spec.webhook_url,
        )
        self.monitor = Monitor(
            llm,
            config,
            condition=condition,
            on_alert=self._alert,
            on_error=_monitor_failed,
            session_id=self.session.id,
        )
        frames: Channel[ImageFrame] = Channel(2, Overflow.DROP_OLDEST, name="camera")
        self.frames = frames
        self._task = asyncio.get_running_loop().create_task(self.monitor.run(frames), name="monitor")

    async def stop_monitor(self) -> None:
        if self.frames is not None:
            self.frames.close()
            self.frames = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.monitor is not None:
            await self.monitor.aclose()
            self.monitor = None

    def _alert(self, alert: Alert) -> None:
        text = f"Seen: {alert.description}" if alert.description else f"Seen: {alert.condition}"
        meta = {"alert_id": alert.id, "watch": alert.condition}
        self.session.history.append(Message("assistant", text, mode=self._mode(), metadata=meta))
        data = {
            "kind": "monitor",
            "alert_id": alert.id,
            "condition": alert.condition,
            "description": alert.description,
            "at": alert.at,
        }
        self._emit(NoticeOut(text, "info", data))
        self._save()

    def command(self, text: str) -> str | None:
        """The monitor understands "tell me when ..." and "stop watching" itself: the reply to give, or
        None when ``text`` is no such command (or nothing watches)."""
        command = watch_command(text)
        if command is None or self.monitor is None:
            return None
        verb, condition = command
        self.monitor.set_condition(condition)
        self._on_watch()
        if verb == "stop":
            return "Okay, I have stopped watching."
        return f"Okay, I will tell you when I see that {condition}."


def _monitor_failed(exc: BaseException) -> None:
    log.warning("the monitor's check failed: %s", exc)
