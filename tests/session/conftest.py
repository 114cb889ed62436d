"""Fixtures of the session tests: a real redis-server for the Redis store (one per test run)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import redis_server


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_store_url(redis_url: str) -> str:
    """The server's URL, with its database emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url
