"""The per-request context plugins see: Kong's PDK (``kong.request``, ``kong.client``,
``kong.service.request``, ``kong.ctx``) as one object with ``__slots__``, passed in, never global.

It is created only for routes that run plugins; the plain proxy path never builds one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from fastkong._core._router_py import RouteMatch
    from fastkong.plugins.base import Plugin
    from fastkong.runtime import RoutePlan, Runtime, ServicePlan

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

#: Bodies a plugin may ask to read whole (key-auth in body, request-transformer, ...).
MAX_PLUGIN_BODY = 8 * 1024 * 1024


class BodyTooLarge(Exception):
    pass


class RequestContext:
    """One request, as plugins see it."""

    __slots__ = (
        "runtime",
        "scope",
        "receive",
        "method",
        "path",
        "raw_path",
        "query_string",
        "scheme",
        "host",
        "port",
        "client_ip",
        "forwarded_ip",
        "request_id",
        "route",
        "service",
        "match",
        "consumer",
        "credential",
        "authenticated_groups",
        "anonymous",
        "upstream_set",
        "upstream_remove",
        "upstream_path",
        "upstream_query",
        "upstream_method",
        "upstream_target",
        "upstream_http2",
        "upstream_trailers",
        "buffer_response",
        "response_body",
        "response_headers",
        "shared",
        "plugin_data",
        "body",
        "body_read",
        "held",
        "held_more",
        "status",
        "started",
        "access_ended",
        "upstream_started",
        "upstream_latency",
        "upstream_peer",
        "response_size",
        "proxied",
        "chain",
        "response_head",
        "replaced_status",
        "_headers",
        "_query",
    )

    def __init__(
        self,
        runtime: Runtime,
        scope: MutableMapping[str, Any],
        receive: Receive,
        route: RoutePlan,
        match: RouteMatch,
        path: str,
        host: str,
        port: int,
        client_ip: str,
        request_id: str,
        started: float,
    ) -> None:
        self.runtime = runtime
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path = path
        self.raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        self.query_string: bytes = scope.get("query_string") or b""
        self.scheme: str = scope.get("scheme", "http")
        self.host = host
        self.port = port
        self.client_ip = client_ip
        self.forwarded_ip = client_ip
        self.request_id = request_id
        self.route = route
        self.service: ServicePlan | None = route.service
        self.match = match
        self.consumer: Any = None
        self.credential: Any = None
        self.authenticated_groups: list[str] | None = None
        self.anonymous = False
        #: Upstream request header edits: set (replace) and remove, lower-case names.
        #: Headers set for the upstream: one value, or several (one header line each).
        self.upstream_set: dict[bytes, bytes | list[bytes]] = {}
        self.upstream_remove: set[bytes] = set()
        self.upstream_path: str | None = None
        self.upstream_query: bytes | None = None
        self.upstream_method: str | None = None
        #: ``kong.service.set_target`` with the scheme (``kong.service.request.set_scheme``):
        #: ``(scheme, host, port)`` replacing the service's (and its upstream's balancer).
        self.upstream_target: tuple[str, str, int] | None = None
        #: Send this request to a ``grpc``/``grpcs`` service over HTTP/2 (nginx's
        #: ``grpc_pass``), as grpc-web asks (:mod:`fastkong.proxy.h2exchange`).
        self.upstream_http2 = False
        #: The upstream's HTTP/2 trailers, set before the body hooks see the last chunk.
        self.upstream_trailers: list[tuple[bytes, bytes]] | None = None
        #: ``kong.service.request.enable_buffering``: the upstream's whole response body is
        #: read before the response hooks run, which find it in :attr:`response_body`.
        self.buffer_response = False
        #: The buffered response body (see :attr:`buffer_response`); a response hook may
        #: replace it (``kong.response.set_raw_body``), fixing ``content-length`` itself.
        self.response_body: bytes | None = None
        #: Headers added to the client response (after the plugins' response hooks).
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.shared: dict[str, Any] = {}
        self.plugin_data: dict[str, Any] = {}
        self.body: bytes | None = None
        self.body_read = False
        #: Body chunks a read over its limit took from the client (:meth:`read_body`), and
        #: whether more are to come: kept for a later read with a larger limit, and for the
        #: proxy (:meth:`receive_rest`), so that a body too large for one plugin still goes
        #: upstream whole.
        self.held: list[bytes] = []
        self.held_more = True
        self.status = 0
        self.started = started
        #: When the access phase ended (``time.monotonic()``; 0: not yet), for tracing plugins.
        self.access_ended = 0.0
        self.upstream_started = 0.0
        self.upstream_latency = 0.0
        #: The peer the last upstream try went to, Kong's ``balancer_data``: ``(ip, port,
        #: hostname)``, the hostname being the target's name or the service's host.
        self.upstream_peer: tuple[str, int, str] | None = None
        self.response_size = 0
        self.proxied = False
        #: The plugins this request runs in the response and log phases.
        self.chain: tuple[Plugin, ...] = ()
        #: The response headers as sent to the client (set after the response hooks ran).
        self.response_head: list[tuple[bytes, bytes]] | None = None
        #: Set by a response hook that turns the upstream's answer down (0: not replaced).
        self.replaced_status = 0
        self._headers: dict[str, list[str]] | None = None
        self._query: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        consumer = getattr(self.consumer, "username", None) or getattr(self.consumer, "id", None)
        return (
            f"<RequestContext {self.method} {self.path} route={self.route.name or self.route.id} "
            f"consumer={consumer} status={self.status}>"
        )

    # -- kong.request ------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, list[str]]:
        """Request headers: lower-case name -> values (built on first use)."""
        if self._headers is None:
            found: dict[str, list[str]] = {}
            for name, value in self.scope["headers"]:
                found.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
            self._headers = found
        return self._headers

    def headers_unread(self) -> None:
        """nginx refused this request at its request line (414): it read no header, so the
        plugins see none (a log plugin logs none), though Granian parsed them."""
        self._headers = {}

    def header(self, name: str) -> str | None:
        """The first value of request header ``name`` (case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            found: dict[str, list[str]] = {}
            for k, v in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True):
                found.setdefault(k, []).append(v)
            self._query = found
        return self._query

    async def read_body(self, limit: int = MAX_PLUGIN_BODY) -> bytes:
        """The whole request body (read once, then kept for the upstream request)."""
        if self.body_read:
            return self.body or b""
        parts = self.held
        size = sum(map(len, parts))
        more = self.held_more
        while more and size <= limit:
            message = await self.receive()
            if message["type"] != "http.request":
                raise ConnectionError("client went away while sending the body")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            parts.append(chunk)
            more = message.get("more_body", False)
        self.held_more = more
        if size > limit:
            # What was read stays held: the rest of the client's body is not the body.
            raise BodyTooLarge(size)
        self.held = []
        self.body = b"".join(parts)
        self.body_read = True
        return self.body

    async def receive_rest(self) -> MutableMapping[str, Any]:
        """The ASGI ``receive`` for whoever reads the body after the plugins: the chunks a
        too-large :meth:`read_body` held first, then the client's."""
        if self.held:
            body = b"".join(self.held)
            self.held = []
            return {"type": "http.request", "body": body, "more_body": self.held_more}
        return await self.receive()

    # -- kong.service.request ----------------------------------------------------------------

    def set_upstream_header(self, name: str, value: str | Sequence[str]) -> None:
        """``kong.service.request.set_header``; several values go upstream as one header line
        each (as Kong's ``set_headers`` does with an array)."""
        key = name.lower().encode("latin-1")
        if isinstance(value, str):
            self.set_upstream_raw(key, value.encode("latin-1"))
        else:
            self.set_upstream_raw(key, [v.encode("latin-1") for v in value])

    def set_upstream_raw(self, key: bytes, value: bytes | list[bytes]) -> None:
        """:meth:`set_upstream_header` with the name already lower-cased bytes (for plugins
        that precompute their header names)."""
        self.upstream_remove.discard(key)
        self.upstream_set[key] = value

    def set_upstream_target(self, scheme: str, host: str, port: int) -> None:
        """``kong.service.set_target`` and ``kong.service.request.set_scheme``: send this request
        to ``scheme://host:port`` instead of the service's host or upstream. The ``Host`` header
        and the TLS server name become ``host``; the service's timeouts, retries and TLS
        verification settings still apply; the name is resolved through the worker's DNS
        cache."""
        self.upstream_target = (scheme, host, port)

    def upstream_host(self) -> bytes | None:
        """The Host a plugin set for the upstream request, if any."""
        value = self.upstream_set.get(b"host")
        if isinstance(value, list):
            return value[0] if value else None
        return value

    def clear_upstream_header(self, name: str) -> None:
        self.clear_upstream_raw(name.lower().encode("latin-1"))

    def clear_upstream_raw(self, key: bytes) -> None:
        """:meth:`clear_upstream_header` with the name already lower-cased bytes."""
        self.upstream_set.pop(key, None)
        self.upstream_remove.add(key)

    # -- kong.response -----------------------------------------------------------------------

    def add_response_header(self, name: str, value: str) -> None:
        self.response_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))

    # -- kong.client -------------------------------------------------------------------------

    def replace_response(self, status: int) -> None:
        """From a response hook: answer ``status`` instead of the upstream, with the response's
        headers as the hooks leave them and no body (Kong's ``kong.response.exit`` in
        header_filter); the upstream's body is not read."""
        self.replaced_status = status
        self.status = status

    def authenticate(self, consumer: Any, credential: Any) -> None:
        """``kong.client.authenticate``: set the consumer and credential of this request."""
        self.consumer = consumer
        self.credential = credential
