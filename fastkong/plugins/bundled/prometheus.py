"""prometheus: Kong's request metrics (``kong:kong/plugins/prometheus``), priority 13.

The log phase counts into the worker's :data:`fastkong.metrics.WORKER` (memory only, no I/O on
the request path); the supervisor's ``/metrics`` merges the workers' snapshots
(:func:`fastkong.metrics.render_node_metrics`), with a staleness of at most one second.

Every family is off by default, as in Kong 3.x: ``status_code_metrics`` counts
``kong_http_requests_total{service,route,code,source,workspace,consumer}``, ``latency_metrics``
observes ``kong_kong_latency_ms``, ``kong_upstream_latency_ms`` and ``kong_request_latency_ms``,
``bandwidth_metrics`` counts ``kong_bandwidth_bytes{direction=ingress|egress}``, and
``per_consumer`` fills the ``consumer`` label with the consumer's username (else ``""``).
``upstream_health_metrics`` is read at scrape time from the config. On stream routes
(:meth:`Prometheus.session`, from the stream process) the same flags count
``kong_stream_sessions_total{service,route,code,source,workspace}`` (nginx's stream status),
``kong_session_duration_ms`` and the session's bytes. ``ai_metrics`` and
``wasm_metrics`` are accepted for compatibility and count nothing (no AI or Wasm filters here).

Labels: ``service`` is the service's name, else its host (``""`` for a route without service);
``route`` the route's name, else its id; ``source`` is ``service`` when the upstream answered
and ``kong`` when the gateway did; ``workspace`` is always ``default``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from fastkong import metrics
from fastkong.plugins.bundled._serializer import (
    Latencies,
    LogPlugin,
    request_size,
    response_size,
)
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import RoutePlan, Runtime


class PrometheusConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    per_consumer: bool = False
    status_code_metrics: bool = False
    ai_metrics: bool = False
    latency_metrics: bool = False
    bandwidth_metrics: bool = False
    upstream_health_metrics: bool = False
    wasm_metrics: bool = False


_REQUESTS = metrics.HTTP_REQUESTS.name
_BANDWIDTH = metrics.BANDWIDTH.name
_SESSIONS = metrics.STREAM_SESSIONS.name
_WORKSPACE = metrics.WORKSPACE


@register_plugin
class Prometheus(LogPlugin):
    name = "prometheus"
    priority = 13
    allowed_protocols = ALL_PROTOCOLS
    Config = PrometheusConfig

    def __init__(self, config: PrometheusConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.per_consumer = config.per_consumer
        self.status_codes = config.status_code_metrics
        self.latencies = config.latency_metrics
        self.bandwidth = config.bandwidth_metrics
        # Egress counts the sent headers: only then is the response hook worth a call.
        self.has_response = self.bandwidth
        self._names: dict[str, tuple[str, str]] = {}

    def __repr__(self) -> str:
        flags = [
            f
            for f, on in (
                ("status_code", self.status_codes),
                ("latency", self.latencies),
                ("bandwidth", self.bandwidth),
                ("per_consumer", self.per_consumer),
            )
            if on
        ]
        return f"<Prometheus priority={self.priority} id={self.id} metrics={flags}>"

    def _route_labels(self, route: RoutePlan) -> tuple[str, str]:
        found = self._names.get(route.id)
        if found is None:
            service = route.service
            service_name = (service.name or service.host) if service is not None else ""
            found = self._names[route.id] = (service_name, route.name or route.id)
        return found

    def log(self, ctx: RequestContext) -> None:
        worker = metrics.WORKER
        worker.logged += 1
        service, route = self._route_labels(ctx.route)
        consumer = ""
        if self.per_consumer and ctx.consumer is not None:
            consumer = getattr(ctx.consumer, "username", None) or ""
        if self.status_codes:
            source = "service" if ctx.proxied else "kong"
            worker.inc(_REQUESTS, (service, route, str(ctx.status), source, _WORKSPACE, consumer))
        if self.latencies:
            lat = Latencies(ctx, time.monotonic())
            labels = (service, route, _WORKSPACE)
            if lat.request >= 0:
                worker.observe(metrics.REQUEST_LATENCY, labels, lat.request)
            if lat.proxy >= 0:
                worker.observe(metrics.UPSTREAM_LATENCY, labels, lat.proxy)
            if lat.kong >= 0:
                worker.observe(metrics.KONG_LATENCY, labels, lat.kong)
        if self.bandwidth:
            ingress = request_size(ctx)
            if ingress > 0:
                worker.inc(_BANDWIDTH, (service, route, "ingress", _WORKSPACE, consumer), ingress)
            egress = response_size(ctx)
            if egress > 0:
                worker.inc(_BANDWIDTH, (service, route, "egress", _WORKSPACE, consumer), egress)
        worker.ensure_started()

    def session(
        self,
        service: str,
        route: str,
        code: int,
        proxied: bool,
        received: int,
        sent: int,
        duration_ms: float,
    ) -> None:
        """A stream connection's log phase (the stream process; Kong's exporter in the stream
        subsystem): ``kong_stream_sessions_total``, ``kong_session_duration_ms`` and the
        session's bytes in ``kong_bandwidth_bytes`` (an empty ``consumer``: no consumers on
        stream routes). Kong's own handler reads the bytes from a field its stream log never
        fills, so it counts none; fastkong counts them."""
        worker = metrics.WORKER
        if self.status_codes:
            source = "service" if proxied else "kong"
            worker.inc(_SESSIONS, (service, route, str(code), source, _WORKSPACE))
        if self.latencies:
            worker.observe(metrics.SESSION_DURATION, (service, route, _WORKSPACE), duration_ms)
        if self.bandwidth:
            if received > 0:
                worker.inc(_BANDWIDTH, (service, route, "ingress", _WORKSPACE, ""), received)
            if sent > 0:
                worker.inc(_BANDWIDTH, (service, route, "egress", _WORKSPACE, ""), sent)
