"""``aria chat``: a terminal chat that streams the answer token by token.

Reads lines from the terminal, or from stdin when it is not a terminal (``printf 'Hello\\n' | aria chat``),
and exits 0 at the end of input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from typing import Any, TextIO

from aria.cli.common import settings_from_args
from aria.core.channels import Channel
from aria.core.config import Settings
from aria.engines.factory import create_engine, detect_llm
from aria.errors import ChannelClosed
from aria.pipeline.outputs import ErrorOut, ResponseDone, TextOut
from aria.pipeline.voice import PipelineConfig, VoicePipeline

__all__ = ["add_parser", "chat"]

QUIT = frozenset({"/quit", "/exit", "/bye"})


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("chat", help="text chat in the terminal, answers streamed")
    p.add_argument("--llm", metavar="BACKEND", help="language model backend, e.g. builtin, openai, ollama")
    p.add_argument("--system", metavar="PROMPT", help="system prompt")
    p.add_argument("--temperature", type=float, help="sampling temperature (0-2)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(
        args, {"llm.backend": args.llm, "llm.system_prompt": args.system, "llm.temperature": args.temperature}
    )
    return asyncio.run(chat(settings, sys.stdin, sys.stdout, sys.stderr))


def _read_lines(stream: TextIO, lines: Channel[str], loop: asyncio.AbstractEventLoop) -> None:
    """Runs in a daemon thread: blocking reads never hold up the event loop or the exit. Lines read after
    ``chat`` has returned (after ``/quit``) are dropped once its event loop is closed."""
    try:
        for line in stream:
            loop.call_soon_threadsafe(lines.send_nowait, line)
    except RuntimeError:  # the event loop is closed: chat() has returned
        return
    finally:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lines.close)


async def chat(settings: Settings, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    interactive = stdin.isatty()
    settings = await detect_llm(settings)
    llm = create_engine("llm", settings)
    assert llm is not None
    await llm.start()
    if interactive:
        print(f"Aria chat with {llm.name}. Type a message; /quit or Ctrl-D to leave.", file=stderr)
    lines: Channel[str] = Channel(None, name="stdin")
    loop = asyncio.get_running_loop()
    threading.Thread(target=_read_lines, args=(stdin, lines, loop), daemon=True, name="stdin").start()
    config = PipelineConfig.from_settings(settings, speak=False)
    try:
        async with VoicePipeline(llm=llm, config=config) as pipeline:  # type: ignore[arg-type]
            while True:
                if interactive:
                    print("you> ", end="", file=stdout, flush=True)
                try:
                    line = (await lines.receive()).strip()
                except ChannelClosed:
                    break
                if not line:
                    continue
                if line in QUIT:
                    break
                await _answer(pipeline, line, stdout, stderr, interactive)
    finally:
        await llm.aclose()
    if interactive:
        print(file=stdout)
    return 0


async def _answer(
    pipeline: VoicePipeline, line: str, stdout: TextIO, stderr: TextIO, interactive: bool
) -> None:
    turn = pipeline.push_text(line)
    if interactive:
        print("aria> ", end="", file=stdout, flush=True)
    async for out in pipeline.outputs:
        if isinstance(out, TextOut) and out.turn_id == turn.id:
            stdout.write(out.text)
            stdout.flush()
        elif isinstance(out, ErrorOut):
            print(f"\n[error {out.code}] {out.message}", file=stderr, flush=True)
        elif isinstance(out, ResponseDone) and out.turn_id == turn.id:
            print(file=stdout, flush=True)
            return
