"""Kong's tracing instrumentations (``kong/observability/tracing/instrumentation.lua``): the
spans of one request, recorded for the opentelemetry plugin to export.

What is recorded follows the node's ``tracing_instrumentations`` (read once per worker,
:func:`node_instrumentation`), as in Kong 3.9:

* ``request`` (and any value but ``off``): the root span ``kong``, the request itself (its
  attributes are the opentelemetry plugin's, which exports it);
* ``router``: ``kong.router``, from the request's start to the routing decision (fastkong
  routes before any plugin runs; Kong's router runs after the global plugins' rewrite phase);
  an error status when no route matched;
* ``plugin_access``: ``kong.access.plugin.<name>`` around each plugin's access hook (an error
  status and an ``exception`` event when the hook fails);
* ``plugin_header_filter``: ``kong.header_filter.plugin.<name>`` around each response hook;
* ``plugin_rewrite``: nothing: no plugin fastkong has has a rewrite handler in Kong 3.9 (the
  ones that do, pre- and post-function, run Lua);
* ``balancer``, ``dns_query``: one ``kong.balancer`` span per try and ``kong.dns`` per name
  resolution of the upstream's host, recorded by :mod:`fastkong.proxy.traced_exchange`;
* ``http_client``: ``kong.internal.request`` for the HTTP calls plugins make while serving the
  request (:func:`internal_request`);
* ``db_query``: nothing (a DB-less node makes no queries).

Where the work goes: nothing of this runs for a config without an opentelemetry plugin or on a
node whose setting is ``off``. Otherwise :func:`instrument` wraps the config's plugin instances
once (their hooks become recording closures) and the gateway swaps in a recording exchange
(``Gateway.swap``): the untraced request path is the very same code as without tracing.

Span times are ``time.monotonic_ns()`` readings, turned into wall-clock times by one offset
taken when the trace starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, NamedTuple, TypeVar

from fastkong.kong_conf import TracingSettings, tracing_settings
from fastkong.plugins.context import BodyTooLarge
from fastkong.proxy.limits import BodyLimitExceeded

if TYPE_CHECKING:
    from fastkong.plugins.base import Exit, Plugin
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

#: Where a request's trace is kept (``ctx.plugin_data``; Kong's ``ngx.ctx.KONG_SPANS``).
KEY: Final = "opentelemetry"

#: OpenTelemetry's span kinds and error status, as Kong sets them.
KIND_INTERNAL: Final = 1
KIND_SERVER: Final = 2
KIND_CLIENT: Final = 3
STATUS_ERROR: Final = 2

AttributeValue = str | bool | int | float
T = TypeVar("T")


class Instrumentation(NamedTuple):
    """The node's ``tracing_instrumentations``, decided once per worker."""

    enabled: bool = False
    sampling_rate: float = 0.01
    router: bool = False
    balancer: bool = False
    plugin_access: bool = False
    plugin_header_filter: bool = False
    http_client: bool = False
    dns_query: bool = False

    @classmethod
    def from_settings(cls, settings: TracingSettings) -> Instrumentation:
        types = set(settings.instrumentations)
        if not settings.enabled:
            return cls(False, settings.sampling_rate)
        every = "all" in types
        return cls(
            True,
            settings.sampling_rate,
            *(every or name in types for name in _HOOKS),
        )

    @property
    def hooks(self) -> bool:
        """Whether anything beyond the root span is recorded."""
        return any(self[2:])

    @property
    def exchange(self) -> bool:
        """Whether the upstream exchange records (balancer tries, DNS)."""
        return self.balancer or self.dns_query


_HOOKS: Final = (
    "router",
    "balancer",
    "plugin_access",
    "plugin_header_filter",
    "http_client",
    "dns_query",
)
_NODE: Instrumentation | None = None


def node_instrumentation() -> Instrumentation:
    """This node's instrumentations (``KONG_TRACING_INSTRUMENTATIONS`` and
    ``KONG_TRACING_SAMPLING_RATE``, checked by ``fastkong start``; Kong's defaults when
    unreadable)."""
    global _NODE
    if _NODE is None:
        try:
            settings = tracing_settings(os.environ)
        except ValueError:
            settings = TracingSettings()
        _NODE = Instrumentation.from_settings(settings)
    return _NODE


def should_sample(trace_id: bytes, rate: float) -> bool:
    """Kong's trace-id ratio sampler: the trace id's first 8 bytes as a native (little-endian,
    as on Kong's x86-64 and arm64 builds) unsigned 64-bit integer below ``rate * 2**64``."""
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    return int.from_bytes(trace_id[:8], "little") < rate * 2.0**64


