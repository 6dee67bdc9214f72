"""zipkin: trace context propagation and Zipkin v2 span export (Kong 3.9's
``kong/plugins/zipkin/{schema,handler,reporter,span,request_tags}.lua``).

Priority 100000: it runs before every other plugin but correlation-id, so its timestamps are
taken at the start of each phase (as Kong's handler says, for the same reason).

Each request gets a **request span** (kind SERVER, named ``GET`` or, with ``http_span_name:
method_path``, ``GET /path``) from the request's start to its log phase, and a **proxy
span** (kind CLIENT, ``<name> (proxy)``), its child, from the plugin's access phase to the last
byte of the response body. The ids come from the incoming trace context (:mod:`._propagation`,
per ``propagation`` or the deprecated ``header_type``/``default_header_type``): the trace id is
kept, and the request span is the incoming span itself for formats that share a span between
client and server (b3, jaeger: its span and parent ids are reused) or its child for the others
(w3c, ...: the incoming span id is the parent). A new trace gets a random ``traceid_byte_count``
trace id. The sampling decision is the incoming one when there is one, else ``sample_ratio``.
The upstream gets the proxy span as its parent, in the configured formats; Kong's inject
context carries a "sampled" flag only when sampled, so an unsampled request goes up with b3's
``x-b3-sampled: 0``, w3c's ``-00``, and no flag in the formats where it is optional.

Tags are Kong's: on the request span ``lc``, ``http.method``, ``http.host``, ``http.path``,
``http.protocol``, ``static_tags``, the tags of the ``tags_header`` (``foo=bar; baz=qux``), then
``http.status_code``, ``kong.consumer``, ``kong.credential`` (with ``include_credential``) and
``kong.node.id``; on the proxy span ``kong.service``, ``kong.service_name``, ``kong.route``,
``kong.route_name`` and, once a peer was chosen, ``peer.hostname``, with the peer's address as
its ``remoteEndpoint`` (the client's is the request span's). Phase times go as annotations
(``krs``; ``kas``/``kaf``, ``khs``/``khf``, ``kbs``/``kbf``) or as ``kong.<phase>.duration_ms``
tags, per ``phase_duration_flavor``, as far as fastkong has the phases: it has no rewrite phase
(no ``krf``, no ``kong.rewrite.duration_ms``; ``krs`` is the request's start, Kong's fallback),
and the header filter is taken to end when the first body chunk passes, as Kong's annotations
take it.

Sampled spans are encoded in the log phase (:mod:`._zipkin`) and queued, proxy span first, one
entry each (Kong's ``queue``: one span a batch unless ``queue.max_batch_size`` says more); a
background task POSTs each batch as a JSON array to ``http_endpoint`` with ``Content-Type:
application/json``, bounded by ``connect_timeout`` and the larger of ``send_timeout`` and
``read_timeout``. A status other than 2xx is a failed batch, retried by the queue then dropped
with one error line; a request never waits for the collector. Without ``http_endpoint``
nothing is recorded or exported, but headers are still propagated, as in Kong.
``http_response_header_for_traceid`` adds the trace id (hex) to every response.

Not recorded: Kong's "balancer try" spans (one CLIENT span per upstream try, with the connect
time), as fastkong does not time its tries apart; requests no route matched (fastkong runs no
plugin for them).
"""

from __future__ import annotations

import http
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.config.schema import Url
from fastkong.plugins.base import REQUIRED, Plugin
from fastkong.plugins.bundled import _queue
from fastkong.plugins.bundled._propagation import (
    Plan,
    PropagationConfig,
    TraceContext,
    extract,
    plugin_plan,
    propagate,
)
from fastkong.plugins.bundled._zipkin import (
    PROTECTED_TAGS,
    Clock,
    Span,
    batch,
    encode,
    parse_request_tags,
)
from fastkong.plugins.bundled.http_log import send
from fastkong.plugins.bundled.opentelemetry import OtlpEndpoint, Timeout, node_id
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin
from fastkong.proxy.upstream import UpstreamConnectError, UpstreamError, UpstreamTimeout
from fastkong.proxy.upstream_tls import PLAIN_VERIFY

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.zipkin")

