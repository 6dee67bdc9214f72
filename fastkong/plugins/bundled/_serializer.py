"""Kong's basic log serializer (``kong.log.serialize`` in ``kong/pdk/log.lua``) for the log phase.

:func:`serialize` builds the table every Kong logging plugin sends: ``request`` (id, uri, url,
querystring, method, headers, size), ``upstream_uri``, ``upstream_status``, ``response`` (status,
headers, size), ``route``, ``service``, ``consumer``, ``latencies`` (kong, proxy, request,
receive, in ms), ``tries``, ``authenticated_entity``, ``client_ip``, ``started_at``, ``source``,
``workspace`` and ``workspace_name``. Like Kong, the request's ``authorization`` and
``proxy-authorization`` headers are written as ``REDACTED``; every other header as it came.

How the fields map onto a fastkong request:

* sizes are the bytes of the request/response head (line and headers, as they were received
  or sent) plus the body, like nginx's ``$request_length`` and ``$bytes_sent``;
* ``kong`` latency is the time until the request went upstream (or, for a response the gateway
  made, the whole request), ``proxy`` the wait for the upstream's response head (``-1`` when
  nothing was proxied), ``receive`` the time spent streaming the response body;
* ``tries`` is ``[]`` for a request a plugin answered (Kong makes the list once a route
  matched, before the plugins run), one entry for a request proxied to its service's host;
  left out for a request through an upstream's balancer (its tries are not kept);
* the route, service and consumer are the config entities as JSON objects (Kong's DAO rows
  without ``null`` fields; a foreign key is ``{"id": ...}``), converted once per snapshot.

The response headers are the list the proxy sent; :func:`remember_response_headers` keeps a
reference to it from a logging plugin's ``response`` hook.
"""

from __future__ import annotations

import http
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import unquote_plus

import msgspec
from msgspec import Meta

from fastkong._core import load
from fastkong.plugins.base import Plugin
from fastkong.proxy.edge import TLS_INFO_KEY

if TYPE_CHECKING:
    from fastkong._core import _uri_py as uri
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime
else:
    uri = load("uri")

#: The id of the one workspace a DB-less node has: Kong's fixed
#: ``constants.DECLARATIVE_DEFAULT_WORKSPACE_ID`` (``declarative_config.lua`` inserts the default
#: workspace with it when the config names none).
WORKSPACE_ID: Final = "0dc6f45b-8f8d-40d2-a504-473544ee190b"
WORKSPACE_NAME: Final = "default"
REDACTED: Final = "REDACTED"
_REDACT: Final = frozenset({"authorization", "proxy-authorization"})
_HEADERS_KEY: Final = "log.response_headers"
#: ``ctx.plugin_data`` key of Kong's ``ai`` log section (``kong.log.set_serialize_value("ai.*")``
#: of the AI plugins): a dict, serialized as it stands.
AI_LOG_KEY: Final = "log.ai"
#: ``ctx.plugin_data`` key of the values plugins set with :func:`set_serialize_value`.
_EXTRA_KEY: Final = "log.serialize_values"
_REASONS: Final = {s.value: s.phrase for s in http.HTTPStatus}

Query = dict[str, str | bool | list[str | bool]]

ERR_LUA: Final = "custom_fields_by_lua is not supported: fastkong does not run Lua code"


def check_no_lua(value: dict[str, str]) -> str | None:
    return ERR_LUA if value else None


#: The logging plugins' ``custom_fields_by_lua``: refused at config load when not empty.
LuaCode = Annotated[dict[str, str], Meta(extra={"kong_check": check_no_lua})]


def set_serialize_value(ctx: RequestContext, key: str, value: Any) -> None:
    """``kong.log.set_serialize_value(key, value)``: ``value`` at ``key`` (dots make nested
    objects, ``ai.payload.x``) in every entry :func:`serialize` makes for this request."""
    ctx.plugin_data.setdefault(_EXTRA_KEY, {})[key] = value


