"""``turn:silence``: every pause ends the turn (what Aria did before turn models). Costs nothing; it is the
fallback when no turn model can run."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from aria.engines.base import Capabilities, EngineHealth, EngineKind, TurnPrediction

__all__ = ["SilenceTurn"]


class SilenceTurn:
    """Says "complete" (probability 1.0) for every pause, whatever the audio and text."""

    kind: ClassVar[EngineKind] = "turn"
    name: str = "silence"
    capabilities: Capabilities = Capabilities(streaming=False, sample_rate=16000, local=True)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True, detail="every pause ends the turn")

    async def predict(self, audio: npt.NDArray[np.float32], text: str | None = None) -> TurnPrediction:
        return TurnPrediction(complete=True, probability=1.0, reason="pause")
