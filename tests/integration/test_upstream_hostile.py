"""The proxy in front of a hostile upstream: whatever bytes come back, the client is answered as
nginx (so Kong) answers it, and the worker lives on without leaking.

What nginx does, and so what is asserted (``ngx_http_upstream.c``, ``ngx_http_proxy_module.c``):

* An answer whose head is invalid is nginx's "upstream sent invalid header": a **502** with Kong's
  body for it, and no retry (``proxy_next_upstream``'s default, ``error timeout``, leaves out
  ``invalid_header``). Invalid here is what llhttp refuses; nginx's own parser is laxer in places
  (a status line it cannot read is taken for an HTTP/0.9 answer, passed on as a 200 body; a
  header name with a character like ``(`` is let through), and fastkong keeps llhttp's 502.
* An answer cut before the end of its head is "upstream prematurely closed connection": an
  error, so the request is retried (``retries``) and the client then gets the same 502.
* A valid head with a body cut short (the connection closes early, or the chunked framing
  breaks): the client has already been sent the head, gets what came, then the connection
  closes before the body completes. Never a 500.
* Bytes after a complete response ("upstream sent more data than specified") are dropped and
  the connection is not kept; the response itself passes intact.

After every example the worker is the same process, and a request to a healthy route answers
200. At the end, the worker holds no more file descriptors than at the start (give or take a
few) and its stderr shows no traceback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.proxy.upstream import MAX_RESPONSE_HEAD
from tests.helpers import Echo, Gateway, LoopServer, eventually

pytestmark = pytest.mark.integration

#: The hostile service's settings: retries are counted, a silent peer times out quickly.
RETRIES = 2
READ_TIMEOUT_MS = 1000
#: Between two pieces of an answer, so that the gateway reads them apart.
PAUSE = 0.01
#: File descriptors the worker may hold beyond its count at the start (kept-alive sockets).
FD_SLACK = 8
KONG_502 = b"An invalid response was received from the upstream server"

CONFIG = """
_format_version: "3.0"
services:
- name: hostile
  url: http://127.0.0.1:{peer}
  retries: {retries}
  read_timeout: {read_timeout}
  routes:
  - name: hostile
    paths: [/hostile]
- name: quiet
  url: http://127.0.0.1:{peer}
  retries: 1
  read_timeout: 300
  routes:
  - name: quiet
    paths: [/quiet]
- name: healthy
  url: http://127.0.0.1:{echo}
  routes:
  - name: healthy
    paths: [/healthy]
"""


# -- the upstream ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the peer does with each request: write ``pieces`` (a pause between two), then
    ``close`` the connection, ``keep`` it for the next request, or ``hold`` it silent until the
    gateway gives up on it."""

    pieces: tuple[bytes, ...]
    then: Literal["close", "keep", "hold"] = "close"

    @classmethod
    def of(cls, *pieces: bytes, then: Literal["close", "keep", "hold"] = "close") -> Answer:
        return cls(pieces, then)


class HostilePeer(LoopServer):
    """A raw TCP upstream answering every request head with :attr:`answer`; counts the requests
    it answered, the connections it accepted, those the gateway closed first, and those still
    being served."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = Answer.of(b"")
        self.answered = 0
        self.connections = 0
        self.dropped_by_gateway = 0
        self.active = 0
        #: Bytes written as soon as a connection is accepted, before any request.
        self.greeting = b""

    def plan(self, answer: Answer, greeting: bytes = b"") -> None:
        self.answer = answer
        self.answered = 0
        self.greeting = greeting

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        try:
            if self.greeting:
                writer.write(self.greeting)
                await writer.drain()
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.dropped_by_gateway += 1
                    return
                answer = self.answer
                self.answered += 1
                for i, piece in enumerate(answer.pieces):
                    if i:
                        await asyncio.sleep(PAUSE)
                    writer.write(piece)
                    await writer.drain()
                if answer.then == "hold":
                    await asyncio.wait_for(reader.read(), 10)
                if answer.then != "keep":
                    return
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            self.active -= 1


# -- the client -----------------------------------------------------------------------------


@dataclass
class Reply:
    """The gateway's answer as a raw client reads it until the connection closes."""

    raw: bytes
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    #: The body ended as its framing says (last chunk, or the whole Content-Length) before
    #: the connection closed.
    complete: bool


