"""Upstream HTTP/1.1: one keep-alive connection per :class:`UpstreamConnection`, pooled per peer.

Why not aiohttp or httpx: measured here, a general-purpose client costs 100+ us per request,
an ``asyncio.Protocol`` with the C parser of ``httptools`` 15-35 us (shared/DESIGN-NOTES.md).

A connection serves one exchange at a time. The request side writes bytes to the transport and,
for a streamed request body, waits for ``resume_writing`` when the kernel buffer is full. The
response side is fed by ``data_received`` into three pieces of state the proxy awaits: the head
(status + headers), a list of body chunks and a completion flag. A small response that arrives
whole in one read is taken in one compiled step (``_core.h1.parse_response``); any other (cut
across reads, chunked, unusual) goes through ``httptools``' callbacks from its first byte. When
the unread body grows past ``HIGH_WATER`` bytes the socket stops being read, so a slow client
never makes the gateway buffer a large response (bounded memory, in both directions).

Timeouts are nginx's: connect, send (between two successful writes) and read (between two
successful reads). A wait records its deadline and joins the pool's set of waiting connections;
one timer per pool, armed at the earliest deadline, fails the connections whose time is up.
A timer per wait (``call_later`` and its ``cancel``) measured 3.4 us under uvloop, a sixth of
a proxied request's own work; joining and leaving a set costs 0.2 us. The timer fires when the
earliest waiter's deadline comes (under load: about once per timeout), never more often than
every ``WATCHDOG_TICK`` seconds, so a timeout fires at most that much late.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar, cast

import httptools

from fastkong import __version__
from fastkong._core import load
from fastkong._core._h1_py import NGINX_HIDDEN, RESPONSE_HOP_BY_HOP
from fastkong.kong_conf import parse_size
from fastkong.proxy.hop import PLAIN_CONNECTION
from fastkong.proxy.upstream_tls import ContextCache, TlsProfile

#: The gateway's product token (``Server``) and its ``Via`` token (Kong's ``1.1 kong/<version>``).
SERVER = f"fastkong/{__version__}".encode()
VIA = b"1.1 " + SERVER
_SEND_TIMEOUT = "timeout while sending to upstream"
_READ_TIMEOUT = "timeout while reading from upstream"
_TOO_BIG = "upstream sent too big header"
_AFTER_RESPONSE = "upstream sent more data than specified"
#: The most bytes a response head (interim 1xx heads included) may take when Kong's
#: ``nginx_proxy_proxy_buffer_size`` is not given (:func:`max_response_head`). nginx reads the
#: head into one ``proxy_buffer_size`` buffer and answers 502 "upstream sent too big header" when
#: it fills before the head ends. Kong leaves that buffer at nginx's default, one memory page
#: (4 KB), and its users raise it (often to 160k) for large cookies; fastkong's default is more
#: generous than the page, so that a node moved from Kong without the setting refuses no head Kong
#: passed. What the limit buys is a bound: without one, an upstream that never ends its head
#: grows the worker's memory.
MAX_RESPONSE_HEAD = 64 * 1024
HIGH_WATER = 256 * 1024
#: Which kept-alive connections a request may reuse: the address connected to, its port, and the
#: TLS server name (None for plain HTTP). Connections with different SNI are not shared, as
#: Kong names its TLS pools by the upstream Host too.
#: (host, port, TLS): TLS is None for plain HTTP, else the server name and the service's
#: :class:`TlsProfile` (connections differ by both).
PoolKey = tuple[str, int, "tuple[str, TlsProfile] | None"]
LOW_WATER = 64 * 1024
#: The shortest interval between two deadline checks of one pool, in seconds.
WATCHDOG_TICK = 0.005

if TYPE_CHECKING:
    from fastkong._core import _h1_py as _h1
else:
    _h1 = load("h1")

_DROPPED = RESPONSE_HOP_BY_HOP | NGINX_HIDDEN
#: A response with neither of these has a body that ends when the connection does.
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# Only names of these lengths can be one of the above, ``server`` or ``via``: one len() spares
# a lower() for most headers (content-type is 12 long, date 4...).
_LOOK_LENGTHS = frozenset(len(name) for name in _DROPPED | _FRAMING | {b"server", b"via"})


class UpstreamError(Exception):
    """The upstream failed; ``sent`` tells whether any request byte may have reached it."""

    status = 502

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class UpstreamConnectError(UpstreamError):
    """Connecting failed: nothing was sent, the request can go to another peer. ``reason`` is
    the failure in the words of an nginx cosocket (``connection refused``), for plugins that
    report it as Kong's do."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message, sent=False)
        self.reason = reason or message


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamProtocolError(UpstreamError):
    """The upstream sent something that is not HTTP/1.x."""


