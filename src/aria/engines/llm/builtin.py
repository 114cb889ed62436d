"""The built-in responder: a small rule-based last resort for when no language model is configured.

It answers the last user message with a few deterministic rules (greetings, the time, the date, who it is,
what it can do, thanks, goodbye, simple arithmetic) and otherwise says, in one short sentence, that no
language model is available. Answers are short spoken sentences, streamed word by word like a real model's,
and never name settings, commands or URLs (the page shows how to connect a model, as text).
Arithmetic is parsed by hand, never evaluated as Python.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from fractions import Fraction
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

from aria.engines.base import Capabilities, EngineConfig, EngineHealth, EngineKind, LLMRequest
from aria.types import GeneratedToken

__all__ = ["NO_MODEL_MESSAGE", "BuiltinLLM"]

logger = logging.getLogger(__name__)

#: What the responder says to anything it has no rule for: one short spoken sentence. How to connect a model
#: is for the page and ``/health`` to show as text (``aria.server.honesty``), never spoken: no settings,
#: variable names, commands or URLs here.
NO_MODEL_MESSAGE = "Sorry, I can't answer that: no language model is available."

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

_CONTRACTIONS = {
    "what's": "what is",
    "whats": "what is",
    "what're": "what are",
    "who're": "who are",
    "who's": "who is",
    "how's": "how is",
    "it's": "it is",
}

# (intent, phrases); the first intent with a phrase in the message wins. Phrases match whole words.
_INTENT_PHRASES = (
    ("time", "what time|the time|time is it|current time|time now"),
    (
        "date",
        "what day|which day|the date|todays date|what date|day is it|day of the week|day today"
        "|what is today|month is it|what year|year is it",
    ),
    ("help", "what can you do|what do you do|help|what can i ask|what are you able"),
    ("identity", "who are you|what are you|your name|who is this|who am i talking to"),
    ("thanks", "thanks|thank|thx|appreciate it"),
    ("goodbye", "bye|goodbye|good bye|see you|see ya|good night|farewell"),
    ("wellbeing", "how are you|how is it going|how are things"),
    ("greeting", "hello|hi|hey|hiya|howdy|greetings|good morning|good afternoon|good evening"),
)
_INTENTS = tuple((intent, re.compile(rf"\b(?:{phrases})\b")) for intent, phrases in _INTENT_PHRASES)
_DAYTIME_GREETING_RE = re.compile(r"\bgood (morning|afternoon|evening)\b")

_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = {
    word: 10 * (index + 2)
    for index, word in enumerate(
        ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
    )
}
_NUMBER_WORDS = {word: value for value, word in enumerate(_UNITS)}
_UNIT_RE = "|".join(_UNITS[1:10])
_COMPOUND_RE = re.compile(rf"\b({'|'.join(_TENS)})[\s-]+({_UNIT_RE})\b")
_SIMPLE_RE = re.compile(rf"\b({'|'.join([*_UNITS, *_TENS])})\b")

_OPERATOR_WORDS = (
    (re.compile(r"\bdivided\s+by\b"), "/"),
    (re.compile(r"\bmultiplied\s+by\b"), "*"),
    (re.compile(r"\btimes\b"), "*"),
    (re.compile(r"\bplus\b"), "+"),
    (re.compile(r"\bminus\b"), "-"),
    (re.compile(r"(?<=\d)\s*x\s*(?=\d)"), "*"),
)
_NUMBER = r"-?\d{1,12}(?:\.\d{1,6})?"
_EXPRESSION_RE = re.compile(rf"(?<![\w.]){_NUMBER}(?:\s*[-+*/]\s*{_NUMBER}){{1,9}}(?![\w.]*\d)")
_DATE_RE = re.compile(r"\d+([-/])\d+\1\d+")  # 2024-03-05 and 3/5/2024 are dates, not sums
_TOKEN_RE = re.compile(r"\d+(?:\.\d+)?|[-+*/]")
_SPOKEN_OPERATOR = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}
_WORD_TOKEN_RE = re.compile(r"\s*\S+")


class BuiltinLLM:
    """A rule-based responder implementing the ``LLM`` protocol; deterministic given its clock."""

    kind: ClassVar[EngineKind] = "llm"
    name: str = "builtin"
    capabilities: Capabilities = Capabilities(streaming=True, local=True)

    class Config(EngineConfig):
        #: The name the responder introduces itself with.
        assistant_name: str = "Aria"
        #: IANA time zone for the time and date answers (``"Europe/Paris"``); the machine's when unset.
        tz: str | None = None

        @field_validator("tz")
        @classmethod
        def _known_zone(cls, value: str | None) -> str | None:
            if value is not None:
                try:
                    ZoneInfo(value)
                except (ZoneInfoNotFoundError, ValueError) as exc:
                    raise ValueError(
                        f"unknown time zone {value!r}; use an IANA name such as 'Europe/Paris'"
                    ) from exc
            return value

    def __init__(self, config: Config | None = None, *, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self._zone = ZoneInfo(self.config.tz) if self.config.tz else None
        self._clock = clock

    async def start(self) -> None:
        """Nothing to load."""

    async def aclose(self) -> None:
        """Nothing to release."""

    async def health(self) -> EngineHealth:
        return EngineHealth(ok=True, detail="rule-based responder; no language model available")

    async def stream(self, request: LLMRequest) -> AsyncIterator[GeneratedToken]:
        """The answer as word tokens (each keeps its leading space), stopping before any stop sequence."""
        text = self.answer(request.last_user_text)
        cut = min((i for i in (text.find(s) for s in request.stop if s) if i >= 0), default=len(text))
        words = _WORD_TOKEN_RE.findall(text[:cut])[: max(request.max_tokens, 0)]
        for index, word in enumerate(words):
            if index:
                await asyncio.sleep(0)
            yield GeneratedToken(text=word)

    async def complete(self, request: LLMRequest) -> str:
        return "".join([token.text async for token in self.stream(request)])

    def answer(self, user_text: str) -> str:
        """The full answer to one user message, before stop sequences and token limits."""
        arithmetic = _arithmetic_answer(user_text)
        if arithmetic is not None:
            logger.debug("builtin responder: arithmetic")
            return arithmetic
        words = _normalise(user_text)
        intent = _match_intent(words) if words else "greeting"
        logger.debug("builtin responder: %s", intent)
        name = self.config.assistant_name
        if intent == "time":
            now = self._now()
            hour = now.hour % 12 or 12
            return f"It is {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}."
        if intent == "date":
            now = self._now()
            return f"Today is {_DAYS[now.weekday()]}, {_MONTHS[now.month - 1]} {now.day}, {now.year}."
        if intent == "identity":
            return (
                f"I'm {name}, a voice assistant running in basic mode because no language model is available."
            )
        if intent == "help":
            return (
                "Without a language model I can only tell you the time and the date, and do simple "
                "arithmetic."
            )
        if intent == "thanks":
            return "You're welcome."
        if intent == "goodbye":
            return "Goodbye, talk to you soon."
        if intent == "wellbeing":
            return "I'm doing well, thank you. How can I help you?"
        if intent == "greeting":
            daytime = _DAYTIME_GREETING_RE.search(words)
            opener = f"Good {daytime[1]}" if daytime else "Hello"
            return f"{opener}, I'm {name}. How can I help you?"
        return NO_MODEL_MESSAGE

    def _now(self) -> datetime:
        if self._clock is None:
            return datetime.now(self._zone).astimezone(self._zone)
        now = self._clock()
        if self._zone is not None and now.tzinfo is not None:
            return now.astimezone(self._zone)
        return now


def _normalise(text: str) -> str:
    """Lower-case words without punctuation, separated by single spaces."""
    text = text.lower().replace("\u2019", "'").replace("`", "'")
    for contraction, expansion in _CONTRACTIONS.items():
        text = re.sub(rf"\b{re.escape(contraction)}(?!\w)", expansion, text)
    words = re.sub(r"[^\w\s]|_", "", re.sub(r"[-/]", " ", text)).split()
    return " ".join(words)


def _match_intent(words: str) -> str | None:
    return next((intent for intent, pattern in _INTENTS if pattern.search(words)), None)


def _arithmetic_answer(text: str) -> str | None:
    """``"12 times 7 is 84."`` for a message holding a simple arithmetic expression, else ``None``."""
    text = text.lower().replace("×", "*").replace("÷", "/").replace("\u2212", "-")
    text = _COMPOUND_RE.sub(lambda m: str(_TENS[m[1]] + _NUMBER_WORDS[m[2]]), text)
    text = _SIMPLE_RE.sub(lambda m: str(_NUMBER_WORDS.get(m[1], _TENS.get(m[1]))), text)
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    for pattern, symbol in _OPERATOR_WORDS:
        text = pattern.sub(f" {symbol} ", text)
    match = _EXPRESSION_RE.search(text)
    if match is None or _DATE_RE.fullmatch(match[0]):
        return None
    operands, operators = _split_tokens(_TOKEN_RE.findall(match[0]))
    parts = [_speak(operands[0])]
    for operator, operand in zip(operators, operands[1:], strict=True):
        parts += [_SPOKEN_OPERATOR[operator], _speak(operand)]
    spoken = " ".join(parts)
    try:
        value = _evaluate(operands, operators)
    except ZeroDivisionError:
        return "I can't divide by zero."
    rounded = round(value, 3)
    about = "" if rounded == value else "about "
    return f"{spoken} is {about}{_speak(rounded)}."


def _split_tokens(tokens: list[str]) -> tuple[list[Fraction], list[str]]:
    """Operands (with unary minus applied) and the binary operators between them."""
    operands: list[Fraction] = []
    operators: list[str] = []
    negative = False
    for token in tokens:
        if token in _SPOKEN_OPERATOR:
            if len(operands) == len(operators) + 1:
                operators.append(token)
            else:  # an operator where an operand is expected: only "-" matches, as a sign
                negative = token == "-"
        else:
            operands.append(-Fraction(token) if negative else Fraction(token))
            negative = False
    return operands, operators


def _evaluate(operands: list[Fraction], operators: list[str]) -> Fraction:
    """Multiplication and division first, then addition and subtraction, left to right."""
    terms = [operands[0]]
    signs: list[str] = []
    for operator, operand in zip(operators, operands[1:], strict=True):
        if operator == "*":
            terms[-1] *= operand
        elif operator == "/":
            terms[-1] /= operand  # ZeroDivisionError for 0
        else:
            signs.append(operator)
            terms.append(operand)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = total + term if sign == "+" else total - term
    return total


def _speak(value: Fraction) -> str:
    if value < 0:
        return f"minus {_speak(-value)}"
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.3f}".rstrip("0").rstrip(".")
