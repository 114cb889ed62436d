"""Modes: declarative pipeline configurations over the same components.

A mode says which inputs it takes, what starts a turn (its *trigger*), which processing *steps* run, which
models it needs (its *loadout*: overrides of the ``[llm]`` section for the answering model and for the
router) and what it sends back. The six built-in modes are in :data:`BUILTIN_MODES`; a configuration file
adds its own, or changes a built-in one, under ``[modes.<name>]``::

    [modes.deep_dive.llm]
    options = { model = "qwen2.5:14b" }       # the heavier model swapped in for deep dives

    [modes.french_tutor]
    label = "French tutor"
    steps = ["stt", "llm", "tts"]
    llm = { system_prompt = "You are a patient French tutor. Answer in simple French." }

Triggers:

* ``vad_gated``: a turn starts when the person starts speaking (or types); speech interrupts an answer.
* ``request_response``: each request (typed text, an image with a question, or an utterance) is answered
  with the latest picture (an uploaded image or the newest camera frame) attached.
* ``continuous``: camera frames are checked as they come, change-gated and sampled (``every_frames`` /
  ``every_s``), against the person's watch condition; the conversation goes on beside it when the mode also
  takes audio or text.

Steps: ``stt`` (speech in), ``llm`` (an answer), ``vision`` (the picture goes to the model as an image
part), ``tools`` (the model may call tools), ``router`` (a small model first decides: answer directly, call
a tool, or hand the turn to the main model), ``tts`` (the answer is spoken).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BUILTIN_MODES",
    "Input",
    "LLMOverride",
    "ModeSpec",
    "Output",
    "Step",
    "Trigger",
    "resolve_modes",
]

Input = Literal["audio", "text", "image", "video"]
Output = Literal["transcript", "text", "audio", "notification", "tool_result", "control_signal"]
Step = Literal["stt", "llm", "vision", "tools", "router", "tts"]
Trigger = Literal["vad_gated", "request_response", "continuous"]
_CHAT_INPUTS: tuple[Input, ...] = ("audio", "text")
_CHAT_STEPS: tuple[Step, ...] = ("stt", "llm", "tools", "tts")


class LLMOverride(BaseModel):
    """Keys of the ``[llm]`` section a mode changes for its model; unset keys keep the main settings.
    ``options`` are merged into the main ``llm.options`` (so ``{model = "..."}`` alone swaps the model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str | None = None
    fallback: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    system_prompt: str | None = None
    context_tokens: int | None = Field(default=None, ge=256)
    timeout_s: float | None = Field(default=None, gt=0)
    first_token_timeout_s: float | None = Field(default=None, gt=0)
    memory_mb: float | None = Field(default=None, ge=0)

    def changes(self) -> dict[str, Any]:
        """The keys this override sets, as a partial ``[llm]`` table."""
        return self.model_dump(exclude_none=True, exclude_defaults=True)


class ModeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = ""
    description: str = ""
    inputs: list[Input] = Field(default_factory=lambda: list(_CHAT_INPUTS), min_length=1)
    trigger: Trigger = "vad_gated"
    steps: list[Step] = Field(default_factory=lambda: list(_CHAT_STEPS), min_length=1)
    #: The answering model, when the mode uses another one than ``[llm]`` (deep dive: a heavier one).
    llm: LLMOverride | None = None
    #: The router model (steps with ``router``); unset, the main model routes.
    router: LLMOverride | None = None
    #: ``continuous``: check every n-th camera frame (0: no frame-count sampling) ...
    every_frames: int = Field(default=0, ge=0)
    #: ... and at most once per this many seconds (0: no time sampling).
    every_s: float = Field(default=2.0, ge=0)
    change_gated: bool = True
    #: ``continuous``: the condition watched for until the person sets one.
    watch: str | None = None
    cooldown_s: float = Field(default=30.0, ge=0)
    dedup_s: float = Field(default=300.0, ge=0)
    #: ``continuous``: also POST each alert as JSON to this URL.
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")

    @model_validator(mode="after")
    def _consistent(self) -> ModeSpec:
        steps = set(self.steps)
        if "stt" in steps and "audio" not in self.inputs:
            raise ValueError("step 'stt' needs 'audio' in inputs")
        if steps & {"tts", "tools", "router", "vision"} and "llm" not in steps:
            raise ValueError("steps tts, tools, router and vision need the 'llm' step")
        if self.trigger == "continuous" and "video" not in self.inputs:
            raise ValueError("trigger 'continuous' watches camera frames: add 'video' to inputs")
        if self.trigger == "continuous" and "llm" not in steps:
            raise ValueError("trigger 'continuous' needs the 'llm' step (a vision model checks the frames)")
        return self

    # -- derived -----------------------------------------------------------------------------------

    @property
    def answers(self) -> bool:
        return "llm" in self.steps

    @property
    def listens(self) -> bool:
        return "stt" in self.steps

    @property
    def speaks(self) -> bool:
        return "tts" in self.steps

    @property
    def sees(self) -> bool:
        """Whether the model is given pictures (as image parts)."""
        return "vision" in self.steps or self.trigger == "continuous"

    @property
    def watches(self) -> bool:
        return self.trigger == "continuous"

    @property
    def outputs(self) -> list[Output]:
        out: list[Output] = []
        if self.listens:
            out.append("transcript")
        if self.answers:
            out.append("text")
        if self.speaks:
            out.append("audio")
        if self.watches:
            out.append("notification")
        if {"tools", "router"} & set(self.steps):
            out += ["tool_result", "control_signal"]
        return out


def _mode(**fields: Any) -> ModeSpec:
    return ModeSpec.model_validate(fields)


#: The built-in modes, by name.
BUILTIN_MODES: dict[str, ModeSpec] = {
    "voice_chat": _mode(
        label="Voice chat",
        description="Talk or type; answers are spoken as they are written.",
    ),
    "broadcast": _mode(
        label="Dictation",
        description="Speech to text only: transcripts, no answers.",
        inputs=["audio"],
        steps=["stt"],
    ),
    "visual_chat": _mode(
        label="Visual chat",
        description="Ask about an image or what the camera sees.",
        inputs=["audio", "text", "image", "video"],
        trigger="request_response",
        steps=["stt", "llm", "vision", "tts"],
    ),
    "active_monitor": _mode(
        label="Active monitor",
        description="Watches the camera for something you describe and tells you when it happens.",
        inputs=["audio", "text", "video"],
        trigger="continuous",
        steps=["stt", "llm", "vision", "tts"],
    ),
    "router": _mode(
        label="Router",
        description="A small, fast model answers or hands the question to a tool.",
        steps=["stt", "llm", "router", "tools", "tts"],
    ),
    "deep_dive": _mode(
        label="Deep dive",
        description="The same conversation, handed to a heavier reasoning model.",
        steps=["stt", "llm", "tools", "tts"],
        llm=LLMOverride(
            max_tokens=2048,
            temperature=0.3,
            system_prompt=(
                "You are Aria in deep-dive mode. Think the question through carefully, step by step, "
                "then give a thorough, well-structured answer. Say plainly what you are unsure of."
            ),
        ),
    ),
}


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_modes(configured: dict[str, Any]) -> dict[str, Any]:
    """The configuration's ``[modes.*]`` tables made whole: a table named like a built-in mode is merged
    over it (it changes only the keys it sets); any other name defines a new mode. Returns plain tables,
    for pydantic to validate as ``dict[str, ModeSpec]`` (so errors name ``modes.<name>.<key>``)."""
    resolved: dict[str, Any] = {}
    for name, table in configured.items():
        if isinstance(table, ModeSpec):
            resolved[name] = table
        elif name in BUILTIN_MODES and isinstance(table, dict):
            resolved[name] = _merge(BUILTIN_MODES[name].model_dump(exclude_defaults=True), table)
        else:
            resolved[name] = table
        if isinstance(resolved[name], dict) and not resolved[name].get("label"):
            resolved[name] = {**resolved[name], "label": str(name).replace("_", " ").capitalize()}
    return resolved
