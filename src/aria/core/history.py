"""Conversation history: an ordered list of messages with a turn window for prompts."""

from __future__ import annotations

from collections.abc import Iterator

from aria.types import Message

__all__ = ["History"]


class History:
    """In-memory history. The session layer persists it; the pipeline only appends (a client of the
    conversation may remove or replace messages)."""

    def __init__(self, messages: list[Message] | None = None) -> None:
        self._messages: list[Message] = list(messages or [])

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self._messages)

    def __getitem__(self, index: int) -> Message:
        return self._messages[index]

    def append(self, message: Message) -> None:
        self._messages.append(message)

    def remove(self, index: int) -> Message:
        """Take a message out (a client deleted it); returns it."""
        return self._messages.pop(index)

    def replace(self, index: int, message: Message) -> None:
        """Put ``message`` in the place of the one at ``index`` (a client truncated it)."""
        self._messages[index] = message

    def window(self, turns: int) -> tuple[Message, ...]:
        """The messages of the last ``turns`` user turns (each with what followed it)."""
        if turns <= 0:
            return ()
        seen = 0
        for index in range(len(self._messages) - 1, -1, -1):
            if self._messages[index].role == "user":
                seen += 1
                if seen == turns:
                    return tuple(self._messages[index:])
        return tuple(self._messages)

    def clear(self) -> None:
        self._messages.clear()
