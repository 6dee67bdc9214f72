"""The runtime snapshot: everything the proxy executes, compiled once per config.

``compile_runtime`` turns a validated :class:`~fastkong.config.Config` into an immutable
:class:`Runtime`: the router, one :class:`RoutePlan` per route (indexed by the router's key) and
one :class:`ServicePlan` per service, with every per-request constant (timeouts in seconds,
Host header bytes, balancers) computed here rather than on the request path. A worker swaps one
reference to a new snapshot; a request keeps the snapshot it started with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from fastkong import expressions
from fastkong._core import load
from fastkong._core._router_py import gc_paused
from fastkong._core.routespec import RouteSpec
from fastkong.background import pace
from fastkong.config import vault
from fastkong.expression_router import ExpressionRoute, ExpressionRouter
from fastkong.plugins.chain import PluginSet, build_plugins
from fastkong.proxy.tracing import Instrumentation, instrument
from fastkong.proxy.upstream_tls import NO_VERIFY, PLAIN_VERIFY, TlsProfile
from fastkong.upstreams.balancers import Balancer, Peer, build_balancer

if TYPE_CHECKING:
    from fastkong.plugins.base import Plugin

if TYPE_CHECKING:
    from fastkong._core import _router_py as router_mod
    from fastkong.config import Config
else:
    router_mod = load("router")

T = TypeVar("T")
HTTP_PROTOCOLS = frozenset({"http", "https", "grpc", "grpcs"})
DEFAULT_PORTS = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443}
EMPTY_HASH = "0" * 32
#: Kong's ``router_flavor`` values fastkong implements.
ROUTER_FLAVORS = ("traditional_compatible", "traditional", "expressions")
DEFAULT_ROUTER_FLAVOR = "traditional_compatible"


def check_router_flavor(flavor: str) -> str:
    """``flavor`` if fastkong implements it, else ValueError with the accepted values."""
    if flavor not in ROUTER_FLAVORS:
        raise ValueError(
            f"router_flavor {flavor!r} is not supported; use one of {', '.join(ROUTER_FLAVORS)}"
        )
    return flavor


class ServicePlan:
    """A service as the proxy uses it."""

    __slots__ = (
        "id",
        "name",
        "scheme",
        "tls",
        "host",
        "port",
        "path",
        "retries",
        "connect_timeout",
        "write_timeout",
        "read_timeout",
        "tls_verify",
        "tls_profile",
        "balancer",
        "host_header",
        "upstream_host_header",
        "enabled",
    )

    def __init__(
        self,
        service: Any,
        upstream: Any | None,
        targets: list[Any],
        balancer: Balancer | None = None,
        tls_profile: TlsProfile | None = None,
    ) -> None:
        self.id: str = service.id
        self.name: str | None = service.name
        self.scheme: str = service.protocol
        self.tls = service.protocol in ("https", "grpcs")
        self.host: str = service.host
        self.port: int = service.port
        self.path: str | None = service.path
        self.retries: int = service.retries
        self.connect_timeout = service.connect_timeout / 1000.0
        self.write_timeout = service.write_timeout / 1000.0
        self.read_timeout = service.read_timeout / 1000.0
        self.tls_verify = bool(service.tls_verify)
        #: How TLS connections to this service are made (None for plain HTTP).
        self.tls_profile = tls_profile or (
            (PLAIN_VERIFY if self.tls_verify else NO_VERIFY) if self.tls else None
        )
        self.enabled: bool = service.enabled
        self.balancer: Balancer | None = None
        self.upstream_host_header: str | None = None
        if upstream is not None:
            # One balancer per upstream, shared by its services (fastkong.upstreams).
            self.upstream_host_header = upstream.host_header
            self.balancer = balancer or build_balancer(upstream, targets)
        self.host_header = self.upstream_host_header or host_with_port(
            self.host, self.port, self.scheme
        )

    def __repr__(self) -> str:
        where = repr(self.balancer) if self.balancer is not None else f"{self.host}:{self.port}"
        return f"<ServicePlan {self.name or self.id} {self.scheme}://{where}>"

    def try_target(self, peer: Peer | None) -> tuple[str, int, str]:
        """``(host, port, Host header)`` of one try: the peer's when the service balances over
        an upstream, else the service's own."""
        if peer is None:
            return self.host, self.port, self.host_header
        return peer.host, peer.port, self.peer_host_header(peer)

    def peer_host_header(self, peer: Peer) -> str:
        """The Host header for ``peer`` when the route does not preserve the client's."""
        # Kong (set_host_header): the upstream's host_header, else the target's name, with the
        # peer's port unless it is the scheme's default.
        return host_with_port(self.upstream_host_header or peer.host_header, peer.port, self.scheme)


