"""What a conversation emits besides its pipeline's outputs, and the union a shell receives.

A shell (``/ws``, ``/v1/realtime``) reads one ordered stream of :data:`Event`: every
:data:`~aria.pipeline.outputs.Output` of the pipeline of the moment (transcripts, text deltas, audio,
states, tool results, metrics, the end of each answer), the conversation's own notices
(:class:`~aria.pipeline.outputs.NoticeOut`), errors (:class:`~aria.pipeline.outputs.ErrorOut`) and states
(:class:`~aria.pipeline.outputs.StateOut` with no turn, for engines loading), plus the three below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aria.pipeline.outputs import Output

__all__ = ["ConfirmOut", "Event", "ModeOut", "ToolCallOut"]


@dataclass(frozen=True, slots=True)
class ModeOut:
    """The mode in effect (after a switch, a refused switch, or a change of what the monitor watches):
    ``engines`` names the slot serving each role."""

    mode: str
    watch: str | None = None
    engines: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConfirmOut:
    """A tool flagged ``confirm`` waits for the person: answer with
    :meth:`~aria.server.conversation.Conversation.confirm` (``id``, yes or no) before ``timeout_s``."""

    id: str
    tool: str
    arguments: Mapping[str, Any]
    prompt: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class ToolCallOut:
    """The model called a tool the client defined: the client runs it and answers with
    :meth:`~aria.server.conversation.Conversation.tool_output` (``call_id``); the answer waits for it."""

    turn_id: str
    call_id: str
    name: str
    arguments: str


Event = Output | ModeOut | ConfirmOut | ToolCallOut
