"""One config snapshot as the stream proxy uses it: routes, services, guards and certificates.

Built off the event loop from a decoded config (the same state file the HTTP workers follow);
a connection keeps the snapshot it was routed with until it closes, as nginx keeps a session's
upstream across reloads.

**Plugins.** Kong runs a plugin on stream routes when its ``protocols`` name a stream protocol
(``tcp``, ``tls``, ``tls_passthrough``, ``udp``). Of fastkong's bundled plugins ``ip-restriction``
acts on a stream connection (Kong's ``preread`` handler), and when it ends ``prometheus`` counts it
and ``file-log``, ``http-log``, ``tcp-log``, ``udp-log``, ``syslog`` and ``loggly`` log it with
Kong's stream serializer (their ``log`` handlers, :mod:`.session_log`); they are resolved per route
with Kong's precedence (route and service, route, service, global). Any other plugin whose
``protocols`` take in stream routes is named once per snapshot in a warning: it loads and does not
run on them.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

from fastkong.acme.certs import AcmeCache, AcmeSource, acme_source
from fastkong.config import Config, vault
from fastkong.plugins.bundled._serializer import entity_row
from fastkong.plugins.chain import build_plugins
from fastkong.runtime import ServicePlan, compile_services
from fastkong.stream.certs import CertificateSet, server_context
from fastkong.stream.router import STREAM_PROTOCOLS, UDP_PROTOCOLS, StreamRoute, StreamRouter
from fastkong.stream.session_log import RouteLogPhase

log = logging.getLogger("fastkong.stream")

#: The log plugins that log stream sessions (each has ``write(message, status)``).
STREAM_LOGGERS = frozenset({"file-log", "http-log", "tcp-log", "udp-log", "syslog", "loggly"})
#: The stream plugins fastkong runs (Kong's bundled plugins with a ``preread`` or ``log``
#: handler for the stream subsystem).
STREAM_PLUGINS = frozenset({"ip-restriction", "prometheus"}) | STREAM_LOGGERS
_STREAM_AND_UDP = STREAM_PROTOCOLS | UDP_PROTOCOLS


class DefaultCertificate:
    """The node's default certificate files (``ssl_cert``/``ssl_cert_key`` or Kong's own): one
    or more (certificate, key) pairs, all in one context, so that OpenSSL serves the one whose
    key type (RSA, ECDSA) the client supports, as nginx does with several ``ssl_certificate``."""

    __slots__ = ("pairs", "minimum")

    def __init__(
        self,
        pairs: Sequence[tuple[str, str]],
        minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    ) -> None:
        self.pairs = [(cert, key) for cert, key in pairs]
        self.minimum = minimum

    def __repr__(self) -> str:
        return f"<DefaultCertificate {[cert for cert, _ in self.pairs]}>"

    def context(self) -> ssl.SSLContext:
        ctx = server_context(self.minimum)
        for cert, key in self.pairs:
            ctx.load_cert_chain(cert, key)
        return ctx


class StreamSnapshot:
    """See the module docstring; ``services`` is what the upstream registry adopts."""

    __slots__ = ("hash", "router", "services", "guards", "log_phases", "certificates",
                 "edge_certificates", "udp_router", "acme", "__weakref__")  # fmt: skip

    def __init__(
        self,
        config_hash: str,
        router: StreamRouter,
        services: dict[str, ServicePlan],
        guards: dict[str, tuple[Any, ...]],
        certificates: CertificateSet | None,
        log_phases: dict[str, RouteLogPhase] | None = None,
        edge_certificates: dict[tuple[str, ...], CertificateSet] | None = None,
        udp_router: StreamRouter | None = None,
        acme: AcmeSource | None = None,
    ) -> None:
        self.hash = config_hash
        self.router = router
        #: The ``udp`` routes (a datagram takes only those, on ``udp`` listeners only).
        self.udp_router = udp_router if udp_router is not None else StreamRouter((), UDP_PROTOCOLS)
        self.services = services
        #: The ip-restriction instances each route runs, by route id.
        self.guards = guards
        #: What runs when each route's sessions end, by route id (routes without a plugin
        #: that has a log phase have none): made here at config load.
        self.log_phases = log_phases or {}
        #: None when the process has no ssl listener (nothing is terminated).
        self.certificates = certificates
        #: The edge's HTTP listeners' certificates, by the ALPN protocols they offer.
        self.edge_certificates = edge_certificates or {}
        #: The acme plugin the edge's certificates consult (None: no such plugin, or no edge).
        self.acme = acme

    def __repr__(self) -> str:
        return (
            f"<StreamSnapshot hash={self.hash[:8]} routes={len(self.router)} "
            f"services={len(self.services)}>"
        )

    def service(self, route: StreamRoute) -> ServicePlan | None:
        return self.services.get(route.route.service) if route.route.service else None


def empty_snapshot() -> StreamSnapshot:
    return StreamSnapshot("0" * 32, StreamRouter(()), {}, {}, None)


def build_snapshot(
    config: Config,
    config_hash: str,
    default_cert: DefaultCertificate | None,
    edge_alpns: Iterable[tuple[str, ...]] = (),
    stream_tls: bool = True,
    acme_cache: AcmeCache | None = None,
) -> StreamSnapshot:
    """The snapshot of ``config`` (pure apart from loading certificates; runs off the loop).

    ``stream_tls``: whether a stream listener terminates TLS (is ``ssl``); ``edge_alpns``: the
    ALPN protocol lists of the edge's ``ssl`` listeners (fastkong/stream/edge.py). Each needs
    its own set of contexts (a context's SNI callback belongs to one set). ``acme_cache``: the
    process's cache of acme certificates (the edge's listeners serve them).

    References to the config's named vaults (``vaults``) resolve inside, as in the workers'
    build (:func:`fastkong.runtime.compile_runtime`): a certificate's ``cert``/``key`` and the
    stream plugins' secrets may name them."""
    with vault.named_vaults(vault.vaults_by_prefix(config.vaults)):
        return _build(config, config_hash, default_cert, edge_alpns, stream_tls, acme_cache)


