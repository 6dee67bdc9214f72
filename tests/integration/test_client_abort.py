"""Clients that leave while the upstream is still working on their request.

A keep-alive pool must never hand a connection whose answer is still on its way to the next
request: that request would get the answer meant for the one that left (a desync that crosses
users). Here clients send requests a slow upstream answers after a delay, over HTTP/1.1 and as
HTTP/2 streams they reset, and leave before the answer; then requests to the same upstream
must each get their own answer, and the gateway keeps serving.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Gateway, LoopServer

SLOW = 0.6  # seconds the upstream takes over a /slow request


class PathEcho(LoopServer):
    """Answers each request with its own target; ``/slow`` ones after ``SLOW`` seconds."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1]
                if target.startswith(b"/slow"):
                    await asyncio.sleep(SLOW)
                body = b"target=" + target
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream = PathEcho().start()
    config = f"""
_format_version: "3.0"
services:
- name: slow
  url: http://127.0.0.1:{upstream.port}
  routes: [{{name: all, paths: [/], strip_path: false}}]
"""
    gw = Gateway(tmp_path_factory.mktemp("abort"), config, 1)
    gw.port_flags = "http2"  # HTTP/1.1 and h2c on one listener
    gw.start()
    yield gw
    gw.stop()
    upstream.stop()


def _answers_are_their_own(gw: Gateway, n: int = 100) -> None:
    with httpx.Client() as client:
        for i in range(n):
            r = client.get(gw.url(f"/fast/{i}"))
            assert (r.status_code, r.text) == (200, f"target=/fast/{i}")


def test_http11_clients_that_leave_early(gateway: Gateway) -> None:
    for i in range(20):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(b"GET /slow/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            time.sleep(0.02)  # the request is on its way up; then the client hangs up
    _answers_are_their_own(gateway)
    time.sleep(SLOW)  # the late answers arrive at connections nobody waits on any more
    _answers_are_their_own(gateway)


def test_http2_streams_reset_early(gateway: Gateway) -> None:
    async def leave_early() -> None:
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            tasks = [
                asyncio.ensure_future(client.get(gateway.url(f"/slow/h2/{i}"))) for i in range(20)
            ]
            await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()  # httpx resets the stream
            await asyncio.gather(*tasks, return_exceptions=True)
            r = await client.get(gateway.url("/fast/h2"))  # the same connection goes on
            assert (r.status_code, r.text) == (200, "target=/fast/h2")

    asyncio.run(leave_early())
    _answers_are_their_own(gateway)
    time.sleep(SLOW)
    _answers_are_their_own(gateway)


def test_a_client_that_leaves_mid_upload(gateway: Gateway) -> None:
    """The upstream got a head and part of a body: its connection cannot be reused."""
    for i in range(10):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(
                b"POST /fast/upload/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n" % i
                + b"x" * 1_500_000
            )
            time.sleep(0.02)
    _answers_are_their_own(gateway)
