"""The conversation's side of playback: the pipeline asks it what was heard and tells it to stop a turn's
audio; it passes that on to the shell's player (the ``/ws`` pacer) and also withdraws the turn's audio
still waiting in the conversation's own output channel, so nothing of a stopped answer reaches a shell.

Without a player, what was heard is what the shell took from the conversation (an estimate that counts
audio handed out, not played: a shell that knows better passes a player, or corrects it afterwards with
:meth:`~aria.server.conversation.Conversation.truncate`)."""

from __future__ import annotations

from collections.abc import Callable

from aria.pipeline.config import Playback

__all__ = ["Player"]


class Player:
    def __init__(self, inner: Playback | None, withdraw: Callable[[str], None]) -> None:
        self.inner = inner
        self._withdraw = withdraw
        self._handed: dict[str, float] = {}

    def handed(self, turn_id: str, seconds: float) -> None:
        """The shell took ``seconds`` of the turn's audio."""
        while len(self._handed) >= 64 and turn_id not in self._handed:  # the recent turns only
            self._handed.pop(next(iter(self._handed)))
        self._handed[turn_id] = self._handed.get(turn_id, 0.0) + seconds

    def handed_seconds(self, turn_id: str) -> float:
        return self._handed.get(turn_id, 0.0)

    def heard_seconds(self, turn_id: str) -> float | None:
        if self.inner is not None:
            return self.inner.heard_seconds(turn_id)
        return self._handed.get(turn_id, 0.0)

    def cancel(self, turn_id: str) -> None:
        self._withdraw(turn_id)
        if self.inner is not None:
            self.inner.cancel(turn_id)

    async def wait_sent(self, turn_id: str, blocks: int) -> None:
        if self.inner is not None:
            await self.inner.wait_sent(turn_id, blocks)

    def pause(self, turn_id: str) -> None:
        pause = getattr(self.inner, "pause", None)
        if callable(pause):
            pause(turn_id)

    def resume(self, turn_id: str) -> None:
        resume = getattr(self.inner, "resume", None)
        if callable(resume):
            resume(turn_id)
