"""The ASGI gateway: route, build the upstream request, stream both bodies.

Per request the work is: one pass over the client's headers (copying the ones that go upstream
as ready-made ``name: value`` lines), one compiled router match, one compiled upstream-path
computation, one ``bytes.join`` for the request head, and the exchange on a pooled keep-alive
connection (:mod:`fastkong.proxy.exchange`). Everything that depends only on config was
computed into the :class:`Runtime`.

The app runs under Granian (``fastkong start``) and under any ASGI server. Per-worker state
(the connection pool, the resolver, the config watcher) is created at lifespan startup, or on
the first request under servers without lifespan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from fastkong._core import load
from fastkong.plugins.base import kong_error
from fastkong.plugins.context import BodyTooLarge, RequestContext
from fastkong.plugins.runner import (
    apply_header_edits,
    run_access,
    run_log,
)
from fastkong.proxy import errors, hop, websocket
from fastkong.proxy.access_log import AccessLog, reopen_on_signal
from fastkong.proxy.balancer import Resolver
from fastkong.proxy.body import buffer_chunked, peek_body, read_small_body
from fastkong.proxy.edge import PROXIED_KEY, SNI_KEY, EdgeView
from fastkong.proxy.exchange import Exchange
from fastkong.proxy.kong_headers import DEFAULT_SETTINGS, HeaderSettings
from fastkong.proxy.limits import DEFAULT_LIMITS, BodyLimitExceeded, RequestLimits
from fastkong.proxy.replies import CLOSE, with_debug_headers
from fastkong.proxy.request_debug import RequestDebug
from fastkong.proxy.routing import (
    NO_ROUTE,
    Decision,
    RequestFacts,
    decide,
    request_facts,
    strip_port,
)
from fastkong.proxy.traced_exchange import traced_exchange
from fastkong.proxy.trust import DEFAULT_REAL_IP, RealIp, TrustedIps
from fastkong.proxy.upstream import (
    KEEPALIVE_SETTINGS,
    MAX_RESPONSE_HEAD,
    SERVER,
    VIA,
    ConnectionPool,
    UpstreamTimeout,
)
from fastkong.runtime import NO_ROUTE_PLAN, Runtime, empty_runtime
from fastkong.upstreams.dns import DnsSettings
from fastkong.upstreams.registry import Registry, open_table

if TYPE_CHECKING:
    from fastkong._core import _h1_py as _h1
    from fastkong._core._router_py import RouteMatch
else:
    _h1 = load("h1")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("fastkong.proxy")


#: nginx's request-line parser takes a method of ``A-Z``, ``_`` and ``-`` only ("client sent
#: invalid method", 400), and refuses CONNECT and TRACE (405); Granian takes any token
#: (``get``, ``wA#0``). The usual methods skip the checks.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_NGINX_METHOD = re.compile(r"[A-Z_-]+")
#: The http-01 challenge path: a request no route matched there may be the acme plugin's.
_ACME = b"/.well-known/acme-challenge/"
_GLOBAL = (None, None, None)
_NOT_ALLOWED = frozenset({"CONNECT", "TRACE"})
#: The HTTP versions whose request bodies are framed by the head (Content-Length or chunked);
#: over HTTP/2 and 3 a body may come with neither, ended by the stream's end.
_HEAD_FRAMED = frozenset({"1.1", "1.0"})


class RequestIds:
    """Kong-style 32-hex request ids: a random per-worker prefix plus a counter (no syscall)."""

    __slots__ = ("prefix", "n")

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        # The prefix in the high 64 bits and the counter in the low ones: one format per id.
        self.n = int(self.prefix, 16) << 64

    def next(self) -> str:
        self.n += 1
        return "%032x" % self.n  # noqa: UP031 (2x faster than format() here)


class Gateway(Exchange):
    """The ASGI application of one worker."""

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        trusted_ips: TrustedIps | None = None,
        real_ip: RealIp = DEFAULT_REAL_IP,
        headers: HeaderSettings = DEFAULT_SETTINGS,
        error_default_type: str = "text/plain",
        allow_debug_header: bool = False,
        request_debug: RequestDebug | None = None,
        access_log: str = "off",
        keepalive: Mapping[str, int] | None = None,
        limits: RequestLimits = DEFAULT_LIMITS,
        dns: DnsSettings = DnsSettings(),
        max_response_head: int = MAX_RESPONSE_HEAD,
        edge: EdgeView | None = None,
        host_ports: Mapping[int, int] | None = None,
        on_startup: Callable[[Gateway], Awaitable[None]] | None = None,
        on_shutdown: Callable[[Gateway], Awaitable[None]] | None = None,
    ) -> None:
        self.runtime = runtime if runtime is not None else empty_runtime()
        self.trusted_ips = trusted_ips if trusted_ips is not None else TrustedIps()
        #: Kong's `headers` and `headers_upstream` when not the defaults, which are written
        #: inline (proxy/kong_headers.py).
        self.shown = None if headers.is_default else headers
        #: Kong's upstream_keepalive_* settings for the connection pool.
        self.keepalive = dict(keepalive or KEEPALIVE_SETTINGS)
        #: Kong's proxy_access_log: a file, or None when off.
        self.access_log = AccessLog(access_log) if access_log != "off" else None
        #: Kong's allow_debug_header: a request with ``Kong-Debug`` learns its route and service.
        self.allow_debug_header = allow_debug_header
        #: Kong's request_debug (proxy/request_debug.py): None when off.
        self.request_debug = request_debug
        #: Kong's error_default_type: nginx error pages for requests that name no type.
        self.error_default_type = errors.check_error_default_type(error_default_type)
        #: Kong's real_ip_header and real_ip_recursive (proxy/trust.py).
        self.real_ip = real_ip
        #: nginx's large_client_header_buffers and client_max_body_size (proxy/limits.py).
        self.limits = limits
        #: Kong's dns_* settings for the worker's name cache (upstreams/dns.py).
        self.dns = dns
        #: nginx's proxy_buffer_size: the most bytes an upstream's response head may take.
        self.max_response_head = max_response_head
        #: The edge table of this worker's listener when the edge relays its connections
        #: (proxy/edge.py): each request's scope is rewritten to the client's connection.
        self.edge = edge
        #: Kong's port_maps: a listener's port -> the port its clients use (X-Forwarded-Port).
        self.host_ports = dict(host_ports or {})
        #: A listener's port -> that port's X-Forwarded-Port value (a few listeners: cached).
        self.port_text: dict[int, bytes] = {}
        self.ids = RequestIds()
        self.pool: ConnectionPool | None = None
        self.resolver: Resolver | None = None
        #: Per-worker upstream state: health (shared table), DNS, least-connections counts.
        self.upstreams: Registry | None = None
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.requests = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._instrument(self.runtime)

    def __repr__(self) -> str:
        return f"<Gateway {self.runtime!r} pool={self.pool!r} requests={self.requests}>"

    def swap(self, runtime: Runtime) -> None:
        """Serve ``runtime`` from now on; requests in flight finish on the old snapshot."""
        if self.upstreams is not None:
            self.upstreams.adopt(runtime)
        self._instrument(runtime)
        self.runtime = runtime

    def _instrument(self, runtime: Runtime) -> None:
        """Kong's balancer and DNS instrumentations, decided once per config: a snapshot that
        records them gets the recording exchange (proxy/traced_exchange.py), any other the
        plain one, so an untraced request runs exactly the code it runs without tracing."""
        tracing = runtime.tracing
        if tracing is not None and tracing.exchange:
            self.__dict__["exchange"] = traced_exchange(self)  # shadows Exchange.exchange
        else:
            self.__dict__.pop("exchange", None)

    # -- ASGI entry --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if self.edge is not None:
            self.edge.adopt(scope)
        if kind == "http":
            if self.pool is None:
                await self.startup()
            if self.access_log is None:
                await self.http(scope, receive, send)
            else:
                await self.access_log.serve(
                    self.http, scope, receive, send, self.ids.next(), self.remote_addr
                )
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "websocket":
            if self.pool is None:
                await self.startup()
            await websocket.proxy(self, scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # reported to the server, which refuses to start
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        if self.pool is not None:
            return
        loop = asyncio.get_running_loop()
        self.pool = ConnectionPool(
            loop,
            max_idle=self.keepalive["upstream_keepalive_pool_size"],
            max_requests=self.keepalive["upstream_keepalive_max_requests"],
            idle_timeout=self.keepalive["upstream_keepalive_idle_timeout"],
            max_response_head=self.max_response_head,
        )
        self.resolver = Resolver(loop, self.dns)
        self.upstreams = Registry(open_table(os.environ.get("FASTKONG_HEALTH")), self.resolver)
        self.upstreams.adopt(self.runtime)
        self.upstreams.start(loop)
        self._sweeper = loop.create_task(self._sweep())
        if self.access_log is not None:
            self.access_log.open()
            reopen_on_signal(loop)  # nginx's SIGUSR1, which the supervisor forwards
        if self.on_startup is not None:
            await self.on_startup(self)

    async def shutdown(self) -> None:
        if self.on_shutdown is not None:
            await self.on_shutdown(self)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.upstreams is not None:
            self.upstreams.stop()
        if self.pool is not None:
            self.pool.close()
        if self.h2_pool is not None:
            self.h2_pool.close()
        if self.access_log is not None:
            self.access_log.close()

    def remote_addr(self, scope: Scope) -> str:
        """nginx's ``$remote_addr`` for ``scope``: the peer, or what a trusted peer's
        real_ip_header names (for the access log; the request path computes it inline)."""
        client = scope.get("client")
        peer = client[0] if client else "127.0.0.1"
        if peer in self.trusted_ips:
            return self.real_ip.remote_addr(
                scope["headers"], peer, self.trusted_ips, scope.get(PROXIED_KEY)
            )
        return str(peer)

    def request_facts(
        self, scope: Scope, client_ip: str, trusted: bool, query: bytes, server: Any
    ) -> RequestFacts:
        """What expression routes may read of this request (Kong's ``net.src.ip`` is nginx's
        ``$remote_addr``: the real-IP header's address from a trusted peer)."""
        remote = client_ip
        if trusted:
            remote = self.real_ip.remote_addr(
                scope["headers"], client_ip, self.trusted_ips, scope.get(PROXIED_KEY)
            )
        client = scope.get("client")
        peer_port = int(client[1]) if client and client[1] else 0
        server_ip = str(server[0]) if server and server[0] else None
        return request_facts(scope["headers"], query, (remote, peer_port), server_ip)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(10)
            if self.pool is not None:
                self.pool.sweep()

    def host_port_text(self, port: int) -> bytes:
        """Kong's ``ctx.host_port`` of a listener's ``port`` (port_maps), as header text."""
        text = self.port_text[port] = str(self.host_ports.get(port, port)).encode()
        return text

    async def unrouted_error(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        request_id: str,
        started: float,
        message: str | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """An answer no route led to: Kong's 404 (``message``, as ``kong.response.error``) or
        nginx's error page for a request it refused (400, 405, 413, 414). The global plugins'
        response, body and log phases run for it, as in Kong (its rewrite phase collected them
        before the router missed; its error handler falls back to them): a global log plugin
        logs it, a global cors or response-transformer shapes it."""
        ctx = None
        runtime = self.runtime
        scheme = scope.get("scheme", "http")
        chain = tuple(p for p in runtime.plugins.unrouted if scheme in p.protocols)
        if chain:
            server = scope.get("server")
            port = int(server[1]) if server and server[1] else 0
            client = scope.get("client")
            host = next((v for k, v in scope["headers"] if k == b"host"), b"")
            ctx = RequestContext(
                runtime,
                scope,
                receive,
                NO_ROUTE_PLAN,
                cast("RouteMatch", None),  # (read by access-phase code only, which runs not)
                scope["path"],
                strip_port(host.decode("latin-1")).lower(),  # nginx's $host
                port,
                client[0] if client else "127.0.0.1",
                request_id,
                started,
            )
            ctx.chain = chain
            if status == 414:
                ctx.headers_unread()
        if message is not None:
            await self.kong_error(scope, send, status, message, request_id, started, ctx)
        else:
            await self.nginx_error(scope, send, status, request_id, started, ctx, extra)
        if ctx is not None:
            run_log(ctx)

    # -- the request -------------------------------------------------------------------------

    async def http(
        self, scope: Scope, receive: Receive, send: Send, request_id: str | None = None
    ) -> None:
        started = time.monotonic()
        self.requests += 1
        runtime = self.runtime
        if request_id is None:  # the access log makes it first, to write it
            request_id = self.ids.next()
        client = scope.get("client")
        client_ip = client[0] if client else "127.0.0.1"
        trusted = client_ip in self.trusted_ips
        version: str = scope["http_version"]
        streamed = version not in _HEAD_FRAMED  # HTTP/2 or 3
        if streamed:  # cookies come one field each
            scope["headers"] = hop.join_cookies(scope["headers"])

        # One pass over the headers: copy what goes upstream, keep what the gateway needs.
        (
            lines,
            host_value,
            xff,
            via,
            chunked,
            content_length,
            forwarded,
            signals,
            head_size,
            debug,
        ) = _h1.scan_request_headers(scope["headers"], trusted)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string") or b""
        method: str = scope["method"]
        unusual = method not in _METHODS
        if unusual and _NGINX_METHOD.fullmatch(method) is None:
            # nginx parses the method first: "client sent invalid method".
            await self.unrouted_error(scope, receive, send, 400, request_id, started, None, CLOSE)
            return
        limits = self.limits
        if head_size + len(raw_path) + len(query) + len(method) + 16 > limits.fast_limit or (
            limits.max_body and content_length > limits.max_body
        ):
            # nginx's large_client_header_buffers (414, or 494 which Kong answers 400) and
            # client_max_body_size (413), checked before anything is routed.
            status = limits.refuse(method, raw_path, query, scope["headers"], content_length)
            if status:
                await self.unrouted_error(
                    scope, receive, send, status, request_id, started, None, CLOSE
                )
                return
        if (
            content_length < -1
            or (content_length >= 0 and chunked)
            or (not host_value and version == "1.1")
        ):
            # A bad or repeated Content-Length, a repeated Host, both framings, or an HTTP/1.1
            # request without a Host: nginx refuses the request. (Granian itself drops a
            # Content-Length sent with chunked framing, so the app sees a chunked body where
            # nginx would refuse the pair.)
            await self.unrouted_error(scope, receive, send, 400, request_id, started, None, CLOSE)
            return
        if unusual and method in _NOT_ALLOWED:
            # Then, with the head read: "client sent CONNECT method" / "... TRACE method".
            await self.unrouted_error(scope, receive, send, 405, request_id, started, None, CLOSE)
            return
        if debug and debug & 2 and self.request_debug is not None:
            # Kong's request debugging (X-Kong-Request-Debug*, proxy/request_debug.py): the
            # headers go, and the request runs again, debugged if it asked to be.
            await self.request_debug.serve(self, scope, receive, send, request_id)
            return
        # A body whose length the head does not give (HTTP/2 or 3 without Content-Length):
        # handled as a chunked one, buffered and sized like nginx's, or streamed chunked.
        unsized = streamed and content_length == -1 and not chunked
        if (chunked or unsized) and limits.max_body:
            receive = limits.limit_body(receive)

        host_text = host_value.decode("latin-1")
        server = scope.get("server")
        port = int(server[1]) if server and server[1] else 0  # (None: a Unix socket)
        scheme: str = scope.get("scheme", "http")
        router = runtime.router
        route_headers = _router_headers(scope, router.header_names) if router.header_names else None
        facts = None
        if (expr := runtime.expression_router) is not None and expr.needs_request:
            # Routes whose expressions read headers, query arguments or addresses.
            facts = self.request_facts(scope, client_ip, trusted, query, server)
        decision = decide(
            runtime,
            method,
            host_text,
            port,
            raw_path.decode("latin-1"),
            scheme,
            route_headers,
            scope.get(SNI_KEY, ""),
            facts,
        )
        if decision.__class__ is int:
            if decision == NO_ROUTE:
                acme = runtime.plugins.by_name.get("acme") if raw_path.startswith(_ACME) else None
                if acme and (plugin := acme.get(_GLOBAL)) is not None:
                    if await self.acme_challenge(
                        scope, send, plugin, host_text, raw_path, request_id, started
                    ):
                        return
                await self.unrouted_error(
                    scope, receive, send, 404, request_id, started, errors.NO_ROUTE
                )
            else:
                await self.unrouted_error(
                    scope, receive, send, 400, request_id, started, None, CLOSE
                )
            return
        assert isinstance(decision, Decision)
        plan = decision.plan
        if debug and self.allow_debug_header and debug & 1:
            send = with_debug_headers(send, plan)
        match = decision.match
        path = decision.path
        host = decision.host
        proto = scheme
        if forwarded is not None and b"x-forwarded-proto" in forwarded:
            # As Kong: a trusted peer's value is compared as sent; all but "https" is plain.
            proto = forwarded[b"x-forwarded-proto"].decode("latin-1")
        if proto != "https" and "https" in plan.protocols and "http" not in plan.protocols:
            # Kong redirects to the trusted X-Forwarded-Host as sent, else to $host.
            if forwarded is not None and b"x-forwarded-host" in forwarded:
                redirect_host = forwarded[b"x-forwarded-host"].decode("latin-1")
            else:
                redirect_host = host  # nginx's $host: lowercased, the port cut off
            await self.https_required(
                scope, send, plan, redirect_host, raw_path, request_id, started
            )
            return
        # nginx's $remote_addr: the peer's address, or what a trusted peer's real_ip_header
        # names (proxy/trust.py); client_ip stays the peer's (kong.client.get_ip()).
        remote = (
            self.real_ip.remote_addr(
                scope["headers"], client_ip, self.trusted_ips, scope.get(PROXIED_KEY)
            )
            if trusted
            else client_ip
        )
        ctx: RequestContext | None = None
        if plan.plugins:
            ctx = RequestContext(
                runtime,
                scope,
                receive,
                plan,
                match,
                path,
                host,
                port,
                client_ip,
                request_id,
                started,
            )
            ctx.forwarded_ip = remote
            try:
                stop = await run_access(ctx, plan.plugins, runtime.plugins)
            except BodyTooLarge:
                stop = kong_error(413, "Request size limit exceeded")
            except BodyLimitExceeded:
                await self.nginx_error(scope, send, 413, request_id, started, ctx, CLOSE)
                run_log(ctx)
                return
            except ConnectionError:  # the client went away while a plugin read its body
                await self.body_cut_short(scope, send, request_id, started, ctx)
                return
            except Exception:
                # Kong answers a failing plugin with its generic 500, never a dropped connection.
                log.exception("plugin failed in the access phase of %r", plan)
                stop = kong_error(500, "An unexpected error occurred")
            if stop is not None:
                await self.plugin_exit(scope, send, ctx, stop)
                return
            if ctx.upstream_set or ctx.upstream_remove:
                lines = apply_header_edits(ctx, lines)
            if ctx.held:
                # A plugin's read stopped at its limit: the body goes up from its first byte.
                receive = ctx.receive_rest
            if ctx.body_read:
                # A plugin read (and maybe rewrote) the body: send it whole, sized.
                lines = [x for x in lines if not x.startswith(b"content-length:")]
                lines.append(b"content-length: %d\r\n" % len(ctx.body or b""))
                chunked = False
        service = plan.service
        if service is None or decision.upstream_path is None:
            # Kong 3.3+: kong.response.error, so negotiated and with the request id.
            await self.kong_error(scope, send, 503, errors.NO_SERVICE, request_id, started, ctx)
            if ctx is not None:
                run_log(ctx)
            return

        upstream_path = decision.upstream_path
        if ctx is not None:
            upstream_path = ctx.upstream_path or upstream_path
            query = ctx.upstream_query if ctx.upstream_query is not None else query
            method = ctx.upstream_method or method
        target = upstream_path.encode("latin-1")
        if query:
            target = target + b"?" + query
        method_b = method.encode()

        if signals is not None:
            lines = hop.request_signals(lines, signals)
        # The forwarding headers Kong sets (kong.md 2.5): nginx's $remote_addr is X-Real-IP,
        # and X-Forwarded-For when the client sent none; else the peer's address is appended.
        client_b = client_ip.encode()
        real_b = client_b if remote is client_ip else remote.encode()
        prefix = b""
        if plan.strip_path and match.matched_len and match.path is not None:
            stripped = path[: match.matched_len]
            if stripped != "/":
                prefix = stripped.encode("utf-8", "surrogateescape")
        if forwarded is None:
            xf_proto = scheme.encode()
            xf_host = host.encode("latin-1")
            xf_port = self.port_text.get(port) or self.host_port_text(port)
            xf_path = raw_path
        else:
            xf_proto = forwarded.get(b"x-forwarded-proto") or scheme.encode()
            xf_host = forwarded.get(b"x-forwarded-host") or host.encode("latin-1")
            xf_port = forwarded.get(b"x-forwarded-port") or self.host_port_text(port)
            xf_path = forwarded.get(b"x-forwarded-path") or raw_path
            prefix = forwarded.get(b"x-forwarded-prefix") or prefix
        # Kong names the client's HTTP version in the Via it sends up (1.1, 2; "1" for 1.0).
        via_token = VIA if version == "1.1" else hop.inbound_via(version, SERVER)
        lines.append(
            b"".join(
                (
                    b"x-forwarded-for: ",
                    xff + b", " + client_b if xff else real_b,
                    b"\r\nx-forwarded-proto: ",
                    xf_proto,
                    b"\r\nx-forwarded-host: ",
                    xf_host,
                    b"\r\nx-forwarded-port: ",
                    xf_port,
                    b"\r\nx-forwarded-path: ",
                    xf_path,
                    b"\r\nx-real-ip: ",
                    real_b,
                    b"\r\nx-kong-request-id: ",
                    request_id.encode(),
                    b"\r\nvia: ",
                    via + b", " + via_token if via else via_token,
                    b"\r\nconnection: keep-alive\r\n",
                )
            )
        )
        if self.shown is not None and not self.shown.request_id_upstream:
            # headers_upstream = off: the block just written goes up without the request id.
            lines[-1] = lines[-1].replace(b"\r\nx-kong-request-id: " + request_id.encode(), b"")
        if prefix:
            lines.append(b"x-forwarded-prefix: " + prefix + b"\r\n")
        body: bytes | None = b""
        if ctx is not None and ctx.body_read:
            body = ctx.body
        elif chunked or unsized:
            try:
                if plan.request_buffering:
                    body, receive = await buffer_chunked(receive)
                elif unsized:
                    body, receive = await peek_body(receive)
                else:
                    body = None
            except BodyLimitExceeded:
                await self.nginx_error(scope, send, 413, request_id, started, ctx, CLOSE)
                if ctx is not None:
                    run_log(ctx)
                return
            except ConnectionError:
                await self.body_cut_short(scope, send, request_id, started, ctx)
                return
            if body is None:
                chunked = True  # streamed as it comes, in chunked framing
            else:
                chunked = False
                if body or not unsized:  # (an HTTP/2 request without a body stays so)
                    lines.append(b"content-length: %d\r\n" % len(body))
        elif content_length > 0:
            try:
                body = await read_small_body(receive, content_length)
            except ConnectionError:
                await self.body_cut_short(scope, send, request_id, started, ctx)
                return
        if chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        headers_block = b"".join(lines)
        hash_key: str | None = None
        set_cookie: bytes | None = None
        balancer = service.balancer
        if balancer is not None and balancer.hashed:
            hash_key, cookie = balancer.hash_value(
                scope["headers"], remote, path, query, ctx, match.captures
            )
            if cookie is not None:
                set_cookie = balancer.cookie_header(cookie)
        await self.exchange(
            scope,
            receive,
            send,
            plan,
            service,
            method_b,
            target,
            host_value,
            headers_block,
            body,
            chunked,
            request_id,
            started,
            ctx,
            hash_key,
            set_cookie,
        )
        if ctx is not None:
            run_log(ctx)


def _router_headers(scope: Scope, names: frozenset[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1")
        if name in names:
            found.setdefault(name, []).append(value.decode("latin-1").lower())
    return found


__all__ = ["Gateway", "RequestIds", "UpstreamTimeout"]
