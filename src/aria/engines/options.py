"""The base of every engine's options model (pydantic), apart from the engine protocols so that code
which only drives engines (the pipeline) does not import pydantic; :mod:`aria.engines.base` exports it."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from aria.types import SAMPLE_RATES

__all__ = ["EngineConfig", "SampleRate", "known_rate"]


class EngineConfig(BaseModel):
    """Base of every engine's options model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def known_rate(value: int) -> int:
    """``value`` when Aria takes that sample rate anywhere (:data:`~aria.types.SAMPLE_RATES`)."""
    if value not in SAMPLE_RATES:
        raise ValueError(f"unsupported sample rate {value} Hz; use one of {sorted(SAMPLE_RATES)}")
    return value


#: A sample rate option: one of :data:`~aria.types.SAMPLE_RATES`, else a validation error that lists them.
SampleRate = Annotated[int, AfterValidator(known_rate)]
