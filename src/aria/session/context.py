"""The context window: recent turns that fit the model's context, plus a running summary of older ones.

:class:`ContextWindow` is the pipeline's :class:`~aria.pipeline.voice.ContextBuilder`. Before every LLM
request, :meth:`ContextWindow.build` returns the messages and system prompt to send, within
``context_tokens - reserve_tokens`` tokens (the reserve is left for the answer)::

    system prompt   = the caller's prompt
                    + "What you know about the user:" profile facts     (when there are any)
                    + "Summary of the earlier conversation: ..."        (once one exists)
                    + "Current date and time: Tuesday 14 May 2024, 15:42 CEST"
    messages        = the most recent whole turns that fit (a turn: a user message and what follows it)

Stable parts come first and the clock last, so an engine's prompt cache keeps the caller's prompt.
The last turn is always sent; when it alone is too long its user message is cut from the start (a
marker says so) and what follows it is left out. The last ``min_recent_turns`` turns have priority over
the profile facts and the summary: those are left out of a request before these turns are.

Turns that fall out of the window are summarised by the ``summarizer`` LLM (a small model) in the
background: once at least ``summarize_every`` turns have fallen out since the last summary, ``build()``
starts one task that asks for a new summary from the previous one plus those turns, and returns at once;
the next request after it lands carries the new summary. One summary runs at a time; when one fails
(or times out) the previous summary is kept, the failure is logged, and the next attempt waits until
another ``summarize_every`` turns have fallen out. Turns already summarised never come back into the
window. Without a summarizer the older turns are simply trimmed.

``build()`` is synchronous and cheap: token counts are cached per message object and it walks only the
turns it sends (about 0.1 ms for a 200-turn history whose messages were counted before).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import chain, islice

from aria.core.history import History
from aria.engines.base import LLM, LLMRequest
from aria.errors import ConfigError, InvalidInput
from aria.session.tokens import (
    MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    TokenCounter,
    estimate_tokens,
    message_tokens,
    truncate_tokens,
)
from aria.types import Message

__all__ = ["PROFILE_HEADER", "SUMMARY_HEADER", "TRUNCATION_MARKER", "ContextWindow", "local_now"]

log = logging.getLogger(__name__)

#: Put in front of a user message whose beginning was cut to fit the window.
TRUNCATION_MARKER = "[… earlier part cut …] "
SUMMARY_HEADER = "Summary of the earlier conversation: "
PROFILE_HEADER = "What you know about the user:"

SUMMARY_INSTRUCTIONS = (
    "You keep a running summary of a conversation between a user and a voice assistant. Update the "
    "previous summary with the new part of the conversation. Write a short, factual summary in the third "
    "person, at most about {words} words: keep names, facts about the user, preferences, decisions, open "
    "questions and promises; leave out greetings and small talk. Reply with the summary only."
)
#: Turns sent to the summarizer in one request, in estimated tokens (the batch ends at the first turn
#: boundary past it; a longer backlog is summarised over several rounds).
SUMMARY_BATCH_TOKENS = 3000
#: Each message's text in a summary request is cut to this many characters (middle elided).
SUMMARY_MESSAGE_CHARS = 2000
_MIN_USER_TOKENS = 16
_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "tool": "Tool", "system": "System"}


def local_now() -> datetime:
    """The current local time, timezone-aware (the default clock)."""
    return datetime.now().astimezone()


class ContextWindow:
    """Builds each request's context from a session's history: see the module docstring.

    ``count_tokens`` must be deterministic for a given text (counts are cached per message). ``profile``
    returns the user's facts (a session's ``memory``) and is called on every build. The caller owns the
    ``summarizer`` engine (starts and closes it); :meth:`aclose` only cancels a summary in progress.
    """

    def __init__(
        self,
        *,
        context_tokens: int = 4096,
        reserve_tokens: int = 512,
        min_recent_turns: int = 2,
        count_tokens: TokenCounter = estimate_tokens,
        summarizer: LLM | None = None,
        summarize_every: int = 4,
        summary_tokens: int = 256,
        summary_timeout_s: float = 60.0,
        clock: Callable[[], datetime] = local_now,
        profile: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        _require(context_tokens > 0, "context_tokens", "the model's context size in tokens, e.g. 4096")
        _require(
            0 <= reserve_tokens < context_tokens,
            "reserve_tokens",
            "the answer's max_tokens: at least 0 and less than context_tokens",
        )
        _require(min_recent_turns >= 1, "min_recent_turns", "1 or more")
        _require(summarize_every >= 1, "summarize_every", "1 or more turns")
        _require(summary_tokens >= 1, "summary_tokens", "1 or more")
        _require(summary_timeout_s > 0, "summary_timeout_s", "a positive number of seconds")
        self.context_tokens = context_tokens
        self.reserve_tokens = reserve_tokens
        self.min_recent_turns = min_recent_turns
        self.count_tokens = count_tokens
        self.summarizer = summarizer
        self.summarize_every = summarize_every
        self.summary_tokens = summary_tokens
        self.summary_timeout_s = summary_timeout_s
        self.clock = clock
        self.profile = profile
        #: Set when a new summary has been stored; cleared when a summary task starts.
        self.summary_ready = asyncio.Event()
        #: Summary tasks that failed or timed out (the previous summary was kept each time).
        self.summary_failures = 0
        self._summary: str | None = None
        self._summarized_upto = 0
        self._anchor: Message | None = None  # the last message the summary covers
        self._check_from = 0  # turns dropped after this index count towards the next summary
        self._generation = 0  # bumped when the history is replaced: in-flight summaries are stale
        self._task: asyncio.Task[None] | None = None
        self._costs: dict[int, tuple[Message, int]] = {}
        self._system_cost: tuple[str, int] = ("", 0)
        self._warned_tight = False
        self._closed = False

    # -- state ----------------------------------------------------------------------------------------

    @property
    def summary(self) -> str | None:
        """The running summary of the turns before :attr:`summarized_upto`, or None."""
        return self._summary

    @property
    def summarized_upto(self) -> int:
        """How many messages, from the start of the history, the summary covers."""
        return self._summarized_upto

    @property
    def summarizing(self) -> bool:
        return self._task is not None

    def restore(self, summary: str | None, summarized_upto: int) -> None:
        """Take back a summary saved with the session (:attr:`summary` and :attr:`summarized_upto`); it
        must pair with the history saved with it."""
        if summarized_upto < 0 or (summary is None and summarized_upto):
            raise InvalidInput("summarized_upto must be 0 without a summary, and never negative")
        self._cancel_task()
        self._generation += 1
        self._summary, self._summarized_upto = summary, summarized_upto
        self._check_from, self._anchor = summarized_upto, None

    async def wait_summary(self) -> None:
        """Until the summary task in progress (if any) has ended."""
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel a summary in progress; later builds still work but start no summaries."""
        self._closed = True
        task = self._task
        self._cancel_task()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> ContextWindow:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- building ---------------------------------------------------------------------------------------

    def build(self, history: History, system_prompt: str | None) -> tuple[tuple[Message, ...], str | None]:
        """The messages and system prompt for the next request (see the module docstring)."""
        messages = list(history)
        self._check_history(messages)
        # Summarised turns stay out of the window (a summary restored over the whole history aside).
        floor = self._summarized_upto if self._summarized_upto < len(messages) else 0
        available = self.context_tokens - self.reserve_tokens - REPLY_PRIMING
        units = self._units(messages, floor)
        recent = list(islice(units, self.min_recent_turns))
        system = self._system(system_prompt, available - sum(cost for _, cost in recent))
        room = available - self._system_tokens(system)
        if not recent:
            return (), system
        last_start, last_cost = recent[0]
        if last_cost > room:
            self._maybe_summarize(messages, last_start)
            return (self._cut(messages[last_start], room, last_start, len(messages)),), system
        start, used = last_start, last_cost
        for unit_start, cost in chain(recent[1:], units):
            if used + cost > room:
                break
            start, used = unit_start, used + cost
        self._maybe_summarize(messages, start)
        return tuple(messages[start:]), system

    def _cost(self, message: Message) -> int:
        entry = self._costs.get(id(message))
        if entry is not None and entry[0] is message:
            return entry[1]
        cost = message_tokens(message, self.count_tokens)
        self._costs[id(message)] = (message, cost)
        return cost

    def _units(self, messages: Sequence[Message], floor: int) -> Iterator[tuple[int, int]]:
        """(start, tokens) of each turn from the last back to ``floor``; messages before the first user
        message form a turn of their own."""
        cost = 0
        for index in range(len(messages) - 1, floor - 1, -1):
            message = messages[index]
            cost += self._cost(message)
            if message.role == "user" or index == floor:
                yield index, cost
                cost = 0

    def _system(self, base: str | None, room: int) -> str:
        """The system prompt with as many extras (profile, then summary) as leave ``room`` for the
        most recent turns."""
        head: list[str | None] = [base] if base else []
        clock = "Current date and time: " + _format_time(self.clock())
        profile = self._profile_block()
        summary = SUMMARY_HEADER + self._summary if self._summary else None
        candidates: list[list[str | None]] = [[*head, profile, summary], [*head, profile], head]
        system = ""
        for parts in candidates:
            system = "\n\n".join([*(p for p in parts if p), clock])
            if self._system_tokens(system) <= room:
                return system
        return system

    def _system_tokens(self, system: str) -> int:
        text, cost = self._system_cost
        if text != system:
            cost = self.count_tokens(system) + MESSAGE_OVERHEAD
            self._system_cost = (system, cost)
        return cost

    def _profile_block(self) -> str | None:
        if self.profile is None:
            return None
        try:
            facts = dict(self.profile())
        except Exception as exc:
            log.warning("reading the user's profile failed; sending no profile facts: %s", exc, exc_info=exc)
            return None
        lines = [f"- {_one_line(k, 80)}: {_one_line(v, 300)}" for k, v in facts.items() if str(v).strip()]
        return "\n".join([PROFILE_HEADER, *lines]) if lines else None

    def _cut(self, message: Message, room: int, start: int, end: int) -> Message:
        """The last user message cut from its start to fit ``room`` (what followed it is left out)."""
        if end - start > 1:
            log.warning("the last turn does not fit the context: sending only its user message, cut")
        if room < _MIN_USER_TOKENS + MESSAGE_OVERHEAD:
            if not self._warned_tight:
                self._warned_tight = True
                log.warning(
                    "the system prompt leaves %d of %d tokens for messages; the request will exceed the "
                    "context budget: shorten the system prompt or raise context_tokens",
                    room,
                    self.context_tokens - self.reserve_tokens,
                )
            room = _MIN_USER_TOKENS + MESSAGE_OVERHEAD
        fixed = self._cost(message) - self.count_tokens(message.content)  # template overhead, images
        content = truncate_tokens(
            message.content, room - fixed, self.count_tokens, keep="end", marker=TRUNCATION_MARKER
        )
        return dataclasses.replace(message, content=content)

    def _shifted(self, messages: Sequence[Message]) -> bool:
        """Follow the summary when the oldest messages were cut from the history (the session store
        archives them past ``session.max_messages``): ``True`` when its last message is still there."""
        for index in range(min(self._summarized_upto, len(messages)) - 1, -1, -1):
            if messages[index] is self._anchor:
                shift = self._summarized_upto - 1 - index
                self._summarized_upto -= shift
                self._check_from = max(0, self._check_from - shift)
                return True
        return False

    def _check_history(self, messages: Sequence[Message]) -> None:
        """Forget the summary when the history it covers was replaced (cleared, another session)."""
        if len(self._costs) > 2 * len(messages) + 256:
            live = {id(m) for m in messages}
            self._costs = {key: entry for key, entry in self._costs.items() if key in live}
        upto = self._summarized_upto
        if upto <= len(messages) and self._check_from <= len(messages):
            if not upto:
                return
            if self._anchor is None:  # restored: adopt the history it was saved with
                self._anchor = messages[upto - 1]
                return
            if _same(messages[upto - 1], self._anchor):
                return
        if self._anchor is not None and self._shifted(messages):
            return
        log.info("the history changed under the summary; dropping the summary")
        self._cancel_task()
        self._generation += 1
        self._summary, self._summarized_upto, self._check_from, self._anchor = None, 0, 0, None

    # -- summarising ----------------------------------------------------------------------------------

    def _maybe_summarize(self, messages: Sequence[Message], start: int) -> None:
        if self.summarizer is None or self._task is not None or self._closed:
            return
        dropped = sum(1 for m in messages[self._check_from : start] if m.role == "user")
        if dropped < self.summarize_every:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # built outside an event loop: nothing can run in the background
        begin, end, used = self._summarized_upto, start, 0
        for index in range(begin, start):
            message = messages[index]
            if message.role == "user" and index > begin and used >= SUMMARY_BATCH_TOKENS:
                end = index
                break
            used += min(self._cost(message), SUMMARY_MESSAGE_CHARS // 4 + MESSAGE_OVERHEAD)
        batch = tuple(messages[begin:end])
        self.summary_ready.clear()
        task = loop.create_task(self._summarize(batch, end, self._generation), name="context-summary")
        self._task = task
        task.add_done_callback(self._task_done)

    async def _summarize(self, batch: tuple[Message, ...], end: int, generation: int) -> None:
        assert self.summarizer is not None
        words = max(self.summary_tokens * 3 // 4, 10)
        transcript = "\n".join(_transcript_line(m) for m in batch)
        prompt = (
            f"Previous summary:\n{self._summary or '(none yet)'}\n\n"
            f"New part of the conversation:\n{transcript}\n\nThe updated summary:"
        )
        request = LLMRequest(
            messages=(Message("user", prompt),),
            system_prompt=SUMMARY_INSTRUCTIONS.format(words=words),
            temperature=0.2,
            max_tokens=self.summary_tokens,
            metadata={"purpose": "summary"},
        )
        try:
            async with asyncio.timeout(self.summary_timeout_s):
                reply = await self.summarizer.complete(request)
            text = _clean_summary(reply)
            if not text:
                raise ValueError("the summarizer returned an empty summary")
        except Exception as exc:
            if generation == self._generation:
                self.summary_failures += 1
                self._check_from = end
            log.warning(
                "summarising %d earlier messages failed; keeping the previous summary: %r",
                len(batch),
                exc,
                exc_info=exc,
            )
            return
        if generation != self._generation:
            log.debug("the history changed while summarising; discarding the summary")
            return
        self._summary = truncate_tokens(text, self.summary_tokens, self.count_tokens, marker=" …")
        self._summarized_upto, self._check_from, self._anchor = end, end, batch[-1]
        self.summary_ready.set()
        log.info("summarised the conversation up to message %d (%d new messages)", end, len(batch))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None

    def _cancel_task(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()


def _require(ok: bool, key: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"invalid ContextWindow {key}.", key=key, fix=f"set {key} to {fix}.")


def _format_time(now: datetime) -> str:
    zone = now.tzname()
    return now.strftime("%A %d %B %Y, %H:%M") + (f" {zone}" if zone else "")


def _one_line(value: object, limit: int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _same(a: Message, b: Message) -> bool:
    return a is b or (a.role == b.role and a.timestamp == b.timestamp and a.content == b.content)


def _transcript_line(message: Message) -> str:
    text = " ".join(message.content.split())
    if len(text) > SUMMARY_MESSAGE_CHARS:
        half = SUMMARY_MESSAGE_CHARS // 2
        text = text[:half] + " … " + text[-half:]
    note = " (interrupted)" if message.interrupted else ""
    return f"{_ROLE_NAMES.get(message.role, message.role)}{note}: {text}"


def _clean_summary(reply: str) -> str:
    text = reply.strip()
    for label in ("the updated summary:", "updated summary:", "summary:"):
        if text.lower().startswith(label):
            return text[len(label) :].strip()
    return text
