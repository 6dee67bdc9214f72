"""The upstream connection's response parsing, fed bytes directly (sans-I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from fastkong.proxy.upstream import ConnectionPool, UpstreamConnection, UpstreamTimeout


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def set_write_buffer_limits(self, **_: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _conn(loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
    conn = UpstreamConnection(ConnectionPool(loop), ("127.0.0.1", 80, False))
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    return conn


def test_hop_by_hop_response_headers_are_left_out_in_any_case(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = _conn(loop)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKEEP-ALIVE: timeout=5\r\n"
        b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nTransfer-Encoding: chunked\r\n"
        b"Upgrade: h2c\r\nTrailer: x-t\r\nProxy-Connection: x\r\nTE: trailers\r\n"
        b"Expires: 0\r\nX-Custom: kept\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert conn.status == 200
    assert conn.headers == [
        (b"Content-Type", b"text/plain"),
        (b"Set-Cookie", b"a=1"),
        (b"Expires", b"0"),
        (b"X-Custom", b"kept"),
    ]
    assert conn.complete and not conn.until_eof


@pytest.mark.parametrize(
    ("head", "until_eof"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    ],
)
def test_a_body_without_framing_ends_with_the_connection(
    loop: asyncio.AbstractEventLoop, head: bytes, until_eof: bool
) -> None:
    conn = _conn(loop)
    conn.data_received(head)
    assert conn.head_done and conn.until_eof is until_eof


def test_interim_responses_reset_the_headers(loop: asyncio.AbstractEventLoop) -> None:
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\nX-Interim: 1\r\n\r\n")
    assert not conn.head_done
    conn.data_received(b"HTTP/1.1 200 OK\r\nX-Final: 1\r\n\r\n")
    assert conn.headers == [(b"X-Final", b"1")]
    assert conn.until_eof  # the interim response's Content-Length does not count


def test_each_response_gets_a_new_header_list(loop: asyncio.AbstractEventLoop) -> None:
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n")
    first = conn.headers
    first.append((b"via", b"added by the proxy"))
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-B: 1\r\n\r\n")
    assert conn.headers == [(b"Content-Length", b"0"), (b"X-B", b"1")]
    assert first == [(b"Content-Length", b"0"), (b"X-A", b"1"), (b"via", b"added by the proxy")]


def test_a_wait_past_its_deadline_fails_with_the_timeout(loop: asyncio.AbstractEventLoop) -> None:
    slow, quick, answered = _conn(loop), _conn(loop), _conn(loop)
    outcome: dict[str, object] = {}

    async def read(name: str, conn: UpstreamConnection, timeout: float) -> None:
        started = loop.time()
        try:
            await conn.read_head(timeout)
            outcome[name] = "answered"
        except UpstreamTimeout as exc:
            outcome[name] = (str(exc), loop.time() - started)

    async def scenario() -> None:
        # the long wait arms the pool's timer first; the short one must re-arm it earlier
        tasks = [
            loop.create_task(read("slow", slow, 5.0)),
            loop.create_task(read("quick", quick, 0.05)),
            loop.create_task(read("answered", answered, 0.05)),
        ]
        await asyncio.sleep(0)
        answered.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await asyncio.wait(tasks[1:])
        assert not tasks[0].done()  # the 5 s wait is still waiting
        slow.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await tasks[0]

    loop.run_until_complete(scenario())
    assert outcome["answered"] == outcome["slow"] == "answered"
    message, waited = outcome["quick"]  # type: ignore[misc]
    assert message == "timeout while reading from upstream"
    assert 0.04 <= waited < 1.0
    assert quick.closed and not slow.closed
    assert not slow.pool.waiting  # every wait left the set


def test_pool_timer_is_rearmed_after_close(loop: asyncio.AbstractEventLoop) -> None:
    conn = _conn(loop)
    conn.pool.close()

    async def scenario() -> None:
        with pytest.raises(UpstreamTimeout):
            await conn.read_head(0.02)

    loop.run_until_complete(asyncio.wait_for(scenario(), 2.0))
