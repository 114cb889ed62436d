"""What every subcommand shares: settings from file, environment and flags; logging set-up."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aria.core.config import Settings, load_settings
from aria.core.logs import configure_logging

__all__ = ["settings_from_args"]


def settings_from_args(
    args: argparse.Namespace, overrides: dict[str, Any] | None = None, *, quiet: bool = True
) -> Settings:
    """Load settings (flags > environment > file > defaults) and configure logging from them.

    ``quiet`` commands (everything but the server) log warnings and errors only, unless
    ``--log-level`` asks for more."""
    flags: dict[str, Any] = {k: v for k, v in (overrides or {}).items() if v is not None}
    if args.log_level:
        flags["log.level"] = args.log_level
    if args.log_json:
        flags["log.json_lines"] = True
    settings = load_settings(args.config, flags)
    configure_logging(settings.log.level, settings.log.json_lines)
    if quiet and not args.log_level:
        logger = logging.getLogger("aria")
        logger.setLevel(max(logging.WARNING, logger.level))
    return settings
