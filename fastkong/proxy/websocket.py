"""WebSocket proxying: a client's Upgrade on a matching route, relayed to the upstream both ways.

The ASGI server (Granian) terminates the client's WebSocket and hands the app messages, so the
gateway is a WebSocket *client* towards the upstream: it routes the handshake like any request
(same router, same access phase of the route's plugins, same balancer with connect retries,
the service's timeouts), sends its own ``Upgrade`` request, and only accepts the client once the
upstream answered ``101``. From then on it copies messages:

* text and binary messages, whole (fragmented upstream messages are reassembled); masking is
  applied towards the upstream as the protocol requires of a client;
* ping/pong are answered hop by hop: Granian answers the client's pings, the gateway answers the
  upstream's (ASGI exposes no control frames);
* a close from either side is forwarded with its code and reason, and the other side is closed;
* the service's ``read_timeout`` applies between two frames from the upstream (nginx's
  ``proxy_read_timeout`` closes an idle WebSocket the same way).

A handshake the gateway refuses (no route, a plugin's exit, no peer) or the upstream refuses
(not ``101``) is answered with an HTTP response when the server supports ASGI's
``websocket.http.response`` extension, else by closing before accepting (the server sends 403).

The frame codec (:func:`encode_frame`, :func:`read_frame`) is usable on both sides; the tests
use it for their WebSocket client and upstream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fastkong._core import _h1_py
from fastkong.plugins.base import Exit, kong_error
from fastkong.plugins.context import RequestContext
from fastkong.plugins.runner import apply_header_edits, run_access, run_log
from fastkong.proxy import errors, hop
from fastkong.proxy.edge import PROXIED_KEY, SNI_KEY
from fastkong.proxy.kong_headers import HeaderSettings
from fastkong.proxy.replies import with_debug_headers
from fastkong.proxy.routing import NO_ROUTE, Decision, decide, strip_port
from fastkong.proxy.upstream import SERVER, VIA

if TYPE_CHECKING:
    from fastkong.proxy.app import Gateway

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("fastkong.proxy")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
#: The largest message relayed from the upstream (Granian's own limit guards the client side).
MAX_MESSAGE = 64 * 1024 * 1024
#: The largest refusal body relayed from the upstream's handshake answer.
REFUSAL_BODY_LIMIT = 64 * 1024

# Client headers not copied to the upstream handshake: hop-by-hop ones (Proxy and Expect too, as
# for any request), the handshake's own, and the forwarding ones the gateway sets itself.
_SKIP = hop.TRUSTED_FORWARDED | {
    b"host",
    b"connection",
    b"upgrade",
    b"keep-alive",
    b"proxy-connection",
    b"proxy",
    b"expect",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"content-length",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"sec-websocket-accept",
    b"x-forwarded-for",
    b"x-kong-request-id",
    b"via",
}
# Upstream 101 headers not passed to the client (Granian does the handshake itself).
_SKIP_BACK = frozenset(
    {
        b"connection",
        b"upgrade",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"content-length",
        b"transfer-encoding",
        b"date",
        b"server",
    }
)


class WebSocketError(Exception):
    """The upstream broke the WebSocket protocol or went away."""


# -- frames ------------------------------------------------------------------------------------
def _xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return data
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, mask: bool, fin: bool = True) -> bytes:
    """One frame; ``mask`` for frames a client sends."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if mask:
        key = os.urandom(4)
        return head + key + _xor(payload, key)
    return head + payload


