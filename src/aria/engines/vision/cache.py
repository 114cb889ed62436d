"""An embedding cache keyed by a hash of the image: TTL plus an LRU size bound, with hit/miss counters.

Camera clients often send the same frame (or the same picture) again and again; encoding it once is
enough. Keys come from :func:`image_key`, a BLAKE2b digest of the encoded bytes, or of the array's
format, shape and pixels. The cache is thread-safe (engines read and fill it from their worker thread)
and takes an injectable clock so tests can move time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from aria.types import ImageFrame

__all__ = ["CacheStats", "EmbeddingCache", "image_key"]

V = TypeVar("V")


def image_key(frame: ImageFrame) -> str:
    """A 128-bit BLAKE2b hex digest identifying the frame's pixels (or encoded bytes), not its id or time."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(frame.data, bytes):
        digest.update(frame.format.encode())
        digest.update(b"\0")
        digest.update(frame.data)
    else:
        array = np.ascontiguousarray(frame.data)
        digest.update(f"{frame.format}:{array.shape}:{array.dtype.str}\0".encode())
        digest.update(array.data)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CacheStats:
    size: int
    max_size: int
    hits: int
    misses: int
    evictions: int
    expirations: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class EmbeddingCache(Generic[V]):
    """At most ``max_size`` entries, each valid for ``ttl_s`` seconds after it was stored.

    ``max_size=0`` disables the cache (every lookup misses, nothing is stored). Reading an entry makes it
    the most recently used; storing beyond ``max_size`` evicts the least recently used one.
    """

    def __init__(
        self, max_size: int = 256, ttl_s: float = 300.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must not be negative, got {max_size}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            entry = self._entries.get(key) if isinstance(key, str) else None
            return entry is not None and entry[0] > self._clock()

    def get(self, key: str) -> V | None:
        """The value stored under ``key`` if it has not expired (counts a hit), else ``None`` (a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] <= self._clock():
                del self._entries[key]
                self.expirations += 1
                entry = None
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, value: V) -> None:
        if self.max_size == 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + self.ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
                self.evictions += 1

    def purge_expired(self) -> int:
        """Drop every expired entry now; returns how many."""
        with self._lock:
            now = self._clock()
            stale = [key for key, (expires, _) in self._entries.items() if expires <= now]
            for key in stale:
                del self._entries[key]
            self.expirations += len(stale)
            return len(stale)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                len(self._entries), self.max_size, self.hits, self.misses, self.evictions, self.expirations
            )
