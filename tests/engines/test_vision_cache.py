"""EmbeddingCache and image_key: content keys, TTL, LRU bound, counters, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from aria.engines.vision.cache import EmbeddingCache, image_key
from aria.types import ImageFrame


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_image_key_depends_on_content_only() -> None:
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    a = ImageFrame(pixels.copy(), timestamp=1.0)
    b = ImageFrame(pixels.copy(), timestamp=2.0)
    assert a.frame_id != b.frame_id
    assert image_key(a) == image_key(b)
    assert len(image_key(a)) == 32  # 128-bit BLAKE2b hex
    changed = pixels.copy()
    changed[0, 0, 0] ^= 1
    assert image_key(ImageFrame(changed)) != image_key(a)
    assert image_key(ImageFrame(pixels, format="BGR")) != image_key(a)  # same bytes, other meaning
    assert image_key(ImageFrame(pixels.reshape(5, 4, 3))) != image_key(a)  # same bytes, other shape
    strided = np.ascontiguousarray(np.arange(8 * 5 * 3, dtype=np.uint8).reshape(8, 5, 3))[::2]
    assert image_key(ImageFrame(strided)) == image_key(ImageFrame(strided.copy()))


def test_image_key_of_encoded_bytes() -> None:
    jpeg = b"\xff\xd8\xff" + b"pretend-jpeg"
    assert image_key(ImageFrame(jpeg, format="JPEG")) == image_key(ImageFrame(jpeg, format="JPEG"))
    assert image_key(ImageFrame(jpeg, format="JPEG")) != image_key(ImageFrame(jpeg + b"!", format="JPEG"))


def test_hits_misses_and_ttl() -> None:
    clock = FakeClock()
    cache: EmbeddingCache[str] = EmbeddingCache(max_size=4, ttl_s=10.0, clock=clock)
    assert cache.get("a") is None
    cache.put("a", "A")
    assert cache.get("a") == "A"
    assert "a" in cache
    clock.now += 9.99
    assert cache.get("a") == "A"
    clock.now += 0.01  # exactly ttl_s after it was stored: expired
    assert "a" not in cache
    assert cache.get("a") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations, stats.size) == (2, 2, 1, 0)
    assert stats.hit_rate == 0.5


def test_put_refreshes_the_ttl() -> None:
    clock = FakeClock()
    cache: EmbeddingCache[int] = EmbeddingCache(max_size=4, ttl_s=10.0, clock=clock)
    cache.put("k", 1)
    clock.now += 8
    cache.put("k", 2)
    clock.now += 8
    assert cache.get("k") == 2


def test_lru_eviction_keeps_the_recently_used() -> None:
    cache: EmbeddingCache[str] = EmbeddingCache(max_size=2, ttl_s=60.0, clock=FakeClock())
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("c", "C")
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == "A"
    assert cache.get("c") == "C"
    assert cache.stats().evictions == 1


def test_purge_and_clear() -> None:
    clock = FakeClock()
    cache: EmbeddingCache[int] = EmbeddingCache(max_size=10, ttl_s=5.0, clock=clock)
    for i in range(3):
        cache.put(str(i), i)
    clock.now += 3
    cache.put("late", 99)
    clock.now += 3
    assert cache.purge_expired() == 3
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_size_zero_disables_the_cache() -> None:
    cache: EmbeddingCache[int] = EmbeddingCache(max_size=0)
    cache.put("a", 1)
    assert cache.get("a") is None
    assert len(cache) == 0


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="max_size"):
        EmbeddingCache(max_size=-1)
    with pytest.raises(ValueError, match="ttl_s"):
        EmbeddingCache(ttl_s=0)


def test_concurrent_use_from_threads() -> None:
    cache: EmbeddingCache[int] = EmbeddingCache(max_size=50, ttl_s=60.0)
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(2000):
                key = str((i + offset) % 80)
                if cache.get(key) is None:
                    cache.put(key, i)
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n * 7,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = cache.stats()
    assert stats.size <= 50
    assert stats.hits + stats.misses == 8000
