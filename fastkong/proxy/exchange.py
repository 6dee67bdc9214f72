"""The exchange with the upstream: pick a peer, send the request on a pooled keep-alive
connection, retry by nginx's rules, and stream the response back to the client.

:class:`Exchange` is the part of the :class:`~fastkong.proxy.app.Gateway` that runs once the
request head is built: the peer choice (a service's host, or its upstream's balancer), the
connection (taken from the pool or opened), the retries (a connection failure goes to the next
peer; a request that reached a peer is resent only if idempotent, and only if its body was
held), Kong's response headers, the plugins' response and body hooks, and the client's view of
a failure (Kong's 502/503/504 before the response head went out; after it, the connection ends
with the body unfinished, as nginx ends it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastkong.plugins.base import Exit, Plugin, kong_error
from fastkong.plugins.context import RequestContext
from fastkong.plugins.runner import body_filters, run_body, run_buffered, run_log, run_response
from fastkong.proxy import errors, h2exchange
from fastkong.proxy.balancer import Peer, Resolver
from fastkong.proxy.body import frame_body, stream_body
from fastkong.proxy.h2upstream import H2Pool
from fastkong.proxy.kong_headers import set_after_plugins
from fastkong.proxy.limits import BodyLimitExceeded
from fastkong.proxy.replies import CLOSE, Replies, send_replaced
from fastkong.proxy.routing import strip_port
from fastkong.proxy.upstream import (
    SERVER,
    VIA,
    ConnectionPool,
    PoolKey,
    UpstreamConnection,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    found_stale,
)
from fastkong.proxy.upstream_tls import NO_VERIFY, PLAIN_VERIFY, TlsProfile
from fastkong.runtime import RoutePlan, ServicePlan

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("fastkong.proxy")

_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


class Exchange(Replies):
    """The upstream half of the gateway (see the module docstring)."""

    #: The worker's keep-alive connection pool and resolver (made at lifespan startup).
    pool: ConnectionPool | None
    resolver: Resolver | None
    #: The worker's HTTP/2 connections to grpc/grpcs services (made on first use).
    h2_pool: H2Pool | None = None

    async def body_cut_short(
        self,
        scope: Scope,
        send: Send,
        request_id: str,
        started: float,
        ctx: RequestContext | None,
    ) -> None:
        """The client ended its side before its body was whole: nothing goes up. nginx logs
        "client prematurely closed connection" with 400 and closes; an ASGI app cannot close
        without answering (Granian writes its own 500 for an app that returns without a
        response, or raises), so the client that still reads gets nginx's 400, and the close."""
        await self.nginx_error(scope, send, 400, request_id, started, ctx, CLOSE)
        if ctx is not None:
            run_log(ctx)

    async def exchange(
        self,
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
        chunked: bool,
        request_id: str,
        started: float,
        ctx: RequestContext | None = None,
        hash_key: str | None = None,
        set_cookie: bytes | None = None,
    ) -> None:
        """Send the request to a peer (retrying per Kong's rules) and stream the response back.

        ``body`` is the whole request body when it was small enough to hold (so a failed try can
        be replayed), or None when it must be streamed from ``receive``.
        """
        assert self.pool is not None and self.resolver is not None
        pool = self.pool
        tries_left = service.retries + 1
        tried: tuple[Peer, ...] = ()
        idempotent = method in _IDEMPOTENT
        no_body = method == b"HEAD"
        error: UpstreamError | None = None
        conn: UpstreamConnection | None = None
        upstream_started = 0.0
        balancer = service.balancer
        peer: Peer | None = None
        service_host, service_port, tls_profile = service.host, service.port, service.tls_profile
        host_override = None
        if ctx is not None:
            if ctx.upstream_http2:
                # grpc-web to a grpc/grpcs service: nginx's grpc_pass, over HTTP/2.
                await h2exchange.exchange(
                    self,
                    scope,
                    receive,
                    send,
                    plan,
                    service,
                    method,
                    target,
                    client_host,
                    headers_block,
                    body,
                    request_id,
                    started,
                    ctx,
                    hash_key,
                    set_cookie,
                )
                return
            # A plugin that set the Host header (request-transformer) decides it, as in Kong.
            host_override = ctx.upstream_host()
            if ctx.upstream_target is not None:
                # kong.service.set_target (ai-proxy): another host for this request, no
                # balancer.
                scheme, service_host, service_port = ctx.upstream_target
                balancer = None
                host_override = service_host.encode("latin-1")
                tls_profile = _target_tls(service) if scheme == "https" else None
        while tries_left > 0:
            tries_left -= 1
            if balancer is not None:
                peer = balancer.next_peer(tried, hash_key)
                if peer is None:
                    await self.kong_error(
                        scope, send, 503, errors.NO_PEER, request_id, started, ctx
                    )
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
            head = b"".join(
                (method, b" ", target, b" HTTP/1.1\r\nhost: ", host_b, b"\r\n", headers_block)
            )
            # Kong (nginx's proxy_ssl_name $upstream_host) names the TLS server by the Host
            # header it sends, port cut off; connections differ by name and TLS settings.
            key: PoolKey = (
                host,
                port,
                (strip_port(host_b.decode("latin-1")), tls_profile)
                if tls_profile is not None
                else None,
            )
            upstream_started = time.monotonic()
            conn = pool.take_idle(key)
            reused = conn is not None
            try:
                if conn is None:
                    try:
                        address = (await self.resolver.resolve(host))[0]
                    except OSError:
                        if peer is not None and balancer is not None and balancer.tracks:
                            balancer.done(peer, None)
                        await self.kong_error(
                            scope,
                            send,
                            503,
                            errors.NAME_RESOLUTION_FAILED,
                            request_id,
                            started,
                            ctx,
                        )
                        return
                    if ctx is not None:
                        ctx.upstream_peer = (address, port, _peer_name(peer, host))
                    conn = await pool.connect(key, address, service.connect_timeout)
                elif ctx is not None:
                    ctx.upstream_peer = (conn.address, port, _peer_name(peer, host))
                if body is not None:
                    conn.start(head + frame_body(body, chunked) if body else head, no_body)
                else:
                    conn.start(head, no_body)
                    try:
                        await stream_body(receive, conn, chunked, service.write_timeout)
                    except (BodyLimitExceeded, ConnectionError) as exc:
                        # Over client_max_body_size halfway up (nginx's 413), or the client
                        # went away mid-body: the peer's request is cut off (its connection
                        # closed); the peer did nothing wrong, so no failure is counted.
                        conn.close()
                        if peer is not None and balancer is not None and balancer.tracks:
                            balancer.done(peer, None)
                        if isinstance(exc, ConnectionError):
                            await self.body_cut_short(scope, send, request_id, started, ctx)
                            return
                        await self.nginx_error(scope, send, 413, request_id, started, ctx, CLOSE)
                        return
                await conn.read_head(service.read_timeout)
                break
            except UpstreamError as exc:
                error = exc
                # A stale kept-alive socket is not a failed try: replayed on a fresh connection
                # without spending a retry.
                stale = found_stale(conn, reused, exc)
                if conn is not None:
                    conn.close()
                    conn = None
                if peer is not None and balancer is not None:
                    if balancer.tracks:
                        balancer.done(peer, None)
                    if balancer.passive and not stale:
                        balancer.report_failure(peer, isinstance(exc, UpstreamTimeout))
                if not stale:
                    # nginx logs every failed try ("connect() failed", "upstream timed out",
                    # "upstream prematurely closed connection", "upstream sent too big
                    # header"...): the only place a 502 or 504 says why.
                    _log_failed_try(exc, host, port, method, target)
                if isinstance(exc, UpstreamProtocolError):
                    break  # nginx's proxy_next_upstream (error timeout) lacks invalid_header
                if exc.sent and body is None:
                    break  # a streamed body is gone: it cannot be replayed
                if stale and idempotent:
                    tries_left += 1
                    continue
                if exc.sent and not idempotent:
                    break  # nginx never resends a non-idempotent request that reached a peer

        if conn is None:
            # Kong's error page after a failed proxy attempt: the request counts as proxied,
            # so it carries the upstream and proxy latencies and Via, not a response latency.
            status = error.status if error is not None else 502
            latencies = [
                (b"via", VIA),
                (
                    b"x-kong-upstream-latency",
                    b"%d" % ((time.monotonic() - upstream_started) * 1000),
                ),
                (b"x-kong-proxy-latency", b"%d" % ((upstream_started - started) * 1000)),
            ]
            if self.shown is not None:
                latencies = self.shown.produced(latencies)
            await self.nginx_error(scope, send, status, request_id, None, ctx, latencies)
            return

        now = time.monotonic()
        tracked: Peer | None = None
        if peer is not None and balancer is not None:
            if balancer.passive:
                balancer.report_status(peer, conn.status)
            if balancer.tracks:
                tracked = peer
        # The connection leaves hop-by-hop headers out, and starts a new list per response.
        response_headers = conn.headers
        if set_cookie is not None:
            response_headers.append((b"set-cookie", set_cookie))
        # Read before a buffered answer gives the connection back (another request may then
        # take it while a plugin awaits).
        status = conn.status
        via = conn.via_header
        own_server = not conn.has_server
        if ctx is not None:
            # The upstream's own spelling of its header names (`Content-Type`): plugins look
            # names up in lower case, as Kong's (nginx's) lookups ignore case.
            response_headers = [(name.lower(), value) for name, value in response_headers]
            ctx.proxied = True
            ctx.upstream_started = upstream_started
            ctx.upstream_latency = now - upstream_started
            if ctx.buffer_response:
                # kong.service.request.enable_buffering: the whole body before the hooks.
                try:
                    ctx.response_body = await _read_all(conn, service.read_timeout)
                except UpstreamError as exc:
                    conn.close()
                    if tracked is not None and balancer is not None:
                        balancer.done(tracked, now - upstream_started)
                    log.error("%s while reading the response body from upstream", exc)
                    await self.nginx_error(scope, send, exc.status, request_id, None, ctx)
                    return
                # The upstream is done with before a plugin awaits anything (an LLM call).
                if tracked is not None and balancer is not None:
                    balancer.done(tracked, now - upstream_started)
                    tracked = None
                pool.release(conn)
                # Before Kong's proxy headers join the upstream's: a plugin answering instead
                # (ai-response-transformer) starts from the upstream's own headers.
                stop = await _run_buffered(ctx, status, response_headers)
                if stop is not None:
                    await self.plugin_answer(scope, send, ctx, stop)
                    return
        shown = self.shown
        mark = len(response_headers)
        if shown is None:  # Kong's default `headers`
            if own_server:
                # nginx (so Kong) names itself when the upstream does not; Granian would say
                # its own.
                response_headers.append((b"server", SERVER))
            # Kong appends its token to the upstream's Via, in one header.
            response_headers += (
                (b"via", via),
                (b"x-kong-upstream-latency", b"%d" % ((now - upstream_started) * 1000)),
                (b"x-kong-proxy-latency", b"%d" % ((upstream_started - started) * 1000)),
                (b"x-kong-request-id", request_id.encode()),
            )
        else:
            shown.add_proxied(
                response_headers,
                own_server=own_server,
                via=via,
                upstream_via=None if via is VIA else via[: -len(VIA) - 2],
                upstream_latency=b"%d" % ((now - upstream_started) * 1000),
                proxy_latency=b"%d" % ((upstream_started - started) * 1000),
                request_id=request_id.encode(),
                upstream_status=status,
            )
        filters: tuple[Plugin, ...] = ()
        if ctx is not None:
            own = set_after_plugins(response_headers[mark:], shown)
            run_response(ctx, status, response_headers, own, proxied=True)
            filters = body_filters(ctx)
            if ctx.response_body is not None:
                # (the upstream's connection went back once its body was read)
                if ctx.replaced_status:
                    await send_replaced(send, ctx.replaced_status, response_headers)
                else:
                    await _send_buffered(send, ctx, filters, response_headers)
                return
        try:
            if ctx is not None and ctx.replaced_status:
                # A response hook turned the answer down (response-ratelimiting's 429): its
                # status and the headers as edited, no body; the upstream's body stays unread,
                # so its connection is not reused.
                conn.close()
                await send_replaced(send, ctx.replaced_status, response_headers)
                return
            # A response hook may set the status (grpc-gateway's, from grpc-status).
            sent = ctx.status if ctx is not None else status
            await send({"type": "http.response.start", "status": sent, "headers": response_headers})
            read_timeout = service.read_timeout
            # A body without Content-Length goes out chunked, as nginx sends it, even when it all
            # arrived before the head went out (Granian frames one whole message with a length).
            unsized = conn.unsized
            if filters and not unsized:
                # (a plugin that changes the body's size removed the upstream's length)
                unsized = not any(name == b"content-length" for name, _ in response_headers)
            size = 0
            while True:
                # What has arrived is taken without a coroutine (a small answer is all here).
                if conn.chunks:
                    chunk = conn.take_chunks()
                elif conn.complete:
                    chunk = None
                else:
                    chunk = await conn.read_body(read_timeout)
                last = chunk is None or (conn.complete and not conn.chunks)
                if filters:
                    assert ctx is not None
                    chunk = run_body(filters, ctx, chunk or b"", last)
                elif chunk is None:
                    chunk = b""
                size += len(chunk)
                if last and unsized and chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    chunk = b""
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                if last:
                    break
            if ctx is not None:
                ctx.response_size = size
        except UpstreamError as exc:
            await _cut_short(send, conn, exc)
            return
        except OSError:
            conn.close()
            raise
        finally:
            if tracked is not None and balancer is not None:
                balancer.done(tracked, now - upstream_started)
        pool.release(conn)