def _apply_extra(message: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        *parents, last = key.split(".")
        node = message
        for part in parents:
            child = node.get(part)
            # copied on the way down: a section another plugin keeps (ai-proxy's ``ai``) is
            # the entry's to extend, never that plugin's to see changed
            child = node[part] = dict(child) if isinstance(child, dict) else {}
            node = child
        node[last] = value


def remember_response_headers(ctx: RequestContext, headers: list[tuple[bytes, bytes]]) -> None:
    """Keep the list the proxy is about to send (it is edited in place, then sent as is)."""
    ctx.shared[_HEADERS_KEY] = headers


class LogPlugin(Plugin):
    """A plugin of the log phase: its response hook keeps the headers the proxy sends, which
    the serializer reports as ``response.headers`` and sizes."""

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        remember_response_headers(ctx, headers)


def response_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    sent = getattr(ctx, "response_head", None)
    if sent is None:
        sent = ctx.shared.get(_HEADERS_KEY)
    return sent if sent is not None else ctx.response_headers


# -- request parts -----------------------------------------------------------------------------


def kong_query(raw: bytes | str) -> Query:
    """``kong.request.get_query()``: ``a=1&a=2&b&c=`` -> ``{"a": ["1", "2"], "b": True, "c": ""}``.

    A name without ``=`` is ``True``; a repeated name collects its values in a list.
    """
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    found: Query = {}
    for part in text.split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        key = unquote_plus(name, "latin-1")
        if not key:
            continue
        item: str | bool = unquote_plus(value, "latin-1") if eq else True
        existing = found.get(key)
        if existing is None:
            found[key] = item
        elif isinstance(existing, list):
            existing.append(item)
        else:
            found[key] = [existing, item]
    return found


def _header_table(
    pairs: Mapping[str, list[str]], redact: frozenset[str] = frozenset()
) -> dict[str, str | list[str]]:
    table: dict[str, str | list[str]] = {}
    for name, values in pairs.items():
        if name in redact:
            table[name] = REDACTED
        else:
            table[name] = values[0] if len(values) == 1 else list(values)
    return table


def _sent_header_table(headers: list[tuple[bytes, bytes]]) -> dict[str, str | list[str]]:
    table: dict[str, str | list[str]] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        existing = table.get(name)
        if existing is None:
            table[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            table[name] = [existing, value]
    return table


def request_uri(ctx: RequestContext) -> str:
    """nginx's ``$request_uri``: the target as the client sent it."""
    target = ctx.raw_path.decode("latin-1")
    if ctx.query_string:
        target += "?" + ctx.query_string.decode("latin-1")
    return target


def request_size(ctx: RequestContext) -> int:
    """``$request_length``: request line, headers and body."""
    scope = ctx.scope
    version = scope.get("http_version", "1.1")
    size = len(ctx.method) + 1 + len(ctx.raw_path) + 6 + len(version) + 2  # "GET /p HTTP/1.1\r\n"
    if ctx.query_string:
        size += 1 + len(ctx.query_string)
    length = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = 0
    size += 2
    if ctx.body_read:
        return size + len(ctx.body or b"")
    return size + length


def response_size(ctx: RequestContext, headers: list[tuple[bytes, bytes]] | None = None) -> int:
    """``$bytes_sent``: status line, headers and body."""
    if headers is None:
        headers = response_headers(ctx)
    status = ctx.status
    size = 9 + 4 + len(_REASONS.get(status, "")) + 2 + 2  # "HTTP/1.1 " "200 " reason CRLF CRLF
    for name, value in headers:
        size += len(name) + len(value) + 4
    return size + ctx.response_size


def upstream_uri(ctx: RequestContext) -> str:
    """``$upstream_uri`` with the query, as the request went (or would have gone) upstream."""
    path = ctx.upstream_path
    route = ctx.route
    service = route.service
    if path is None:
        if service is None:
            return ""
        path = uri.upstream_path(
            service.path, ctx.path, ctx.match.matched_len, route.strip_path, route.path_handling
        )
    query = ctx.upstream_query if ctx.upstream_query is not None else ctx.query_string
    if query:
        return path + "?" + query.decode("latin-1")
    if ctx.raw_path.endswith(b"?"):
        return path + "?"
    return path


# -- latencies ---------------------------------------------------------------------------------


class Latencies:
    """Kong's four latencies of one request, integer milliseconds."""

    __slots__ = ("kong", "proxy", "request", "receive")

    def __init__(self, ctx: RequestContext, now: float) -> None:
        # int(x + 0.5) rounds these non-negative durations, cheaper than round()
        started = ctx.started
        self.request = int((now - started) * 1000 + 0.5)
        upstream_started = ctx.upstream_started
        if upstream_started > 0:
            head = upstream_started + ctx.upstream_latency
            self.kong = int((upstream_started - started) * 1000 + 0.5)
            self.proxy = int(ctx.upstream_latency * 1000 + 0.5)
            self.receive = max(0, int((now - head) * 1000 + 0.5))
        else:
            self.kong = self.request
            self.proxy = -1
            self.receive = 0

    def __repr__(self) -> str:
        return (
            f"<Latencies kong={self.kong} proxy={self.proxy} request={self.request} "
            f"receive={self.receive}>"
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "kong": self.kong,
            "proxy": self.proxy,
            "request": self.request,
            "receive": self.receive,
        }


# -- entities ----------------------------------------------------------------------------------


class _Entities:
    """The config entities as Kong's serializer writes them, built once per snapshot."""

    __slots__ = ("routes", "services", "consumers")

    def __init__(self, runtime: Runtime) -> None:
        config = runtime.config
        self.routes: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.consumers: dict[str, dict[str, Any]] = {}
        if config is None:
            return
        for s in config.services:
            self.services[s.id] = entity_row(s)
        for r in config.routes:
            row = entity_row(r)
            if r.service is not None:
                row["service"] = {"id": r.service}
            self.routes[r.id] = row

    def __repr__(self) -> str:
        return f"<_Entities routes={len(self.routes)} services={len(self.services)}>"

    def consumer(self, consumer: Any) -> dict[str, Any]:
        cid = getattr(consumer, "id", None)
        if cid is None:
            return entity_row(consumer)
        row = self.consumers.get(cid)
        if row is None:
            row = self.consumers[cid] = entity_row(consumer)
        return row


def entity_row(entity: Any) -> dict[str, Any]:
    """An entity as Kong's serializer writes it: its fields, those without a value left out."""
    data = entity if isinstance(entity, dict) else msgspec.to_builtins(entity)
    return {k: v for k, v in data.items() if v is not None}


def _entities(runtime: Runtime) -> _Entities:
    return runtime.index("log-serializer:entities", _Entities)


def _tries(ctx: RequestContext, started_ms: int) -> list[dict[str, Any]] | None:
    """Kong's ``balancer_data.tries``. Kong makes that list, empty, once a route matched and
    before any plugin's access phase runs (``balancer_prepare``), so a request a plugin
    answered logs ``"tries": []``; a request no route matched has none (its context's route is
    ``runtime.NO_ROUTE_PLAN``). None also for a proxied request through an upstream's
    balancer, whose tries are not kept."""
    known = getattr(ctx, "tries", None)
    if known is not None:
        return list(known)
    # (A plugin that answers from another endpoint, aws-lambda, sets upstream_started for the
    # latencies without the service being tried: not proxied.)
    if not ctx.route.id:
        return None  # no route, no balancer data: Kong logs no tries
    if not ctx.proxied:
        return []
    service = ctx.route.service
    if service is None or service.balancer is not None:
        return None
    target = ctx.upstream_target  # kong.service.set_target (ai-proxy)
    return [
        {
            "balancer_start": started_ms + round((ctx.upstream_started - ctx.started) * 1000),
            "balancer_latency": 0,
            "ip": service.host if target is None else target[1],
            "port": service.port if target is None else target[2],
        }
    ]


def serialize(ctx: RequestContext, now: float | None = None) -> dict[str, Any]:
    """Kong's ``kong.log.serialize()`` of ``ctx`` (call it in the log phase)."""
    if now is None:
        now = time.monotonic()
    entities = _entities(ctx.runtime)
    started_ms = int(time.time() * 1000 - (now - ctx.started) * 1000)
    sent = response_headers(ctx)
    latencies = Latencies(ctx, now)
    target = request_uri(ctx)
    host = ctx.host or ctx.header("host") or ""
    message: dict[str, Any] = {
        "request": {
            "id": ctx.request_id,
            "uri": target,
            "url": f"{ctx.scheme}://{host}:{ctx.port}{target}",
            "querystring": kong_query(ctx.query_string),
            "method": ctx.method,
            "headers": _header_table(ctx.headers, _REDACT),
            "size": request_size(ctx),
        },
        "upstream_uri": upstream_uri(ctx),
        "upstream_status": str(ctx.status) if ctx.proxied and ctx.upstream_started else "",
        "response": {
            "status": ctx.status,
            "headers": _sent_header_table(sent),
            "size": response_size(ctx, sent),
        },
        "latencies": latencies.as_dict(),
        "client_ip": ctx.client_ip,
        "started_at": started_ms,
        "source": "upstream" if ctx.proxied else "kong",
        "workspace": WORKSPACE_ID,
        "workspace_name": WORKSPACE_NAME,
    }
    tries = _tries(ctx, started_ms)
    if tries is not None:
        message["tries"] = tries
    tls = ctx.scope.get(TLS_INFO_KEY)
    if tls is not None:
        # Kong's build_tls_info (nginx's $ssl_protocol, $ssl_cipher, $ssl_client_verify): the
        # edge asks no client certificate. (Granian's own TLS, ssl_termination granian,
        # tells the app none of this: no ``tls`` then.)
        message["request"]["tls"] = {"version": tls[0], "cipher": tls[1], "client_verify": "NONE"}
    credential = ctx.credential
    consumer = ctx.consumer
    if credential is not None:
        consumer_id = getattr(credential, "consumer", None)
        if isinstance(consumer_id, dict):
            consumer_id = consumer_id.get("id")
        if consumer_id is None and consumer is not None:
            consumer_id = getattr(consumer, "id", None)
        entity = {"id": getattr(credential, "id", None)}
        if consumer_id is not None:  # a credential without consumer (ldap-auth's): Kong omits it
            entity["consumer_id"] = consumer_id
        message["authenticated_entity"] = entity
    route = entities.routes.get(ctx.route.id)
    if route is not None:
        message["route"] = route
    service = ctx.route.service
    if service is not None:
        found = entities.services.get(service.id)
        if found is not None:
            message["service"] = found
    if consumer is not None:
        message["consumer"] = entities.consumer(consumer)
    ai = ctx.plugin_data.get(AI_LOG_KEY)
    if ai is not None:
        message["ai"] = ai
    trace_id = ctx.plugin_data.get("trace_id")  # set by the tracing plugins' propagation
    if trace_id is not None:
        message["trace_id"] = trace_id
    extra = ctx.plugin_data.get(_EXTRA_KEY)
    if extra:
        _apply_extra(message, extra)
    return message


_encoder = msgspec.json.Encoder()


def serialize_json(ctx: RequestContext, now: float | None = None) -> bytes:
    """:func:`serialize` as one JSON document."""
    return _encoder.encode(serialize(ctx, now))


__all__ = [
    "AI_LOG_KEY",
    "entity_row",
    "REDACTED",
    "WORKSPACE_ID",
    "WORKSPACE_NAME",
    "Latencies",
    "kong_query",
    "remember_response_headers",
    "request_size",
    "response_size",
    "serialize",
    "serialize_json",
    "set_serialize_value",
]