#: Where a request's spans are kept (``ctx.plugin_data``).
KEY: Final = "zipkin"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_KEEPALIVE_MS: Final = 60000
#: ``'HTTP/' .. kong.request.get_http_version()`` as Kong's Lua prints the number (1.0 is "1").
_PROTOCOLS: Final = {
    "1.0": "HTTP/1",
    "1.1": "HTTP/1.1",
    "2": "HTTP/2",
    "2.0": "HTTP/2",
    "3": "HTTP/3",
}

HeaderType = Literal[
    "preserve", "ignore", "b3", "b3-single", "w3c", "jaeger", "ot", "aws", "datadog", "gcp"
]
DefaultHeaderType = Literal["b3", "b3-single", "w3c", "jaeger", "ot", "aws", "datadog", "gcp"]


def check_static_tag_name(name: str) -> str | None:
    """Kong's ``not_one_of = PROTECTED_TAGS``: the plugin's own tags cannot be overridden."""
    if name in PROTECTED_TAGS:
        return "must not be one of: " + ", ".join(PROTECTED_TAGS)
    return None


def check_static_tags(tags: list[dict[str, Any]]) -> str | None:
    """Kong's ``validate_static_tags``: each name once."""
    seen: set[str] = set()
    for tag in tags:
        name = tag["name"]
        if name in seen:
            return f"repeated tags are not allowed: {name}"
        seen.add(name)
    return None


class StaticTag(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(extra={"kong_check": check_static_tag_name})]
    value: str


StaticTags = Annotated[list[StaticTag], Meta(extra={"kong_check": check_static_tags})]


def _default_propagation() -> PropagationConfig:
    return PropagationConfig(default_format="b3")


class ZipkinConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    local_service_name: Annotated[str, REQUIRED] = "kong"
    http_endpoint: Url | None = None
    sample_ratio: Annotated[float, Meta(ge=0, le=1)] = 0.001
    default_service_name: str | None = None
    include_credential: Annotated[bool, REQUIRED] = True
    traceid_byte_count: Annotated[Literal[8, 16], REQUIRED] = 16
    header_type: Annotated[HeaderType, REQUIRED] = "preserve"
    default_header_type: Annotated[DefaultHeaderType, REQUIRED] = "b3"
    tags_header: Annotated[str, REQUIRED] = "Zipkin-Tags"
    static_tags: StaticTags | None = None
    http_span_name: Annotated[Literal["method", "method_path"], REQUIRED] = "method"
    connect_timeout: Timeout = 2000
    send_timeout: Timeout = 5000
    read_timeout: Timeout = 5000
    http_response_header_for_traceid: str | None = None
    phase_duration_flavor: Annotated[Literal["annotations", "tags"], REQUIRED] = "annotations"
    queue: _queue.QueueConfig = msgspec.field(default_factory=_queue.QueueConfig)
    propagation: PropagationConfig = msgspec.field(default_factory=_default_propagation)


def zipkin_plan(config: ZipkinConfig) -> Plan:
    """Kong's ``get_plugin_params`` for this plugin: when ``propagation`` sets none of
    ``extract``, ``clear``, ``inject``, the deprecated fields decide, ``default_header_type``
    replacing ``propagation.default_format`` (both default to b3)."""
    propagation = config.propagation
    if propagation.extract is None and propagation.clear is None and propagation.inject is None:
        propagation = msgspec.structs.replace(
            propagation, default_format=config.default_header_type
        )
    return plugin_plan(propagation, config.header_type)