async def _run_buffered(
    ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
) -> Exit | None:
    """The plugins' buffered-answer hooks; one that fails is Kong's 500 for a failing plugin."""
    try:
        return await run_buffered(ctx, status, headers)
    except Exception:
        log.exception("plugin failed on the buffered response of %r", ctx)
        return kong_error(500, "An unexpected error occurred")


def _target_tls(service: ServicePlan) -> TlsProfile:
    """TLS to a plugin's target: the service's settings (Kong's ``tls_verify`` and
    certificates), not verifying unless the service asks for it."""
    if service.tls_profile is not None:
        return service.tls_profile
    return PLAIN_VERIFY if service.tls_verify else NO_VERIFY


async def _read_all(conn: UpstreamConnection, timeout: float) -> bytes:
    """The rest of the response body, whole."""
    parts = []
    while (chunk := await conn.read_body(timeout)) is not None:
        parts.append(chunk)
    return b"".join(parts)


async def _send_buffered(
    send: Send, ctx: RequestContext, filters: tuple[Plugin, ...], headers: list[tuple[bytes, bytes]]
) -> None:
    """A buffered response: the status the hooks left (``ctx.status``) and the body, through
    the body hooks in one last chunk."""
    body = ctx.response_body or b""
    if filters:
        body = run_body(filters, ctx, body, True)
    await send({"type": "http.response.start", "status": ctx.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    ctx.response_size = len(body)


def _log_failed_try(exc: UpstreamError, host: str, port: int, method: bytes, target: bytes) -> None:
    where = " while reading response header from upstream"
    log.error(
        '%s%s, upstream: %s:%d, request: "%s %s"',
        exc,
        where if isinstance(exc, UpstreamProtocolError) else "",
        host,
        port,
        method.decode("latin-1"),
        target.decode("latin-1"),
    )


def _peer_name(peer: Peer | None, host: str) -> str:
    """Kong's ``balancer_data.hostname``: the target's name, else the service's host."""
    return peer.hostname if peer is not None else host


async def _cut_short(send: Send, conn: UpstreamConnection, exc: UpstreamError) -> None:
    """The upstream failed after its head went to the client: as nginx does, the client gets
    what came and then the connection ends, the body unfinished. An empty body part first,
    for Granian answers 500 to a response that ends before it sent anything but its start;
    ending without the last body part (no exception: Granian would log a traceback) makes
    it close the connection."""
    conn.close()
    log.error("%s while reading the response body from upstream", exc)
    await send({"type": "http.response.body", "body": b"", "more_body": True})


__all__ = ["Exchange"]
