"""One HTTP/1.1 exchange a plugin makes itself: with an AWS endpoint (Lambda, STS, instance
metadata) for ``aws-lambda``, with an LLM provider for the AI transformers; on the gateway's own
upstream connections (:mod:`fastkong.proxy.upstream`: the httptools parser, nginx-style
timeouts, bounded buffers), not a general-purpose client.

As Kong's AWS library (``lua-resty-aws`` over ``lua-resty-http``): one ``timeout`` bounds
connecting, sending and each read; a connection is kept for ``keepalive`` milliseconds when a
caller asks for keep-alive (the Lambda calls do, the credential calls do not), 30 per endpoint
and worker (``lua_socket_pool_size``); a forward proxy (the plugin's ``proxy_url``) carries an
``https`` exchange through an HTTP ``CONNECT`` tunnel and a plain one as an absolute-form
request. ``https`` peers are verified against the node's trusted roots
(``lua_ssl_trusted_certificate``) and must name the host asked for, unless the caller passes a
non-verifying ``tls`` profile (the transformers' ``https_verify: false``).
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from fastkong import __version__
from fastkong.proxy.tracing import Trace, internal_request
from fastkong.proxy.upstream import (
    ConnectionPool,
    PoolKey,
    UpstreamConnectError,
    UpstreamConnection,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    found_stale,
)
from fastkong.proxy.upstream_tls import PLAIN_VERIFY, TlsProfile

USER_AGENT: Final = f"fastkong/{__version__}"
#: Idle connections kept per endpoint and worker (nginx's ``lua_socket_pool_size``).
POOL_SIZE: Final = 30
#: The largest response body read: a Lambda answers at most 6 MB synchronously.
MAX_BODY: Final = 16 * 1024 * 1024
#: The largest answer a proxy may give to CONNECT before the tunnel starts.
_MAX_CONNECT_HEAD: Final = 16 * 1024
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class AwsHttpError(Exception):
    """The exchange failed (nothing usable was received); ``timeout`` when a wait ran out."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass(frozen=True, slots=True)
class Proxy:
    """A forward proxy: where it listens, and the Basic credentials of its URL's user info."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> Proxy:
        parts = urlsplit(url)
        authorization = None
        if parts.username is not None:
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(userinfo.encode()).decode()
        return cls(parts.hostname or "", parts.port or 80, authorization)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    #: As received, hop-by-hop headers left out (names as the peer spelt them).
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)


def host_header(host: str, port: int, scheme: str) -> str:
    """``Host``: the host, bracketed when IPv6, with the port unless it is the scheme's."""
    name = f"[{host}]" if ":" in host else host
    return name if _DEFAULT_PORTS.get(scheme) == port else f"{name}:{port}"


class _Pools:
    """Keep-alive connections per event loop, keepalive setting and proxy."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pools: dict[tuple[float | None, Proxy | None], ConnectionPool] = {}

    def get(self, keepalive_ms: float | None, proxy: Proxy | None) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.pools = loop, {}
        key = (keepalive_ms, proxy)
        pool = self.pools.get(key)
        if pool is None:
            idle = 0.0 if keepalive_ms is None else keepalive_ms / 1000
            pool = self.pools[key] = ConnectionPool(
                loop, max_idle=POOL_SIZE if keepalive_ms is not None else 0, idle_timeout=idle
            )
        return pool


_POOLS: Final = _Pools()


class _ConnectReply(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT (the head only; the tunnel starts after it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head = bytearray()
        self.done: asyncio.Future[None] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.head += data
        if self.done.done():
            return
        if b"\r\n\r\n" in self.head:
            self.done.set_result(None)
        elif len(self.head) > _MAX_CONNECT_HEAD:
            self.done.set_exception(UpstreamProtocolError("proxy sent too big a CONNECT reply"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(UpstreamError("proxy closed the connection during CONNECT"))


async def _tunnel(
    pool: ConnectionPool,
    key: PoolKey,
    proxy: Proxy,
    host: str,
    port: int,
    timeout: float,
    profile: TlsProfile,
) -> UpstreamConnection:
    """A TLS connection to ``host:port`` through ``proxy``'s CONNECT tunnel."""
    loop = pool.loop
    try:
        transport, reply = await asyncio.wait_for(
            loop.create_connection(lambda: _ConnectReply(loop), proxy.host, proxy.port), timeout
        )
    except TimeoutError:
        raise UpstreamTimeout(f"timeout while connecting to proxy {proxy}", sent=False) from None
    except OSError as exc:
        raise UpstreamConnectError(f"connect to proxy {proxy} failed: {exc}") from None
    authority = host_header(host, port, "")
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", f"User-Agent: {USER_AGENT}"]
    if proxy.authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        await asyncio.wait_for(reply.done, timeout)
        head, _, rest = bytes(reply.head).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].startswith("2"):
            raise UpstreamConnectError(f"proxy {proxy} refused CONNECT: {status_line!r}")
        if rest:
            raise UpstreamProtocolError(f"proxy {proxy} sent data before the tunnel started")
        conn = UpstreamConnection(pool, key)
        ssl_context = pool.ssl_context(profile)
        tls = await asyncio.wait_for(
            loop.start_tls(transport, conn, ssl_context, server_hostname=host), timeout
        )
    except asyncio.CancelledError:
        transport.close()
        raise
    except TimeoutError:
        transport.close()
        raise UpstreamTimeout(f"timeout while opening a tunnel through {proxy}") from None
    except (OSError, UpstreamError) as exc:
        transport.close()
        if isinstance(exc, UpstreamError):
            raise
        raise UpstreamConnectError(f"TLS through proxy {proxy} failed: {exc}") from None
    if tls is None:  # pragma: no cover - start_tls returns None only for a closed transport
        raise UpstreamConnectError(f"proxy {proxy} closed the tunnel")
    conn.connection_made(tls)  # start_tls does not call it on the protocol
    pool.opened += 1
    return conn


