"""The active monitor: watch camera frames for a condition ("someone enters the room") and alert once.

Every frame goes through these gates, in order; the first that stops it counts it in :class:`MonitorStats`:

1. **condition**: with no watch condition set, frames are ignored (``skipped_no_condition``);
2. **back-off**: after ``k`` consecutive failed checks no check starts for
   ``min(backoff_s * 2 ** (k - 1), backoff_max_s)`` seconds (``skipped_backoff``); a success resets it;
3. **sampling**: once a check has started, the next needs at least ``every_frames`` frames and
   ``every_s`` seconds after it (0 turns either rule off) (``skipped_sampling``);
4. **change**: with ``change_gated``, a frame that a :class:`~aria.engines.vision.change.ChangeDetector`
   finds unchanged since the last frame admitted (the one checked) is skipped (``skipped_unchanged``).

An admitted frame becomes the *pending* frame. One check runs at a time: a frame admitted while a check
runs replaces the pending one (``superseded``), so the latest admitted frame is checked when the check
finishes. A check sends the frame and the condition to the vision-language model and asks for "YES" or
"NO" first, then a short description; an answer that starts with neither counts as not holding. A check
that fails or runs past ``check_timeout_s`` counts an error, is reported to ``on_error`` and starts the
back-off; the loop goes on.

Alerts are **edge-triggered**: the first check that finds the condition holding alerts; it must then be
seen not holding in ``rearm_after`` consecutive checks before it can alert again. A rising edge is
*suppressed* (and counted, never delivered later) when the previous alert was less than ``cooldown_s``
ago, or when its description, normalised (case, punctuation, spacing), equals the previous alert's and
that alert was less than ``dedup_s`` ago. Alerts go to ``on_alert`` and, when ``webhook_url`` is set, are
POSTed as JSON in a background task that never blocks the loop (failures are logged and counted).
All intervals use the injectable ``clock`` (monotonic seconds); an alert's ``at`` is Unix time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import urlsplit

from aria.core.aio import closing_stream
from aria.core.retry import RetryPolicy
from aria.engines.base import LLM, LLMRequest
from aria.engines.http import is_loopback
from aria.engines.vision.change import ChangeDetector
from aria.errors import AriaError, EngineTimeout
from aria.types import GeneratedToken, ImageFrame, Message

if TYPE_CHECKING:
    import httpx

__all__ = ["Alert", "Monitor", "MonitorConfig", "MonitorStats", "Verdict", "parse_answer"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_SYSTEM_PROMPT = (
    "You watch a camera for a person. Decide whether the condition they gave holds in the image right "
    "now. Answer YES or NO first, then describe in one short sentence what you see."
)
_USER_PROMPT = "Condition: {condition}\nDoes this condition hold in the image? Start with YES or NO."
_ANSWER = re.compile(r"^[\W_]*(?:answer\W*)?(yes|no)\b[\W_]*", re.IGNORECASE)
_MAX_DESCRIPTION = 300
_NO_JITTER = random.Random(0)  # RetryPolicy.delay draws its jitter from an rng; with jitter=0 it is unused


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    every_frames: int = 0
    every_s: float = 2.0
    change_gated: bool = True
    #: Passed to the change detector's ``threshold`` when set.
    change_threshold: float | None = None
    cooldown_s: float = 30.0
    dedup_s: float = 300.0
    rearm_after: int = 1
    check_timeout_s: float = 20.0
    max_tokens: int = 60
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("every_frames", "every_s", "cooldown_s", "dedup_s", "backoff_s", "backoff_max_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"monitor {name} must be >= 0, got {getattr(self, name)}")
        for name in ("rearm_after", "check_timeout_s", "max_tokens", "webhook_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"monitor {name} must be > 0, got {getattr(self, name)}")
        if self.change_threshold is not None and not 0.0 < self.change_threshold <= 1.0:
            raise ValueError(f"monitor change_threshold must be in (0, 1], got {self.change_threshold}")
        url = self.webhook_url
        if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            raise ValueError(
                f"monitor webhook_url must be an http:// or https:// URL with a host, got {url!r}"
            )


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's outcome; ``raw`` is the model's whole answer."""

    holds: bool
    description: str
    latency_ms: float
    frame_timestamp: float
    raw: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    condition: str
    description: str
    #: Unix time of the alert.
    at: float
    frame_timestamp: float


@dataclass(slots=True)
class MonitorStats:
    frames: int = 0
    skipped_no_condition: int = 0
    skipped_backoff: int = 0
    skipped_sampling: int = 0
    skipped_unchanged: int = 0
    superseded: int = 0
    checks: int = 0
    holds: int = 0
    unparsed: int = 0
    alerts: int = 0
    suppressed_cooldown: int = 0
    suppressed_duplicate: int = 0
    errors: int = 0
    webhook_posts: int = 0
    webhook_failures: int = 0


