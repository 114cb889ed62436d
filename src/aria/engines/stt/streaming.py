"""Helpers shared by the STT adapters: input checks, a worker thread per engine, and a stable prefix.

* :func:`prepare_audio` checks that a chunk is 16 kHz and makes it mono;
* :class:`Worker` runs an engine's blocking calls on one dedicated thread, in submission order, so the
  event loop never waits on a decoder and a clean-up call always runs after the work it cleans up;
* :func:`whisper_confidence` turns Whisper segment scores into one confidence in [0, 1];
* :class:`StablePrefix` turns a sequence of re-decodes of a growing buffer into partials that do not
  flicker: a word is committed once two consecutive hypotheses agree on it, and committed words never
  change (the "local agreement" policy of streaming Whisper).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aria.errors import EngineUnavailable, InvalidInput
from aria.types import AudioChunk

__all__ = ["STT_SAMPLE_RATE", "StablePrefix", "Worker", "prepare_audio", "whisper_confidence"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The sample rate every built-in STT engine takes.
STT_SAMPLE_RATE = 16000

_NORMALISE_RE = re.compile(r"[^\w']+")


def prepare_audio(chunk: AudioChunk, engine: str) -> AudioChunk:
    """``chunk`` as mono 16 kHz audio; any other rate is :class:`InvalidInput` (resample first)."""
    if chunk.sample_rate != STT_SAMPLE_RATE:
        raise InvalidInput(
            f"{engine} expects {STT_SAMPLE_RATE} Hz audio, got {chunk.sample_rate} Hz; resample it first "
            "(aria.core.audio.resample)"
        )
    return chunk.to_mono()


def whisper_confidence(segments: Iterable[tuple[int, float, float]]) -> float:
    """``exp(avg_logprob) * (1 - no_speech_prob)``, token-weighted over ``(tokens, avg_logprob,
    no_speech_prob)`` segments and clipped to [0, 1]; 0 when there are none."""
    weight = logprob = no_speech = 0.0
    for tokens, avg_logprob, no_speech_prob in segments:
        w = float(max(1, tokens))
        weight += w
        logprob += w * avg_logprob
        no_speech += w * no_speech_prob
    if not weight:
        return 0.0
    value = math.exp(min(logprob / weight, 0.0)) * (1.0 - no_speech / weight)
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


class Worker:
    """One named worker thread for an engine's blocking calls, run in the order they are submitted."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=self.name
            )

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Schedule ``fn(*args)`` and return an awaitable future for its result (cancelling the future
        drops the result; a call already running finishes on the thread)."""
        if self._executor is None:
            raise EngineUnavailable(f"{self.name} is not started; call start() first", engine=self.name)
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.submit(fn, *args)

    def detach(self, fn: Callable[[], object], what: str) -> None:
        """Run ``fn`` after everything already submitted, without waiting for it (clean-up from a
        ``finally`` block); a failure is logged."""
        if self._executor is None:
            return
        try:
            future = self._executor.submit(fn)
        except RuntimeError:  # shut down meanwhile: nothing left to clean up on that thread
            return

        def report(done: concurrent.futures.Future[object]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.warning("%s: %s failed: %s", self.name, what, done.exception())

        future.add_done_callback(report)

    def close(self) -> None:
        """Stop taking work; queued calls are dropped, a running one finishes in the background."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _normalise(word: str) -> str:
    return _NORMALISE_RE.sub("", word.casefold())


class StablePrefix:
    """Commits the words on which two consecutive hypotheses agree; committed words never change.

    Each :meth:`update` takes a new hypothesis (the re-decode of a longer buffer). Words are compared
    case- and punctuation-insensitively after the committed prefix, so ``"there"`` then ``"there,"``
    agree. The partial to show is ``committed + tail``, where the tail is the newest hypothesis past the
    committed words.
    """

    def __init__(self) -> None:
        self.committed: list[str] = []
        self._previous_tail: list[str] | None = None
        self._tail: list[str] = []

    @property
    def text(self) -> str:
        """The partial to show: the committed words and the newest tentative tail."""
        return " ".join(self.committed + self._tail)

    @property
    def committed_text(self) -> str:
        return " ".join(self.committed)

    def update(self, text: str) -> str:
        """Feed the next hypothesis; returns the partial to show."""
        words = text.split()
        # The hypothesis past the committed words (its first words are taken to be the committed ones).
        tail = words[len(self.committed) :]
        if self._previous_tail is not None:
            agreed = 0
            for old, new in zip(self._previous_tail, tail, strict=False):
                if _normalise(old) != _normalise(new):
                    break
                agreed += 1
            if agreed:
                self.committed += tail[:agreed]
                tail = tail[agreed:]
        self._previous_tail = tail
        self._tail = tail
        return self.text

    def reset(self) -> None:
        self.committed = []
        self._previous_tail = None
        self._tail = []