class Trace:
    """One request's spans and the phase times the hooks saw (``time.monotonic()``; 0: not
    seen)."""

    __slots__ = ("request", "proxy", "recording", "accessed", "header_start", "body_start",
                 "body_end")  # fmt: skip

    def __init__(self, request: Span, proxy: Span, recording: bool) -> None:
        self.request = request
        self.proxy = proxy
        #: Sampled, with somewhere to send it: only then are tags and times kept.
        self.recording = recording
        #: Whether the plugin's access phase made it (else a later phase did, lazily).
        self.accessed = False
        self.header_start = 0.0
        self.body_start = 0.0
        self.body_end = 0.0

    def __repr__(self) -> str:
        return f"<Trace {self.request!r} recording={self.recording}>"


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@register_plugin
class Zipkin(Plugin):
    name = "zipkin"
    priority = 100000
    allowed_protocols = ALL_PROTOCOLS
    Config = ZipkinConfig

    def __init__(self, config: ZipkinConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.plan = zipkin_plan(config)
        self.clear = tuple(name.lower().encode("latin-1") for name in self.plan.clear)
        header = config.http_response_header_for_traceid
        self.response_header = header.lower().encode("latin-1") if header else None
        self.sample_ratio = config.sample_ratio
        self.traceid_byte_count = config.traceid_byte_count
        self.method_path = config.http_span_name == "method_path"
        self.annotations = config.phase_duration_flavor == "annotations"
        self.tags_header = config.tags_header.lower()
        self.static_tags = tuple((tag.name, tag.value) for tag in config.static_tags or ())
        self.include_credential = config.include_credential
        self.local_service_name = config.local_service_name
        self.default_service_name = config.default_service_name
        self.connect_timeout = config.connect_timeout / 1000
        # The batch is written in one go and only its reads wait with a deadline, so one
        # deadline, the larger of Kong's two, bounds the exchange after connecting.
        self.read_timeout = max(config.send_timeout, config.read_timeout) / 1000
        self.endpoint = (
            OtlpEndpoint(config.http_endpoint, {"Content-Type": "application/json"})
            if config.http_endpoint
            else None
        )
        label = f"zipkin plugin {self.id}"
        instance_name = getattr(entity, "instance_name", None)
        if instance_name:
            label += f" ({instance_name})"
        self.params = _queue.QueueParams.from_config(config.queue, f"zipkin:{self.id}", label)
        self._node_id: str | None = None
        if config.header_type != "preserve":
            log.warning(
                "[%s] zipkin: config.header_type is deprecated, please use config.propagation "
                "options instead",
                label,
            )
        if config.default_header_type != "b3":
            log.warning(
                "[%s] zipkin: config.default_header_type is deprecated, please use "
                "config.propagation.default_format instead",
                label,
            )

    def __repr__(self) -> str:
        return (
            f"<Zipkin priority={self.priority} id={self.id} endpoint={self.endpoint!r} "
            f"sample_ratio={self.sample_ratio}>"
        )

    @property
    def node_id(self) -> str:
        """Kong's ``kong.node.get_id()`` (read once)."""
        if self._node_id is None:
            self._node_id = node_id()
        return self._node_id

    # -- the request's spans ---------------------------------------------------------------------
    def _begin(self, ctx: RequestContext, extracted: TraceContext, now: float) -> Trace:
        """Kong's ``initialize_request`` and the proxy span, which starts ``now``."""
        if extracted.reuse_span_id:
            # b3 and jaeger share the span between client and server: it is ours too.
            span_id, parent_id = extracted.span_id, extracted.parent_id
        else:
            # w3c and the others name the client's span: ours is its child.
            span_id, parent_id = None, extracted.span_id
        sampled = extracted.should_sample
        if sampled is None:
            sampled = random.random() < self.sample_ratio
        trace_id = extracted.trace_id or os.urandom(self.traceid_byte_count)
        name = f"{ctx.method} {ctx.path}" if self.method_path else ctx.method
        request = Span("SERVER", name, ctx.started, sampled, trace_id, span_id, parent_id)
        proxy = request.child("CLIENT", f"{name} (proxy)", now)
        recording = sampled and self.endpoint is not None
        if recording:
            self._request_tags(ctx, request)
        trace = Trace(request, proxy, recording)
        ctx.plugin_data[KEY] = trace
        return trace

    def _request_tags(self, ctx: RequestContext, span: Span) -> None:
        span.ip = ctx.forwarded_ip
        client = ctx.scope.get("client")
        span.port = int(client[1]) if client else None  # Granian gives the port as text
        tags = span.tags
        tags["lc"] = "kong"
        tags["http.method"] = ctx.method
        tags["http.host"] = ctx.host or ctx.header("host") or ""
        tags["http.path"] = ctx.path
        protocol = _PROTOCOLS.get(ctx.scope.get("http_version", "1.1"))
        if protocol is not None:
            tags["http.protocol"] = protocol
        for name, value in self.static_tags:
            tags[name] = value
        sent = ctx.headers.get(self.tags_header)
        if sent:
            found, error = parse_request_tags(sent)
            if error is not None:
                log.warning("[%s] %s", self.params.label, error)
            tags.update(found)

    def _trace(self, ctx: RequestContext, now: float) -> Trace:
        """The request's trace; made here when the access phase did not run this plugin (Kong's
        ``get_context``: the context is extracted, nothing is injected)."""
        trace: Trace | None = ctx.plugin_data.get(KEY)
        if trace is None:
            extracted = extract(ctx.headers, self.plan.extract)[0]
            trace = self._begin(ctx, extracted, now)
        return trace

    # -- the phases ------------------------------------------------------------------------------
    async def access(self, ctx: RequestContext) -> None:
        plan = self.plan
        if plan.extract:
            extracted, source = extract(ctx.headers, plan.extract)
        else:
            extracted, source = TraceContext(), None
        trace = self._begin(ctx, extracted, time.monotonic())
        trace.accessed = True
        proxy = trace.proxy
        # Kong's get_inject_ctx: the extracted context (its trace id size, b3 flags, baggage
        # carry over) with the proxy span as the upstream's parent. "Sampled" is Kong's
        # `proxy.should_sample or extracted.should_sample or nil`: true, or left unset.
        out = extracted
        out.trace_id = proxy.trace_id
        out.span_id = proxy.span_id
        out.parent_id = proxy.parent_id
        out.should_sample = True if proxy.sampled else None
        propagate(ctx, plan, self.clear, source, out)

    def response(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        now = time.monotonic()
        trace = self._trace(ctx, now)
        if trace.recording:
            trace.header_start = now
        if self.response_header is not None:
            headers.append((self.response_header, trace.proxy.trace_id.hex().encode()))

    def body(self, ctx: RequestContext, chunk: bytes, last: bool) -> bytes:
        trace: Trace | None = ctx.plugin_data.get(KEY)
        if trace is not None and trace.recording and (last or not trace.body_start):
            now = time.monotonic()
            if not trace.body_start:
                trace.body_start = now
            if last:
                trace.body_end = now
        return chunk

    def log(self, ctx: RequestContext) -> None:
        for entry in self.entries(ctx, time.monotonic()):
            error = _queue.enqueue(self.params, self.deliver, entry)
            if error is not None:
                log.error("[%s] failed to enqueue span: %s", self.params.label, error)

    def entries(self, ctx: RequestContext, now: float) -> list[bytes]:
        """The request's finished spans, encoded, proxy span first (Kong reports it first);
        none unless the request is sampled and there is an ``http_endpoint``."""
        if self.endpoint is None:
            return []
        trace = self._trace(ctx, now)
        if not trace.recording:
            return []
        request, proxy = trace.request, trace.proxy
        proxy_finish = trace.body_end or now
        if self.annotations:
            self._annotate(ctx, trace, proxy_finish, now)
        else:
            self._duration_tags(ctx, trace, now)
        peer = ctx.upstream_peer
        if peer is not None:
            proxy.ip, proxy.port, hostname = peer
            proxy.tags["peer.hostname"] = hostname
        tags = request.tags
        if ctx.status:
            tags["http.status_code"] = ctx.status
        consumer = ctx.consumer
        if consumer is not None:
            tags["kong.consumer"] = consumer.id
        if self.include_credential and ctx.credential is not None:
            credential_id = getattr(ctx.credential, "id", None)
            if credential_id is not None:
                tags["kong.credential"] = credential_id
        tags["kong.node.id"] = self.node_id
        self._service_and_route(ctx, proxy)
        clock = Clock()
        local, default = self.local_service_name, self.default_service_name
        return [
            encode(proxy, proxy_finish, clock, local, default),
            encode(request, now, clock, local, default),
        ]

    def _annotate(self, ctx: RequestContext, trace: Trace, proxy_finish: float, now: float) -> None:
        """Kong's phase annotations, in the order Kong makes them."""
        proxy = trace.proxy
        if trace.header_start:
            proxy.annotate("khs", trace.header_start)
        if trace.body_start:
            proxy.annotate("khf", trace.body_start)
            proxy.annotate("kbs", trace.body_start)
        trace.request.annotate("krs", ctx.started)
        proxy.annotate("kas", proxy.start)
        accessed = trace.accessed and ctx.access_ended
        proxy.annotate("kaf", ctx.access_ended if accessed else proxy_finish)
        if not trace.body_start:
            proxy.annotate("khf", now)
        proxy.annotate("kbf", now)

    def _duration_tags(self, ctx: RequestContext, trace: Trace, now: float) -> None:
        """Kong's ``kong.<phase>.duration_ms`` tags for the phases this request went through."""
        tags = trace.proxy.tags
        if trace.accessed and ctx.access_ended:
            tags["kong.access.duration_ms"] = _ms(ctx.access_ended - trace.proxy.start)
        if trace.header_start:
            tags["kong.header_filter.duration_ms"] = _ms(
                (trace.body_start or now) - trace.header_start
            )
        if trace.body_start and trace.body_end:
            tags["kong.body_filter.duration_ms"] = _ms(trace.body_end - trace.body_start)

    @staticmethod
    def _service_and_route(ctx: RequestContext, span: Span) -> None:
        """Kong's ``tag_with_service_and_route``."""
        service = ctx.service
        if service is not None:
            span.tags["kong.service"] = service.id
            if service.name:
                span.service_name = service.name
                span.tags["kong.service_name"] = service.name
        route = ctx.route
        if route.id:  # (none for an answer no route led to)
            span.tags["kong.route"] = route.id
            if route.name:
                span.tags["kong.route_name"] = route.name

    # -- the export ------------------------------------------------------------------------------
    async def deliver(self, entries: list[bytes]) -> str | None:
        """The queue's handler: POST one batch; None, or what went wrong."""
        endpoint = self.endpoint
        assert endpoint is not None
        log.debug("[%s] zipkin batch size: %d", self.params.label, len(entries))
        if endpoint.scheme not in _DEFAULT_PORTS:
            return f"unsupported scheme '{endpoint.scheme}' in http_endpoint"
        try:
            status, _ = await send(
                endpoint,
                batch(entries),
                self.read_timeout,
                _KEEPALIVE_MS,
                self.connect_timeout,
                PLAIN_VERIFY,  # lua-resty-http's request_uri verifies by default
            )
        # (Kong's reporter: "zipkin request failed: " and lua-resty-http's error)
        except UpstreamTimeout:
            return "zipkin request failed: timeout"
        except UpstreamConnectError as exc:
            return f"zipkin request failed: {exc.reason}"
        except UpstreamError as exc:
            return f"zipkin request failed: {exc}"
        if 200 <= status < 300:
            return None
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        return f"zipkin server responded unexpectedly: {status} {reason}".rstrip()