def ask(
    gateway: Gateway, path: bytes = b"/hostile", method: bytes = b"GET", **headers: str
) -> Reply:
    head = b"%s %s HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n" % (method, path)
    head += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(head + b"\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return parse_reply(raw, no_body=method == b"HEAD")


def parse_reply(raw: bytes, no_body: bool = False) -> Reply:
    head, found, rest = raw.partition(b"\r\n\r\n")
    assert found, f"no complete head from the gateway: {raw[:300]!r}"
    status_line, *lines = head.split(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line[9:12])
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if no_body or status in (101, 204, 304):
        return Reply(raw, status, headers, rest, rest == b"")
    if headers.get(b"transfer-encoding") == b"chunked":
        body, complete = dechunk(rest)
        return Reply(raw, status, headers, body, complete)
    if b"content-length" in headers:
        length = int(headers[b"content-length"])
        return Reply(raw, status, headers, rest[:length], len(rest) == length)
    return Reply(raw, status, headers, rest, True)


def dechunk(data: bytes) -> tuple[bytes, bool]:
    body = b""
    while True:
        line, found, data = data.partition(b"\r\n")
        if not found:
            return body, False
        size = int(line, 16)
        if size == 0:
            return body, data == b"\r\n"
        body += data[:size]
        if len(data) < size + 2:
            return body, False
        data = data[size + 2 :]


def assert_kong_502(reply: Reply) -> None:
    """nginx's 502 through Kong's error handler: text/plain unless the client asks otherwise."""
    assert reply.status == 502, reply.raw[:400]
    assert reply.headers[b"content-type"] == b"text/plain; charset=utf-8"
    request_id = reply.headers[b"x-kong-request-id"]
    assert reply.body == KONG_502 + b"\nrequest_id: " + request_id + b"\n"


def assert_cut(reply: Reply, status: int) -> None:
    """The head went out, then the connection closed before the body's end."""
    assert reply.status == status, reply.raw[:400]
    assert not reply.complete, reply.raw[:400]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer() -> Iterator[HostilePeer]:
    server = HostilePeer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, peer: HostilePeer, echo: Echo
) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("hostile")
    config = CONFIG.format(
        peer=peer.port, echo=echo.port, retries=RETRIES, read_timeout=READ_TIMEOUT_MS
    )
    gw = Gateway(workdir, config)
    gw.stderr_path = workdir / "stderr.log"
    gw.start()
    yield gw
    assert gw.stop() == 0


@dataclass
class Worker:
    """The gateway's one worker, and a kept-alive client for the checks after each example (a
    new httpx client per check costs tens of milliseconds: its TLS context)."""

    pid: int
    fds: int
    client: httpx.Client


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.fixture(scope="module")
def worker(gateway: Gateway) -> Iterator[Worker]:
    """The worker's pid and its open files once it has served both kinds of route."""
    (pid,) = gateway.worker_pids()
    with httpx.Client(timeout=5) as client:
        assert client.get(gateway.url("/healthy")).status_code == 200
        yield Worker(pid, open_fds(pid), client)


@pytest.fixture
def hostile(gateway: Gateway, peer: HostilePeer, worker: Worker) -> Iterator[HostilePeer]:
    """The peer, and after the test: the same worker, and the healthy route still answers."""
    yield peer
    settle(peer)
    check_alive(gateway, worker)


def settle(peer: HostilePeer) -> None:
    """Wait until the peer has written its last piece and closed (a connection it keeps is
    idle). Bytes it wrote after the client's answer could otherwise meet the next request on
    a kept-alive connection and be taken for its response: a race in HTTP/1.1 itself, which
    nginx loses the same way. (The check through the gateway that follows lets its loop read
    what came.)"""
    eventually(lambda: peer.active == 0 or peer.answer.then == "keep", timeout=15)


