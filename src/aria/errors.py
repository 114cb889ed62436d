"""Aria's exception tree. Every error Aria raises on purpose derives from :class:`AriaError`.

::

    AriaError
    ├── ConfigError                 invalid configuration; names the key and the fix
    ├── InvalidInput                bad data from outside (audio format, image, message)
    ├── ChannelClosed               send/receive on a closed channel
    ├── StateError                  an illegal turn-state transition
    ├── RegistryError               unknown engine name, broken plugin, incompatible version
    ├── ModeUnavailable             a mode cannot run here (its model failed to load, or lacks vision)
    ├── ResidencyError              engines cannot be made resident (unknown, over budget, failed to load)
    └── EngineError                 an engine failed; ``retryable`` says whether trying again may help
        ├── EngineUnavailable       not installed, model missing, backend unreachable (not retryable)
        ├── EngineTimeout           a call ran past its deadline (retryable)
        ├── EngineBusy              every slot of its bulkhead stayed taken for the whole wait (retryable)
        ├── EngineCrashed           its process died or ran out of memory: restart it (retryable)
        ├── CircuitOpenError        the engine's circuit breaker is open (not retryable now)
        ├── AllEnginesFailed        every engine of a fallback chain failed; ``errors`` holds each
        └── DownloadError           a model download failed (HTTP error, broken transfer, bad checksum)

Vendor errors are translated at the adapter boundary with ``raise EngineError(...) from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "AllEnginesFailed",
    "AriaError",
    "ChannelClosed",
    "CircuitOpenError",
    "ConfigError",
    "DownloadError",
    "EngineBusy",
    "EngineCrashed",
    "EngineError",
    "EngineTimeout",
    "EngineUnavailable",
    "InvalidInput",
    "ModeUnavailable",
    "RegistryError",
    "ResidencyError",
    "StateError",
]


class AriaError(Exception):
    """Root of every error Aria raises on purpose."""

    #: A stable machine-readable code, sent to clients in ``error`` messages.
    code: str = "internal_error"


class ConfigError(AriaError):
    code = "invalid_config"

    def __init__(self, message: str, *, key: str | None = None, fix: str | None = None) -> None:
        parts = [message]
        if fix:
            parts.append(f"Fix: {fix}")
        super().__init__(" ".join(parts))
        self.key = key
        self.fix = fix


class InvalidInput(AriaError):
    code = "invalid_input"


class ChannelClosed(AriaError):
    code = "channel_closed"


class StateError(AriaError):
    code = "invalid_state"


class RegistryError(AriaError):
    code = "unknown_engine"


class ModeUnavailable(AriaError):
    """A mode cannot run here (its model could not load, or it needs vision the model lacks)."""

    code = "mode_unavailable"


class ResidencyError(AriaError):
    """Engines cannot be made resident: unknown names, a required set bigger than the budget
    (``over_by_mb`` says by how much), or engines that failed to load (``errors``, by name)."""

    code = "residency_error"

    def __init__(
        self,
        message: str,
        *,
        engines: Sequence[str] = (),
        over_by_mb: float = 0.0,
        errors: Mapping[str, BaseException] | None = None,
    ) -> None:
        super().__init__(message)
        self.engines = tuple(engines)
        self.over_by_mb = over_by_mb
        self.errors = dict(errors or {})


class EngineError(AriaError):
    """An engine failed. ``retryable`` tells retry policies whether another attempt may succeed."""

    code = "engine_error"
    retryable: bool = True

    def __init__(self, message: str, *, engine: str = "", retryable: bool | None = None) -> None:
        super().__init__(f"{engine}: {message}" if engine else message)
        self.engine = engine
        if retryable is not None:
            self.retryable = retryable


class EngineUnavailable(EngineError):
    code = "engine_unavailable"
    retryable = False


class EngineTimeout(EngineError):
    code = "engine_timeout"
    retryable = True


class EngineBusy(EngineError):
    """Every slot of an engine's bulkhead stayed taken for the whole wait (too many calls at once)."""

    code = "engine_busy"
    retryable = True


class EngineCrashed(EngineError):
    """The engine itself broke (its process died, it ran out of memory): it must be restarted."""

    code = "engine_crashed"
    retryable = True


class CircuitOpenError(EngineError):
    code = "circuit_open"
    retryable = False


class AllEnginesFailed(EngineError):
    code = "all_engines_failed"
    retryable = False

    def __init__(self, kind: str, errors: list[BaseException]) -> None:
        detail = "; ".join(f"{type(e).__name__}: {e}" for e in errors) or "no engine configured"
        super().__init__(f"every {kind} engine failed ({detail})", engine=kind, retryable=False)
        self.errors = errors


class DownloadError(EngineError):
    """A download failed: an HTTP error status, a broken transfer, or a file that does not verify."""

    code = "download_failed"
