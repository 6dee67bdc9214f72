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
``kong_session_duration_ms`` and the session's bytes. ``ai_metrics`` counts what the AI plugins
(ai-proxy, ai-request-transformer, ai-response-transformer) put in the request's ``ai`` log
section, one use case each, as Kong's exporter does: ``kong_ai_llm_requests_total``,
``kong_ai_llm_cost_total`` (the ``usage.cost`` above 0), ``kong_ai_llm_tokens_total`` by
``token_type`` (prompt, completion and total tokens above 0) and the
``kong_ai_llm_provider_latency_ms`` histogram (``meta.llm_latency``), labelled
``{ai_provider,ai_model,cache_status,vector_db,embeddings_provider,embeddings_model,workspace}``
(the cache labels are empty: no semantic cache here). The AI plugins log only with
``logging.log_statistics``, so only then is anything counted. ``wasm_metrics`` is accepted for
compatibility and counts nothing (no Wasm filters here).

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
    _EXTRA_KEY,
    AI_LOG_KEY,
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
_AI_REQUESTS = metrics.AI_REQUESTS.name
_AI_COST = metrics.AI_COST.name
_AI_TOKENS = metrics.AI_TOKENS.name
_TOKEN_TYPES = ("prompt_tokens", "completion_tokens", "total_tokens")
#: The parts of a use case's ``ai`` log section the exporter reads.
_AI_PARTS = frozenset({"meta", "usage", "cache"})


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
        self.ai = config.ai_metrics
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
                ("ai", self.ai),
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
        if self.ai:
            for section in ai_sections(ctx.plugin_data).values():
                _count_ai(worker, section)
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


def ai_sections(plugin_data: dict[str, Any]) -> dict[str, Any]:
    """Kong's ``message.ai`` by use case: ai-proxy's ``proxy`` section and the
    ``ai.<plugin>.meta|usage|cache`` values the AI transformers set (as :func:`serialize` merges
    them into the log entry)."""
    found: dict[str, Any] = dict(plugin_data.get(AI_LOG_KEY) or ())
    extra = plugin_data.get(_EXTRA_KEY)
    if extra:
        for key, value in extra.items():
            head, _, rest = key.partition(".")
            use_case, _, part = rest.rpartition(".")
            if head == "ai" and use_case and part in _AI_PARTS:
                known = found.get(use_case)
                found[use_case] = {**(known if isinstance(known, dict) else {}), part: value}
    return found


def _count_ai(worker: metrics.WorkerMetrics, section: Any) -> None:
    """One use case's counts (Kong's exporter ``log``, its ``serialized.ai_metrics`` loop)."""
    if not isinstance(section, dict):
        return
    meta, usage, cache = (_part(section, name) for name in ("meta", "usage", "cache"))
    labels = (
        _label(meta, "provider_name"),
        _label(meta, "request_model"),
        _label(cache, "cache_status"),
        _label(cache, "vector_db"),
        _label(cache, "embeddings_provider"),
        _label(cache, "embeddings_model"),
    )
    status = (*labels, _WORKSPACE)
    worker.inc(_AI_REQUESTS, status)
    cost = _number(usage.get("cost"))
    if cost > 0:
        worker.inc(_AI_COST, status, cost)
    latency = _number(meta.get("llm_latency"), -1)
    if latency >= 0:
        worker.observe(metrics.AI_LATENCY, status, latency)
    for token_type in _TOKEN_TYPES:
        tokens = _number(usage.get(token_type))
        if tokens > 0:
            worker.inc(_AI_TOKENS, (*labels, token_type, _WORKSPACE), tokens)


def _part(section: dict[str, Any], name: str) -> dict[str, Any]:
    part = section.get(name)
    return part if isinstance(part, dict) else {}


def _label(part: dict[str, Any], key: str) -> str:
    value = part.get(key)
    return "" if value is None or value is False else str(value)  # Lua's ``x or ""``


def _number(value: Any, absent: float = 0) -> float:
    """A count of the log section, ``absent`` when it is missing or not a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return absent
