"""``aria talk``: the assistant on this computer's microphone, speakers and camera, in the terminal.

Without ``--server`` it starts the same server as ``aria serve`` inside this process (127.0.0.1, a free
port) and talks to it over the documented ``/ws`` protocol; with ``--server ws://HOST:PORT`` it talks to
a running ``aria serve`` instead. ``--input``/``--output`` take a device (name or number, see
``--list-devices``) or a WAV file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
from pathlib import Path
from typing import Any

from aria.cli.common import settings_from_args
from aria.core.config import Settings
from aria.errors import InvalidInput

__all__ = ["add_parser", "talk"]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "talk", help="talk with the assistant on this computer's microphone, speakers and camera"
    )
    p.add_argument("--list-devices", action="store_true", help="list the audio devices found, then exit")
    p.add_argument(
        "--input", metavar="DEVICE|FILE.wav", help="microphone (name or number), a WAV file, or none"
    )
    p.add_argument(
        "--output", metavar="DEVICE|FILE.wav", help="speakers (name or number), a WAV file, or none"
    )
    p.add_argument("--fast", action="store_true", help="with --input FILE.wav: as fast as the server answers")
    p.add_argument(
        "--camera", metavar="N|FILE", help="camera number, or a video or image file, for vision modes"
    )
    p.add_argument(
        "--ptt", nargs="?", const="ctrl-t", metavar="KEY", help="push-to-talk: KEY toggles the mic (ctrl-t)"
    )
    p.add_argument("--no-aec", action="store_true", help="no echo cancellation (with headphones)")
    p.add_argument("--server", metavar="ws://HOST:PORT", help="talk to a running aria serve instead")
    p.add_argument("--token", help="the server's access token (with --server)")
    p.add_argument(
        "--resume", nargs="?", const=True, metavar="SESSION_ID", help="continue the last (or this) session"
    )
    p.add_argument("--mode", help="start-up mode of the local server, e.g. voice_chat")
    p.add_argument("--plain", action="store_true", help="print lines instead of the full-screen interface")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, {"mode": args.mode})
    if args.list_devices:
        from aria.talk.devices import describe_devices

        report, _ = describe_devices()
        print(report)
        return 0
    return asyncio.run(talk(args, settings))


def _is_wav(spec: str | None) -> bool:
    return spec is not None and spec.lower().endswith(".wav")


def _off(spec: str | None) -> bool:
    return spec is not None and spec.lower() in ("none", "off")


async def talk(args: argparse.Namespace, settings: Settings) -> int:
    from aria.talk.camera import Camera
    from aria.talk.client import TalkClient
    from aria.talk.echo import PushToTalk, open_echo_canceller
    from aria.talk.files import WavSink, WavSource
    from aria.talk.local import SessionMemory, local_server
    from aria.talk.session import TalkSession

    if args.fast and not _is_wav(args.input):
        raise InvalidInput("--fast needs --input FILE.wav")
    memory = SessionMemory(settings.data_dir)
    session_id, key = None, None
    if isinstance(args.resume, str):
        session_id, key = args.resume, memory.key(args.server, args.resume)
    elif args.resume:
        session_id, key = memory.last(args.server)
    notes: list[str] = []
    holder: dict[str, TalkSession] = {}

    def announce(text: str) -> None:
        if "session" in holder:
            holder["session"].note(text)
        else:
            notes.append(text)

    async with contextlib.AsyncExitStack() as stack:
        if args.server:
            url = args.server
        else:
            local = await stack.enter_async_context(local_server(settings))
            if args.resume is True and session_id is None:
                session_id = local.runtime.sessions.latest_id()
            url = local.url
        source: Any = None
        if _is_wav(args.input):
            source = WavSource(args.input, fast=args.fast)
        elif not _off(args.input):
            source = _open_device("microphone", args.input, announce)
        make_sink: Any = None
        if _is_wav(args.output):
            clock = (lambda: source.clock_s) if isinstance(source, WavSource) else _wall_clock()
            make_sink = functools.partial(_wav_sink, WavSink, args.output, clock)
        elif not _off(args.output) and _speakers_available(args.output, announce):
            make_sink = functools.partial(_speaker, args.output, announce)
        devices_both = make_sink is not None and not _is_wav(args.output) and source is not None
        canceller = None
        if devices_both and not isinstance(source, WavSource) and not args.no_aec:
            canceller = open_echo_canceller()
            if not canceller.aec:
                notes.append("no echo canceller (pip install 'aria-assistant[aec]'): the echo guard alone")
        camera = Camera(args.camera) if args.camera else None
        session = TalkSession(
            functools.partial(TalkClient, url, token=args.token, session_id=session_id, key=key),
            source=source,
            make_sink=make_sink,
            camera=camera,
            ptt=PushToTalk(args.ptt is not None),
            canceller=canceller,
        )
        holder["session"] = session
        for text in notes:
            session.note(text)
        if source is not None and hasattr(source, "start"):
            try:
                source.start()
            except Exception as exc:  # PortAudio's errors (no such device, busy) have no stable type
                if args.input:
                    raise InvalidInput(
                        f"cannot open the microphone {args.input}: {exc} (aria talk --list-devices)"
                    ) from exc
                # No microphone on this machine: the conversation goes on by typing.
                session.note(f"no microphone ({exc}): type your questions")
                source = session.source = session.canceller = None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, session.stop)
        try:
            await _interface(args, session, source)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if session.client.session_id:
            memory.remember(args.server, session.client.session_id, session.client.key)
            print(
                f"session {session.client.session_id} saved: aria talk --resume continues it", file=sys.stderr
            )
    return 0


async def _interface(args: argparse.Namespace, session: Any, source: Any) -> None:
    from aria.talk.tui import PlainUI, TerminalUI

    def levels() -> tuple[float, float]:
        return (getattr(source, "level", 0.0), getattr(session.sink, "level", 0.0))

    if args.plain or not sys.stdin.isatty() or not sys.stdout.isatty():
        stdin = None if _is_wav(args.input) or sys.stdin.isatty() else sys.stdin
        await PlainUI(session, sys.stdout, stdin, exit_at_eof=source is None).run()
    else:
        await TerminalUI(session, levels=levels, ptt_key=args.ptt).run()


def _wall_clock() -> Any:
    loop = asyncio.get_running_loop()
    start = loop.time()
    return lambda: loop.time() - start


def _wav_sink(cls: Any, path: str, clock: Any, rate: int) -> Any:
    return cls(Path(path), rate=rate, clock=clock)


def _speaker(device: str | None, announce: Any, rate: int) -> Any:
    from aria.talk.devices import Speaker

    return Speaker(device, announce, rate=rate)


def _open_device(kind: str, device: str | None, announce: Any) -> Any:
    from aria.talk.devices import Microphone

    try:
        return Microphone(device, announce)
    except (ImportError, OSError) as exc:
        if device:
            raise InvalidInput(
                f"cannot open the {kind} {device!r}: {exc} (aria talk --list-devices)"
            ) from exc
        announce(f"no {kind} ({exc}): type your questions")
        return None


def _speakers_available(device: str | None, announce: Any) -> bool:
    from aria.talk.devices import load_sounddevice

    try:
        load_sounddevice()
    except (ImportError, OSError) as exc:
        if device:
            raise InvalidInput(
                f"cannot open the speaker {device!r}: {exc} (aria talk --list-devices)"
            ) from exc
        announce(f"no speakers ({exc}): answers are shown as text")
        return False
    return True
