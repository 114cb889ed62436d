"""The base of every engine's options model (pydantic), apart from the engine protocols so that code
which only drives engines (the pipeline) does not import pydantic; :mod:`aria.engines.base` exports it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["EngineConfig"]


class EngineConfig(BaseModel):
    """Base of every engine's options model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
