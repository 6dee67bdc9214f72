"""azure-functions: the request is answered by an Azure Function, called over HTTP(S)
(``kong:kong/plugins/azure-functions``, Kong 3.9).

Priority 749, access phase: the plugin makes the call itself and answers the client with the
function's response, so the route's service (a route needs none) is never contacted.

The call, as Kong's handler makes it through lua-resty-http's ``request_uri``:

- to ``{appname}.{hostdomain}``, port 443 over TLS (80 with ``https: false``). Kong builds the
  URL ``https://{appname}.{hostdomain}:443`` and its HTTP client parses it, so a port at the end
  of ``hostdomain`` (``example.test:8443``) is the port connected to, and ``Host`` then names it;
  fastkong reads ``hostdomain`` the same way. The name is looked up through fastkong's DNS cache
  (:mod:`fastkong.upstreams.dns`, Kong's ``dns_*`` settings), as Kong's client goes through
  Kong's DNS client.
- path ``/{routeprefix}/{functionname}``, each stripped of leading and trailing slashes, without
  the ``routeprefix`` part when nothing is left of it. The request's own path plays no part
  (Kong 3.6 stopped appending it).
- the request's method, query string, body and headers, ``Host`` excepted, with
  ``x-functions-key`` set to ``apikey`` and ``x-functions-clientid`` to ``clientid``: a client's
  own values of these two never go through, whether the plugin sets them or not. What plugins
  that ran before this one did to the request (request-transformer, key-auth's consumer headers
  and hidden credentials, ...) is what is sent, since Kong's handler reads the request after
  them.
- ``https_verify``: the function's certificate must chain to the node's trusted roots (Kong's
  ``lua_ssl_trusted_certificate``) and name the host; off by default, as in Kong.
- ``timeout`` bounds connecting and each read (milliseconds); ``keepalive`` is how long an idle
  connection stays pooled for the next call (milliseconds; 0: no limit, as in OpenResty).

The answer is the function's status, headers and body, the body read whole first (as Kong reads
it). The function's ``Server`` gives way to the gateway's, ``Content-Length`` is the gateway's
own (``Transfer-Encoding`` and the other hop-by-hop headers end here), and when the node's
``headers`` setting shows ``Via``, the gateway's token follows the function's ``Via`` values.
Any failure (a name that does not resolve, a refused connection or TLS handshake, a timeout, a
broken response) is Kong's ``500 {"message":"An unexpected error occurred"}``, made with
``kong.response.exit`` as Kong makes it (JSON, no request id), and its cause is logged.

Where fastkong departs from Kong, it is where Kong's behaviour is an accident of how it is built
(docs/plugins.md lists them): the client's hop-by-hop headers and its ``Content-Length`` are not
forwarded (the length sent is the body's); a body above ``client_body_buffer_size`` is sent
(Kong sends none, yet forwards the client's length); the query string goes as the client sent
it (Kong re-encodes its parsed arguments and always ends the path with ``?``); ``Via`` says the
hop the function's response came over, ``1.1`` (Kong says ``2`` whatever the protocol); a path
character a request line cannot carry is percent-encoded; and a kept-alive connection the
function had closed is retried on a new one for an idempotent method, as the proxy does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import quote

import msgspec

from fastkong import __version__
from fastkong._core._h1_py import RESPONSE_HOP_BY_HOP
from fastkong.config.schema import REFERENCEABLE
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_exit
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin
from fastkong.plugins.runner import apply_header_edits
from fastkong.proxy.kong_headers import DEFAULT_HEADERS, HeaderSettings
from fastkong.proxy.upstream import (
    VIA,
    ConnectionPool,
    PoolKey,
    UpstreamConnection,
    UpstreamError,
    found_stale,
)
from fastkong.proxy.upstream_tls import NO_VERIFY, PLAIN_VERIFY, TlsProfile
from fastkong.upstreams.dns import DnsSettings, Resolver, dns_settings

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.azure-functions")

#: Kong's answer to every failed call (``kong.response.exit``, so JSON without a request id).
FAILED: Final = kong_exit(500, "An unexpected error occurred")

#: lua-resty-http's URL pattern (``parse_uri``): the host ends at the first ``:``, ``/`` or
#: ``?``, and the digits after a ``:`` there are the port. Kong's handler always appends
#: ``:443`` (or ``:80``), which a port already in ``hostdomain`` wins over.
_URL: Final = re.compile(r"(https?)://((?:[^\[\]:/?]+)|(?:\[.+\]))(?::(\d+))?")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: Characters a request line's path carries as they are: RFC 3986 ``pchar`` and ``/``, and ``%``
#: so that a name already percent-encoded stays as written.
_PATH_SAFE: Final = "/:@!$&'()*+,;=%"
#: Client request headers that are not forwarded: ``Host`` (Kong's handler drops it), the
#: hop-by-hop ones of the client's connection (RFC 9110 7.6.1), ``Expect`` (answered by the
#: gateway), ``Proxy`` (httpoxy) and the framing, which is the gateway's for the body it sends.
_NOT_FORWARDED: Final = RESPONSE_HOP_BY_HOP | frozenset(
    {b"host", b"expect", b"proxy", b"content-length"}
)
_KEY: Final = b"x-functions-key"
_CLIENT_ID: Final = b"x-functions-clientid"
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: lua-resty-http names itself when the request has no User-Agent; the gateway does too.
_USER_AGENT: Final = b"user-agent: fastkong/" + __version__.encode() + b"\r\n"
#: Response headers the gateway writes itself on an answer of its own (``Server``: Kong sets or
#: clears it on every response a plugin makes; the framing is that of the body sent).
_NOT_RETURNED: Final = frozenset({b"server", b"content-length", b"transfer-encoding"})
#: Idle connections kept per function host and worker: OpenResty's ``lua_socket_pool_size``.
_POOL_SIZE: Final = 30


class AzureFunctionsConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    timeout: float = 600000
    keepalive: float = 60000
    https: bool = True
    https_verify: bool = False
    apikey: Annotated[str, REFERENCEABLE] | None = None
    clientid: Annotated[str, REFERENCEABLE] | None = None
    appname: str
    hostdomain: Annotated[str, REQUIRED] = "azurewebsites.net"
    routeprefix: str = "api"
    functionname: str


def function_path(routeprefix: str | None, functionname: str) -> str:
    """Kong's path: ``/{routeprefix}/{functionname}``, both without their outer slashes."""
    prefix = (routeprefix or "").strip("/")
    path = f"/{prefix}" if prefix else ""
    return f"{path}/{functionname.strip('/')}"


