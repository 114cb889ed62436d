"""The transport-neutral conversation core: what ``/ws`` and ``/v1/realtime`` share.

See :mod:`aria.server.conversation.core` for the API a shell uses and
:mod:`aria.server.conversation.events` for what comes out.
"""

from aria.server.conversation.core import LISTEN_RATE, Conversation
from aria.server.conversation.events import ConfirmOut, Event, ModeOut, ToolCallOut
from aria.server.conversation.notices import FALLBACK_NOTICE_S
from aria.server.conversation.tools import ClientTools, Refused, ToolOutput
from aria.server.conversation.watching import CAMERA_FRESH_S

__all__ = [
    "CAMERA_FRESH_S",
    "FALLBACK_NOTICE_S",
    "LISTEN_RATE",
    "ClientTools",
    "ConfirmOut",
    "Conversation",
    "Event",
    "ModeOut",
    "Refused",
    "ToolCallOut",
    "ToolOutput",
]