class RoutePlan:
    """A route as the proxy uses it (the router returns its index)."""

    __slots__ = (
        "id",
        "name",
        "service",
        "strip_path",
        "preserve_host",
        "path_handling",
        "protocols",
        "https_redirect_status_code",
        "request_buffering",
        "response_buffering",
        "plugins",
    )

    def __init__(
        self, route: Any, service: ServicePlan | None, flavor: str = DEFAULT_ROUTER_FLAVOR
    ) -> None:
        self.id: str = route.id
        self.name: str | None = route.name
        self.service = service
        self.strip_path: bool = route.strip_path
        self.preserve_host: bool = route.preserve_host
        # Kong's traditional_compatible router joins every route's upstream path by the v0
        # rule (kong/router/atc.lua, set_upstream_uri); only the traditional flavor reads v1.
        self.path_handling: str = route.path_handling if flavor == "traditional" else "v0"
        self.protocols = frozenset(route.protocols)
        self.https_redirect_status_code: int = route.https_redirect_status_code
        self.request_buffering: bool = route.request_buffering
        self.response_buffering: bool = route.response_buffering
        #: The plugin chain before any consumer is known (set by compile_runtime).
        self.plugins: tuple[Plugin, ...] = ()

    def __repr__(self) -> str:
        return f"<RoutePlan {self.name or self.id} service={self.service!r}>"


def _no_route_plan() -> RoutePlan:
    plan = RoutePlan.__new__(RoutePlan)
    plan.id = ""
    plan.name = None
    plan.service = None
    plan.strip_path = plan.preserve_host = False
    plan.path_handling = "v0"
    plan.protocols = frozenset()
    plan.https_redirect_status_code = 426
    plan.request_buffering = plan.response_buffering = True
    plan.plugins = ()
    return plan


#: The route of an answer no route led to (a 404, nginx's 400 on a bad request head): the
#: request context's ``route`` then, with no service, when the global plugins' response and
#: log phases run for it (Kong runs them: its rewrite phase collected them before the router
#: missed). Only those phases see it; an empty ``id`` names no route.
NO_ROUTE_PLAN: Final = _no_route_plan()


class Runtime:
    """One immutable config snapshot, ready to serve."""

    __slots__ = (
        "hash",
        "version",
        "router",
        "routes",
        "services",
        "config",
        "plugins",
        "consumers",
        "router_key",
        "router_flavor",
        "expression_router",
        "decisions",
        "tracing",
        "request_debug",
        "_indexes",
        "__weakref__",
    )

    def __init__(
        self,
        config: Config | None,
        hash: str,
        router: router_mod.Router,
        routes: list[RoutePlan],
        services: dict[str, ServicePlan],
        version: int = 0,
    ) -> None:
        self.config = config
        self.hash = hash
        self.version = version
        self.router = router
        self.routes = routes
        self.services = services
        self.plugins = PluginSet(())
        self.consumers: dict[str, Any] = (
            {c.id: c for c in config.consumers} if config is not None else {}
        )
        self._indexes: dict[str, Any] = {}
        #: Routing decisions already taken on this snapshot (``fastkong.proxy.routing``).
        self.decisions: dict[tuple[str, str, int, str, str, str | None], Any] = {}
        #: Identifies the inputs of the router (services and routes); equal keys, equal routers.
        self.router_key: str | None = None
        self.router_flavor = DEFAULT_ROUTER_FLAVOR
        #: The routes matched by an ``expression`` (router_flavor = expressions), tried
        #: before ``router``; None when the config has none.
        self.expression_router: ExpressionRouter | None = None
        #: Kong's tracing instrumentations this snapshot records (fastkong.proxy.tracing);
        #: None, the default, when it records nothing beyond the root span.
        self.tracing: Instrumentation | None = None
        #: This snapshot as a debugged request sees it (fastkong.proxy.request_debug), made on
        #: the first such request.
        self.request_debug: Any = None

    def __repr__(self) -> str:
        return (
            f"<Runtime v{self.version} hash={self.hash[:8]} routes={len(self.routes)} "
            f"services={len(self.services)} plugins={len(self.plugins)}>"
        )

    def index(self, name: str, build: Callable[[Runtime], T]) -> T:
        """A lookup table derived from this snapshot's entities, built once on first use
        (e.g. key-auth's key -> credential map), shared by every plugin instance."""
        found = self._indexes.get(name)
        if found is None:
            found = self._indexes[name] = build(self)
        return found


