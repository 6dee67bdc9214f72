"""The routing decision for one request, shared by the proxy and ``fastkong config explain``.

Sans-I/O: takes the request line and headers, returns what the proxy must do. Keeping it in one
function is what makes ``explain`` agree with the proxy by construction.

Decisions are cached per config snapshot, as Kong's router caches its match results (an LRU of
5,000 entries keyed by the request's routing inputs): a decision depends only on the snapshot and
on ``(method, host header, port, raw path, scheme)`` when the router tests no header, so a repeat
of the same request skips path normalization, the match and the upstream-path computation. The
cache is bounded (oldest entry out first, keys of at most ``DECISION_CACHE_KEY_LIMIT`` bytes),
lives and dies with its snapshot, and is skipped when the snapshot routes on headers (their
values would have to join the key).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from fastkong._core import load
from fastkong.expressions import Facts
from fastkong.runtime import RoutePlan, Runtime

if TYPE_CHECKING:
    from fastkong._core import _uri_py as uri
    from fastkong._core._router_py import RouteMatch
else:
    uri = load("uri")

BAD_PATH = 400
NO_ROUTE = 404
#: nginx's ``$host`` for a request without a Host header (HTTP/1.0, or HTTP/2 without
#: ``:authority``) is the server's ``server_name``, which Kong's template sets to ``kong``: Kong's
#: X-Forwarded-Host, https redirects and ``kong.request.get_host()`` then say ``kong``.
SERVER_NAME = "kong"
#: Entries kept per snapshot (Kong's router keeps 5,000 match results).
DECISION_CACHE_SIZE = 5000
#: Requests whose path and Host are longer than this together are not cached: a full cache of
#: long keys would hold megabytes (and a long path is rarely asked for twice).
DECISION_CACHE_KEY_LIMIT = 512


class RequestFacts:
    """What an ``expression`` route may read of a request besides the routing inputs."""

    __slots__ = ("headers", "query", "client", "server_ip")

    def __init__(
        self,
        headers: Callable[[], Mapping[str, Sequence[str]]] | None,
        query: bytes,
        client: tuple[str, int] | None,
        server_ip: str | None,
    ) -> None:
        #: Called at most once, when an expression reads a header: name -> values as sent.
        self.headers = headers
        self.query = query
        self.client = client
        self.server_ip = server_ip


def request_facts(
    headers: Sequence[tuple[bytes, bytes]],
    query: bytes,
    client: tuple[str, int] | None,
    server_ip: str | None,
) -> RequestFacts:
    """:class:`RequestFacts` of a request's raw header list (ASGI's), read on first use.

    ``client`` is nginx's ``$remote_addr`` (after ``trusted_ips`` and the real-IP header,
    which is what Kong's ``net.src.ip`` is) with the peer's port.
    """

    def by_name() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name, value in headers:
            found.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        return found

    return RequestFacts(by_name, query, client, server_ip)


class Decision:
    """A matched route: the plan, the router's match and the upstream path (no query)."""

    __slots__ = ("plan", "match", "path", "host", "upstream_path")

    def __init__(
        self,
        plan: RoutePlan,
        match: RouteMatch,
        path: str,
        host: str,
        upstream_path: str | None,
    ) -> None:
        self.plan = plan
        self.match = match
        self.path = path
        self.host = host
        self.upstream_path = upstream_path

    def __repr__(self) -> str:
        route = self.plan.name or self.plan.id
        return f"<Decision route={route} upstream_path={self.upstream_path!r}>"


def decide(
    runtime: Runtime,
    method: str,
    host_header: str,
    port: int,
    raw_path: str,
    scheme: str,
    headers: Mapping[str, Sequence[str]] | None,
    sni: str | None = "",
    request: RequestFacts | None = None,
) -> Decision | int:
    """Route one request; returns a :class:`Decision`, or ``BAD_PATH`` / ``NO_ROUTE``.

    ``port`` is the listener's port (used when the Host header carries none).

    ``raw_path`` is the request target's path as sent (percent-encoded, decoded as latin-1 so
    that bytes survive); ``headers`` holds the lower-cased values of the headers the router
    tests (``runtime.router.header_names``), or None when it tests none.

    ``sni`` is the TLS server name of an ``https`` request: the client's (None when it sent
    none) when the edge terminated its TLS (proxy/edge.py); ``""`` when it is not known
    (Granian's TLS exposes none), and then the Host stands in for it.

    ``request`` holds what routes with an ``expression`` may read beyond those (headers as
    sent, query, addresses): given when ``runtime.expression_router.needs_request``.
    """
    cache = None
    expression_router = runtime.expression_router
    if (
        headers is None
        and (expression_router is None or not expression_router.needs_request)
        and len(raw_path) + len(host_header) <= DECISION_CACHE_KEY_LIMIT
    ):
        key = (method, host_header, port, raw_path, scheme, sni)
        cache = runtime.decisions
        found: Decision | int | None = cache.get(key)
        if found is not None:
            return found

    result: Decision | int = BAD_PATH
    # nginx takes only origin-form targets here (``OPTIONS *`` is its 400).
    path = uri.normalize_path(raw_path) if raw_path.startswith("/") else None
    if path is not None:
        host = strip_port(host_header).lower()
        route_host = host
        if ":" in host_header:
            # Kong splits the Host header at its first ':' and takes the rest as the port if it
            # is a number (transform.lua split_host_port); if not (an IPv6 literal, an empty
            # port) it routes on the whole header, with the listener's port. `host:port` route
            # hosts compare with that port.
            _, _, given = host_header.partition(":")
            if given.isascii() and given.isdigit():
                port = int(given)
            else:
                route_host = host_header.lower()
        if scheme != "https":
            sni = None  # the router ignores ``snis`` on plain HTTP
        elif sni == "":
            sni = host  # Granian does not expose the TLS server name: the Host stands in
        elif sni is None:
            sni = ""  # TLS without a server name: no ``snis`` route matches (Kong's is unset)
        match: RouteMatch | None = None
        if expression_router is not None:
            facts = Facts(
                method,
                strip_port(host_header),
                path,
                scheme,
                sni or None,
                port,
                headers=request.headers if request is not None else None,
                query=request.query if request is not None else b"",
                src=request.client if request is not None else None,
                dst_ip=request.server_ip if request is not None else None,
            )
            match = expression_router.match(facts)
        if match is None:
            match = runtime.router.match(method, route_host, port, path, headers, sni)
        if match is None:
            result = NO_ROUTE
        else:
            plan = runtime.routes[match.key]
            service = plan.service
            upstream_path = None
            if service is not None:
                upstream_path = uri.upstream_path(
                    service.path, path, match.matched_len, plan.strip_path, plan.path_handling
                )
            result = Decision(plan, match, path, host or SERVER_NAME, upstream_path)

    if cache is not None:
        if len(cache) >= DECISION_CACHE_SIZE:
            del cache[next(iter(cache))]
        cache[key] = result
    return result


def strip_port(host: str) -> str:
    """``example.com:8000`` -> ``example.com``; ``[::1]:8000`` -> ``[::1]``."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.partition(":")[0]
