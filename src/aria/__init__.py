"""Aria: a local-first, streaming, multimodal AI assistant server."""

from aria._version import __version__

__all__ = ["__version__"]