def empty_runtime() -> Runtime:
    """The snapshot of a gateway with no config: every request gets the no-route 404."""
    return Runtime(None, EMPTY_HASH, router_mod.Router([]), [], {})


def tls_profile(
    service: Any,
    upstream: Any | None,
    certificates: dict[str, Any],
    ca_certificates: dict[str, Any],
) -> TlsProfile:
    """Kong's upstream_ssl.lua for ``service``: its client certificate, else its upstream's;
    its CA certificates (ids that name none are skipped, as Kong logs and goes on)."""
    cert_id = service.client_certificate or (upstream.client_certificate if upstream else None)
    cert = certificates.get(str(cert_id)) if cert_id else None
    cas = [
        ca_certificates[str(i)].cert
        for i in service.ca_certificates or ()
        if str(i) in ca_certificates
    ]
    return TlsProfile(
        bool(service.tls_verify),
        cas,
        vault.resolve_fields(cert.cert, True) if cert is not None else None,
        vault.resolve_fields(cert.key, True) if cert is not None else None,
    )


def compile_services(config: Config) -> dict[str, ServicePlan]:
    """Every service of ``config`` as the proxies use it, by id: one balancer per upstream
    (shared by the services naming it), and how TLS services (``https``, ``grpcs``, and the
    stream proxy's ``tls``) are connected to."""
    upstreams = {u.name: u for u in config.upstreams}
    targets_by_upstream: dict[str, list[Any]] = {}
    for t in config.targets:
        targets_by_upstream.setdefault(t.upstream, []).append(t)
    services: dict[str, ServicePlan] = {}
    balancers: dict[str, Balancer] = {}
    certificates = {str(c.id): c for c in config.certificates}
    ca_certificates = {str(c.id): c for c in config.ca_certificates}
    for s in config.services:
        upstream = upstreams.get(s.host)
        targets = targets_by_upstream.get(upstream.id, []) if upstream is not None else []
        balancer = None
        if upstream is not None:
            balancer = balancers.get(upstream.id)
            if balancer is None:
                balancer = balancers[upstream.id] = build_balancer(upstream, targets)
        profile = None
        if s.protocol in ("https", "grpcs", "tls"):
            profile = tls_profile(s, upstream, certificates, ca_certificates)
        services[s.id] = ServicePlan(s, upstream, targets, balancer, profile)
    return services


