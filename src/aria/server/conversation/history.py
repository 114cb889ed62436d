"""A conversation's history as items a client may add, delete and truncate (the Realtime API's
``conversation.item.*``), with the recent turns kept so that an answer can be cut where the person
stopped hearing it."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable

from aria.core.history import History
from aria.errors import InvalidInput
from aria.pipeline.turn import Turn
from aria.pipeline.voice import VoicePipeline
from aria.session.store import Session
from aria.types import Message

__all__ = ["Items"]

#: How many recent answered turns are kept for truncation.
KEPT_TURNS = 32


class Items:
    """The session's history for a client to edit; each change is saved at once."""

    def __init__(self, session: Session, *, save: Callable[[], None]) -> None:
        self.session, self._save = session, save
        self._turns: OrderedDict[str, Turn] = OrderedDict()

    def _history(self) -> History:
        return self.session.history

    def add(self, message: Message) -> None:
        """Put a message in the history without answering it (a response may follow: ``respond``)."""
        self._history().append(message)
        self._save()

    def seen(self, pipeline: VoicePipeline, turn_id: str) -> None:
        """An output of ``turn_id`` went by: keep its turn (the one with the floor) for :meth:`truncate`."""
        turn = pipeline.turn
        if turn is None or turn.id != turn_id or turn_id in self._turns:
            return
        self._turns[turn_id] = turn
        while len(self._turns) > KEPT_TURNS:
            self._turns.popitem(last=False)

    def find(self, predicate: Callable[[Message], bool]) -> int:
        """The index of the newest message that matches; :class:`InvalidInput` when none does."""
        history = self._history()
        for index in range(len(history) - 1, -1, -1):
            if predicate(history[index]):
                return index
        raise InvalidInput("no such item in the conversation")

    def answer_index(self, turn_id: str) -> int:
        return self.find(lambda m: m.role == "assistant" and m.metadata.get("turn_id") == turn_id)

    def delete(self, index: int) -> Message:
        history = self._history()
        if not -len(history) <= index < len(history):
            raise InvalidInput(f"no item at {index}: the conversation has {len(history)}")
        message = history.remove(index)
        self._save()
        return message

    def truncate(self, turn_id: str, audio_end_ms: float) -> Message:
        """Cut the answer of ``turn_id`` to what ``audio_end_ms`` of its audio said: the stored message
        becomes the words heard (marked interrupted, the whole text kept as ``generated``)."""
        if audio_end_ms < 0:
            raise InvalidInput(f"audio_end_ms must not be negative, not {audio_end_ms}")
        index = self.answer_index(turn_id)
        history = self._history()
        message = history[index]
        turn = self._turns.get(turn_id)
        if turn is None:
            raise InvalidInput(f"the audio of {turn_id} is no longer known; only recent answers can be cut")
        if audio_end_ms / 1000 > turn.audio_seconds + 1e-6:
            raise InvalidInput(
                f"audio_end_ms {audio_end_ms:g} is past the end of the answer's audio "
                f"({turn.audio_seconds * 1000:.0f} ms)"
            )
        heard = turn.output_text(spoken=True, heard_s=audio_end_ms / 1000)
        meta = {**message.metadata, "generated": turn.generated_text}
        cut = dataclasses.replace(message, content=heard, interrupted=True, metadata=meta)
        history.replace(index, cut)
        if index < len(history) - 1:  # a new last message: the store sees the history as rewritten
            history.replace(len(history) - 1, dataclasses.replace(history[len(history) - 1]))
        self._save()
        return cut
