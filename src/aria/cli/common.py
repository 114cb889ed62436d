"""What every subcommand shares: settings from file, environment and flags; logging set-up."""

from __future__ import annotations

import argparse
from typing import Any

from aria.core.config import Settings, load_settings
from aria.core.logs import configure_logging

__all__ = ["settings_from_args"]


def settings_from_args(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings (flags > environment > file > defaults) and configure logging from them."""
    flags: dict[str, Any] = {k: v for k, v in (overrides or {}).items() if v is not None}
    if args.log_level:
        flags["log.level"] = args.log_level
    if args.log_json:
        flags["log.json_lines"] = True
    settings = load_settings(args.config, flags)
    configure_logging(settings.log.level, settings.log.json_lines)
    return settings