def compile_runtime(
    config: Config,
    hash: str,
    version: int = 0,
    *,
    previous: Runtime | None = None,
    router_key: str | None = None,
    router_flavor: str = DEFAULT_ROUTER_FLAVOR,
) -> Runtime:
    """Build the runtime snapshot of ``config`` (pure; runs off the request path).

    ``router_flavor`` is Kong's setting of that name (:data:`ROUTER_FLAVORS`): the 3.x default
    ``traditional_compatible`` breaks priority ties by route id and joins every upstream path by
    the v0 rule; ``traditional`` breaks ties by config order and honours ``path_handling: v1``.

    When ``router_key`` (a digest of the services and routes) equals ``previous.router_key`` the
    previous router is reused: a reload that only changes targets, plugins or consumers (the
    common case under Kubernetes, where pods come and go) does not rebuild the router.
    """
    # The build allocates many long-lived, acyclic objects: cyclic collections during it find
    # nothing and cost about as much as the build.
    # References to named vaults (the config's ``vaults``) resolve while its plugins are built.
    with gc_paused(), vault.named_vaults(vault.vaults_by_prefix(config.vaults)):
        return _compile(config, hash, version, previous, router_key, router_flavor)


def _compile(
    config: Config,
    hash: str,
    version: int,
    previous: Runtime | None,
    router_key: str | None,
    flavor: str,
) -> Runtime:
    """The body of :func:`compile_runtime`."""
    services = compile_services(config)
    specs: list[RouteSpec] = []
    routes: list[RoutePlan] = []
    by_expression: list[ExpressionRoute] = []
    # Under the expressions flavor the routes without an expression are ranked as
    # traditional_compatible ranks them (Kong's transform.lua compiles them the same way).
    traditional = "traditional_compatible" if flavor == "expressions" else flavor
    for r in config.routes:
        pace()
        if not HTTP_PROTOCOLS.intersection(r.protocols):
            continue  # stream routes (tcp, tls, udp) are not served by the HTTP proxy
        service = services.get(r.service) if r.service else None
        if service is not None and not service.enabled:
            continue  # Kong leaves routes of a disabled service out of the router
        if flavor == "expressions" and isinstance(r.expression, str):
            node = expressions.parse(expressions.route_expression(r.expression, r.protocols))
            priority = r.priority if isinstance(r.priority, int) else 0
            by_expression.append(ExpressionRoute(len(routes), node, priority, r.id))
        else:
            specs.append(route_spec(len(routes), r, traditional))
        routes.append(RoutePlan(r, service, traditional))
    if (
        router_key is not None
        and previous is not None
        and previous.router_key == router_key
        and previous.router_flavor == flavor
    ):
        router = previous.router
    else:
        # The config was validated (every regex compiled once by the loader): the worker's
        # router compiles each regex path at its first use, so a reload stays short.
        router = router_mod.Router(specs, lazy_regex=True)
    runtime = Runtime(config, hash, router, routes, services, version)
    runtime.router_key = router_key
    runtime.router_flavor = flavor
    if by_expression:
        runtime.expression_router = ExpressionRouter(by_expression)
    runtime.plugins = build_plugins(config.plugins, runtime)
    if len(runtime.plugins):
        for plan in routes:
            plan.plugins = runtime.plugins.chain(plan.id, plan.service.id if plan.service else None)
        runtime.tracing = instrument(runtime)
    return runtime


def route_spec(key: int, route: Any, flavor: str = DEFAULT_ROUTER_FLAVOR) -> RouteSpec:
    headers = route.headers or {}
    return RouteSpec(
        key=key,
        hosts=tuple(h.lower() for h in route.hosts or ()),
        paths=tuple(route.paths or ()),
        methods=tuple(m.upper() for m in route.methods or ()),
        headers=tuple((name.lower(), tuple(values)) for name, values in headers.items()),
        snis=tuple(s.lower() for s in route.snis or ()),
        regex_priority=route.regex_priority,
        # Equal priorities: Kong's ATC router tries the larger route id first; the traditional
        # router keeps its sorted order, which for a declarative config is the config's.
        id=route.id if flavor == "traditional_compatible" else None,
    )


def split_target(target: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` -> (host, port); the config layer filled the default port."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 8000
    host, sep, port = target.rpartition(":")
    if not sep:
        return target, 8000
    return host, int(port)


def host_with_port(host: str, port: int, scheme: str) -> str:
    """Kong's upstream Host: the bare host on the scheme's default port, else ``host:port``."""
    if DEFAULT_PORTS.get(scheme) == port:
        return host
    return f"{host}:{port}"
