"""Kong's upstream keep-alive settings on the connection pool (fastkong/proxy/upstream.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from fastkong.proxy.upstream import ConnectionPool, UpstreamConnection, keepalive_settings
from tests.helpers import RecordingTransport


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _served(pool: ConnectionPool, requests: int) -> UpstreamConnection:
    """A connection that has carried ``requests`` complete keep-alive exchanges."""
    conn = UpstreamConnection(pool, ("127.0.0.1", 80, None))
    conn.connection_made(RecordingTransport())  # type: ignore[arg-type]
    for _ in range(requests):
        conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
        conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return conn


def test_settings_from_kongs_environment_names() -> None:
    assert keepalive_settings({}) == {
        "upstream_keepalive_pool_size": 512,
        "upstream_keepalive_max_requests": 10000,
        "upstream_keepalive_idle_timeout": 60,
    }
    found = keepalive_settings(
        {"KONG_UPSTREAM_KEEPALIVE_POOL_SIZE": "0", "FASTKONG_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT": "5"}
    )
    assert found["upstream_keepalive_pool_size"] == 0
    assert found["upstream_keepalive_idle_timeout"] == 5
    with pytest.raises(ValueError, match="upstream_keepalive_max_requests: expected a whole"):
        keepalive_settings({"KONG_UPSTREAM_KEEPALIVE_MAX_REQUESTS": "-1"})


def test_max_requests_zero_is_no_limit(loop: asyncio.AbstractEventLoop) -> None:
    assert _served(ConnectionPool(loop, max_requests=0), 3).reusable()
    assert not _served(ConnectionPool(loop, max_requests=3), 3).reusable()
    assert _served(ConnectionPool(loop, max_requests=4), 3).reusable()


def test_idle_timeout_zero_keeps_idle_connections(loop: asyncio.AbstractEventLoop) -> None:
    for timeout, kept in ((0, True), (60, False)):
        pool = ConnectionPool(loop, idle_timeout=timeout)
        conn = _served(pool, 1)
        pool.release(conn)
        conn.idle_since -= 3600  # idle for an hour
        assert pool.sweep() == (0 if kept else 1)
        if kept:
            assert pool.take_idle(conn.key) is conn


def test_pool_size_zero_keeps_nothing(loop: asyncio.AbstractEventLoop) -> None:
    pool = ConnectionPool(loop, max_idle=0)
    conn = _served(pool, 1)
    pool.release(conn)
    assert conn.closed and pool.take_idle(conn.key) is None
