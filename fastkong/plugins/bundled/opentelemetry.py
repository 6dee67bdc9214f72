"""opentelemetry: trace context propagation and OTLP/HTTP span export (Kong 3.9's
``kong/plugins/opentelemetry/{schema,handler,traces,utils}.lua``).

Priority 14. What a request gets depends, as in Kong, on the node's ``tracing_instrumentations``
(``KONG_TRACING_INSTRUMENTATIONS``, read once per worker by
:func:`fastkong.kong_conf.tracing_settings`):

* ``off``, Kong's default: **propagation only**. Kong then makes a throw-away root span to
  carry ids, marks the trace as not sampled and exports nothing: the upstream gets the incoming
  trace id (or a new one) with a new span id as parent and the sampled flag 0.
* any other value: the request's **root span** ``kong`` (kind SERVER) is recorded, from the
  request's start to the end of its response, with Kong's attributes (``http.method``,
  ``http.url``, ``http.host``, ``http.scheme``, ``http.flavor``, ``http.client_ip``,
  ``net.peer.ip``, ``kong.request.id``, ``http.status_code``, ``http.route``), and below it
  what the node's other instrumentations recorded (:mod:`fastkong.proxy.tracing`: router,
  plugin phases, balancer tries, DNS, the plugins' HTTP calls). The upstream's parent is the
  last ``kong.balancer`` span when the balancer is instrumented, else the root span. Sampling
  is Kong's ``get_sampling_decision``: an incoming "not sampled" wins; otherwise the trace id
  decides against ``sampling_rate`` (else the node's ``tracing_sampling_rate``, 0.01 by
  default); the decision holds for every span of the request. Sampled spans are encoded
  (:mod:`._otlp`) and queued in the log phase, one queue entry each as in Kong; the queue
  (:mod:`._queue`, Kong's, ``max_batch_size`` 200 here) POSTs batches as
  ``application/x-protobuf`` to ``traces_endpoint`` in the background.

Propagation (:mod:`._propagation`) runs in the access phase: extract, clear, inject. The trace
id each injector wrote is kept for the log serializer's ``trace_id`` (Kong's
``set_serialize_value``). ``http_response_header_for_traceid`` adds the trace id (hex) to the
client's response.

``logs_endpoint`` is accepted and checked as in Kong, but fastkong does not export its own log
lines over OTLP (Kong's ``observability.logs``); a config that sets it says so once in the log.
An ``https`` collector's certificate is verified against the node's trusted roots
(``lua_ssl_trusted_certificate``), as Kong's HTTP client does by default. Secrets: the endpoint
and the ``headers`` values never appear in the gateway's log lines.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import unquote, urlsplit

import msgspec
from msgspec import Meta

from fastkong import __version__
from fastkong.config.schema import REFERENCEABLE, HeaderName, Url
from fastkong.metrics import node_id_for
from fastkong.plugins.base import Exit, Plugin
from fastkong.plugins.bundled import _otlp, _queue
from fastkong.plugins.bundled._otel_resource import Resource
from fastkong.plugins.bundled._propagation import (
    PropagationConfig,
    TraceContext,
    extract,
    plugin_plan,
    propagate,
)
from fastkong.plugins.bundled._serializer import request_uri
from fastkong.plugins.bundled.http_log import Endpoint, send
from fastkong.plugins.registry import register_plugin
from fastkong.proxy.tracing import (
    KEY,
    Instrumentation,
    SpanRecord,
    Trace,
    node_instrumentation,
    should_sample,
    start_trace,
)
from fastkong.proxy.upstream import UpstreamError, UpstreamTimeout
from fastkong.proxy.upstream_tls import PLAIN_VERIFY

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.opentelemetry")

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_ERROR_BODY_LIMIT: Final = 512
_KEEPALIVE_MS: Final = 60000
_SPAN_NAME: Final = "kong"
#: ``ngx.req.http_version()`` as Kong formats it (``%.1f``).
_FLAVORS: Final = {"1.0": "1.0", "1.1": "1.1", "2": "2.0", "2.0": "2.0", "3": "3.0"}
Timeout = Annotated[int, Meta(ge=0, le=2**31 - 2)]


def check_resource_attributes(values: dict[str, str]) -> str | None:
    """Kong's ``custom_validator`` of ``resource_attributes``: no empty value."""
    if any(value == "" for value in values.values()):
        return "required field missing"
    return None