def parse_answer(text: str) -> tuple[bool | None, str]:
    """``(holds, description)`` from a model's answer; ``holds`` is None when it starts with neither
    YES nor NO (after whitespace, punctuation, markdown or an "Answer:" label)."""
    match = _ANSWER.match(text)
    if match is None:
        return None, " ".join(text.split())[:_MAX_DESCRIPTION]
    return match.group(1).lower() == "yes", " ".join(text[match.end() :].split())[:_MAX_DESCRIPTION]


def _normalise(description: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", description.lower()).split())


class Monitor:
    """Checks frames against a watch condition and raises de-duplicated alerts; see the module docstring.

    Feed it with :meth:`run` (an async iterable of frames, e.g. a ``Channel[ImageFrame]``) or frame by
    frame with :meth:`submit`; :meth:`drain` waits until no check is running or pending."""

    def __init__(
        self,
        vlm: LLM,
        config: MonitorConfig | None = None,
        *,
        condition: str | None = None,
        on_alert: Callable[[Alert], None],
        on_check: Callable[[Verdict], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        session_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config if config is not None else MonitorConfig()
        self.stats = MonitorStats()
        self._vlm, self._clock, self.session_id = vlm, clock, session_id
        self._on_alert, self._on_check, self._on_error = on_alert, on_check, on_error
        threshold = self.config.change_threshold
        detector = (
            ChangeDetector.Config() if threshold is None else ChangeDetector.Config(threshold=threshold)
        )
        self._detector = ChangeDetector(detector)
        self._condition: str | None = None
        self._generation = 0
        self._pending: ImageFrame | None = None
        self._worker: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._failures = 0
        self._retry_at: float | None = None
        #: The pause after consecutive failures: ``core.retry``'s capped doubling, without jitter.
        self._backoff = RetryPolicy(
            attempts=1,
            base_delay=min(self.config.backoff_s, self.config.backoff_max_s),
            max_delay=self.config.backoff_max_s,
            jitter=0.0,
        )
        self._closed = False
        self.set_condition(condition)

    @property
    def condition(self) -> str | None:
        return self._condition

    @property
    def busy(self) -> bool:
        """Whether a check is running or a frame is waiting for one."""
        return self._worker is not None and not self._worker.done()

    def set_condition(self, condition: str | None) -> None:
        """Watch for ``condition`` (stripped; empty or None stops watching). Always starts afresh: armed,
        no cooldown or duplicate memory, sampling and change detection reset so the next frame is
        checked; a check still running for the previous condition is ignored when it ends."""
        self._condition = (condition or "").strip() or None
        self._generation += 1
        self._armed, self._misses = True, 0
        self._last_alert_at: float | None = None
        self._last_key: str | None = None
        self._last_check_at: float | None = None
        self._since_check = 0
        self._detector.reset()
        if self._condition is None:
            self._pending = None

    def submit(self, frame: ImageFrame) -> bool:
        """Offer one frame; True when it passed the gates and will be checked (unless superseded).
        Needs a running event loop."""
        self.stats.frames += 1
        self._since_check += 1
        if self._closed:
            return False
        if self._condition is None:
            self.stats.skipped_no_condition += 1
            return False
        if self._retry_at is not None and self._clock() < self._retry_at:
            self.stats.skipped_backoff += 1
            return False
        if self._last_check_at is not None and (
            self._since_check < self.config.every_frames
            or self._clock() - self._last_check_at < self.config.every_s
        ):
            self.stats.skipped_sampling += 1
            return False
        if self.config.change_gated and not self._changed(frame):  # compares with the last admitted frame
            self.stats.skipped_unchanged += 1
            return False
        if self._pending is not None:
            self.stats.superseded += 1
        self._pending = frame
        if not self.busy:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="aria-monitor")
        return True

    async def run(self, frames: AsyncIterable[ImageFrame]) -> None:
        """Watch ``frames`` until the iterable ends (then finish the pending check) or this is cancelled."""
        try:
            async for frame in frames:
                self.submit(frame)
            await self.drain()
        finally:
            await self._stop_worker()

    async def drain(self) -> None:
        """Wait until no check is running or pending."""
        while self._worker is not None and not self._worker.done():
            await asyncio.wait({self._worker})

    async def check(self, frame: ImageFrame, *, condition: str | None = None) -> Verdict:
        """One model call for ``frame`` against ``condition`` (default: the current one). Touches no
        alert state; raises the model's error, or :class:`EngineTimeout` after ``check_timeout_s``."""
        condition = (condition or self._condition or "").strip()
        if not condition:
            raise ValueError("no watch condition to check")
        request = LLMRequest(
            messages=(Message("user", _USER_PROMPT.format(condition=condition), images=(frame,)),),
            system_prompt=_SYSTEM_PROMPT,
            temperature=0.0,
            max_tokens=self.config.max_tokens,
            metadata={"purpose": "monitor"},
        )
        started = time.perf_counter()
        parts: list[str] = []
        try:
            async with asyncio.timeout(self.config.check_timeout_s):
                async with closing_stream(self._vlm.stream(request)) as chunks:
                    parts += [chunk.text async for chunk in chunks if isinstance(chunk, GeneratedToken)]
        except TimeoutError as exc:
            limit = self.config.check_timeout_s
            raise EngineTimeout(f"monitor check took longer than {limit:g} s", engine=self._vlm.name) from exc
        raw = "".join(parts).strip()
        holds, description = parse_answer(raw)
        if holds is None:
            self.stats.unparsed += 1
            log.debug("monitor: answer starts with neither YES nor NO, counted as NO: %r", raw)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return Verdict(bool(holds), description, latency_ms, frame.timestamp, raw)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop checking, let webhook posts finish (``webhook_timeout_s`` at most), close the client."""
        self._closed, self._pending = True, None
        await self._stop_worker()
        if self._posts:
            _, late = await asyncio.wait(set(self._posts), timeout=self.config.webhook_timeout_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- internals ------------------------------------------------------------------------------------

    def _changed(self, frame: ImageFrame) -> bool:
        try:
            return self._detector.changed(frame)
        except AriaError as exc:  # undecodable frame or no Pillow: let the model have a look
            log.warning("monitor: change detection failed, checking the frame anyway: %s", exc)
            return True

    async def _stop_worker(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            await asyncio.wait({self._worker})

    async def _work(self) -> None:
        while (frame := self._pending) is not None and (condition := self._condition) is not None:
            self._pending, generation = None, self._generation
            self._last_check_at, self._since_check = self._clock(), 0
            self.stats.checks += 1
            try:
                verdict = await self.check(frame, condition=condition)
            except Exception as exc:
                self._failed(exc)
                continue
            self._failures, self._retry_at = 0, None
            if generation == self._generation:  # else the condition changed meanwhile: stale
                self._call(self._on_check, verdict)
                self._judge(verdict, condition)

    def _failed(self, exc: Exception) -> None:
        self.stats.errors += 1
        self._failures += 1
        delay = self._backoff.delay(self._failures - 1, _NO_JITTER)
        self._retry_at = self._clock() + delay
        if self._pending is not None:
            self._pending = None
            self.stats.skipped_backoff += 1
        self._detector.reset()  # the failed frame got no verdict: check the scene again after the pause
        log.warning("monitor check failed (%d in a row), pausing %.1f s: %r", self._failures, delay, exc)
        self._call(self._on_error, exc)

    def _judge(self, verdict: Verdict, condition: str) -> None:
        if not verdict.holds:
            self._misses += 1
            self._armed = self._armed or self._misses >= self.config.rearm_after
            return
        self.stats.holds += 1
        self._misses = 0
        if not self._armed:
            return  # still holding since the last rising edge
        self._armed = False
        now, key = self._clock(), _normalise(verdict.description)
        since = None if self._last_alert_at is None else now - self._last_alert_at
        if since is not None and since < self.config.cooldown_s:
            self.stats.suppressed_cooldown += 1
            log.info("monitor alert suppressed: %.1f s since the last one (cooldown)", since)
            return
        if since is not None and since < self.config.dedup_s and key == self._last_key:
            self.stats.suppressed_duplicate += 1
            log.info("monitor alert suppressed: same description as %.1f s ago", since)
            return
        self._last_alert_at, self._last_key = now, key
        alert = Alert(uuid.uuid4().hex, condition, verdict.description, time.time(), verdict.frame_timestamp)
        self.stats.alerts += 1
        log.info("monitor alert %s: %s: %s", alert.id, condition, alert.description)
        self._call(self._on_alert, alert)
        if self.config.webhook_url is not None:
            task = asyncio.get_running_loop().create_task(self._post(alert), name="aria-monitor-webhook")
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)

    async def _post(self, alert: Alert) -> None:
        url = self.config.webhook_url
        assert url is not None
        payload: dict[str, Any] = {"condition": alert.condition, "description": alert.description}
        payload |= {"at": alert.at, "alert_id": alert.id, "session_id": self.session_id}
        parts = urlsplit(url)  # logged without credentials or query
        where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        try:
            import httpx

            if self._client is None:
                timeout = self.config.webhook_timeout_s
                self._client = httpx.AsyncClient(timeout=timeout, trust_env=not is_loopback(url))
            response = await self._client.post(url, json=payload)
            response.raise_for_status()
        except asyncio.CancelledError:
            self.stats.webhook_failures += 1
            log.warning("monitor webhook %s: alert %s not delivered before closing", where, alert.id)
            raise
        except Exception as exc:
            self.stats.webhook_failures += 1
            log.warning("monitor webhook %s failed for alert %s: %r", where, alert.id, exc)
            return
        self.stats.webhook_posts += 1

    def _call(self, callback: Callable[[_T], None] | None, value: _T) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:
            log.exception("monitor callback %r failed", callback)