class SpanRecord:
    """One span below the root, as Kong's tracer keeps it (times: monotonic nanoseconds)."""

    __slots__ = (
        "name",
        "kind",
        "span_id",
        "parent_id",
        "start",
        "end",
        "attributes",
        "status",
        "events",
    )

    def __init__(self, name: str, kind: int, parent_id: bytes, start: int) -> None:
        self.name = name
        self.kind = kind
        self.span_id = os.urandom(8)
        self.parent_id = parent_id
        self.start = start
        self.end = start
        self.attributes: dict[str, AttributeValue] = {}
        self.status = 0
        #: Kong's ``record_error`` events: (name, time, attributes).
        self.events: list[tuple[str, int, dict[str, AttributeValue]]] = []

    def __repr__(self) -> str:
        return f"<SpanRecord {self.name} {(self.end - self.start) / 1e6:.3f}ms {self.attributes}>"

    def record_error(self, message: str) -> None:
        """Kong's ``span:record_error``: an ``exception`` event (the status is the caller's)."""
        self.events.append(("exception", time.monotonic_ns(), {"exception.message": message}))


class Try:
    """One upstream try, the data of Kong's ``balancer_data.tries[i]``."""

    __slots__ = ("start", "end", "ip", "port", "name", "code")

    def __init__(self, start: int, port: int, name: str) -> None:
        self.start = start
        self.end = 0
        self.ip: str | None = None
        self.port = port
        self.name = name
        #: What a failed try counts as (Kong's ``get_last_failure``): 504 for a timeout.
        self.code = 502


class Trace:
    """A request's root span (ids and sampling decision) and what the instrumentations
    recorded below it."""

    __slots__ = (
        "trace_id",
        "span_id",
        "parent_id",
        "sampled",
        "inst",
        "start",
        "offset",
        "spans",
        "active",
        "balancer_id",
        "tries",
    )

    def __init__(self, inst: Instrumentation, ctx: RequestContext) -> None:
        now = time.monotonic_ns()
        self.offset = time.time_ns() - now
        self.trace_id = os.urandom(16)
        self.span_id = os.urandom(8)
        self.parent_id: bytes | None = None
        # Kong's request span is sampled at the node's rate; the opentelemetry plugin's access
        # phase decides again, with the incoming context and its own rate.
        self.sampled = inst.enabled and should_sample(self.trace_id, inst.sampling_rate)
        self.inst = inst
        self.start = int(ctx.started * 1e9)
        self.spans: list[SpanRecord] = []
        #: The span new ones are children of while it runs (Kong's active span), else the root.
        self.active: bytes | None = None
        #: Kong's pre-created balancer span: the upstream's parent, recorded for the last try.
        self.balancer_id = os.urandom(8) if inst.balancer else None
        self.tries: list[Try] = []
        if inst.router:
            span = self.child("kong.router", KIND_INTERNAL, self.start)
            span.end = now
            if not ctx.route.id:  # no route matched (Kong's 404)
                span.status = STATUS_ERROR

    def __repr__(self) -> str:
        parent = self.parent_id.hex() if self.parent_id else None
        return (
            f"<Trace trace={self.trace_id.hex()} span={self.span_id.hex()} parent={parent} "
            f"sampled={self.sampled} spans={len(self.spans)} tries={len(self.tries)}>"
        )

    def child(self, name: str, kind: int, start: int | None = None) -> SpanRecord:
        """A new span under the active one (started now unless ``start`` is given)."""
        span = SpanRecord(
            name,
            kind,
            self.active or self.span_id,
            time.monotonic_ns() if start is None else start,
        )
        self.spans.append(span)
        return span

    def start_try(self, port: int, name: str) -> Try:
        attempt = Try(time.monotonic_ns(), port, name)
        self.tries.append(attempt)
        return attempt

    def finish(self, end: int) -> list[SpanRecord]:
        """The recorded spans once the request ended at ``end``: Kong's ``balancer``
        instrumentation turns the tries into spans here (``runloop_log_before``)."""
        spans = list(self.spans)
        tries = [t for t in self.tries if t.ip is not None]  # (a failed DNS lookup is no try)
        for count, attempt in enumerate(tries, 1):
            last = count == len(tries)
            span = SpanRecord("kong.balancer", KIND_CLIENT, self.span_id, attempt.start)
            span.attributes["try_count"] = count
            span.attributes["net.peer.ip"] = attempt.ip or ""
            span.attributes["net.peer.port"] = attempt.port
            if last and self.balancer_id is not None:
                # The span the upstream was told is its parent, to the end of the response.
                span.span_id = self.balancer_id
                span.end = end
            else:
                # A failed try: Kong ends it once its connection was made (or failed).
                span.end = max(attempt.end, attempt.start)
                span.attributes["http.status_code"] = attempt.code
                span.status = STATUS_ERROR
            span.attributes["net.peer.name"] = attempt.name
            spans.append(span)
        return spans

    def wall(self, monotonic_ns: int) -> int:
        """A monotonic reading as Unix-epoch nanoseconds."""
        return monotonic_ns + self.offset