async def read_frame(
    reader: asyncio.StreamReader, limit: int = MAX_MESSAGE
) -> tuple[bool, int, bytes]:
    """``(fin, opcode, payload)`` of the next frame (unmasked if it was masked)."""
    b0, b1 = await reader.readexactly(2)
    fin = bool(b0 & 0x80)
    opcode = b0 & 0x0F
    masked = b1 & 0x80
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    if n > limit:
        raise WebSocketError(f"frame of {n} bytes is over the {limit} limit")
    key = await reader.readexactly(4) if masked else b""
    payload = await reader.readexactly(n) if n else b""
    if masked:
        payload = _xor(payload, key)
    return fin, opcode, payload


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload; 1005/1006 (no code, abnormal) are never sent on the wire."""
    if code in (1005, 1006) or not 1000 <= code < 5000:
        return b""
    return struct.pack("!H", code) + reason.encode()[:123]


def parse_close(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


# -- the proxy ---------------------------------------------------------------------------------
async def proxy(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one WebSocket scope (see the module docstring)."""
    started = time.monotonic()
    runtime = gw.runtime
    request_id = gw.ids.next()
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    client = scope.get("client")
    client_ip = client[0] if client else "127.0.0.1"
    trusted = client_ip in gw.trusted_ips
    headers: list[tuple[bytes, bytes]] = list(scope["headers"])
    host_value = b""
    for name, value in headers:
        if name == b"host":
            host_value = value
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    # nginx reads a handshake's head as any request's: the same size limits, and an HTTP/1.1
    # request needs a Host (Gateway.http).
    refused = gw.limits.refuse("GET", raw_path, scope.get("query_string") or b"", headers, -1)
    if refused or (not host_value and scope.get("http_version", "1.1") == "1.1"):
        status = refused or 400
        message = errors.NGINX_MESSAGES[status]
        await _refuse(gw.shown, scope, send, 400 if status == 494 else status, message, request_id)
        return
    server = scope.get("server")
    port = int(server[1]) if server and server[1] else 0  # (None: a Unix socket)
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    router = runtime.router
    route_headers: dict[str, list[str]] | None = None
    if router.header_names:
        route_headers = {}
        for raw_name, raw_value in headers:
            text = raw_name.decode("latin-1")
            if text in router.header_names:
                route_headers.setdefault(text, []).append(raw_value.decode("latin-1").lower())
    facts = None
    if (expr := runtime.expression_router) is not None and expr.needs_request:
        facts = gw.request_facts(
            scope, client_ip, trusted, scope.get("query_string") or b"", server
        )
    decision = decide(
        runtime,
        "GET",
        host_value.decode("latin-1"),
        port,
        raw_path.decode("latin-1"),
        scheme,
        route_headers,
        scope.get(SNI_KEY, ""),
        facts,
    )
    if not isinstance(decision, Decision):
        if decision == NO_ROUTE:
            await _refuse(gw.shown, scope, send, 404, errors.NO_ROUTE, request_id)
        else:
            await _refuse(gw.shown, scope, send, 400, "Bad request", request_id)
        return
    plan = decision.plan
    if gw.allow_debug_header and any(name == b"kong-debug" for name, _ in headers):
        send = with_debug_headers(send, plan)
    if "https" in plan.protocols and "http" not in plan.protocols:
        refusal = _https_refusal(plan, trusted, headers, scheme, host_value, raw_path, scope)
        if refusal is not None:
            await _refuse(
                gw.shown,
                scope,
                send,
                refusal.status,
                "Please use HTTPS protocol",
                request_id,
                refusal,
            )
            return
    # nginx's $remote_addr, as Gateway.http computes it.
    remote = (
        gw.real_ip.remote_addr(headers, client_ip, gw.trusted_ips, scope.get(PROXIED_KEY))
        if trusted
        else client_ip
    )
    ctx: RequestContext | None = None
    lines = [n + b": " + v + b"\r\n" for n, v in headers if n not in _SKIP]
    if gw.request_debug is not None:  # Kong's request_debug takes its three headers out
        lines = [x for x in lines if x[: x.find(b":")] not in _h1_py.REQUEST_DEBUG]
    if plan.plugins:
        # The plugins see the handshake as the GET request it is.
        http_scope = dict(scope)
        http_scope.setdefault("method", "GET")
        http_scope["scheme"] = scheme
        ctx = RequestContext(
            runtime,
            http_scope,
            receive,
            plan,
            decision.match,
            decision.path,
            decision.host,
            port,
            client_ip,
            request_id,
            started,
        )
        ctx.forwarded_ip = remote
        stop: Exit | None = await run_access(ctx, plan.plugins, runtime.plugins)
        if stop is not None:
            await _refuse(gw.shown, scope, send, stop.status, stop.message or "", request_id, stop)
            run_log(ctx)
            return
        if ctx.upstream_set or ctx.upstream_remove:
            lines = apply_header_edits(ctx, lines)
    service = plan.service
    if service is None or decision.upstream_path is None:
        await _refuse(gw.shown, scope, send, 503, errors.NO_SERVICE, request_id)
        return
    target = decision.upstream_path.encode("latin-1")
    query: bytes = scope.get("query_string") or b""
    if ctx is not None and ctx.upstream_query is not None:
        query = ctx.upstream_query
    if ctx is not None and ctx.upstream_path:
        target = ctx.upstream_path.encode("latin-1")
    if query:
        target += b"?" + query
    forwarding = _forwarding_lines(
        scope,
        headers,
        trusted,
        client_ip,
        remote,
        decision,
        gw.host_ports.get(port, port),  # Kong's ctx.host_port (port_maps)
        request_id,
    )
    if gw.shown is not None and not gw.shown.request_id_upstream:
        forwarding = forwarding.replace(b"x-kong-request-id: " + request_id.encode() + b"\r\n", b"")
    lines.append(forwarding)
    subprotocols: list[str] = scope.get("subprotocols") or []
    if subprotocols:
        lines.append(b"sec-websocket-protocol: " + ", ".join(subprotocols).encode() + b"\r\n")
    key = base64.b64encode(os.urandom(16))
    extra = b"".join(lines)

    balancer = service.balancer
    tried: tuple[Any, ...] = ()
    opened: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    peer = None
    status = 502
    for _ in range(service.retries + 1):
        if balancer is not None:
            hash_key = None
            if balancer.hashed:
                hash_key, _cookie = balancer.hash_value(
                    headers, remote, decision.path, query, ctx, decision.match.captures
                )
            peer = balancer.next_peer(tried, hash_key)
            if peer is None:
                await _refuse(gw.shown, scope, send, 503, errors.NO_PEER, request_id)
                return
            tried = (*tried, peer)
        host, peer_port, host_header = service.try_target(peer)
        host_b = host_value if plan.preserve_host and host_value else host_header.encode()
        sni = strip_port(host_b.decode("latin-1"))  # as the proxy's (Gateway.exchange)
        assert gw.resolver is not None
        try:
            # The worker's name cache, as the proxy's exchange uses it (stale answers served).
            address = (await gw.resolver.resolve(host))[0]
        except OSError:
            await _refuse(gw.shown, scope, send, 503, errors.NAME_RESOLUTION_FAILED, request_id)
            return
        try:
            ctx_ssl: ssl.SSLContext | None = None
            if service.tls_profile is not None:
                assert gw.pool is not None
                ctx_ssl = gw.pool.ssl_context(service.tls_profile)
            opened = await asyncio.wait_for(
                asyncio.open_connection(
                    address,
                    peer_port,
                    ssl=ctx_ssl,
                    server_hostname=sni if ctx_ssl is not None else None,
                    # The handshake answer's head is bounded as a response head is
                    # (proxy_buffer_size); readuntil counts up to where the blank line starts.
                    limit=max(gw.max_response_head - 4, 1),
                ),
                service.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            if peer is not None and balancer is not None and balancer.passive:
                balancer.report_failure(peer, isinstance(exc, TimeoutError))
            status = 504 if isinstance(exc, TimeoutError) else 502
            continue
        break
    if opened is None:
        await _refuse(gw.shown, scope, send, status, _nginx_message(status), request_id)
        return
    reader, writer = opened
    try:
        writer.write(
            # (Kong's nginx: Connection $upstream_connection, "keep-alive, Upgrade")
            b"GET %s HTTP/1.1\r\nhost: %s\r\nupgrade: websocket\r\n"
            b"connection: keep-alive, Upgrade\r\n"
            b"sec-websocket-key: %s\r\nsec-websocket-version: 13\r\n%s\r\n"
            % (target, host_b, key, extra)
        )
        async with asyncio.timeout(service.read_timeout):
            head = await reader.readuntil(b"\r\n\r\n")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
        writer.close()
        if isinstance(exc, asyncio.LimitOverrunError):
            log.error(
                "upstream sent too big header while reading response header from upstream, "
                "upstream: %s:%d",
                host,
                peer_port,
            )
        if peer is not None and balancer is not None and balancer.passive:
            balancer.report_failure(peer, isinstance(exc, TimeoutError))
        code = 504 if isinstance(exc, TimeoutError) else 502
        await _refuse(gw.shown, scope, send, code, _nginx_message(code), request_id)
        return
    code, response_headers = _parse_head(head)
    if peer is not None and balancer is not None and balancer.passive:
        balancer.report_status(peer, code)
    got = dict(response_headers)
    if code != 101 or got.get(b"sec-websocket-accept") != accept_key(key):
        body = b""
        length = got.get(b"content-length", b"0")
        if code != 101 and length.isdigit() and 0 < int(length) <= REFUSAL_BODY_LIMIT:
            try:
                async with asyncio.timeout(service.read_timeout):
                    body = await reader.readexactly(int(length))
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                body = b""
        writer.close()
        if code == 101:  # a 101 with a wrong accept key is an invalid response
            await _refuse(gw.shown, scope, send, 502, _nginx_message(502), request_id)
        else:
            await _relay_refusal(gw.shown, scope, send, code, response_headers, body, request_id)
        return
    back = [(n, v) for n, v in response_headers if n not in _SKIP_BACK]
    if gw.shown is None or "x-kong-request-id" in gw.shown.names:
        back.append((b"x-kong-request-id", request_id.encode()))
    accept: dict[str, Any] = {"type": "websocket.accept", "headers": back}
    chosen = got.get(b"sec-websocket-protocol")
    if chosen:
        accept["subprotocol"] = chosen.decode("latin-1")
    await send(accept)
    try:
        await _relay(receive, send, reader, writer, service.read_timeout)
    finally:
        writer.close()
        if ctx is not None:
            ctx.proxied = True
            run_log(ctx)


async def _relay(
    receive: Receive,
    send: Send,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    read_timeout: float,
) -> None:
    closed = asyncio.Event()

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is not None:
                    writer.write(encode_frame(OP_BINARY, data, True))
                else:
                    text = message.get("text") or ""
                    writer.write(encode_frame(OP_TEXT, text.encode(), True))
                await writer.drain()
            elif kind == "websocket.disconnect":
                code = int(message.get("code") or 1005)
                if not closed.is_set():
                    closed.set()
                    try:
                        writer.write(encode_frame(OP_CLOSE, close_payload(code), True))
                        await writer.drain()
                    except OSError:
                        pass
                return

    async def upstream_to_client() -> tuple[int, str] | None:
        """Relay the upstream's messages; returns how to close the client (None: it left)."""
        parts: list[bytes] = []
        kind = OP_BINARY
        size = 0
        while True:
            try:
                async with asyncio.timeout(read_timeout):
                    fin, opcode, payload = await read_frame(reader)
            except (asyncio.IncompleteReadError, OSError, TimeoutError, WebSocketError):
                return None if closed.is_set() else (1011, "")
            if opcode == OP_PING:
                writer.write(encode_frame(OP_PONG, payload, True))
                continue
            if opcode == OP_PONG:
                continue
            if opcode == OP_CLOSE:
                code, reason = parse_close(payload)
                if closed.is_set():
                    return None  # the upstream answered the client's close
                closed.set()
                try:
                    writer.write(encode_frame(OP_CLOSE, close_payload(code, reason), True))
                except OSError:
                    pass
                return (1000 if code == 1005 else code), reason
            if opcode in (OP_TEXT, OP_BINARY):
                kind = opcode
                parts = []
                size = 0
            size += len(payload)
            if size > MAX_MESSAGE:
                return 1009, ""
            parts.append(payload)
            if fin:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                parts = []
                size = 0
                if kind == OP_TEXT:
                    await send({"type": "websocket.send", "text": data.decode("utf-8", "replace")})
                else:
                    await send({"type": "websocket.send", "bytes": data})

    up = asyncio.ensure_future(upstream_to_client())
    down = asyncio.ensure_future(client_to_upstream())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done:
            # Granian does not send a close while a receive() is pending: stop reading first.
            down.cancel()
            await asyncio.gather(down, return_exceptions=True)
            how = up.result() if up.exception() is None else (1011, "")
            if how is not None:
                await send({"type": "websocket.close", "code": how[0], "reason": how[1]})
        else:
            # The client left: give the upstream a moment to answer the close handshake.
            done, _ = await asyncio.wait({up}, timeout=1.0)
            up.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
    except asyncio.CancelledError:
        up.cancel()
        down.cancel()
        raise


def _parse_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    try:
        code = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 502, []
    parsed = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        parsed.append((name.strip().lower(), value.strip()))
    return code, parsed


def _nginx_message(status: int) -> str:
    return errors.NGINX_MESSAGES.get(status, f"The upstream server responded with {status}")


def _forwarding_lines(
    scope: Scope,
    headers: list[tuple[bytes, bytes]],
    trusted: bool,
    client_ip: str,
    remote: str,
    decision: Decision,
    port: int,
    request_id: str,
) -> bytes:
    """The headers Kong adds to a proxied request, as ``Gateway.http`` writes them: the
    client's first X-Forwarded-For and Via extended, a trusted peer's X-Forwarded-* kept (the
    first of each), X-Real-IP the client address (``remote``), X-Forwarded-Prefix for a matched
    prefix."""
    first: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in _FORWARDING and name not in first:
            first[name] = value
    client_b = client_ip.encode()
    forwarded = first if trusted else {}
    real_b = remote.encode()
    xff = first.get(b"x-forwarded-for")
    scheme = b"https" if scope.get("scheme") == "wss" else b"http"
    prefix = b""
    if decision.match.matched_len:
        stripped = decision.path[: decision.match.matched_len]
        if stripped != "/":
            prefix = stripped.encode("utf-8", "surrogateescape")
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    version = scope.get("http_version", "1.1")
    via_token = VIA if version == "1.1" else hop.inbound_via(version, SERVER)
    via = first.get(b"via")
    out = [
        b"x-forwarded-for: " + (xff + b", " + client_b if xff else real_b),
        b"x-forwarded-proto: " + (forwarded.get(b"x-forwarded-proto") or scheme),
        b"x-forwarded-host: "
        + (forwarded.get(b"x-forwarded-host") or decision.host.encode("latin-1")),
        b"x-forwarded-port: " + (forwarded.get(b"x-forwarded-port") or str(port).encode()),
        b"x-forwarded-path: " + (forwarded.get(b"x-forwarded-path") or raw_path),
        b"x-real-ip: " + real_b,
        b"x-kong-request-id: " + request_id.encode(),
        b"via: " + (via + b", " + via_token if via else via_token),
    ]
    if prefix := forwarded.get(b"x-forwarded-prefix") or prefix:
        out.append(b"x-forwarded-prefix: " + prefix)
    return b"\r\n".join(out) + b"\r\n"


_FORWARDING = hop.TRUSTED_FORWARDED | {b"x-forwarded-for", b"via"}


def _https_refusal(
    plan: Any,
    trusted: bool,
    headers: list[tuple[bytes, bytes]],
    scheme: str,
    host_value: bytes,
    raw_path: bytes,
    scope: Scope,
) -> Exit | None:
    """Kong's answer to a handshake over plain HTTP on an https-only route (the check of
    ``Gateway.http``): 426, or the route's redirect; None when the request came over HTTPS."""
    forwarded_proto: bytes | None = None
    forwarded_host: bytes | None = None
    if trusted:
        for name, value in headers:
            if name == b"x-forwarded-proto" and forwarded_proto is None:
                forwarded_proto = value
            elif name == b"x-forwarded-host" and forwarded_host is None:
                forwarded_host = value
    # As Kong: a trusted peer's X-Forwarded-Proto is compared as sent.
    if (forwarded_proto.decode("latin-1") if forwarded_proto is not None else scheme) == "https":
        return None
    code = plan.https_redirect_status_code
    if code == 426:
        upgrade = [(b"connection", b"Upgrade"), (b"upgrade", b"TLS/1.2, HTTP/1.1")]
        return kong_error(426, "Please use HTTPS protocol", upgrade)
    host = forwarded_host or strip_port(host_value.decode("latin-1")).encode("latin-1")
    location = b"https://" + host + raw_path
    query: bytes = scope.get("query_string") or b""
    if query:
        location += b"?" + query
    return Exit(code, headers=[(b"location", location)])


async def _refuse(
    shown: HeaderSettings | None,
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    request_id: str,
    stop: Exit | None = None,
) -> None:
    """Answer a handshake the gateway refuses: Kong's error body when the server allows it."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008 if status < 500 else 1011})
        return
    ctype: str | None
    if stop is not None and not stop.with_request_id:
        ctype, body = stop.content_type, stop.body
    else:
        accept = None
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
        ctype, body = errors.for_response_error(accept, message, request_id)
    out = [
        (b"content-length", str(len(body)).encode()),
        (b"x-kong-request-id", request_id.encode()),
    ]
    if shown is not None:
        out = shown.produced(out)
    if ctype:
        out.append((b"content-type", ctype.encode()))
    if stop is not None:
        out.extend(stop.headers)
    await send({"type": "websocket.http.response.start", "status": status, "headers": out})
    await send({"type": "websocket.http.response.body", "body": body})


async def _relay_refusal(
    shown: HeaderSettings | None,
    scope: Scope,
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    request_id: str,
) -> None:
    """The upstream refused the upgrade: pass its answer on (or close, without the extension)."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008 if status < 500 else 1011})
        return
    out = [
        (n, v)
        for n, v in headers
        if n not in (b"content-length", b"transfer-encoding", b"connection")
    ]
    out.append((b"content-length", str(len(body)).encode()))
    if shown is None or "x-kong-request-id" in shown.names:
        out.append((b"x-kong-request-id", request_id.encode()))
    await send({"type": "websocket.http.response.start", "status": status, "headers": out})
    await send({"type": "websocket.http.response.body", "body": body})