async def _connect(
    pool: ConnectionPool,
    key: PoolKey,
    scheme: str,
    host: str,
    port: int,
    proxy: Proxy | None,
    timeout: float,
    profile: TlsProfile,
) -> UpstreamConnection:
    if proxy is None:
        return await pool.connect(key, host, timeout)
    if scheme == "https":
        return await _tunnel(pool, key, proxy, host, port, timeout, profile)
    # Plain HTTP through the proxy: the connection is the proxy's (the key names it).
    return await pool.connect(key, proxy.host, timeout)


async def request(
    method: str,
    scheme: str,
    host: str,
    port: int,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    timeout: float,
    keepalive_ms: float | None = None,
    proxy: Proxy | None = None,
    tls: TlsProfile = PLAIN_VERIFY,
    trace: Trace | None = None,
) -> Response:
    """One exchange: ``method target`` with ``headers`` (``Host`` among them) and ``body``.

    ``timeout`` (seconds) bounds connecting and each read; ``keepalive_ms`` None closes the
    connection afterwards. Raises :class:`AwsHttpError`. ``trace``, a request's that records
    its plugins' calls (:func:`fastkong.proxy.tracing.trace_of`), gets a
    ``kong.internal.request`` span for it.
    """
    call = _exchange(
        method, scheme, host, port, target, headers, body, timeout, keepalive_ms, proxy, tls
    )
    if trace is None:
        return await call
    return await internal_request(
        trace,
        call,
        _status,
        method=method,
        url=f"{scheme}://{host_header(host, port, scheme)}{target}",
        user_agent=USER_AGENT,
        proxy=f"http://{host_header(proxy.host, proxy.port, 'http')}" if proxy else None,
    )


def _status(response: Response) -> int:
    return response.status


async def _exchange(
    method: str,
    scheme: str,
    host: str,
    port: int,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float,
    keepalive_ms: float | None,
    proxy: Proxy | None,
    tls: TlsProfile,
) -> Response:
    pool = _POOLS.get(keepalive_ms, proxy)
    tls_key = (host, tls) if scheme == "https" else None
    key: PoolKey = (
        (host, port, tls_key) if proxy is None or tls_key else (proxy.host, proxy.port, None)
    )
    if proxy is not None and scheme == "http":
        target = f"http://{host_header(host, port, 'http')}{target}"
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"User-Agent: {USER_AGENT}")
    if proxy is not None and scheme == "http" and proxy.authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    lines.append(f"Content-Length: {len(body)}")
    if keepalive_ms is None:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    where = f"{scheme}://{host_header(host, port, scheme)}"
    for attempt in range(2):
        conn = pool.take_idle(key) if attempt == 0 else None
        reused = conn is not None
        try:
            if conn is None:
                conn = await _connect(pool, key, scheme, host, port, proxy, timeout, tls)
            conn.start(data, method == "HEAD")
            await conn.read_head(timeout)
            chunks: list[bytes] = []
            size = 0
            while (chunk := await conn.read_body(timeout)) is not None:
                size += len(chunk)
                if size > MAX_BODY:
                    conn.close()
                    raise AwsHttpError(f"{where} sent a body over {MAX_BODY} bytes")
                chunks.append(chunk)
        except asyncio.CancelledError:
            if conn is not None:
                conn.close()  # mid-exchange: the connection cannot serve another request
            raise
        except UpstreamError as exc:
            stale = found_stale(conn, reused, exc)
            if conn is not None:
                conn.close()
            if stale:
                # A kept-alive socket the peer had closed before answering anything: one fresh
                # try (as AWS's SDKs retry a closed connection, Invoke included).
                continue
            raise AwsHttpError(
                f"{where}: {exc}", timeout=isinstance(exc, UpstreamTimeout)
            ) from None
        pool.release(conn)
        names = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in conn.headers]
        return Response(conn.status, names, b"".join(chunks))
    raise AwsHttpError(f"{where}: no connection")  # pragma: no cover - the loop returns or raises