def start_trace(ctx: RequestContext, inst: Instrumentation) -> Trace:
    """The request's trace, made by the first hook that needs it."""
    trace = ctx.plugin_data.get(KEY)
    if trace is None:
        trace = ctx.plugin_data[KEY] = Trace(inst, ctx)
    return trace


# -- the plugins' hooks ----------------------------------------------------------------------------
def instrument(runtime: Runtime) -> Instrumentation | None:
    """Kong's plugin instrumentations for a config: its plugin instances' hooks wrapped once, so
    the chain runs them unchanged. None when nothing beyond the root span is recorded (the node
    records no more, or the config has no opentelemetry plugin to export it)."""
    inst = node_instrumentation()
    plugins = runtime.plugins
    if not inst.hooks or "opentelemetry" not in plugins.by_name:
        return None
    for scopes in plugins.by_name.values():
        for plugin in scopes.values():
            if plugin.has_access:
                # Always: the trace starts before the first plugin, so that the router span
                # ends there and the plugins' own calls (http_client) have a trace to join.
                # (an instance attribute: it shadows the class's hook for this instance only)
                plugin.__dict__["access"] = _traced_access(plugin, inst)
            if plugin.has_response and inst.plugin_header_filter:
                plugin.__dict__["response"] = _traced_response(plugin, inst)
    return inst


#: What a hook raises that is no plugin failure (a body over its limit, a client gone).
_NOT_FAILURES: Final = (BodyTooLarge, BodyLimitExceeded, ConnectionError)


def _failed(span: SpanRecord, exc: BaseException) -> None:
    if not isinstance(exc, _NOT_FAILURES):
        span.record_error(str(exc) or type(exc).__name__)
        span.status = STATUS_ERROR


def _traced_access(
    plugin: Plugin, inst: Instrumentation
) -> Callable[[RequestContext], Awaitable[Exit | None]]:
    inner = plugin.access
    name = f"kong.access.plugin.{plugin.name}"
    record = inst.plugin_access

    async def access(ctx: RequestContext) -> Exit | None:
        trace = start_trace(ctx, inst)
        if not record:
            return await inner(ctx)
        span = trace.child(name, KIND_INTERNAL)
        trace.active = span.span_id
        try:
            return await inner(ctx)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end = time.monotonic_ns()
            trace.active = None

    return access


def _traced_response(
    plugin: Plugin, inst: Instrumentation
) -> Callable[[RequestContext, int, list[tuple[bytes, bytes]]], None]:
    inner = plugin.response
    name = f"kong.header_filter.plugin.{plugin.name}"

    def response(ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        trace = start_trace(ctx, inst)
        span = trace.child(name, KIND_INTERNAL)
        trace.active = span.span_id
        try:
            inner(ctx, status, headers)
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end = time.monotonic_ns()
            trace.active = None

    return response


# -- the plugins' own HTTP calls -----------------------------------------------------------------
def trace_of(ctx: RequestContext) -> Trace | None:
    """The request's trace when it records plugins' HTTP calls (``http_client``)."""
    trace = ctx.plugin_data.get(KEY)
    if trace is not None and trace.inst.http_client:
        return trace  # type: ignore[no-any-return]
    return None


async def internal_request(
    trace: Trace | None,
    call: Awaitable[T],
    status: Callable[[T], int],
    *,
    method: str,
    url: str,
    user_agent: str,
    proxy: str | None = None,
) -> T:
    """Kong's ``http_client`` instrumentation (``resty.http``'s ``request_uri`` wrapped): the
    span ``kong.internal.request`` around ``call``, a plugin's HTTP exchange."""
    if trace is None:
        return await call
    span = trace.child("kong.internal.request", KIND_CLIENT)
    span.attributes.update(
        {
            "http.url": url,
            "http.method": method,
            "http.flavor": "1.1",
            "http.user_agent": user_agent,
        }
    )
    if proxy:
        span.attributes["http.proxy"] = proxy
    try:
        result = await call
    except Exception as exc:
        span.record_error(str(exc))  # (Kong sets no error status here)
        raise
    finally:
        span.end = time.monotonic_ns()
    span.attributes["http.status_code"] = status(result)
    return result


__all__ = [
    "KEY",
    "KIND_CLIENT",
    "KIND_INTERNAL",
    "KIND_SERVER",
    "STATUS_ERROR",
    "Instrumentation",
    "SpanRecord",
    "Trace",
    "Try",
    "instrument",
    "internal_request",
    "node_instrumentation",
    "should_sample",
    "start_trace",
    "trace_of",
]
