"""The ``aria`` command line: chat, doctor, say, transcribe, models, bench, talk, ``--version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aria._version import __version__
from aria.errors import AriaError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from aria.cli import bench, chat, doctor, models, serve, speech, talk

    parser = argparse.ArgumentParser(
        prog="aria", description="Aria: a local-first streaming voice assistant."
    )
    parser.add_argument("--version", action="version", version=f"aria {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (default: $ARIA_CONFIG)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")
    parser.add_argument("--log-json", action="store_true", default=None, help="log as JSON lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.add_parser(sub)
    chat.add_parser(sub)
    doctor.add_parser(sub)
    speech.add_parsers(sub)
    models.add_parser(sub)
    bench.add_parser(sub)
    talk.add_parser(sub)
    return parser


_GLOBAL_WITH_VALUE = ("--config", "--log-level")
_GLOBAL_FLAGS = ("--log-json",)


def _globals_first(argv: Sequence[str]) -> list[str]:
    """Let the global options appear anywhere (``aria transcribe x.wav --log-level DEBUG``)."""
    front: list[str] = []
    rest: list[str] = []
    items = list(argv)
    index = 0
    while index < len(items):
        item = items[index]
        if item == "--":
            rest.extend(items[index:])
            break
        if item in _GLOBAL_FLAGS or (item.split("=", 1)[0] in _GLOBAL_WITH_VALUE and "=" in item):
            front.append(item)
        elif item in _GLOBAL_WITH_VALUE and index + 1 < len(items):
            front.extend(items[index : index + 2])
            index += 1
        else:
            rest.append(item)
        index += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_globals_first(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
    except (AriaError, OSError) as exc:
        print(f"aria: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
