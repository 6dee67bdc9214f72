"""The gateway's own answers: Kong's errors (``kong.response.error`` and nginx's error pages),
a plugin's exit, the https-only refusal, and the response they all go out through.

A mixin of :class:`fastkong.proxy.app.Gateway` (it reads the node's ``shown`` headers
settings and ``error_default_type``), kept apart from the proxying path: none of this runs for
a request that is proxied and answered by its upstream.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from fastkong.plugins.base import Exit
from fastkong.plugins.context import RequestContext
from fastkong.plugins.runner import body_filters, run_body, run_log, run_response
from fastkong.proxy import errors
from fastkong.proxy.kong_headers import HeaderSettings
from fastkong.proxy.limits import HEADER_TOO_LARGE
from fastkong.proxy.routing import strip_port
from fastkong.proxy.upstream import SERVER
from fastkong.runtime import RoutePlan

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

#: nginx ends the connection after refusing a request head or an oversized body (the rest of
#: the request is not read): Kong's answers to them say so.
CLOSE: Final = [(b"connection", b"close")]


class Replies:
    """Answers the gateway makes itself (see the module docstring)."""

    #: Kong's `headers` settings when not the defaults (set by Gateway).
    shown: HeaderSettings | None
    #: Kong's error_default_type (set by Gateway).
    error_default_type: str

    async def kong_error(
        self,
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        request_id: str,
        started: float,
        ctx: RequestContext | None = None,
    ) -> None:
        """``kong.response.error``: negotiated on Accept, with the request id."""
        if grpc_request(scope):
            await self.respond(
                send, status, GRPC, b"", request_id, started, errors.grpc_error_headers(status), ctx
            )
            return
        ctype, body = errors.for_response_error(header(scope, b"accept"), message, request_id)
        await self.respond(send, status, ctype, body, request_id, started, ctx=ctx)

    async def nginx_error(
        self,
        scope: Scope,
        send: Send,
        status: int,
        request_id: str,
        started: float | None,
        ctx: RequestContext | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """nginx's error page path (400, 502, 504, ...)."""
        accept = header(scope, b"accept") or header(scope, b"content-type") or ""
        if accept.startswith(GRPC) and grpc_request(scope):
            # Kong's error handler exits with {message = ...}: a gRPC client gets it in
            # grpc-message, with no body and no Content-Type.
            code = 400 if status == HEADER_TOO_LARGE else status
            grpc = errors.grpc_error_headers(code, errors.nginx_message(status))
            await self.respond(
                send, code, None, b"", request_id, started, [*(extra or ()), *grpc], ctx
            )
            return
        ctype, body = errors.for_nginx_error(
            status,
            header(scope, b"accept"),
            header(scope, b"content-type"),
            request_id,
            self.error_default_type,
        )
        if status == HEADER_TOO_LARGE:
            status = 400  # nginx's internal 494, which Kong's error handler answers as 400
        await self.respond(send, status, ctype, body, request_id, started, extra, ctx)

    async def plugin_exit(self, scope: Scope, send: Send, ctx: RequestContext, stop: Exit) -> None:
        """Answer with a plugin's :class:`Exit`; the response and log phases still run."""
        await self.plugin_answer(scope, send, ctx, stop)
        run_log(ctx)

    async def plugin_answer(
        self, scope: Scope, send: Send, ctx: RequestContext, stop: Exit
    ) -> None:
        """:meth:`plugin_exit` without the log phase (for a caller that runs it after)."""
        ctype: str | None
        extra = stop.headers
        if stop.with_request_id and grpc_request(scope):  # kong.response.error to gRPC
            ctype, body = GRPC, b""
            extra = [*(extra or ()), *errors.grpc_error_headers(stop.status)]
        elif stop.from_table and grpc_request(scope) and not _has_content_type(extra):
            # kong.response.exit with a table: its message in grpc-message, no body
            ctype, body = None, b""
            extra = [*(extra or ()), *errors.grpc_error_headers(stop.status, stop.message)]
        elif stop.with_request_id:
            ctype, body = errors.for_response_error(
                header(scope, b"accept"), stop.message or "", ctx.request_id
            )
        else:
            ctype, body = stop.content_type, stop.body
        await self.respond(send, stop.status, ctype, body, ctx.request_id, ctx.started, extra, ctx)

    async def acme_challenge(
        self,
        scope: Scope,
        send: Send,
        acme: Any,
        host_text: str,
        raw_path: bytes,
        request_id: str,
        started: float,
    ) -> bool:
        """A challenge request no route matched, answered by the global acme plugin (Kong's
        users must add a route for the path); False when it is not one for the plugin."""
        if "http" not in acme.protocols:
            return False
        host = strip_port(host_text).lower()
        stop = await acme.answer(host, raw_path.decode("latin-1"), scope.get("scheme", "http"))
        if stop is None:
            return False
        if stop.with_request_id:
            await self.kong_error(scope, send, stop.status, stop.message or "", request_id, started)
        else:
            await self.respond(send, stop.status, stop.content_type, stop.body, request_id, started)
        return True

    async def https_required(
        self,
        scope: Scope,
        send: Send,
        plan: RoutePlan,
        host: str,
        raw_path: bytes,
        request_id: str,
        started: float,
    ) -> None:
        code = plan.https_redirect_status_code
        if code == 426:
            ctype, body = errors.for_response_error(
                header(scope, b"accept"), "Please use HTTPS protocol", request_id
            )
            extra = [(b"connection", b"Upgrade"), (b"upgrade", b"TLS/1.2, HTTP/1.1")]
            await self.respond(send, 426, ctype, body, request_id, started, extra)
            return
        query: bytes = scope.get("query_string") or b""
        location = b"https://" + host.encode("latin-1") + raw_path
        if query:
            location += b"?" + query
        await self.respond(send, code, None, b"", request_id, started, [(b"location", location)])

    async def respond(
        self,
        send: Send,
        status: int,
        content_type: str | None,
        body: bytes,
        request_id: str,
        started: float | None,
        extra: list[tuple[bytes, bytes]] | None = None,
        ctx: RequestContext | None = None,
    ) -> None:
        headers = [
            (b"content-length", str(len(body)).encode()),
            (b"server", SERVER),
            (b"x-kong-request-id", request_id.encode()),
        ]
        if content_type is not None:
            headers.append((b"content-type", content_type.encode()))
        if started is not None:
            latency = str(int((time.monotonic() - started) * 1000)).encode()
            headers.append((b"x-kong-response-latency", latency))
        if self.shown is not None:
            headers = self.shown.produced(headers)
        if extra:
            headers.extend(extra)
        if ctx is not None:
            # Kong writes the request id after the plugins; the latency headers of an answer
            # are the plugins' to settle (a proxy-cache hit or a Lambda call counts as
            # proxied: Kong's KONG_PROXIED).
            own = [h for h in headers if h[0] == b"x-kong-request-id"]
            server: list[tuple[bytes, bytes]] = []
            if started is not None:
                # An answer made here, not after a proxy try: Kong's header_filter.after sets
                # Server once the plugins ran, unless a plugin's Via is Kong's own token (then
                # what the plugins left stands: a short-circuit that names its server).
                server = [h for h in headers if h[0] == b"server"]
                headers = [h for h in headers if h[0] != b"server"]
            run_response(ctx, status, headers, own)
            if started is not None and not (
                (self.shown is None or "via" in self.shown.names) and (b"via", SERVER) in headers
            ):
                headers[:] = [h for h in headers if h[0] != b"server"] + server
            filters = body_filters(ctx)
            if filters:
                # Kong runs body_filter on gateway-generated responses too.
                body = run_body(filters, ctx, body, True)
                headers = [h for h in headers if h[0] != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
            ctx.response_size = len(body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


#: ASGI messages that start a response (HTTP, a WebSocket accept or refusal).
_HEAD_MESSAGES = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)


async def send_replaced(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    """A proxied response a response hook replaced: ``status``, the headers without the
    upstream's framing, and no body."""
    kept = [(k, v) for k, v in headers if k.lower() not in _FRAMING]
    kept.append((b"content-length", b"0"))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": b""})


_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})


def with_debug_headers(send: Send, plan: RoutePlan) -> Send:
    """``send`` adding Kong's debug headers (``kong/router/utils.lua`` add_debug_headers) to the
    response that follows: the matched route's and service's id and name."""
    extra = [(b"kong-route-id", plan.id.encode())]
    if plan.name:
        extra.append((b"kong-route-name", plan.name.encode()))
    if plan.service is not None:
        extra.append((b"kong-service-id", plan.service.id.encode()))
        if plan.service.name:
            extra.append((b"kong-service-name", plan.service.name.encode()))

    async def send_with(message: Message) -> None:
        if message["type"] in _HEAD_MESSAGES:
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return send_with


GRPC: Final = "application/grpc"


def _has_content_type(headers: list[tuple[bytes, bytes]] | None) -> bool:
    return any(name.lower() == b"content-type" for name, _ in headers or ())


def grpc_request(scope: Scope) -> bool:
    """Kong's ``is_grpc_request``: HTTP/2 with a ``Content-Type`` of ``application/grpc*``."""
    if scope.get("http_version") != "2":
        return False
    ctype = header(scope, b"content-type")
    return ctype is not None and ctype.startswith(GRPC)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
