"""statsd: each request's metrics as StatsD lines (``kong:kong/plugins/statsd``).

Priority 11. For every configured metric a line ``<prefix>.<scope>.<stat>:<value>|<type>``
(``|@<rate>`` when the sample rate is not 1), where the scope is ``service.<identifier>`` (dots
made underscores; ``service.unnamed`` without one) or ``global.unmatched`` for a request no
service served, and the stat is Kong's: ``request.count``, ``latency`` (the whole request, ms),
``request.size``, ``response.size``, ``upstream_latency`` (skipped when nothing was proxied),
``kong_latency``, ``status.<code>``, ``user.uniques`` (a set of consumer identifiers),
``user.<consumer>.request.count``, ``user.<consumer>.status.<code>``,
``workspace.<workspace>.status.<code>`` and ``route.<route_id>.user.<consumer>.status.<code>``.
With ``hostname_in_prefix`` the prefix gains ``.node.<hostname>``. With ``tag_style``
(``dogstatsd``, ``influxdb``, ``librato``, ``signalfx``) the plain metrics carry ``service``,
``route``, ``workspace``, ``consumer``, ``node`` and ``status`` as tags in that dialect and the
per-user/per-status metrics are not sent, as in Kong. ``allow_status_codes`` (``"200-299"``
ranges) limits which responses are measured.

Lines go over UDP, one datagram each, or packed up to ``udp_packet_size`` bytes joined by
newlines; with ``use_tcp`` over one kept-alive TCP connection, a newline after each. Sending
reuses the udp-log and tcp-log senders (never in the request's way, bounded, errors logged).
``shdict_usage`` reports Kong's nginx shared dictionaries: fastkong has none, so it sends
nothing. ``queue`` is validated and its parameters are not used: a metric is sent as it comes.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.config.schema import Host, Port
from fastkong.plugins.base import REQUIRED
from fastkong.plugins.bundled import _queue
from fastkong.plugins.bundled._serializer import (
    WORKSPACE_ID,
    WORKSPACE_NAME,
)
from fastkong.plugins.bundled._statsd_common import KINDS, STATS, MetricsPlugin, measured
from fastkong.plugins.bundled.rate_limiting import _lua_number
from fastkong.plugins.bundled.tcp_log import sender as tcp_sender
from fastkong.plugins.bundled.udp_log import sender as udp_sender
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

MetricName = Literal[
    "kong_latency",
    "latency",
    "request_count",
    "request_per_user",
    "request_size",
    "response_size",
    "status_count",
    "status_count_per_user",
    "unique_users",
    "upstream_latency",
    "status_count_per_workspace",
    "status_count_per_user_per_route",
    "shdict_usage",
]
StatType = Literal["counter", "gauge", "histogram", "meter", "set", "timer"]
ConsumerIdentifier = Literal["consumer_id", "custom_id", "username"]
ServiceIdentifier = Literal["service_id", "service_name", "service_host", "service_name_or_host"]
WorkspaceIdentifier = Literal["workspace_id", "workspace_name"]

_STATUS_RANGE: Final = re.compile(r"[0-9]+-[0-9]+")
_RANGE_PARTS: Final = re.compile(r"(\d\d\d)-(\d\d\d)")
#: TCP: Kong's connect timeout; keep-alive as tcp-log's default.
_TCP_TIMEOUT_MS: Final = 1000
_TCP_KEEPALIVE_MS: Final = 60000


def check_status_range(value: str) -> str | None:
    if _STATUS_RANGE.fullmatch(value) is None:
        return f"invalid value: {value}"
    return None


StatusRange = Annotated[str, Meta(extra={"kong_check": check_status_range})]


class StatsdMetric(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: MetricName
    stat_type: StatType
    sample_rate: Annotated[float, Meta(gt=0)] | Annotated[int, Meta(gt=0)] | None = None
    consumer_identifier: ConsumerIdentifier | None = None
    service_identifier: ServiceIdentifier | None = None
    workspace_identifier: WorkspaceIdentifier | None = None


def _default_metrics() -> list[StatsdMetric]:
    """Kong's ``DEFAULT_METRICS``: every metric, counters with a sample rate of 1."""
    types: dict[str, StatType] = {
        "request_count": "counter",
        "latency": "timer",
        "request_size": "counter",
        "status_count": "counter",
        "response_size": "counter",
        "unique_users": "set",
        "request_per_user": "counter",
        "upstream_latency": "timer",
        "kong_latency": "timer",
        "status_count_per_user": "counter",
        "status_count_per_workspace": "counter",
        "status_count_per_user_per_route": "counter",
        "shdict_usage": "gauge",
    }
    return [
        StatsdMetric(
            name=name,  # type: ignore[arg-type]
            stat_type=kind,
            sample_rate=1 if kind in ("counter", "gauge") else None,
        )
        for name, kind in types.items()
    ]


class StatsdConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Host = "localhost"
    port: Port = 8125
    prefix: str = "kong"
    metrics: list[StatsdMetric] = msgspec.field(default_factory=_default_metrics)
    allow_status_codes: list[StatusRange] | None = None
    udp_packet_size: Annotated[float, Meta(ge=0, le=65507)] = 0
    use_tcp: bool = False
    hostname_in_prefix: bool = False
    consumer_identifier_default: Annotated[ConsumerIdentifier, REQUIRED] = "custom_id"
    service_identifier_default: Annotated[ServiceIdentifier, REQUIRED] = "service_name_or_host"
    workspace_identifier_default: Annotated[WorkspaceIdentifier, REQUIRED] = "workspace_id"
    retry_count: int | None = None
    queue_size: int | None = None
    flush_timeout: float | None = None
    tag_style: Literal["dogstatsd", "influxdb", "librato", "signalfx"] | None = None
    queue: _queue.QueueConfig = msgspec.field(default_factory=_queue.QueueConfig)


def status_ranges(ranges: list[str] | None) -> list[tuple[int, int]] | None:
    """The ranges Kong can read (three digits each side); None: every status is measured."""
    if ranges is None:
        return None
    found = []
    for text in ranges:
        m = _RANGE_PARTS.search(text)
        if m is not None:
            found.append((int(m.group(1)), int(m.group(2))))
    return found


def line(
    prefix: str,
    stat: str,
    value: Any,
    kind: str,
    rate: float | None,
    tags: list[tuple[str, str]] | None = None,
    style: str | None = None,
) -> str:
    """One StatsD line in Kong's shapes (``create_statsd_message``)."""
    sampled = f"|@{_lua_number(rate)}" if rate is not None and rate != 1 else ""
    if style is None or tags is None:
        return f"{prefix}.{stat}:{value}|{kind}{sampled}"
    if style == "dogstatsd":
        shown = ",".join(f"{k}:{v}" for k, v in tags)
        return f"{prefix}.{stat}:{value}|{kind}{sampled}|#{shown}"
    shown = ",".join(f"{k}={v}" for k, v in tags)
    if style == "influxdb":
        return f"{prefix}.{stat},{shown}:{value}|{kind}{sampled}"
    if style == "librato":
        return f"{prefix}.{stat}#{shown}:{value}|{kind}{sampled}"
    return f"{prefix}.{stat}[{shown}]:{value}|{kind}{sampled}"  # signalfx


def pack(lines: list[str], size: int) -> list[bytes]:
    """Datagrams of lines joined by newlines, each at most ``size`` bytes when the lines allow
    (a longer line goes alone); ``size`` 0: a datagram per line."""
    if size <= 0:
        return [x.encode() for x in lines]
    out: list[bytes] = []
    current: list[str] = []
    used = 0
    for text in lines:
        extra = len(text) + (1 if current else 0)
        if current and used + extra > size:
            out.append("\n".join(current).encode())
            current, used = [], 0
            extra = len(text)
        current.append(text)
        used += extra
    if current:
        out.append("\n".join(current).encode())
    return out


def _consumer_id(consumer: Any, how: str) -> str | None:
    if consumer is None:
        return None
    value = consumer.id if how == "consumer_id" else getattr(consumer, how, None)
    return str(value) if value is not None else None


def _service_id(service: Any, how: str) -> str | None:
    if service is None:
        return None
    if how == "service_id":
        return str(service.id)
    if how == "service_host":
        return str(service.host)
    name = getattr(service, "name", None)
    if how == "service_name":
        return name
    return name if name is not None else str(service.host)


def _hostname() -> str:
    return socket.gethostname().replace(".", "_")


