"""The terminal interface of ``aria talk`` (rich), and the plain line printer for pipes and files.

:class:`TerminalUI` draws, on the terminal's alternate screen: the state (listening / thinking /
speaking), the mode, the session and the last turn's latency; input and output level meters; the live
transcript (partial transcripts revised in place, the answer streaming in) with each answer's latency;
and the line being typed. Keys: letters type, Enter sends (a line starting with ``/`` is a command),
Tab switches to the next mode, Esc stops the answer, the push-to-talk key toggles the microphone,
Ctrl-C or Ctrl-D (or ``/quit``) leaves. Drawing happens in the event loop (no refresh thread), the keys
are read by a daemon thread with the terminal in raw mode, restored on the way out.

:class:`PlainUI` prints each finished line once (``you: ...``, ``aria: ... [640 ms]``) and reads typed
lines from stdin when it is not a terminal; ``/quit`` (or the end of the input, without a microphone)
leaves once what was typed has been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aria.talk.conversation import Line
from aria.talk.session import TalkSession

__all__ = ["PlainUI", "TerminalUI", "key_code", "meter"]

ROLE_STYLE = {"you": "bold cyan", "aria": "bold green", "note": "dim", "error": "bold red"}
STATE_STYLE = {"listening": "bold cyan", "thinking": "bold yellow", "speaking": "bold green"}


def meter(value: float, width: int = 16) -> str:
    filled = round(max(0.0, min(1.0, value)) * width)
    return "█" * filled + "·" * (width - filled)


def key_code(name: str) -> str:
    """The character a key sends: ``ctrl-t`` -> ``\\x14``, ``space`` -> `` ``, ``x`` -> ``x``."""
    lowered = name.lower()
    if lowered.startswith("ctrl-") and len(lowered) == 6 and lowered[5].isalpha():
        return chr(ord(lowered[5]) - ord("a") + 1)
    if lowered == "space":
        return " "
    if len(name) == 1:
        return name
    raise ValueError(f"unknown key {name!r}: use ctrl-LETTER, space or one character")


class TerminalUI:
    def __init__(
        self,
        session: TalkSession,
        *,
        levels: Callable[[], tuple[float, float]],
        ptt_key: str | None = None,
        console: Console | None = None,
    ) -> None:
        self.session = session
        self.levels = levels
        self.ptt_key = ptt_key
        self.console = console or Console()
        self.typed = ""
        self._live: Live | None = None

    # -- drawing --------------------------------------------------------------------------------------

    def render(self) -> Any:
        conv = self.session.conversation
        head = Table.grid(expand=True)
        head.add_column(ratio=1)
        head.add_column(justify="right")
        label = conv.state_label
        last = conv.last_latency_ms()
        head.add_row(
            Text.assemble(
                ("Aria ", "bold"),
                (f"● {label}", STATE_STYLE.get(label, "bold")),
                f"   mode: {conv.mode or '?'}",
                f" (watching: {conv.watch})" if conv.watch else "",
            ),
            Text(f"last turn {last:.0f} ms" if last is not None else "", style="magenta"),
        )
        mic, spk = self.levels()
        ptt = self.session.ptt
        mic_state = "" if not ptt.enabled else (" [talking]" if ptt.talking else " [muted]")
        head.add_row(Text(f"mic {meter(mic)}{mic_state}   speaker {meter(spk)}"), Text(conv.session_id or ""))
        height = max(5, self.console.size.height - 9)
        body = Text()
        for line in self._visible(conv.lines, height):
            body.append_text(self._line(line))
            body.append("\n")
        keys = "Enter send · Tab mode · Esc stop · Ctrl-C quit"
        if self.ptt_key is not None:
            keys += f" · {self.ptt_key} talk"
        prompt = Text.assemble(("> ", "bold"), self.typed, ("▏", "blink"))
        return Group(
            Panel(head, padding=(0, 1)),
            Panel(body, title="conversation", title_align="left", height=height + 2),
            prompt,
            Text(keys, style="dim"),
        )

    def _visible(self, lines: list[Line], height: int) -> list[Line]:
        return lines[-height:]

    def _line(self, line: Line) -> Text:
        text = Text(f"{line.role}: ", style=ROLE_STYLE[line.role])
        text.append(line.text, style="italic" if not line.final else "")
        if line.role == "aria" and not line.final:
            text.append("▌", style="green")
        if line.interrupted:
            text.append(" [interrupted]", style="yellow")
        latency = self.session.conversation.latency_ms.get(line.turn_id or "")
        if line.role == "aria" and latency is not None:
            text.append(f"  [{latency:.0f} ms]", style="magenta")
        return text

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)

    # -- keys -----------------------------------------------------------------------------------------

    async def handle(self, keys: str) -> bool:
        """Apply what was typed; False when it asks to leave."""
        index = 0
        while index < len(keys):
            char = keys[index]
            index += 1
            if char in ("\x03", "\x04"):
                return False
            if self.ptt_key is not None and char == key_code(self.ptt_key):
                self.session.ptt.toggle()
            elif char == "\x1b":
                if keys[index : index + 1] in ("[", "O"):  # an escape sequence (arrows...): skip it
                    index += 1
                    while index < len(keys) and not keys[index].isalpha() and keys[index] != "~":
                        index += 1
                    index += 1
                else:
                    await self.session.interrupt()
            elif char == "\t":
                await self.session.next_mode()
            elif char in ("\r", "\n"):
                line, self.typed = self.typed, ""
                if not await self.session.submit(line):
                    return False
            elif char in ("\x7f", "\x08"):
                self.typed = self.typed[:-1]
            elif char.isprintable():
                self.typed += char
        self.refresh()
        return True

    async def run(self) -> None:
        """Draw and read keys until the person leaves or the session ends."""
        loop = asyncio.get_running_loop()
        keys: asyncio.Queue[str] = asyncio.Queue()
        fd = sys.stdin.fileno()
        self.session.on_change = lambda: None  # drawn at a steady rate instead
        with _raw(fd), Live(self.render(), console=self.console, screen=True, auto_refresh=False) as live:
            self._live = live
            threading.Thread(target=_read_keys, args=(fd, keys, loop), daemon=True, name="keys").start()
            run = asyncio.create_task(self.session.run(), name="talk-session")
            try:
                while not run.done():
                    with contextlib.suppress(TimeoutError):
                        typed = await asyncio.wait_for(keys.get(), 0.1)
                        if not await self.handle(typed):
                            self.session.stop()
                    self.refresh()
            finally:
                self.session.stop()
                await run
                self._live = None


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """Keys one by one, no echo, Ctrl-C as a key (the interface leaves cleanly on it)."""
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        mode = termios.tcgetattr(fd)
        mode[3] &= ~termios.ISIG
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _read_keys(fd: int, keys: asyncio.Queue[str], loop: asyncio.AbstractEventLoop) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        try:
            loop.call_soon_threadsafe(keys.put_nowait, data.decode("utf-8", "replace"))
        except RuntimeError:  # the loop is closed: the interface has left
            return


class PlainUI:
    """Finished lines printed once each; typed lines read from ``stdin`` (when given)."""

    def __init__(
        self, session: TalkSession, out: IO[str], stdin: IO[str] | None = None, *, exit_at_eof: bool = False
    ) -> None:
        self.session = session
        self.out = out
        self.stdin = stdin
        self.exit_at_eof = exit_at_eof
        self._printed: set[int] = set()

    def show(self, *, last: bool = False) -> None:
        lines = self.session.conversation.lines
        for index, line in enumerate(lines):
            if id(line) in self._printed or not line.final:
                continue
            latency = self.session.conversation.latency_ms.get(line.turn_id or "")
            if line.role == "aria" and latency is None and index == len(lines) - 1 and not last:
                continue  # its latency (the turn's metrics) follows the answer: print them together
            self._printed.add(id(line))
            suffix = " [interrupted]" if line.interrupted else ""
            if line.role == "aria" and latency is not None:
                suffix += f" [{latency:.0f} ms]"
            print(f"{line.role}: {line.text}{suffix}", file=self.out, flush=True)

    async def run(self) -> None:
        self.session.on_change = self.show
        run = asyncio.create_task(self.session.run(), name="talk-session")
        reader: asyncio.Task[None] | None = None
        if self.stdin is not None:
            reader = asyncio.create_task(self._read(self.stdin), name="talk-stdin")
        try:
            await run
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            self.show(last=True)

    async def _read(self, stdin: IO[str]) -> None:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        # A daemon thread: a blocking read never holds up the exit.
        threading.Thread(target=_read_lines, args=(stdin, lines, loop), daemon=True, name="stdin").start()
        while (line := await lines.get()) is not None:
            if not await self.session.submit(line):
                break
        else:
            if not self.exit_at_eof:
                return
        await self._settle()
        self.session.stop()

    async def _settle(self, within: float = 120.0) -> None:
        """Wait for the answers to what was typed before leaving (a script pipes a question, then
        ``/quit`` or the end of its input)."""
        conv = self.session.conversation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        typed = sum(1 for line in conv.lines if line.role == "you" and line.turn_id is None)
        while loop.time() < deadline:
            if conv.state == "idle" and len(conv.done) >= typed and not self.session.client.pending:
                return
            await asyncio.sleep(0.1)


def _read_lines(stdin: IO[str], lines: asyncio.Queue[str | None], loop: asyncio.AbstractEventLoop) -> None:
    try:
        for line in stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)
    except RuntimeError:  # the loop is closed
        return
