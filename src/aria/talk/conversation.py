"""What ``aria talk`` shows, built from the server's messages: pure code, no I/O.

:meth:`Conversation.apply` takes each JSON message of the ``/ws`` protocol and keeps the transcript (the
person's partial transcripts revised in place, the final one kept), the answer as it streams, the turn
state (listening / thinking / speaking), the mode, the latency of each turn and the notes (device
changes, reconnects, errors). The terminal interface draws it; the file mode and the tests read it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["STATE_LABELS", "Conversation", "Line"]

Role = Literal["you", "aria", "note", "error"]

#: The protocol's states as the person reads them.
STATE_LABELS = {
    "idle": "ready",
    "listening": "listening",
    "processing": "thinking",
    "responding": "speaking",
    "offline": "offline",
}


@dataclass
class Line:
    role: Role
    text: str
    turn_id: str | None = None
    final: bool = True
    interrupted: bool = False
    at: float = field(default_factory=time.time)


@dataclass
class Conversation:
    session_id: str | None = None
    mode: str = ""
    modes: list[str] = field(default_factory=list)
    watch: str | None = None
    state: str = "offline"
    lines: list[Line] = field(default_factory=list)
    #: Milliseconds from the end of speech (or typed input) to the first answer audio, per turn, as the
    #: server measured it (``metrics``); ``first_token`` where the answer had no audio.
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: Turns whose ``response_done`` arrived, in order, with whether they were interrupted.
    done: list[tuple[str, bool]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    audio_out_rate: int = 24000
    max_line_history: int = 500

    # -- what the server says -------------------------------------------------------------------------

    def apply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(message)
        del self.lines[: max(0, len(self.lines) - self.max_line_history)]

    def _on_session(self, m: dict[str, Any]) -> None:
        self.session_id = m["session_id"]
        self.mode = m.get("mode", "")
        self.modes = list(m.get("modes", []))
        self.audio_out_rate = int(m.get("audio_out", {}).get("sample_rate", self.audio_out_rate))
        self.state = "idle"
        if m.get("resumed"):
            self.note(f"resumed session {self.session_id}")

    def _on_history(self, m: dict[str, Any]) -> None:
        for entry in m.get("messages", []):
            role = {"user": "you", "assistant": "aria"}.get(entry.get("role"))
            if role is not None and not any(line.text == entry["content"] for line in self.lines):
                self.lines.append(
                    Line(role, entry["content"], interrupted=bool(entry.get("interrupted")))  # type: ignore[arg-type]
                )

    def _on_state(self, m: dict[str, Any]) -> None:
        self.state = m["state"]

    def _on_mode(self, m: dict[str, Any]) -> None:
        changed = m["mode"] != self.mode
        self.mode, self.watch = m["mode"], m.get("watch")
        if changed:
            self.note(f"mode: {self.mode}" + (f" (watching for: {self.watch})" if self.watch else ""))

    def _on_transcript(self, m: dict[str, Any]) -> None:
        line = self._line("you", m["turn_id"])
        if line is None:
            line = Line("you", "", m["turn_id"], final=False)
            self.lines.append(line)
        line.text, line.final = m["text"], bool(m["final"])

    def _on_text_token(self, m: dict[str, Any]) -> None:
        line = self._line("aria", m["turn_id"])
        if line is None:
            line = Line("aria", "", m["turn_id"], final=False)
            self.lines.append(line)
        line.text += m["text"]

    def _on_response_done(self, m: dict[str, Any]) -> None:
        line = self._line("aria", m["turn_id"])
        if line is None and m.get("text"):
            line = Line("aria", m["text"], m["turn_id"])
            self.lines.append(line)
        if line is not None:
            if m.get("interrupted") and m.get("text") is not None:
                line.text = m["text"]  # what was heard
            line.final, line.interrupted = True, bool(m.get("interrupted"))
        self.done.append((m["turn_id"], bool(m.get("interrupted"))))

    def _on_metrics(self, m: dict[str, Any]) -> None:
        waterfall = m.get("waterfall", {})
        value = waterfall.get("first_audio_out")
        if value is None:
            value = waterfall.get("first_token")
        if value is not None:
            self.latency_ms[m["turn_id"]] = float(value)

    def _on_notification(self, m: dict[str, Any]) -> None:
        self.note(m["text"])

    def _on_error(self, m: dict[str, Any]) -> None:
        self.errors.append(m)
        self.lines.append(Line("error", f"{m.get('code')}: {m.get('message')}", m.get("turn_id")))

    def _on_control_signal(self, m: dict[str, Any]) -> None:
        payload = m.get("payload", {})
        self.note(f"the assistant asks: {payload.get('description') or m.get('signal')} (/yes or /no)")

    def _on_tool_result(self, m: dict[str, Any]) -> None:
        self.note(f"tool {m.get('tool')}: {m.get('result')}")

    # -- what the client adds -------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.lines.append(Line("note", text))

    def typed(self, text: str) -> None:
        self.lines.append(Line("you", text))

    def _line(self, role: Role, turn_id: str) -> Line | None:
        for line in reversed(self.lines[-50:]):
            if line.role == role and line.turn_id == turn_id:
                return line
        return None

    # -- reading it -----------------------------------------------------------------------------------

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.state, self.state)

    def last_latency_ms(self) -> float | None:
        return next(reversed(self.latency_ms.values()), None) if self.latency_ms else None

    def answers(self) -> list[Line]:
        return [line for line in self.lines if line.role == "aria" and line.final]

    def transcripts(self) -> list[str]:
        return [line.text for line in self.lines if line.role == "you" and line.final]
