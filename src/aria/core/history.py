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
        #: Where the user messages are: the turn window is found without scanning (it is cut for every
        #: answer, on the path from the person's words to the model).
        self._users: list[int] = []
        self._pictures = 0
        self._reindex()

    def _reindex(self) -> None:
        self._users = [i for i, m in enumerate(self._messages) if m.role == "user"]
        self._pictures = sum(1 for m in self._messages if m.images)

    @property
    def has_pictures(self) -> bool:
        """Whether any message carries pictures (a request without any needs none stripped)."""
        return self._pictures > 0

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self._messages)

    def __getitem__(self, index: int) -> Message:
        return self._messages[index]

    def append(self, message: Message) -> None:
        if message.role == "user":
            self._users.append(len(self._messages))
        if message.images:
            self._pictures += 1
        self._messages.append(message)

    def remove(self, index: int) -> Message:
        """Take a message out (a client deleted it); returns it."""
        removed = self._messages.pop(index)
        self._reindex()
        return removed

    def replace(self, index: int, message: Message) -> None:
        """Put ``message`` in the place of the one at ``index`` (a client truncated it)."""
        self._messages[index] = message
        self._reindex()

    def window(self, turns: int) -> tuple[Message, ...]:
        """The messages of the last ``turns`` user turns (each with what followed it)."""
        if turns <= 0:
            return ()
        users = self._users
        return tuple(self._messages[users[-turns] if len(users) >= turns else 0 :])

    def clear(self) -> None:
        self._messages.clear()
        self._users.clear()
        self._pictures = 0
