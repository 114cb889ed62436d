"""Per-turn streaming resampling of answer audio: one ``soxr.ResampleStream`` per turn and source rate.

TTS audio arrives in clause-sized or smaller chunks. Resampling each chunk on its own (an FFT resampler
over the chunk) leaves a seam at every boundary; a stream keeps the filter's state from chunk to chunk,
so the turn's audio comes out as if resampled whole. The stream holds back a few milliseconds (the
filter's delay): :meth:`TurnResampler.finish` returns that tail when the turn's audio is complete.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

__all__ = ["TurnResampler"]

Float32 = npt.NDArray[np.float32]
_EMPTY: Float32 = np.zeros(0, dtype=np.float32)


class TurnResampler:
    """Audio of each turn, whatever its rate, to ``rate`` Hz: a stream per (turn, source rate).

    Only the newest turn keeps streams: audio of a new turn drops the older turns' streams (their tails
    are not wanted once a new answer speaks).
    """

    def __init__(self, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self._turn: str | None = None
        self._streams: dict[int, soxr.ResampleStream] = {}

    def push(self, turn_id: str, samples: npt.NDArray[np.float32], rate: int) -> Float32:
        """``samples`` (mono float32 at ``rate``) of ``turn_id`` at :attr:`rate`; may be shorter than the
        input by the filter's delay, which later pushes and :meth:`finish` make up."""
        if turn_id != self._turn:
            self._turn, self._streams = turn_id, {}
        if rate == self.rate:
            return np.asarray(samples, dtype=np.float32)
        stream = self._streams.get(rate)
        if stream is None:
            stream = self._streams[rate] = soxr.ResampleStream(rate, self.rate, 1, dtype="float32")
        return np.asarray(stream.resample_chunk(np.asarray(samples, dtype=np.float32)), dtype=np.float32)

    def finish(self, turn_id: str) -> Float32:
        """The rest of ``turn_id``'s audio held in its streams (empty if none); forgets the turn."""
        if turn_id != self._turn:
            return _EMPTY
        tails = [
            np.asarray(s.resample_chunk(_EMPTY, last=True), dtype=np.float32) for s in self._streams.values()
        ]
        self._turn, self._streams = None, {}
        return np.concatenate(tails) if tails else _EMPTY

    def drop(self, turn_id: str) -> None:
        """Forget ``turn_id``'s streams without their tails (the answer was stopped)."""
        if turn_id == self._turn:
            self._turn, self._streams = None, {}
