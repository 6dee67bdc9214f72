"""The exchange with a ``grpc``/``grpcs`` service over HTTP/2, for requests a plugin marked
(``ctx.upstream_http2``: grpc-web), as nginx's ``grpc_pass`` makes it in Kong.

It is the HTTP/1.1 :class:`~fastkong.proxy.exchange.Exchange` with another transport: the
same peer choice (the service's host, a plugin's target, or its upstream's balancer with
passive health reports and least-connections counts), the same DNS cache, the same request
headers (the block the gateway built for HTTP/1.1 becomes an HTTP/2 header list: ``Host`` the
``:authority``, the connection's own headers dropped), Kong's response headers and latencies,
and the plugins' response and body hooks; the response's trailers are handed to the body hooks
(``ctx.upstream_trailers``) before its last chunk.

The request body is whole here (grpc-web reads it to translate it). A request is sent to a
peer once: a connection failure goes to the next peer, a stream the peer did not process
(refused, or above a GOAWAY's last stream id) is replayed on a new connection; a request that
reached a peer is never resent (a gRPC call is a POST). Failures before the response head are
Kong's 502/504 error pages; after it, the client's connection ends with the body unfinished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fastkong.plugins.base import Plugin
from fastkong.plugins.context import RequestContext
from fastkong.plugins.runner import body_filters, run_body, run_response
from fastkong.proxy import errors
from fastkong.proxy.balancer import Peer
from fastkong.proxy.body import read_whole_body
from fastkong.proxy.h2upstream import H2Connection, H2Pool, H2Stream
from fastkong.proxy.kong_headers import set_after_plugins
from fastkong.proxy.replies import send_replaced
from fastkong.proxy.routing import strip_port
from fastkong.proxy.upstream import SERVER, VIA, PoolKey, UpstreamError, UpstreamTimeout
from fastkong.proxy.upstream_tls import NO_VERIFY, PLAIN_VERIFY, TlsProfile
from fastkong.runtime import RoutePlan, ServicePlan

if TYPE_CHECKING:
    from fastkong.proxy.exchange import Exchange

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

log = logging.getLogger("fastkong.proxy")

#: Request headers that belong to one HTTP/1.1 connection (RFC 9113 8.2.2), or that HTTP/2
#: says otherwise (Host is ``:authority``; the body is framed by DATA frames).
_CONNECTION_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"http2-settings",
    }
)


class _Unresolved(Exception):
    """The peer's name did not resolve (Kong's 503)."""


def h2_headers(
    method: bytes, scheme: bytes, target: bytes, authority: bytes, block: bytes
) -> Headers:
    """The HTTP/2 request head from the HTTP/1.1 header block the gateway built."""
    headers: Headers = [
        (b":method", method),
        (b":scheme", scheme),
        (b":path", target),
        (b":authority", authority),
    ]
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name in _CONNECTION_HEADERS or (name == b"te" and value.lower() != b"trailers"):
            continue
        headers.append((name, value))
    return headers


def _target_tls(service: ServicePlan) -> TlsProfile:
    if service.tls_profile is not None:
        return service.tls_profile
    return PLAIN_VERIFY if service.tls_verify else NO_VERIFY


async def exchange(
    gw: Exchange,
    scope: Scope,
    receive: Receive,
    send: Send,
    plan: RoutePlan,
    service: ServicePlan,
    method: bytes,
    target: bytes,
    client_host: bytes,
    headers_block: bytes,
    body: bytes | None,
    request_id: str,
    started: float,
    ctx: RequestContext,
    hash_key: str | None,
    set_cookie: bytes | None,
) -> None:
    """Send the request to a peer over HTTP/2 and stream the response back (module docstring)."""
    assert gw.pool is not None and gw.resolver is not None
    resolver = gw.resolver
    pool = gw.h2_pool
    if pool is None:
        pool = gw.h2_pool = H2Pool(gw.pool.loop, gw.pool.idle_timeout)
    if body is None:
        try:
            body = await read_whole_body(receive)
        except ConnectionError:
            await gw.body_cut_short(scope, send, request_id, started, ctx)
            return
    balancer = service.balancer
    host_override = ctx.upstream_host()
    service_host, service_port, tls_profile = service.host, service.port, service.tls_profile
    if ctx.upstream_target is not None:
        scheme, service_host, service_port = ctx.upstream_target
        balancer = None
        host_override = service_host.encode("latin-1")
        tls_profile = _target_tls(service) if scheme in ("https", "grpcs") else None
    scheme_b = b"https" if tls_profile is not None else b"http"
    tries_left = service.retries + 1
    replays = 1
    tried: tuple[Peer, ...] = ()
    peer: Peer | None = None
    error: UpstreamError | None = None
    stream: H2Stream | None = None
    upstream_started = time.monotonic()
    while tries_left > 0:
        tries_left -= 1
        if balancer is not None:
            peer = balancer.next_peer(tried, hash_key)
            if peer is None:
                await gw.kong_error(scope, send, 503, errors.NO_PEER, request_id, started, ctx)
                return
            tried = (*tried, peer)
            host, port = peer.host, peer.port
            host_header = service.peer_host_header(peer)
        else:
            host, port = service_host, service_port
            host_header = service.host_header
        if host_override is not None:
            host_b = host_override
        elif plan.preserve_host and client_host:
            host_b = client_host
        else:
            host_b = host_header.encode("latin-1")
        key: PoolKey = (
            host,
            port,
            (strip_port(host_b.decode("latin-1")), tls_profile)
            if tls_profile is not None
            else None,
        )

        async def resolve(host: str = host) -> str:
            try:
                return (await resolver.resolve(host))[0]
            except OSError:
                raise _Unresolved(host) from None

        upstream_started = time.monotonic()
        stream = None
        reused = False
        try:
            conn, reused = await pool.connection(key, resolve, service.connect_timeout)
            ctx.upstream_peer = (_address(conn, host), port, _peer_name(peer, host))
            stream = conn.open(
                h2_headers(method, scheme_b, target, host_b, headers_block), end=not body
            )
            if body:
                await stream.send_body(body, service.write_timeout)
            await stream.read_head(service.read_timeout)
            break
        except _Unresolved:
            if peer is not None and balancer is not None and balancer.tracks:
                balancer.done(peer, None)
            await gw.kong_error(
                scope, send, 503, errors.NAME_RESOLUTION_FAILED, request_id, started, ctx
            )
            return
        except UpstreamError as exc:
            error = exc
            if stream is not None:
                stream.cancel()
                stream = None
            replay = not exc.sent and reused and replays > 0
            if peer is not None and balancer is not None:
                if balancer.tracks:
                    balancer.done(peer, None)
                if balancer.passive and not replay:
                    balancer.report_failure(peer, isinstance(exc, UpstreamTimeout))
            log.error(
                '%s, upstream: %s:%d, request: "%s %s" (HTTP/2)',
                exc,
                host,
                port,
                method.decode("latin-1"),
                target.decode("latin-1"),
            )
            if replay:
                # Not processed by the peer (GOAWAY, refused): again on a fresh connection.
                replays -= 1
                tries_left += 1
                continue
            if exc.sent:
                break  # it reached the peer: a POST is never resent

    if stream is None:
        status = error.status if error is not None else 502
        latencies = [
            (b"via", VIA),
            (b"x-kong-upstream-latency", b"%d" % ((time.monotonic() - upstream_started) * 1000)),
            (b"x-kong-proxy-latency", b"%d" % ((upstream_started - started) * 1000)),
        ]
        if gw.shown is not None:
            latencies = gw.shown.produced(latencies)
        await gw.nginx_error(scope, send, status, request_id, None, ctx, latencies)
        return
    tracked = peer if peer is not None and balancer is not None and balancer.tracks else None
    if peer is not None and balancer is not None and balancer.passive:
        balancer.report_status(peer, stream.status)
    try:
        await _respond(
            gw, send, service, stream, ctx, request_id, started, upstream_started, set_cookie
        )
    finally:
        if tracked is not None and balancer is not None:
            balancer.done(tracked, ctx.upstream_latency)
        stream.cancel()


def _address(conn: H2Connection, host: str) -> str:
    peername = conn.transport.get_extra_info("peername") if conn.transport is not None else None
    return str(peername[0]) if peername else host


def _peer_name(peer: Peer | None, host: str) -> str:
    return peer.hostname if peer is not None else host


def _response_head(
    gw: Exchange,
    stream: H2Stream,
    request_id: str,
    started: float,
    upstream_started: float,
    now: float,
    set_cookie: bytes | None,
) -> tuple[Headers, Headers]:
    """The upstream's head with Kong's headers (Server when it sent none, Via, latencies), and
    those of Kong's that it writes after the plugins ran."""
    headers: Headers = []
    vias: list[bytes] = []
    has_server = False
    for name, value in stream.headers:
        if name == b"via":
            vias.append(value)
            continue
        if name == b"server":
            has_server = True
        headers.append((name, value))
    if set_cookie is not None:
        headers.append((b"set-cookie", set_cookie))
    via = b", ".join((*vias, VIA))
    upstream_latency = b"%d" % ((now - upstream_started) * 1000)
    proxy_latency = b"%d" % ((upstream_started - started) * 1000)
    shown = gw.shown
    mark = len(headers)
    if shown is None:
        if not has_server:
            headers.append((b"server", SERVER))
        headers += (
            (b"via", via),
            (b"x-kong-upstream-latency", upstream_latency),
            (b"x-kong-proxy-latency", proxy_latency),
            (b"x-kong-request-id", request_id.encode()),
        )
    else:
        shown.add_proxied(
            headers,
            own_server=not has_server,
            via=via,
            upstream_via=b", ".join(vias) if vias else None,
            upstream_latency=upstream_latency,
            proxy_latency=proxy_latency,
            request_id=request_id.encode(),
            upstream_status=stream.status,
        )
    return headers, set_after_plugins(headers[mark:], shown)