def check_alive(gateway: Gateway, worker: Worker) -> None:
    status = worker.client.get(gateway.status_url("/status")).json()
    assert [int(pid) for pid in status["fastkong"]["workers"]] == [worker.pid]  # worker_pids()
    assert worker.client.get(gateway.url("/healthy")).status_code == 200


# -- explicit shapes ------------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
SMUGGLED = b"HTTP/1.1 404 Smuggled\r\nX-Smuggled: 1\r\nContent-Length: 3\r\n\r\nabc"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

INVALID_HEADS = {
    "bad status code": b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
    "status under 100": b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
    "status 000": b"HTTP/1.1 000 Zero\r\n\r\n",
    "not HTTP": b"ICY 200 OK\r\n\r\n",
    "space in a header name": b"HTTP/1.1 200 OK\r\nX Bad: y\r\nContent-Length: 2\r\n\r\nok",
    "NUL in a header value": b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "folded header": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "bare LF": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "the same length twice": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "length list": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok",
    "length overflow": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nok",
    "length and chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "unknown transfer coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
    "coding before chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"2\r\nok\r\n0\r\n\r\n",
    "random bytes": b"\x00\xff\x13 not http at all \r\n\r\n",
}


@pytest.mark.parametrize("answer", INVALID_HEADS.values(), ids=INVALID_HEADS.keys())
def test_an_invalid_head_is_a_502_without_retry(
    gateway: Gateway, hostile: HostilePeer, answer: bytes
) -> None:
    hostile.plan(Answer.of(answer))
    assert_kong_502(ask(gateway))
    assert hostile.answered == 1  # invalid_header is not in nginx's default proxy_next_upstream


def test_a_peer_that_speaks_first_is_a_502(gateway: Gateway, hostile: HostilePeer) -> None:
    # An HTTP/2 server sends its SETTINGS frame on accept: the bytes may arrive before the
    # request head is written; nginx reads them as an invalid response. (The gateway once
    # wrote the head to the connection the bytes had already failed: a 500 and a traceback.)
    settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64"
    hostile.plan(Answer.of(OK), greeting=settings)
    for _ in range(10):
        assert_kong_502(ask(gateway))
    hostile.plan(Answer.of(OK))


def test_the_502_is_negotiated_as_kongs_error_pages_are(
    gateway: Gateway, hostile: HostilePeer
) -> None:
    hostile.plan(Answer.of(b"HTTP/1.1 2x0 OK\r\n\r\n"))
    reply = ask(gateway, Accept="application/json")
    assert reply.status == 502
    assert reply.headers[b"content-type"] == b"application/json; charset=utf-8"
    assert b'"message":"%s"' % KONG_502 in reply.body


def test_a_huge_head_is_a_502(gateway: Gateway, hostile: HostilePeer) -> None:
    assert gateway.stderr_path is not None
    log = gateway.stderr_path
    said = "upstream sent too big header while reading response header from upstream"
    before = log.read_text(errors="replace").count(said)
    big = b"x" * MAX_RESPONSE_HEAD
    hostile.plan(
        Answer.of(b"HTTP/1.1 200 OK\r\nX-Big: " + big + b"\r\nContent-Length: 2\r\n\r\nok")
    )
    assert_kong_502(ask(gateway))
    assert hostile.answered == 1  # "upstream sent too big header": invalid_header, not retried
    # A head that never ends, as it trickles in: refused once past the limit, not held.
    hostile.plan(Answer.of(b"HTTP/1.1 200 OK\r\n", *[b"X-More: " + b"y" * 8000 + b"\r\n"] * 10))
    assert_kong_502(ask(gateway))
    # The reason is in the log, once per refused answer, as nginx writes it.
    eventually(lambda: log.read_text(errors="replace").count(said) == before + 2)


