"""Token estimates for fitting a conversation into a model's context window.

:func:`estimate_tokens` is a fast, deterministic stand-in for a real tokenizer, meant to run on the
critical path before every request (no model, no I/O, linear in the text, about a microsecond per
kilobyte). It is the larger of two floors:

* **bytes / 4** (rounded up) over the UTF-8 encoding. English prose runs at about four characters a
  token with BPE tokenizers (Llama, Qwen, GPT); counting bytes rather than characters makes accented
  and non-Latin text (two to four bytes a character) cost more, as it does in those tokenizers.
* **one token a word** (whitespace-separated), so text of many short words, numbers or symbols is not
  underestimated.

It errs on the high side for ordinary text, which is the safe side for a budget: a context built with
it fits the model's real window with a small margin. Where an exact count matters, pass the model's own
tokenizer (any ``Callable[[str], int]``) wherever these functions take ``count_tokens``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

from aria.types import Message

__all__ = [
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "REPLY_PRIMING",
    "TokenCounter",
    "estimate_tokens",
    "message_tokens",
    "request_tokens",
    "truncate_tokens",
]

TokenCounter = Callable[[str], int]

#: Tokens a chat template adds around each message (role header, start and end markers).
MESSAGE_OVERHEAD = 4
#: Tokens the template adds after the last message to open the assistant's reply.
REPLY_PRIMING = 3
#: Tokens charged for an attached image (a LLaVA-1.5 style 24x24 grid of CLIP patches).
IMAGE_TOKENS = 576


def estimate_tokens(text: str) -> int:
    """A fast, deterministic token estimate: ``max(ceil(utf8_bytes / 4), words)``; 0 for ``""``."""
    if not text:
        return 0
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return max((size + 3) // 4, len(text.split()))


def message_tokens(message: Message, count_tokens: TokenCounter = estimate_tokens) -> int:
    """Tokens one message takes in a request: its text, the template overhead and its images."""
    return count_tokens(message.content) + MESSAGE_OVERHEAD + IMAGE_TOKENS * len(message.images)


def request_tokens(
    messages: Iterable[Message],
    system_prompt: str | None,
    count_tokens: TokenCounter = estimate_tokens,
) -> int:
    """Tokens of a whole request's prompt: the system prompt as a message, every message, the priming."""
    total = REPLY_PRIMING + sum(message_tokens(m, count_tokens) for m in messages)
    if system_prompt is not None:
        total += count_tokens(system_prompt) + MESSAGE_OVERHEAD
    return total


def truncate_tokens(
    text: str,
    limit: int,
    count_tokens: TokenCounter = estimate_tokens,
    *,
    keep: Literal["start", "end"] = "start",
    marker: str = "…",
) -> str:
    """``text`` if it counts at most ``limit`` tokens; else its longest start (or end) that fits with
    ``marker`` on the cut side (just the marker when nothing fits). Bisects, so about log2(len) counts."""
    if count_tokens(text) <= limit:
        return text

    def cut(size: int) -> str:
        return text[:size] + marker if keep == "start" else marker + text[len(text) - size :]

    low, high = 0, len(text) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(cut(mid)) <= limit:
            low = mid
        else:
            high = mid - 1
    return cut(low)