class Target:
    """Where the function is, as Kong's HTTP client reads the URL the handler builds: the host
    name (looked up, and the TLS server name), the port, the ``Host`` header, the TLS profile,
    or why the URL is unusable (then every call fails, as in Kong)."""

    __slots__ = ("host", "port", "host_header", "tls", "error")

    def __init__(self, scheme: str, authority: str, tls: TlsProfile | None) -> None:
        self.tls = tls
        self.error: str | None = None
        self.host = ""
        self.port = _DEFAULT_PORTS[scheme]
        self.host_header = b""
        url = f"{scheme}://{authority}:{self.port}"
        match = _URL.match(url)
        if match is None:
            self.error = f"bad uri: {url}"
            return
        self.host = match.group(2)
        if match.group(3) is not None:
            self.port = int(match.group(3))
        if not 0 < self.port < 65536:
            self.error = f"bad port {self.port} in {url}"
            return
        try:
            host = self.host.encode("ascii") if self.host.isascii() else self.host.encode("idna")
        except UnicodeError:
            self.error = f"bad host name in {url}"
            return
        if self.port != _DEFAULT_PORTS[scheme]:
            host += b":%d" % self.port  # lua-resty-http names a port that is not the default
        self.host_header = host

    def __repr__(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"<Target {scheme}://{self.host}:{self.port}>"

    @property
    def key(self) -> PoolKey:
        return (self.host, self.port, None if self.tls is None else (self.host, self.tls))


def _dns() -> DnsSettings:
    try:
        return dns_settings(os.environ)
    except ValueError:  # refused by ``fastkong start`` already; a plugin outside a node
        return DnsSettings()


@functools.cache
def via_shown() -> bool:
    """Whether the node's ``headers`` setting shows ``Via`` (Kong reads
    ``kong.configuration.enabled_headers``; a worker has the setting in its environment)."""
    try:
        settings = HeaderSettings.parse(os.environ.get("FASTKONG_HEADERS") or DEFAULT_HEADERS)
    except ValueError:
        return True
    return "via" in settings.names


class _Clients:
    """Per event loop (a worker's): the name cache and the keep-alive pools, one per
    ``keepalive`` setting, each swept when its idle connections have outlived it."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.resolver = Resolver()
        self.pools: dict[float, ConnectionPool] = {}
        self.sweeps: set[ConnectionPool] = set()

    def get(self, keepalive_ms: float) -> tuple[Resolver, ConnectionPool]:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.pools, self.sweeps = loop, {}, set()
            self.resolver = Resolver(loop, _dns())
        pool = self.pools.get(keepalive_ms)
        if pool is None:
            pool = self.pools[keepalive_ms] = ConnectionPool(
                loop, max_idle=_POOL_SIZE, idle_timeout=max(keepalive_ms, 0) / 1000
            )
        return self.resolver, pool

    def release(self, pool: ConnectionPool, conn: UpstreamConnection) -> None:
        pool.release(conn)
        if pool.idle_timeout and pool.idle and pool not in self.sweeps:
            # One timer per pool at a time (not per connection): an idle connection is closed
            # at most one idle timeout late, without a task to stop at shutdown.
            self.sweeps.add(pool)
            pool.loop.call_later(pool.idle_timeout, self._sweep, pool)

    def _sweep(self, pool: ConnectionPool) -> None:
        self.sweeps.discard(pool)
        pool.sweep()
        if pool.idle and pool.loop is self.loop:
            self.sweeps.add(pool)
            pool.loop.call_later(pool.idle_timeout, self._sweep, pool)


_CLIENTS: Final = _Clients()


class Answer(msgspec.Struct, frozen=True):
    """The function's response: status, end-to-end headers, ``Via`` and whole body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    #: The function's Via values followed by the gateway's token (just the token when it
    #: sent none), as the proxy writes it.
    via: bytes
    body: bytes


async def call(
    target: Target,
    request: bytes,
    no_body: bool,
    idempotent: bool,
    timeout: float,
    keepalive_ms: float,
) -> Answer:
    """Send ``request`` to ``target`` and read the whole response. ``timeout`` (seconds) bounds
    connecting and each read. Raises :class:`UpstreamError`, or OSError when the name does not
    resolve."""
    resolver, pool = _CLIENTS.get(keepalive_ms)
    key = target.key
    for attempt in range(2):
        conn: UpstreamConnection | None = pool.take_idle(key) if attempt == 0 else None
        reused = conn is not None
        try:
            if conn is None:
                address = (await resolver.resolve(target.host))[0]
                conn = await pool.connect(key, address, timeout)
            conn.start(request, no_body)
            await conn.read_head(timeout)
            parts = []
            while (chunk := await conn.read_body(timeout)) is not None:
                parts.append(chunk)
        except UpstreamError as exc:
            # A kept-alive connection the function closed before this request: one new try, for
            # a method that may be sent twice (the proxy's rule).
            stale = found_stale(conn, reused, exc)
            if conn is not None:
                conn.close()
            if stale and idempotent:
                continue
            raise
        except BaseException:
            # Cancelled (the client went away) mid-exchange: the connection is in an unknown
            # state, neither pooled nor left open.
            if conn is not None:
                conn.close()
            raise
        answer = Answer(conn.status, conn.headers, conn.via_header, b"".join(parts))
        _CLIENTS.release(pool, conn)
        return answer
    raise UpstreamError("no connection")  # pragma: no cover - the loop returns or raises


@register_plugin
class AzureFunctions(Plugin):
    name = "azure-functions"
    priority = 749
    allowed_protocols = ALL_PROTOCOLS
    Config = AzureFunctionsConfig

    def __init__(self, config: AzureFunctionsConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        scheme = "https" if config.https else "http"
        tls = (PLAIN_VERIFY if config.https_verify else NO_VERIFY) if config.https else None
        self.target = Target(scheme, f"{config.appname}.{config.hostdomain}", tls)
        path = function_path(config.routeprefix, config.functionname)
        self.path = quote(path, safe=_PATH_SAFE).encode("ascii")
        self.timeout = config.timeout / 1000
        self.keepalive = config.keepalive
        #: The plugin's own header lines, after the request's.
        self.own = b"".join(
            name + b": " + value.encode() + b"\r\n"
            for name, value in ((_KEY, config.apikey), (_CLIENT_ID, config.clientid))
            if value is not None
        )
        label = f"azure-functions plugin {self.id}"
        instance_name = getattr(entity, "instance_name", None)
        if instance_name:
            label += f" ({instance_name})"
        self.label = label

    def __repr__(self) -> str:  # no apikey, no clientid
        return f"<AzureFunctions priority={self.priority} id={self.id} target={self.target!r}>"

    def request_head(self, ctx: RequestContext, length: int) -> bytes:
        """The request line and headers sent to the function for a body of ``length`` bytes."""
        method = (ctx.upstream_method or ctx.method).encode("latin-1")
        query = ctx.upstream_query if ctx.upstream_query is not None else ctx.query_string
        target = self.path + b"?" + query if query else self.path
        headers: list[tuple[bytes, bytes]] = ctx.scope["headers"]
        dropped = _NOT_FORWARDED
        for name, value in headers:
            if name == b"connection":
                # The headers the client's Connection names belong to its hop too.
                dropped = dropped | {t.strip().lower() for t in value.split(b",")}
        lines = [name + b": " + value + b"\r\n" for name, value in headers if name not in dropped]
        if ctx.upstream_set or ctx.upstream_remove:
            lines = apply_header_edits(ctx, lines)
        kept: list[bytes] = []
        agent = False
        for line in lines:
            name = line[: line.find(b":")]
            if name == _KEY or name == _CLIENT_ID or name in _NOT_FORWARDED:
                continue  # the plugin's own, or the gateway's framing (a plugin may set one)
            agent = agent or name == b"user-agent"
            kept.append(line)
        return b"".join(
            (
                method,
                b" ",
                target,
                b" HTTP/1.1\r\nhost: ",
                self.target.host_header,
                b"\r\n",
                *kept,
                self.own,
                b"" if agent else _USER_AGENT,
                b"content-length: %d\r\n\r\n" % length,
            )
        )

    async def access(self, ctx: RequestContext) -> Exit:
        target = self.target
        if target.error is not None:
            log.error("[%s] %s", self.label, target.error)
            return FAILED
        body = await ctx.read_body()
        method = ctx.upstream_method or ctx.method
        try:
            answer = await call(
                target,
                self.request_head(ctx, len(body)) + body,
                method == "HEAD",
                method in _IDEMPOTENT,
                self.timeout,
                self.keepalive,
            )
        except (UpstreamError, OSError) as exc:  # OSError: the name did not resolve
            log.error("[%s] request to %s:%d failed: %s", self.label, target.host, target.port, exc)
            return FAILED
        status = answer.status
        if status > 599:
            # Kong's ``kong.response.exit`` refuses a status past 599 (the plugin then fails).
            log.error("[%s] the function answered an invalid status %d", self.label, status)
            return FAILED
        headers = [
            (name.lower(), value)
            for name, value in answer.headers
            if name.lower() not in _NOT_RETURNED
        ]
        via = answer.via
        if via_shown():
            headers.append((b"via", via))
        elif via is not VIA:
            headers.append((b"via", via[: -len(VIA) - 2]))  # the function's own, unchanged
        return Exit(status, answer.body, headers)