class UpstreamConnection(asyncio.Protocol):
    """One upstream connection and the response currently being read from it."""

    def __init__(self, pool: ConnectionPool, key: PoolKey, address: str | None = None) -> None:
        self.pool = pool
        self.key = key
        #: The address connected to (the key's host once resolved).
        self.address: str = address or key[0]
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.loop = pool.loop
        self.status = 0
        #: The response's end-to-end headers (hop-by-hop ones are left out as they arrive).
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False
        #: The response's body has no Content-Length (chunked, or until the connection closes):
        #: nginx sends such a body chunked to the client, whole or not when the head goes out.
        self.unsized = False
        #: Whether the response names its server (else the proxy names itself, as nginx does).
        self.has_server = False
        #: The Via header for the client: the response's own Via values and the gateway's token.
        self.via_header = VIA
        #: The response's Via values and a Connection header naming headers to drop, if any:
        #: the rare head, dealt with once the head is complete.
        self.via_parts: list[bytes] = []
        self.connection: bytes | None = None
        self.rare = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.head_done = False
        self.until_eof = False
        self.expect_no_body = False
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None
        #: When the current wait times out (loop time), and what the timeout is called.
        self.deadline = 0.0
        self.deadline_error = _READ_TIMEOUT
        self.read_paused = False
        self.write_paused = False
        self.closed = False
        self.requests = 0
        self.idle_since = 0.0
        self.received_any = False
        #: Nothing of the current response was fed to the parser yet: a whole small response
        #: may still be read in one step (``_core.h1``) instead.
        self.fresh = False
        #: The pool's response head limit, held here so that a read looks it up in one step.
        self.head_limit = pool.max_response_head
        #: How many more bytes the response head may take (of :attr:`head_limit`), reset by the
        #: first read of each response that the one-step read does not take.
        self.head_room = self.head_limit

    def __repr__(self) -> str:
        host, port, tls_name = self.key
        state = "closed" if self.closed else ("idle" if self.idle_since else "busy")
        scheme = "http" if tls_name is None else f"https[{tls_name}]"
        return (
            f"<UpstreamConnection {scheme}://{host}:{port} {state} "
            f"requests={self.requests} buffered={self.buffered}>"
        )

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the Transport API without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self.fresh:
            self.fresh = False
            whole = _h1.parse_response(data, self.expect_no_body)
            # (A read no longer than the head limit holds no head past it: one test, mostly.)
            if whole is not None and (
                len(data) <= self.head_limit or len(data) - len(whole[4]) <= self.head_limit
            ):
                self.status, self.headers, self.has_server, self.keep_alive, body = whole
                self.framed = self.head_done = self.complete = True
                if body:
                    self.chunks.append(body)
                    self.buffered = len(body)
                self._wake()
                return
            self.head_room = self.head_limit  # (here: a whole response never needs it)
        if self.complete:
            # Bytes after the whole response, or on an idle connection: they answer no request.
            # nginx drops them and does not keep the connection; read on, they would become the
            # next request's response.
            self._fail(UpstreamProtocolError(_AFTER_RESPONSE))
        elif self.head_done or len(data) <= self.head_room:
            if not self.head_done:
                self.head_room -= len(data)
            self._feed(data)
        else:
            self._feed_past_head_room(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # 101 Switching Protocols: the rest is the upgraded stream (WebSocket issue).
            self._fail(UpstreamProtocolError("unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            # A callback's own refusal (raised as UpstreamError) is the reason; else llhttp's.
            cause = exc.__context__
            if isinstance(cause, UpstreamError):
                self._fail(cause)
            else:
                self._fail(UpstreamProtocolError(f"invalid response from upstream: {exc}"))

    def _feed_past_head_room(self, data: bytes) -> None:
        """``data`` goes past :attr:`head_limit`: the head must end within the room left."""
        room = self.head_room
        self.head_room = 0
        self._feed(data[:room])
        if not self.head_done:
            self._fail(UpstreamProtocolError(_TOO_BIG))
        elif self.error is None:
            self._feed(data[room:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and self.until_eof and not self.complete:
            self.complete = True
            self.keep_alive = False
            self._wake()
            return
        if not self.complete:
            self._fail(UpstreamError("upstream closed the connection"))

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # -- httptools callbacks ----------------------------------------------------------------
    # A callback refuses the response by raising an UpstreamError; the parser stops there.

    def on_message_begin(self) -> None:
        if self.complete:
            # A second response in the same read as the first (see data_received).
            raise UpstreamProtocolError(_AFTER_RESPONSE)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in _LOOK_LENGTHS:
            lower = name.lower()
            if lower in _DROPPED:
                if lower == b"transfer-encoding":
                    # nginx knows only chunked (llhttp would read any other coding until the
                    # connection closes, while this connection counted the body as framed).
                    # Trailer fields come here too, after the head: they frame nothing.
                    if not self.head_done:
                        if value.strip().lower() != b"chunked":
                            raise UpstreamProtocolError("upstream sent unknown Transfer-Encoding")
                        self.unsized = True
                    self.framed = True
                elif lower == b"connection" and value not in PLAIN_CONNECTION:
                    self.connection = value
                    self.rare = True
                return
            if lower == b"content-length":
                self.framed = True
            elif lower == b"server":
                self.has_server = True
            elif lower == b"via":
                self.via_parts.append(value)
                self.rare = True
                return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 100:
            # llhttp reads any three digits; Granian's worker dies on a status under 100.
            raise UpstreamProtocolError(f"upstream sent an invalid status {status}")
        if 100 <= status < 200 and status != 101:
            # Interim response (100 Continue, 103 Early Hints): not forwarded; wait for the next.
            self.headers = []
            self.framed = self.unsized = False
            self.has_server = False
            if self.rare:
                self.via_parts.clear()
                self.connection = None
                self.rare = False
            return
        if self.rare:
            self._rare_head()
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        if self.expect_no_body:
            # A response to HEAD has no body whatever its Content-Length says; the parser
            # cannot know that, so finish the message here and start a fresh parser.
            self.complete = True
            self.parser = httptools.HttpResponseParser(self)
        elif status != 204 and status != 304 and not self.framed:
            self.until_eof = self.unsized = True
        self._wake()

    def _rare_head(self) -> None:
        """Kong's header_filter: the headers the upstream's Connection header names end here,
        and the gateway's Via token joins the upstream's Via values in one header."""
        self.rare = False
        if self.via_parts:
            self.via_header = b", ".join((*self.via_parts, VIA))
            self.via_parts.clear()
        connection = self.connection
        if connection is not None:
            self.connection = None
            names = {token.strip().lower() for token in connection.split(b",")}
            names -= PLAIN_CONNECTION
            names.discard(b"")
            if names:
                self.headers = [h for h in self.headers if h[0].lower() not in names]
                if b"server" in names:
                    self.has_server = False  # Kong then names itself

    def on_body(self, body: bytes) -> None:
        if self.complete:
            # A body to HEAD, read by the parser on_headers_complete replaced (see data_received).
            raise UpstreamProtocolError(_AFTER_RESPONSE)
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self._wake()

    # -- waiting ----------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._wake()
        self.close()

    def time_out(self) -> None:
        """The pool's watchdog found this wait past its deadline."""
        self.pool.waiting.discard(self)
        self._fail(UpstreamTimeout(self.deadline_error))

    def _arm(self, timeout: float, message: str) -> asyncio.Future[None]:
        """Begin a wait: a future the protocol completes, and a deadline the pool's watchdog
        enforces. The caller awaits it and always ends with :meth:`_disarm`. (A plain method
        and a future, not a coroutine: one object less per wait on every request.)"""
        self.waiter = waiter = self.loop.create_future()
        self.deadline = self.loop.time() + timeout
        self.deadline_error = message
        self.pool.watch(self)
        return waiter

    def _disarm(self) -> None:
        self.waiter = None
        self.pool.waiting.discard(self)

    async def _wait(self, timeout: float, message: str) -> None:
        """One wait, for the paths off the common one (a full socket, a body still coming)."""
        waiter = self._arm(timeout, message)
        try:
            await waiter
        finally:
            self._disarm()

    # -- the exchange -----------------------------------------------------------------------

    def start(self, head: bytes, no_body: bool) -> None:
        """Begin an exchange: reset the response state and write the request head."""
        if self.error is not None:
            # The peer spoke before being asked (an HTTP/2 server's SETTINGS, garbage): the
            # connection failed already and is closed; nginx would read it as an invalid
            # response (502), never write to it.
            raise self.error
        self.status = 0
        self.headers = []
        self.framed = self.unsized = False
        self.has_server = False
        self.via_header = VIA
        self.chunks.clear()
        self.buffered = 0
        self.complete = False
        self.head_done = False
        self.until_eof = False
        self.expect_no_body = no_body
        self.received_any = False
        self.fresh = True
        self.idle_since = 0.0
        self.requests += 1
        assert self.transport is not None
        self.transport.write(head)

    async def write(self, data: bytes, timeout: float) -> None:
        """Write request body bytes, waiting (up to the send timeout) while the socket is full."""
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        self.transport.write(data)
        while self.write_paused and self.error is None:
            await self._wait(timeout, _SEND_TIMEOUT)
        if self.error is not None:
            raise self.error

    async def read_head(self, timeout: float) -> None:
        """Wait until the response status and headers have arrived."""
        while not self.head_done and self.error is None:
            # Every proxied request waits here once: the wait is inlined (no coroutine).
            waiter = self._arm(timeout, _READ_TIMEOUT)
            try:
                await waiter
            finally:
                self._disarm()
        if self.error is not None and not self.head_done:
            raise self.error

    def take_chunks(self) -> bytes:
        """The body bytes received and not yet read (call only when ``chunks`` is not empty)."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()
        return data

    async def read_body(self, timeout: float) -> bytes | None:
        """The next body chunk (possibly several joined), or None at the end of the body."""
        while True:
            if self.chunks:
                return self.take_chunks()
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self._wait(timeout, _READ_TIMEOUT)

    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and self.error is None
            and not self.closed
            and (self.requests < self.pool.max_requests or not self.pool.max_requests)
        )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


def found_stale(conn: UpstreamConnection | None, reused: bool, exc: UpstreamError) -> bool:
    """Whether ``exc`` says the kept-alive (``reused``) connection ``conn`` was stale: the peer
    closed it before answering anything (between requests, as peers do), so the request may go
    again on a fresh connection. A timeout is a real failure (a stale socket fails at once)."""
    return (
        reused
        and conn is not None
        and not conn.received_any
        and not isinstance(exc, UpstreamTimeout)
    )


#: Kong's upstream keepalive settings and defaults (kong.conf): pool size per peer and worker
#: (0: no keep-alive), requests per connection (0: no limit), idle seconds (0: no limit).
KEEPALIVE_SETTINGS = {
    "upstream_keepalive_pool_size": 512,
    "upstream_keepalive_max_requests": 10000,
    "upstream_keepalive_idle_timeout": 60,
}


def keepalive_settings(environ: Mapping[str, str]) -> dict[str, int]:
    """Kong's ``upstream_keepalive_*`` from ``FASTKONG_``/``KONG_`` environment names;
    ValueError naming a value that is not a whole number >= 0."""
    out = {}
    for name, default in KEEPALIVE_SETTINGS.items():
        key = name.upper()
        raw = environ.get(f"FASTKONG_{key}") or environ.get(f"KONG_{key}")
        if raw is None or raw.strip() == "":
            out[name] = default
            continue
        if not raw.strip().isdigit():
            raise ValueError(f"{name}: expected a whole number >= 0, got {raw!r}")
        out[name] = int(raw.strip())
    return out


#: Kong's names for nginx's ``proxy_buffer_size``: the proxy server block's, then the http
#: block's, which the server block inherits unless it sets its own.
PROXY_BUFFER_SIZE_SETTINGS = ("nginx_proxy_proxy_buffer_size", "nginx_http_proxy_buffer_size")


def proxy_buffer_size_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The ones of :data:`PROXY_BUFFER_SIZE_SETTINGS` given in ``FASTKONG_``/``KONG_``
    environment names, as given (the proxy block's first)."""
    given = {}
    for name in PROXY_BUFFER_SIZE_SETTINGS:
        key = name.upper()
        raw = environ.get(f"FASTKONG_{key}") or environ.get(f"KONG_{key}")
        if raw is not None and raw.strip():
            given[name] = raw.strip()
    return given


def max_response_head(environ: Mapping[str, str]) -> int:
    """The response head limit: Kong's ``nginx_proxy_proxy_buffer_size``, else
    ``nginx_http_proxy_buffer_size`` (nginx's size syntax), else :data:`MAX_RESPONSE_HEAD`;
    ValueError naming the setting when one is not a size above 0 (nginx refuses to start on a
    bad value in either block, even one the other overrides)."""
    sizes = []
    for name, raw in proxy_buffer_size_settings(environ).items():
        size = parse_size(raw, name)
        if size < 1:
            raise ValueError(f"{name}: expected a size above 0, got {raw!r}")
        sizes.append(size)
    return sizes[0] if sizes else MAX_RESPONSE_HEAD


_P = TypeVar("_P", bound=asyncio.BaseProtocol)


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], _P],
    key: PoolKey,
    address: str,
    timeout: float,
    ssl_context: Callable[[TlsProfile], ssl.SSLContext],
) -> tuple[asyncio.BaseTransport, _P]:
    """A connection to the peer of ``key`` at ``address``, over TLS when the key says so (the
    server named as the key names it), within ``timeout``; a failure is an
    :class:`UpstreamTimeout` or :class:`UpstreamConnectError` (HTTP/1.1 and HTTP/2 pools)."""
    host, port, tls = key
    ctx: ssl.SSLContext | None = None
    tls_name = None
    if tls is not None:
        tls_name, profile = tls
        try:
            ctx = ssl_context(profile)
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise UpstreamConnectError(f"TLS setup for {host}:{port} failed: {exc}") from None
    try:
        return await asyncio.wait_for(
            loop.create_connection(
                factory,
                address,
                port,
                ssl=ctx,
                # An IP literal is verified against the certificate's IP names, no SNI sent.
                server_hostname=(tls_name or host) if ctx is not None else None,
            ),
            timeout,
        )
    except TimeoutError:
        raise UpstreamTimeout(f"timeout while connecting to {host}:{port}", sent=False) from None
    except OSError as exc:
        raise UpstreamConnectError(
            f"connect to {host}:{port} failed: {exc}", (exc.strerror or str(exc)).lower()
        ) from None


class ConnectionPool:
    """Keep-alive connections per ``(host, port, tls)``, Kong's defaults (512 idle, 60 s, 10000).

    Idle connections are a LIFO stack per peer, so the warmest socket is reused first and
    surplus ones age out by the idle timeout. ``max_response_head`` is the most bytes a
    response head may take on its connections (502 "upstream sent too big header" past it).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_idle: int = 512,
        idle_timeout: float = 60.0,
        max_requests: int = 10000,
        max_response_head: int = MAX_RESPONSE_HEAD,
    ) -> None:
        self.loop = loop
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.max_requests = max_requests
        self.max_response_head = max_response_head
        self.idle: dict[PoolKey, list[UpstreamConnection]] = {}
        #: Connections in a wait with a deadline, and the one timer that checks them.
        self.waiting: set[UpstreamConnection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at = math.inf
        self.contexts = ContextCache()
        self.opened = 0

    def __repr__(self) -> str:
        idle = sum(len(v) for v in self.idle.values())
        return f"<ConnectionPool peers={len(self.idle)} idle={idle} opened={self.opened}>"

    def ssl_context(self, profile: TlsProfile) -> ssl.SSLContext:
        return self.contexts.get(profile)

    def watch(self, conn: UpstreamConnection) -> None:
        """Fail ``conn``'s wait if it is still waiting at ``conn.deadline``."""
        self.waiting.add(conn)
        if conn.deadline < self._watch_at:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watch_at = conn.deadline
            self._watchdog = self.loop.call_at(conn.deadline, self._check_deadlines)

    def _check_deadlines(self) -> None:
        self._watchdog = None
        self._watch_at = math.inf
        now = self.loop.time()
        for conn in [c for c in self.waiting if c.deadline <= now]:
            conn.time_out()
        if self.waiting:
            at = max(min(c.deadline for c in self.waiting), now + WATCHDOG_TICK)
            self._watch_at = at
            self._watchdog = self.loop.call_at(at, self._check_deadlines)

    def take_idle(self, key: PoolKey) -> UpstreamConnection | None:
        stack = self.idle.get(key)
        if not stack:
            return None
        deadline = time.monotonic() - self.idle_timeout if self.idle_timeout else -math.inf
        while stack:
            conn = stack.pop()
            if conn.closed:
                continue
            if conn.idle_since < deadline:
                conn.close()
                continue
            return conn
        return None

    async def connect(
        self,
        key: PoolKey,
        address: str,
        timeout: float,
    ) -> UpstreamConnection:
        _, conn = await open_connection(
            self.loop,
            lambda: UpstreamConnection(self, key, address),
            key,
            address,
            timeout,
            self.ssl_context,
        )
        self.opened += 1
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Return ``conn`` after an exchange: kept if the response allows reuse, else closed."""
        if not conn.reusable():
            conn.close()
            return
        stack = self.idle.setdefault(conn.key, [])
        if len(stack) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        stack.append(conn)

    def sweep(self) -> int:
        """Close idle connections older than the idle timeout; returns how many were closed."""
        if not self.idle_timeout:
            return 0  # upstream_keepalive_idle_timeout = 0: idle connections stay open
        deadline = time.monotonic() - self.idle_timeout
        closed = 0
        for key, stack in list(self.idle.items()):
            keep = [c for c in stack if not c.closed and c.idle_since >= deadline]
            for c in stack:
                if c not in keep and not c.closed:
                    c.close()
                    closed += 1
            if keep:
                self.idle[key] = keep
            else:
                del self.idle[key]
        return closed

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._watch_at = math.inf
        for stack in self.idle.values():
            for conn in stack:
                conn.close()
        self.idle.clear()