def test_a_head_just_within_the_limit_passes(gateway: Gateway, hostile: HostilePeer) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: \r\n\r\n"
    big = b"x" * (MAX_RESPONSE_HEAD - len(head))
    whole = head.replace(b"X-Big: ", b"X-Big: " + big) + b"ok"
    for pieces in ((whole,), (whole[:1000], whole[1000:])):  # whole (compiled read), and cut
        hostile.plan(Answer(pieces))
        reply = ask(gateway)
        assert reply.status == 200 and reply.body == b"ok" and reply.headers[b"x-big"] == big


CUT_HEADS = {
    "immediate close": (b"",),
    "no answer, then close": (b"", b""),
    "close mid status line": (b"HTTP/1.1 20",),
    "close mid head": (b"HTTP/1.1 200 OK\r\nContent-Le",),
    "close before the blank line": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",),
    "interim answer, then close": (b"HTTP/1.1 100 Continue\r\n\r\n",),
}


@pytest.mark.parametrize("pieces", CUT_HEADS.values(), ids=CUT_HEADS.keys())
def test_a_head_cut_short_is_a_502_after_the_retries(
    gateway: Gateway, hostile: HostilePeer, pieces: tuple[bytes, ...]
) -> None:
    assert gateway.stderr_path is not None
    said = f'upstream: 127.0.0.1:{hostile.port}, request: "GET /"'
    before = gateway.stderr_path.read_text(errors="replace").count(said)
    hostile.plan(Answer(pieces))
    assert_kong_502(ask(gateway))
    assert hostile.answered == RETRIES + 1  # "upstream prematurely closed": an error, retried
    # each failed try has its line in the log, as nginx writes one per try
    log = gateway.stderr_path
    eventually(lambda: log.read_text(errors="replace").count(said) == before + RETRIES + 1)


def test_no_answer_at_all_is_a_504_after_the_retries(
    gateway: Gateway, hostile: HostilePeer
) -> None:
    hostile.plan(Answer.of(b"", then="hold"))
    assert gateway.stderr_path is not None
    log = gateway.stderr_path
    said = "timeout while reading from upstream, upstream: 127.0.0.1:"
    before = log.read_text(errors="replace").count(said)
    reply = ask(gateway, b"/quiet")
    assert reply.status == 504
    assert reply.body.startswith(b"The upstream server is timing out\n")
    assert hostile.answered == 2  # nginx retries a timeout too
    eventually(lambda: log.read_text(errors="replace").count(said) == before + 2)