async def _respond(
    gw: Exchange,
    send: Send,
    service: ServicePlan,
    stream: H2Stream,
    ctx: RequestContext,
    request_id: str,
    started: float,
    upstream_started: float,
    set_cookie: bytes | None,
) -> None:
    """The response head through the plugins' hooks, then its body as it arrives."""
    now = time.monotonic()
    headers, own = _response_head(
        gw, stream, request_id, started, upstream_started, now, set_cookie
    )
    ctx.proxied = True
    ctx.upstream_started = upstream_started
    ctx.upstream_latency = now - upstream_started
    read_timeout = service.read_timeout
    if ctx.buffer_response:
        parts = []
        try:
            while (chunk := await stream.read(read_timeout)) is not None:
                parts.append(chunk)
        except UpstreamError as exc:
            log.error("%s while reading the response body from upstream", exc)
            await gw.nginx_error(ctx.scope, send, exc.status, request_id, None, ctx)
            return
        ctx.response_body = b"".join(parts)
        ctx.upstream_trailers = stream.trailers
    run_response(ctx, stream.status, headers, own, proxied=True)
    filters = body_filters(ctx)
    if ctx.replaced_status:
        await send_replaced(send, ctx.replaced_status, headers)
        return
    if ctx.response_body is not None:
        body = ctx.response_body
        if filters:
            body = run_body(filters, ctx, body, True)
        await send({"type": "http.response.start", "status": ctx.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        ctx.response_size = len(body)
        return
    # ctx.status: a response hook may set it (grpc-gateway's, from grpc-status).
    await send({"type": "http.response.start", "status": ctx.status, "headers": headers})
    await _relay(send, stream, ctx, filters, read_timeout)


async def _relay(
    send: Send,
    stream: H2Stream,
    ctx: RequestContext,
    filters: tuple[Plugin, ...],
    read_timeout: float,
) -> None:
    """Each chunk to the client as it comes; the window reopens once it went on."""
    size = 0
    while True:
        try:
            chunk = await stream.read(read_timeout)
        except UpstreamError as exc:
            # After the head: the client gets what came, then the connection ends unfinished
            # (an empty part first: Granian answers 500 to a response with no body part).
            log.error("%s while reading the response body from upstream", exc)
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            ctx.response_size = size
            return
        last = chunk is None
        if last:
            ctx.upstream_trailers = stream.trailers
        data = run_body(filters, ctx, chunk or b"", last) if filters else chunk or b""
        size += len(data)
        await send({"type": "http.response.body", "body": data, "more_body": not last})
        if last:
            ctx.response_size = size
            return


__all__ = ["exchange", "h2_headers"]
