"""http-log: every request's log entry POSTed to a log server (``kong:kong/plugins/http-log``).

Priority 12. The log phase serializes the request (Kong's basic serializer,
:mod:`._serializer`) and puts the JSON on the worker's queue for this log server
(:mod:`._queue`); a background task sends batches with retries. A request never waits for the
log server: a dead or slow endpoint costs queued memory (bounded by ``queue.max_entries``), not
latency.

A batch is one JSON object when ``queue.max_batch_size`` is 1, else a JSON array, sent with
``method``, ``content_type``, ``Content-Length``, ``Authorization: Basic`` built from the
endpoint's user info, and ``headers`` (which may not name Host, Content-Length or
Content-Type). ``timeout`` bounds connecting and each read, ``keepalive`` is how long an idle
connection to the log server is kept. The deprecated ``queue_size``, ``flush_timeout`` and
``retry_count`` are mapped as Kong maps them (``Queue.get_plugin_params``).

Secrets: the endpoint's user info and the ``headers`` values are sent to the log server only;
the gateway's own log lines name the plugin instance and the server's ``host:port``, never the
URL or the header values.

``custom_fields_by_lua`` is refused: fastkong runs no Lua, and silently dropping fields a user
asked for would be worse than saying so at config load.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import Meta

from fastkong import __version__
from fastkong.config.schema import REFERENCEABLE, Url
from fastkong.plugins.bundled import _queue
from fastkong.plugins.bundled._serializer import (
    LogPlugin,
    LuaCode,
    serialize_json,
)
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin
from fastkong.proxy.upstream import (
    ConnectionPool,
    PoolKey,
    UpstreamConnectError,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
    found_stale,
)
from fastkong.proxy.upstream_tls import NO_VERIFY, TlsProfile

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.http-log")

ERR_USERINFO_AND_AUTHORIZATION: Final = (
    "specifying both an 'Authorization' header and user info in 'http_endpoint' is not allowed"
)
_FORBIDDEN_HEADERS: Final = {
    "host": "cannot contain 'Host' header",
    "content-length": "cannot contain 'Content-Length' header",
    "content-type": "cannot contain 'Content-Type' header",
}
_HEADER_NAME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: How much of an error response body goes into the gateway's log line.
_ERROR_BODY_LIMIT: Final = 512
_USER_AGENT: Final = f"fastkong/{__version__}".encode()


def check_header_name(name: str) -> str | None:
    """Kong's ``typedefs.header_name`` plus http-log's forbidden names."""
    if not set(name) <= _HEADER_NAME_CHARS:
        return f"bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    return _FORBIDDEN_HEADERS.get(name.lower())


LogHeaderName = Annotated[str, Meta(extra={"kong_check": check_header_name})]


class HttpLogConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    http_endpoint: Annotated[Url, REFERENCEABLE]
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    content_type: Literal["application/json", "application/json; charset=utf-8"] = (
        "application/json"
    )
    timeout: float = 10000
    keepalive: float = 60000
    retry_count: int | None = None
    queue_size: int | None = None
    flush_timeout: float | None = None
    headers: dict[LogHeaderName, Annotated[str, REFERENCEABLE]] | None = None
    queue: _queue.QueueConfig = msgspec.field(default_factory=_queue.QueueConfig)
    custom_fields_by_lua: LuaCode | None = None


class Endpoint:
    """The log server, parsed once per config: where to connect and the fixed request head."""

    __slots__ = ("scheme", "host", "port", "tls", "target", "head")

    def __init__(self, config: HttpLogConfig) -> None:
        parts = urlsplit(config.http_endpoint)
        self.scheme = parts.scheme.lower()
        self.host = parts.hostname or ""
        self.port = parts.port or _DEFAULT_PORTS.get(self.scheme, 80)
        self.tls = self.scheme == "https"
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = self.host.encode("ascii") if self.host.isascii() else self.host.encode("idna")
        if b":" in host:
            host = b"[" + host + b"]"
        if self.port != _DEFAULT_PORTS.get(self.scheme):
            host += b":%d" % self.port
        lines = [
            f"{config.method} {self.target} HTTP/1.1".encode("latin-1"),
            b"Host: " + host,
            b"User-Agent: " + _USER_AGENT,
            b"Content-Type: " + config.content_type.encode(),
        ]
        if parts.username is not None or parts.password is not None:
            userinfo = unquote(parts.username or "") + ":" + unquote(parts.password or "")
            lines.append(b"Authorization: Basic " + base64.b64encode(userinfo.encode()))
        for name, value in (config.headers or {}).items():
            lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
        self.head = b"\r\n".join(lines) + b"\r\n"

    def __repr__(self) -> str:  # no user info, no header values
        return f"<Endpoint {self.scheme}://{self.host}:{self.port}>"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class _Pools:
    """Keep-alive connections to log servers, per event loop and keepalive setting."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pools: dict[float, ConnectionPool] = {}

    def get(self, keepalive_ms: float) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.pools = loop, {}
        pool = self.pools.get(keepalive_ms)
        if pool is None:
            pool = self.pools[keepalive_ms] = ConnectionPool(
                loop, max_idle=8, idle_timeout=keepalive_ms / 1000
            )
        return pool