ResourceAttributes = Annotated[
    dict[str, str], Meta(extra={"kong_check": check_resource_attributes})
]


class OtelQueueConfig(_queue.QueueConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Kong's ``typedefs.queue`` with this plugin's default batch of 200 spans."""

    max_batch_size: Annotated[int, Meta(ge=1, le=1_000_000)] = 200


def _default_propagation() -> PropagationConfig:
    return PropagationConfig(default_format="w3c")


class OpenTelemetryConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    traces_endpoint: Annotated[Url, REFERENCEABLE] | None = None
    logs_endpoint: Annotated[Url, REFERENCEABLE] | None = None
    headers: dict[HeaderName, Annotated[str, REFERENCEABLE]] | None = None
    resource_attributes: ResourceAttributes | None = None
    queue: OtelQueueConfig = msgspec.field(default_factory=OtelQueueConfig)
    batch_span_count: int | None = None
    batch_flush_delay: int | None = None
    connect_timeout: Timeout = 1000
    send_timeout: Timeout = 5000
    read_timeout: Timeout = 5000
    http_response_header_for_traceid: str | None = None
    header_type: (
        Literal[
            "preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "gcp", "datadog"
        ]
        | None
    ) = "preserve"
    sampling_rate: Annotated[float, Meta(ge=0, le=1)] | None = None
    propagation: PropagationConfig = msgspec.field(default_factory=_default_propagation)
    #: Kong's deprecated shorthand for ``traces_endpoint`` (which wins when both are given).
    endpoint: Annotated[Url, REFERENCEABLE] | None = None

    def __post_init__(self) -> None:
        # Kong expands the shorthand before storing the config and never shows it again.
        if self.endpoint is not None:
            if self.traces_endpoint is None:
                msgspec.structs.force_setattr(self, "traces_endpoint", self.endpoint)
            msgspec.structs.force_setattr(self, "endpoint", None)


# -- the node's identity -------------------------------------------------------------------------
def node_id() -> str:
    """Kong's ``kong.node.get_id()``: the supervisor's node id (``service.instance.id``)."""
    state = os.environ.get("FASTKONG_STATE_FILE")
    if state:
        return node_id_for(Path(state).parent)
    return node_id_for(Path(os.getcwd()))


def sampling_decision(parent_sampled: bool | None, trace_id: bytes, rate: float) -> bool:
    """Kong's ``tracer:get_sampling_decision``: an incoming "not sampled" is kept; otherwise
    (sampled or no decision) the ratio sampler decides."""
    if parent_sampled is False:
        return False
    return should_sample(trace_id, rate)


class OtlpEndpoint(Endpoint):
    """The collector, parsed once per config: a POST head with Kong's headers
    (``otel utils.get_headers``: ``Content-Type: application/x-protobuf`` unless given)."""

    __slots__ = ()

    def __init__(self, url: str, headers: dict[str, str] | None) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        self.host = parts.hostname or ""
        self.port = parts.port or _DEFAULT_PORTS.get(self.scheme, 80)
        self.tls = self.scheme == "https"
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        given = {name.lower() for name in headers or ()}
        lines = [f"POST {self.target} HTTP/1.1".encode("latin-1")]
        if "host" not in given:
            host = self.host.encode("idna") if not self.host.isascii() else self.host.encode()
            if b":" in host:
                host = b"[" + host + b"]"
            if self.port != _DEFAULT_PORTS.get(self.scheme):
                host += b":%d" % self.port
            lines.append(b"Host: " + host)
        lines.append(b"User-Agent: fastkong/" + __version__.encode())
        if "content-type" not in given:
            lines.append(b"Content-Type: application/x-protobuf")
        if (parts.username or parts.password) and "authorization" not in given:
            userinfo = unquote(parts.username or "") + ":" + unquote(parts.password or "")
            lines.append(b"Authorization: Basic " + base64.b64encode(userinfo.encode()))
        for name, value in (headers or {}).items():
            lines.append(name.encode("latin-1") + b": " + value.encode("latin-1"))
        self.head = b"\r\n".join(lines) + b"\r\n"


def _encode(trace: Trace, span: SpanRecord) -> bytes:
    """A span below the root, in the request's trace (Kong overwrites every span's trace id
    with the propagated one)."""
    return _otlp.span(
        trace_id=trace.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_id,
        name=span.name,
        kind=span.kind,
        start_ns=trace.wall(span.start),
        end_ns=trace.wall(span.end),
        attrs=span.attributes,
        status=span.status,
        events=[(name, trace.wall(at), attrs) for name, at, attrs in span.events],
    )


def _route_paths(runtime: Runtime) -> dict[str, str]:
    """Route id -> its first path, or "" (Kong's ``http.route`` attribute)."""
    config = runtime.config
    found: dict[str, str] = {}
    for route in config.routes if config is not None else ():
        paths = getattr(route, "paths", None)
        found[route.id] = paths[0] if paths else ""
    return found


@register_plugin
class OpenTelemetry(Plugin):
    name = "opentelemetry"
    priority = 14
    Config = OpenTelemetryConfig

    def __init__(self, config: OpenTelemetryConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.traces_endpoint = config.traces_endpoint
        self.inst: Instrumentation = node_instrumentation()
        self.recording = self.inst.enabled
        self.sampling_rate = (
            config.sampling_rate if config.sampling_rate is not None else self.inst.sampling_rate
        )
        self.plan = plugin_plan(config.propagation, config.header_type)
        self.clear = tuple(name.lower().encode("latin-1") for name in self.plan.clear)
        header = config.http_response_header_for_traceid
        self.response_header = header.lower().encode("latin-1") if header else None
        self.connect_timeout = config.connect_timeout / 1000
        # The export is written in one go and only its reads wait with a deadline, so one
        # deadline, the larger of Kong's two, bounds the exchange after connecting.
        self.read_timeout = max(config.send_timeout, config.read_timeout) / 1000
        label = f"opentelemetry plugin {self.id}"
        instance_name = getattr(entity, "instance_name", None)
        if instance_name:
            label += f" ({instance_name})"
        params = _queue.QueueParams.from_config(config.queue, f"{self.id}:traces", label)
        self.params = params.with_deprecated(
            label, "batch_span_count", config.batch_span_count, 200, "max_batch_size"
        ).with_deprecated(
            label, "batch_flush_delay", config.batch_flush_delay, 3, "max_coalescing_delay"
        )
        self.endpoint = (
            OtlpEndpoint(self.traces_endpoint, config.headers) if self.traces_endpoint else None
        )
        from fastkong.control.admin import KONG_VERSION  # noqa: PLC0415  (no import cycle)

        resource: dict[str, _otlp.AttributeValue] = {
            "service.name": "kong",
            "service.instance.id": node_id(),
            "service.version": KONG_VERSION,
        }
        self.resource = Resource(resource, config.resource_attributes)
        self.envelope = self.resource.envelope
        if config.logs_endpoint:
            log.warning(
                "[%s] logs_endpoint is set: fastkong does not export its log lines over OTLP",
                label,
            )

    def __repr__(self) -> str:
        return (
            f"<OpenTelemetry priority={self.priority} id={self.id} endpoint={self.endpoint!r} "
            f"recording={self.recording} sampling_rate={self.sampling_rate}>"
        )

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        if config.traces_endpoint is None and config.logs_endpoint is None:
            return [
                (
                    "@entity",  # an entity check of the config record (Kong's config.@entity)
                    "at least one of these fields must be non-empty: "
                    "'traces_endpoint', 'logs_endpoint'",
                )
            ]
        return []

    # -- the request -----------------------------------------------------------------------------
    async def access(self, ctx: RequestContext) -> Exit | None:
        if self.traces_endpoint is None:
            return None
        plan = self.plan
        if plan.extract:
            extracted, source = extract(ctx.headers, plan.extract)
        else:
            extracted, source = TraceContext(), None
        # The trace the instrumentations started (Kong's root span), else the root span now.
        trace = start_trace(ctx, self.inst)
        if extracted.trace_id:
            trace.trace_id = extracted.trace_id
        parent_id = extracted.span_id or extracted.parent_id
        if parent_id:
            trace.parent_id = parent_id
        if self.recording:
            sampled = sampling_decision(extracted.should_sample, trace.trace_id, self.sampling_rate)
        else:
            sampled = False  # Kong's propagation-only root span is never sampled
        trace.sampled = sampled
        # Kong's get_inject_ctx: the extracted context, with the pre-created balancer span
        # (or the root span) as the parent, is what the injectors write (its original trace id
        # size, b3 flags and baggage carry over).
        out = extracted
        out.trace_id = trace.trace_id
        if trace.balancer_id is not None:
            out.span_id = trace.balancer_id
            out.parent_id = trace.span_id
        else:
            out.span_id = trace.span_id
            out.parent_id = trace.parent_id
        out.should_sample = sampled
        propagate(ctx, plan, self.clear, source, out)
        return None

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if self.response_header is None or self.traces_endpoint is None:
            return
        trace = ctx.plugin_data.get(KEY)
        if trace is None and self.recording:
            trace = start_trace(ctx, self.inst)
        if trace is not None:
            headers.append((self.response_header, trace.trace_id.hex().encode()))

    def log(self, ctx: RequestContext) -> None:
        if not self.recording or self.endpoint is None:
            return
        trace = start_trace(ctx, self.inst)
        if not trace.sampled:
            return
        end = time.monotonic_ns()
        host = ctx.host or ctx.header("host") or ""
        attributes: dict[str, _otlp.AttributeValue] = {
            "http.method": ctx.method,
            "http.url": f"{ctx.scheme}://{host}{request_uri(ctx)}",
            "http.host": host,
            "http.scheme": ctx.scheme,
            "http.flavor": _FLAVORS.get(ctx.scope.get("http_version", "1.1"), "1.1"),
            "http.client_ip": ctx.forwarded_ip,
            "net.peer.ip": ctx.client_ip,
            "kong.request.id": ctx.request_id,
            "http.status_code": ctx.status,
            "http.route": ctx.runtime.index("opentelemetry:route-paths", _route_paths).get(
                ctx.route.id, ""
            ),
        }
        entries = [
            _otlp.span(
                trace_id=trace.trace_id,
                span_id=trace.span_id,
                parent_span_id=trace.parent_id,
                name=_SPAN_NAME,
                kind=_otlp.SPAN_KIND_SERVER,
                start_ns=trace.wall(trace.start),
                end_ns=trace.wall(end),
                attrs=attributes,
            )
        ]
        entries += [_encode(trace, span) for span in trace.finish(end)]
        if self.resource.templates:
            # (Kong's queue exports with the latest configuration it saw: this request's)
            self.envelope = self.resource.for_request(ctx)
        for entry in entries:
            error = _queue.enqueue(self.params, self.deliver, entry)
            if error is not None:
                log.error("[%s] Failed to enqueue span to log server: %s", self.params.label, error)

    async def deliver(self, spans: list[bytes]) -> str | None:
        """The queue's handler: export one batch; None, or what went wrong."""
        endpoint = self.endpoint
        assert endpoint is not None
        if endpoint.scheme not in _DEFAULT_PORTS:
            return f"unsupported scheme '{endpoint.scheme}' in traces_endpoint"
        body = self.envelope.request(spans)
        try:
            status, text = await send(
                endpoint,
                body,
                self.read_timeout,
                _KEEPALIVE_MS,
                self.connect_timeout,
                PLAIN_VERIFY,  # lua-resty-http's request_uri verifies by default
            )
        except UpstreamTimeout:
            return f"failed to send request to {endpoint.address}: timeout"
        except UpstreamError as exc:
            return f"failed to send request to {endpoint.address}: {exc}"
        if status == 200:
            return None
        body_text = text[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
        return f"response error: {status}, body: {body_text}"