@register_plugin
class Statsd(MetricsPlugin):
    name = "statsd"
    priority = 11
    allowed_protocols = ALL_PROTOCOLS
    Config = StatsdConfig

    def __init__(self, config: StatsdConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.hostname = _hostname()
        prefix = config.prefix
        if config.hostname_in_prefix and config.tag_style is None:
            prefix += f".node.{self.hostname}"
        self.prefix = prefix
        self.ranges = status_ranges(config.allow_status_codes)
        self.packet_size = int(config.udp_packet_size)

    def __repr__(self) -> str:
        transport = "tcp" if self.config.use_tcp else "udp"
        return f"<Statsd {transport}://{self.config.host}:{self.config.port} prefix={self.prefix}>"

    def log(self, ctx: RequestContext) -> None:
        status = ctx.status
        if self.ranges is not None and not any(a <= status <= b for a, b in self.ranges):
            return
        lines = self.lines(ctx, status)
        config = self.config
        if config.use_tcp:
            destination = (
                config.host,
                config.port,
                False,
                None,
                _TCP_TIMEOUT_MS,
                _TCP_KEEPALIVE_MS,
            )
            tcp_sender(destination, "statsd").append("".join(x + "\n" for x in lines).encode())
            return
        out = udp_sender(config.host, config.port, 10000, "statsd")
        for datagram in pack(lines, self.packet_size):
            out.append(datagram)

    def lines(self, ctx: RequestContext, status: int) -> list[str]:
        """Every configured metric of this request, as StatsD lines."""
        config = self.config
        values = measured(ctx)
        service = ctx.service  # plans: id, name (and host) as the entities
        # (no route for an answer no route led to: runtime.NO_ROUTE_PLAN)
        route = ctx.route if ctx.route.id else None
        style = config.tag_style
        out: list[str] = []
        for metric in config.metrics:
            kind = KINDS[metric.stat_type]
            rate = metric.sample_rate
            consumer = _consumer_id(
                ctx.consumer, metric.consumer_identifier or config.consumer_identifier_default
            )
            stat = STATS.get(metric.name)
            if stat is not None:
                value = values[metric.name]
                if value == -1:
                    continue  # nothing was proxied: no upstream latency
                if style is not None:
                    tags = self.tags(service, route, consumer, metric, status)
                    out.append(line(self.prefix, stat, value, kind, rate, tags, style))
                else:
                    scope = self.scope(service, metric)
                    out.append(line(self.prefix, f"{scope}.{stat}", value, kind, rate))
                continue
            if style is not None:
                continue  # Kong sends the per-user and per-status metrics untagged only
            scope = self.scope(service, metric)
            name = metric.name
            if name == "status_count":
                out.append(line(self.prefix, f"{scope}.status.{status}", 1, kind, rate))
            elif name == "status_count_per_workspace":
                workspace = (
                    WORKSPACE_ID
                    if (metric.workspace_identifier or config.workspace_identifier_default)
                    == "workspace_id"
                    else WORKSPACE_NAME
                )
                stat = f"{scope}.workspace.{workspace}.status.{status}"
                out.append(line(self.prefix, stat, 1, kind, rate))
            elif consumer is None or name == "shdict_usage":
                continue
            elif name == "unique_users":
                out.append(line(self.prefix, f"{scope}.user.uniques", consumer, kind, None))
            elif name == "request_per_user":
                stat = f"{scope}.user.{consumer}.request.count"
                out.append(line(self.prefix, stat, 1, kind, rate))
            elif name == "status_count_per_user":
                stat = f"{scope}.user.{consumer}.status.{status}"
                out.append(line(self.prefix, stat, 1, kind, rate))
            elif name == "status_count_per_user_per_route" and route is not None:
                stat = f"route.{route.id}.user.{consumer}.status.{status}"
                out.append(line(self.prefix, stat, 1, kind, rate))
        return out

    def scope(self, service: Any, metric: StatsdMetric) -> str:
        """Kong's ``get_scope_name``."""
        if service is None:
            return "global.unmatched"
        how = metric.service_identifier or self.config.service_identifier_default
        name = _service_id(service, how)
        return "service." + (name.replace(".", "_") if name else "unnamed")

    def tags(
        self, service: Any, route: Any, consumer: str | None, metric: StatsdMetric, status: int
    ) -> list[tuple[str, str]] | None:
        """Kong's ``get_tags``: None (an untagged line) when no service served the request."""
        how = metric.service_identifier or self.config.service_identifier_default
        service_id = _service_id(service, how)
        if service_id is None:
            return None
        workspace = (
            WORKSPACE_ID
            if (metric.workspace_identifier or self.config.workspace_identifier_default)
            == "workspace_id"
            else WORKSPACE_NAME
        )
        tags = [("service", service_id)]
        if route is not None:
            tags.append(("route", route.name or route.id))
        tags.append(("workspace", workspace))
        if consumer is not None:
            tags.append(("consumer", consumer))
        tags.append(("node", self.hostname))
        tags.append(("status", str(status)))
        return tags