CUT_BODIES = {
    "length, close early": (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello",),
    "length, nothing of it": (b"HTTP/1.1 201 Created\r\nContent-Length: 50\r\n\r\n",),
    "chunked, close early": (CHUNKED_HEAD + b"5\r\nhello\r\n",),
    "chunked, close mid chunk": (CHUNKED_HEAD + b"10\r\nhello",),
    "chunked, no last CRLF": (CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n",),
    "bad chunk size": (CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n",),
    "bad chunk size later": (CHUNKED_HEAD + b"5\r\nhello\r\n", b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk size overflow": (CHUNKED_HEAD + b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",),
    "chunk longer than its size": (CHUNKED_HEAD + b"2\r\nhello\r\n0\r\n\r\n",),
}


@pytest.mark.parametrize("pieces", CUT_BODIES.values(), ids=CUT_BODIES.keys())
def test_a_body_cut_short_ends_the_connection_after_the_head(
    gateway: Gateway, hostile: HostilePeer, pieces: tuple[bytes, ...]
) -> None:
    hostile.plan(Answer(pieces))
    assert_cut(ask(gateway), int(pieces[0][9:12]))
    assert hostile.answered == 1


PASSED = {
    "length": (OK, 200, b"hello"),
    "chunked": (CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\n", 200, b"hello"),
    "HTTP/1.0 until close": (
        b"HTTP/1.0 200 OK\r\nX-Old: 1\r\n\r\nhello world",
        200,
        b"hello world",
    ),
    "HTTP/1.1 until close": (b"HTTP/1.1 200 OK\r\n\r\nhello world", 200, b"hello world"),
    "100 Continue first": (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, 200, b"hello"),
    "two early hints first": (b"HTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n" * 2 + OK, 200, b"hello"),
    "status 600": (b"HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok", 600, b"ok"),
    "bytes after the length": (OK + b"trailing junk", 200, b"hello"),
    "a response after the length": (OK + SMUGGLED, 200, b"hello"),
    "a response after the last chunk": (
        CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        200,
        b"hello",
    ),
    "a 204 with a body": (b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED, 204, b""),
}


@pytest.mark.parametrize(("answer", "status", "body"), PASSED.values(), ids=PASSED.keys())
def test_a_well_formed_answer_passes_intact(
    gateway: Gateway, hostile: HostilePeer, answer: bytes, status: int, body: bytes
) -> None:
    hostile.plan(Answer.of(answer))
    reply = ask(gateway)
    assert (reply.status, reply.body) == (status, body)
    assert reply.complete and b"x-smuggled" not in reply.headers


def test_a_101_the_client_did_not_ask_for_ends_after_its_head(
    gateway: Gateway, hostile: HostilePeer
) -> None:
    # nginx passes the 101 on, keeps no connection, and sends what follows until the upstream
    # closes; fastkong sends the head and ends there (the client asked for no other protocol).
    hostile.plan(
        Answer.of(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nxyz"
        )
    )
    reply = ask(gateway)
    assert reply.status == 101 and reply.body == b""


def test_a_response_after_the_response_is_not_the_next_ones(
    gateway: Gateway, hostile: HostilePeer
) -> None:
    # Read with the first, a second response must not become the next request's answer: the
    # connection is dropped as soon as those bytes come, whether in the same read or later.
    for pieces in ((OK + SMUGGLED,), (OK, SMUGGLED)):
        hostile.plan(Answer(pieces, then="keep"))
        dropped = hostile.dropped_by_gateway
        reply = ask(gateway)
        assert (reply.status, reply.body) == (200, b"hello")
        eventually(lambda: hostile.dropped_by_gateway == dropped + 1)  # noqa: B023
        hostile.plan(Answer.of(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", then="keep"))
        assert ask(gateway).status == 202


def test_bytes_on_an_idle_connection_close_it(gateway: Gateway, hostile: HostilePeer) -> None:
    hostile.plan(Answer.of(OK, b"HTTP/1.1 200 OK\r\nX-Half: ", then="keep"))
    dropped = hostile.dropped_by_gateway
    assert ask(gateway).body == b"hello"
    eventually(lambda: hostile.dropped_by_gateway == dropped + 1)
    hostile.plan(Answer.of(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", then="keep"))
    assert ask(gateway).status == 202


def test_a_body_to_head_is_dropped_with_the_connection(
    gateway: Gateway, hostile: HostilePeer
) -> None:
    hostile.plan(Answer.of(OK, then="keep"))
    dropped = hostile.dropped_by_gateway
    reply = ask(gateway, method=b"HEAD")
    assert reply.status == 200 and reply.body == b""
    eventually(lambda: hostile.dropped_by_gateway == dropped + 1)


def test_a_kept_connection_serves_the_next_request(gateway: Gateway, hostile: HostilePeer) -> None:
    hostile.plan(Answer.of(OK, then="keep"))
    connections = hostile.connections
    for _ in range(3):
        assert ask(gateway).body == b"hello"
    assert hostile.connections <= connections + 1


# -- generated answers ----------------------------------------------------------------------

Expect = Literal["pass", "invalid", "cut-head", "cut-body", "refused", "any"]

_NAMES = st.sampled_from(
    [b"Content-Type", b"Server", b"Date", b"X-Custom", b"Set-Cookie", b"Cache-Control", b"Vary"]
)
_VALUES = st.binary(max_size=20).map(lambda v: bytes(c for c in v if 0x21 <= c <= 0x7E) or b"v")
_BAD_STATUS_LINES = [
    b"HTTP/1.1 2x0 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 2000 OK",
    b"HTTP/1.1 099 Low",
    b"HTTP/1.1 000 Zero",
    b"HTTX/1.1 200 OK",
    b"http/1.1 200 OK",
    b"HTTP/1.1200 OK",
    b" HTTP/1.1 200 OK",
    b"HTTP/1.x 200 OK",
    b"HTTP/3.1 200 OK",
    b"HTTP/1.1 200 O\rK",
]
_BAD_HEADER_LINES = [
    b"X Bad: y",
    b"X-Bad : y",
    b"X-Bad",
    b": novalue",
    b"X-Bad: a\x00b",
    b"X-Bad: a\rb",
    b"X-B\x01d: y",
    b" folded",
    b"X-Bad: \x7f",
    b"X(Bad): y",
]
_BAD_FRAMING = [
    b"Content-Length: %d\r\nContent-Length: %d",
    b"Content-Length: %d, %d",
    b"Content-Length: +%d",
    b"Content-Length: -%d",
    b"Content-Length: %d %d",
    b"Content-Length: 0x%d",
    b"Content-Length: 99999999999999999999999",
    b"Content-Length: %d\r\nTransfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: gzip, chunked",
]
_BAD_CHUNK_SIZES = [b"zz", b"-5", b"fffffffffffffffffffff", b" ", b"5 5", b"0x5"]


@dataclass(frozen=True)
class Shape:
    """A generated answer and the outcome nginx gives it."""

    name: str
    data: bytes
    expect: Expect
    status: int = 0
    body: bytes = b""
    #: Wait a moment before closing (the upstream keeps silent, then hangs up).
    linger: bool = False


@st.composite
def _well_formed(draw: st.DrawFn) -> tuple[int, bytes, bytes, bytes, str]:
    """``(status, head, payload, body, framing)``: a valid response, its head ending CRLF CRLF."""
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500, 503]))
    headers = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
    body = b"" if status in (204, 304) else draw(st.binary(min_size=1, max_size=200))
    framing = (
        "none" if status in (204, 304) else draw(st.sampled_from(["length", "chunked", "eof"]))
    )
    lines = [b"HTTP/1.1 %d Reason" % status, *(n + b": " + v for n, v in headers)]
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        cut = draw(st.integers(1, len(body)))
        parts = [body[:cut], body[cut:]]
        payload = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
    else:
        payload = body
    return status, b"\r\n".join(lines) + b"\r\n\r\n", payload, body, framing


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    status, head, payload, body, framing = draw(_well_formed())
    kind = draw(
        st.sampled_from(
            [
                "well-formed",
                "bad status line",
                "bad header line",
                "bad framing",
                "bad chunk size",
                "cut head",
                "cut body",
                "bytes after",
                "HTTP/1.0",
                "interim first",
                "huge head",
                "no answer",
                "random bytes",
                "one byte changed",
            ]
        )
    )
    lines = head.split(b"\r\n")
    if kind == "bad status line":
        lines[0] = draw(st.sampled_from(_BAD_STATUS_LINES))
        return Shape(kind, b"\r\n".join(lines) + payload, "invalid")
    if kind == "bad header line":
        at = draw(st.integers(1, len(lines) - 2))
        lines.insert(at, draw(st.sampled_from(_BAD_HEADER_LINES)))
        return Shape(kind, b"\r\n".join(lines) + payload, "invalid")
    if kind == "bad framing":
        framing_line = draw(st.sampled_from(_BAD_FRAMING))
        n = len(body)
        framing_line = framing_line.replace(b"%d", b"%d" % n, 1).replace(b"%d", b"%d" % (n + 1))
        kept = [ln for ln in lines if not ln.startswith((b"Content-Length", b"Transfer-Enc"))]
        kept.insert(1, framing_line)
        return Shape(kind, b"\r\n".join(kept) + payload, "invalid")
    if kind == "bad chunk size" and framing == "chunked":
        size = draw(st.sampled_from(_BAD_CHUNK_SIZES))
        first, _, rest = payload.partition(b"\r\n")
        return Shape(kind, head + size + b"\r\n" + rest, "cut-body", status)
    if kind == "cut head":
        return Shape(kind, head[: draw(st.integers(0, len(head) - 1))], "cut-head")
    if kind == "cut body" and framing in ("length", "chunked"):
        return Shape(
            kind, head + payload[: draw(st.integers(0, len(payload) - 1))], "cut-body", status
        )
    if kind == "bytes after" and framing in ("length", "chunked", "none"):
        extra = draw(
            st.sampled_from([SMUGGLED, b"\r\n", b"junk"]) | st.binary(min_size=1, max_size=50)
        )
        return Shape(kind, head + payload + extra, "pass", status, body)
    if kind == "HTTP/1.0":
        kept = [ln for ln in lines if not ln.startswith((b"Content-Length", b"Transfer-Enc"))]
        kept[0] = kept[0].replace(b"HTTP/1.1", b"HTTP/1.0")
        data = b"\r\n".join(kept) + (body if status not in (204, 304) else b"")
        return Shape(kind, data, "pass", status, b"" if status in (204, 304) else body)
    if kind == "interim first":
        interim = draw(
            st.lists(
                st.sampled_from(
                    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early\r\nLink: </a>\r\n\r\n"]
                ),
                min_size=1,
                max_size=3,
            )
        )
        return Shape(kind, b"".join(interim) + head + payload, "pass", status, body)
    if kind == "huge head":
        big = b"X-Big: " + b"b" * draw(st.integers(MAX_RESPONSE_HEAD, 2 * MAX_RESPONSE_HEAD))
        lines.insert(1, big)
        return Shape(kind, b"\r\n".join(lines) + payload, "invalid")
    if kind == "no answer":
        return Shape(kind, b"", "cut-head", linger=True)
    if kind == "random bytes":
        data = draw(st.binary(max_size=200).filter(lambda b: not b.startswith(b"HTTP/")))
        return Shape(kind, data, "refused")
    if kind == "one byte changed":
        data = bytearray(head + payload)
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return Shape(kind, bytes(data), "any")
    return Shape("well-formed", head + payload, "pass", status, body)


def _pieces(data: bytes, cuts: list[int]) -> tuple[bytes, ...]:
    bounds = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *bounds, len(data)]
    return tuple(data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a) or (b"",)


def check(reply: Reply, shape: Shape, answered: int) -> None:
    granian_500 = reply.status == 500 and reply.body == b"Internal server error"
    assert not granian_500, "Granian's own 500: the app raised"
    if shape.expect == "pass":
        assert reply.status == shape.status, reply.raw[:400]
        assert reply.complete and reply.body == shape.body
    elif shape.expect == "invalid":
        assert_kong_502(reply)
        assert answered == 1
    elif shape.expect == "cut-head":
        assert_kong_502(reply)
        assert answered == RETRIES + 1
    elif shape.expect == "cut-body":
        assert_cut(reply, shape.status)
    elif shape.expect == "refused":
        assert_kong_502(reply)
        assert answered in (1, RETRIES + 1)  # refused at once, or cut short: retried
    elif reply.status == 502:
        assert_kong_502(reply)


@settings(max_examples=200, deadline=None)
@given(shape=shapes(), cuts=st.lists(st.integers(0, 10_000), max_size=3))
def test_any_answer_is_answered_as_nginx_would(
    gateway: Gateway, peer: HostilePeer, worker: Worker, shape: Shape, cuts: list[int]
) -> None:
    pieces = _pieces(shape.data, cuts)
    peer.plan(Answer((*pieces, b"") if shape.linger else pieces))
    reply = ask(gateway)
    check(reply, shape, peer.answered)
    settle(peer)
    check_alive(gateway, worker)


# -- at the end -----------------------------------------------------------------------------


def test_no_file_descriptor_leaked_and_no_traceback(gateway: Gateway, worker: Worker) -> None:
    check_alive(gateway, worker)
    eventually(lambda: open_fds(worker.pid) <= worker.fds + FD_SLACK)
    assert gateway.stderr_path is not None
    log = gateway.stderr_path.read_text(errors="replace")
    for sign in ("Traceback", "panicked", "Unexpected exit", "raised an exception"):
        assert sign not in log, log[-3000:]