_POOLS: Final = _Pools()


async def send(
    endpoint: Endpoint,
    body: bytes,
    timeout: float,
    keepalive_ms: float,
    connect_timeout: float | None = None,
    tls: TlsProfile = NO_VERIFY,
) -> tuple[int, bytes]:
    """POST ``body`` to ``endpoint``; ``(status, start of the response body)``.

    ``timeout`` bounds each read, and connecting unless ``connect_timeout`` is given; ``tls``
    is how an ``https`` endpoint is met (http-log's: not verified, as before the TLS profiles).
    Raises :class:`UpstreamError` when the exchange fails.
    """
    pool = _POOLS.get(keepalive_ms)
    key: PoolKey = (
        endpoint.host,
        endpoint.port,
        (endpoint.host, tls) if endpoint.tls else None,
    )
    request = endpoint.head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    for attempt in range(2):
        conn: UpstreamConnection | None = pool.take_idle(key) if attempt == 0 else None
        reused = conn is not None
        try:
            if conn is None:
                conn = await pool.connect(key, endpoint.host, connect_timeout or timeout)
            conn.start(request, False)
            await conn.read_head(timeout)
            kept = b""
            while (chunk := await conn.read_body(timeout)) is not None:
                if len(kept) < _ERROR_BODY_LIMIT:
                    kept += chunk
        except UpstreamError as exc:
            stale = found_stale(conn, reused, exc)
            if conn is not None:
                conn.close()
            if stale:
                continue  # a kept-alive socket the server had closed: one fresh try
            raise
        pool.release(conn)
        return conn.status, kept[:_ERROR_BODY_LIMIT]
    raise UpstreamError("no connection")  # pragma: no cover - the loop always returns or raises


@register_plugin
class HttpLog(LogPlugin):
    name = "http-log"
    priority = 12
    allowed_protocols = ALL_PROTOCOLS
    Config = HttpLogConfig

    def __init__(self, config: HttpLogConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.endpoint = Endpoint(config)
        self.timeout = config.timeout / 1000
        self.keepalive = config.keepalive
        label = f"http-log plugin {self.id}"
        instance_name = getattr(entity, "instance_name", None)
        if instance_name:
            label += f" ({instance_name})"
        # Kong's queue name: instances with the same legacy parameters share a queue.
        name = ":".join(
            str(x)
            for x in (
                config.http_endpoint,
                config.method,
                config.content_type,
                config.timeout,
                config.keepalive,
                config.retry_count,
            )
        )
        params = _queue.QueueParams.from_config(config.queue, name, label)
        if config.retry_count is not None and config.retry_count != 10:
            log.warning(
                "[%s] the retry_count parameter no longer works, please update your "
                "configuration to use initial_retry_delay and max_retry_time instead",
                label,
            )
        self.params = params.with_deprecated(
            label, "queue_size", config.queue_size, 1, "max_batch_size"
        ).with_deprecated(label, "flush_timeout", config.flush_timeout, 2, "max_coalescing_delay")

    def __repr__(self) -> str:
        return f"<HttpLog priority={self.priority} id={self.id} endpoint={self.endpoint!r}>"

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        parts = urlsplit(config.http_endpoint)
        if parts.username is not None and any(
            name.lower() == "authorization" for name in config.headers or ()
        ):
            return [(".", ERR_USERINFO_AND_AUTHORIZATION)]  # "." is the config record itself
        return []

    def log(self, ctx: RequestContext) -> None:
        self.write(serialize_json(ctx), ctx.status)

    def write(self, message: bytes, status: int = 200) -> None:
        """Log one serialized message (a request's, or a stream session's) of ``status``."""
        error = _queue.enqueue(self.params, self.deliver, message)
        if error is not None:
            log.error(
                "[%s] Failed to enqueue log entry to log server: %s", self.params.label, error
            )

    async def deliver(self, entries: list[bytes]) -> str | None:
        """The queue's handler: send one batch; None, or what went wrong."""
        if self.params.max_batch_size == 1 and len(entries) == 1:
            body = entries[0]
        else:
            body = b"[" + b",".join(entries) + b"]"
        endpoint = self.endpoint
        if endpoint.scheme not in _DEFAULT_PORTS:
            return f"unsupported scheme '{endpoint.scheme}' in http_endpoint"
        try:
            status, text = await send(endpoint, body, self.timeout, self.keepalive)
        except UpstreamTimeout:
            return f"failed request to {endpoint.address}: timeout"
        except UpstreamConnectError as exc:  # (lua-resty-http's words: "connection refused")
            return f"failed request to {endpoint.address}: {exc.reason}"
        except UpstreamError as exc:
            return f"failed request to {endpoint.address}: {exc}"
        if status < 300:
            return None
        return (
            f"request to {endpoint.address} returned status code {status} and body "
            f"{text.decode('utf-8', 'replace')}"
        )