def _build(
    config: Config,
    config_hash: str,
    default_cert: DefaultCertificate | None,
    edge_alpns: Iterable[tuple[str, ...]],
    stream_tls: bool,
    acme_cache: AcmeCache | None,
) -> StreamSnapshot:
    services = compile_services(config)
    enabled_routes = [
        r
        for r in config.routes
        if not r.service or r.service not in services or services[r.service].enabled
    ]
    router = StreamRouter(enabled_routes)
    udp_router = StreamRouter(enabled_routes, UDP_PROTOCOLS)
    guards, phases = _plugins(config, (*router.routes, *udp_router.routes), services)
    certs = None
    if default_cert is not None and stream_tls:
        certs = CertificateSet(
            default_cert.context(), config.certificates, config.snis, default_cert.minimum
        )
    edge_certs = {}
    acme = None
    if default_cert is not None and acme_cache is not None and edge_alpns:
        acme = acme_source(config, acme_cache)
    if default_cert is not None:
        for alpn in set(edge_alpns):
            edge_certs[alpn] = CertificateSet(
                default_cert.context(),
                config.certificates,
                config.snis,
                default_cert.minimum,
                alpn,
                acme,
            )
    return StreamSnapshot(
        config_hash, router, services, guards, certs, phases, edge_certs, udp_router, acme
    )


def _plugins(
    config: Config, routes: Sequence[StreamRoute], services: dict[str, ServicePlan]
) -> tuple[dict[str, tuple[Any, ...]], dict[str, RouteLogPhase]]:
    """Each stream route's ip-restriction chain and log phase; warns about stream plugins that
    do not run."""
    stream_scoped = [
        p for p in config.plugins if p.enabled and _STREAM_AND_UDP & set(p.protocols or ())
    ]
    ignored = sorted({p.name for p in stream_scoped if p.name not in STREAM_PLUGINS})
    if ignored and routes:
        log.warning(
            "stream routes: %s configured for stream protocols: not run by fastkong's stream proxy",
            ", ".join(ignored),
        )
    runnable = [p for p in stream_scoped if p.name in STREAM_PLUGINS]
    guards: dict[str, tuple[Any, ...]] = {}
    phases: dict[str, RouteLogPhase] = {}
    if not runnable:
        return guards, phases
    plugins = build_plugins(runnable, None)  # type: ignore[arg-type]
    rows = _Rows(config)
    for route in routes:
        service = str(route.route.service) if route.route.service else None
        chain = plugins.chain(route.id, service)
        guard = tuple(x for x in chain if x.name == "ip-restriction")
        if guard:
            guards[route.id] = guard
        meter = [x for x in chain if x.name == "prometheus"]
        counted = None
        if meter:
            # The labels as the prometheus plugin gives them: service name, else host.
            plan = services.get(service) if service else None
            service_label = (plan.name or plan.host) if plan is not None else ""
            counted = (meter[0], service_label, route.name or route.id)
        loggers = tuple(x for x in chain if x.name in STREAM_LOGGERS)
        if counted is None and not loggers:
            continue
        route_row = service_row = None
        if loggers:
            route_row = rows.route(route.route)
            service_row = rows.services.get(service) if service else None
        phases[route.id] = RouteLogPhase(counted, loggers, route_row, service_row)
    return guards, phases


class _Rows:
    """The config's routes and services as Kong's serializer writes them (for log plugins)."""

    def __init__(self, config: Config) -> None:
        self.services = {str(s.id): entity_row(s) for s in config.services}

    def route(self, route: Any) -> dict[str, Any]:
        row = entity_row(route)
        if route.service is not None:
            row["service"] = {"id": str(route.service)}
        return row


__all__ = ["DefaultCertificate", "STREAM_PLUGINS", "StreamSnapshot", "build_snapshot",
           "empty_snapshot"]  # fmt: skip
