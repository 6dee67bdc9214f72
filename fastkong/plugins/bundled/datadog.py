"""datadog: each request's metrics as DogStatsD lines to the Datadog agent
(``kong:kong/plugins/datadog``).

Priority 10. One UDP datagram per configured metric: ``<prefix>.<stat>:<value>|<type>``, then
``|@<rate>`` when sampled and ``|#<tags>``: ``<service_name_tag>:<service name or host, dots made
underscores>``, ``<status_tag>:<status>``, ``<consumer_tag>:<consumer>`` when the metric names a
``consumer_identifier`` and a consumer was identified (a ``consumer_id`` with its dashes made
underscores), then the metric's own ``tags``. Stats: ``request.count``, ``latency``,
``request.size``, ``response.size``, ``upstream_latency``, ``kong_latency``. With ``host`` set to
null, the agent is ``KONG_DATADOG_AGENT_HOST``/``KONG_DATADOG_AGENT_PORT``, as in Kong.

Where fastkong differs: a request that was never proxied sends no ``upstream_latency`` (Kong
sends ``-1`` ms, which drags every latency aggregate down). ``queue`` is validated and not used:
a metric is sent as it comes, through the udp-log sender (never in the request's way).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.config.schema import REFERENCEABLE, Host, Port
from fastkong.plugins.bundled import _queue
from fastkong.plugins.bundled._statsd_common import KINDS, STATS, MetricsPlugin, measured
from fastkong.plugins.bundled.rate_limiting import _lua_number
from fastkong.plugins.bundled.udp_log import sender as udp_sender
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

StatName = Literal[
    "kong_latency", "latency", "request_count", "request_size", "response_size", "upstream_latency"
]
StatType = Literal["counter", "gauge", "histogram", "meter", "set", "timer", "distribution"]
ConsumerIdentifier = Literal["consumer_id", "custom_id", "username"]

_TAG: Final = re.compile(r".*[^:]", re.DOTALL)


def check_tag(value: str) -> str | None:
    """Kong's ``match = "^.*[^:]$"``: a tag does not end with a colon (nor is it empty)."""
    return None if _TAG.fullmatch(value) else f"invalid value: {value}"


Tag = Annotated[str, Meta(extra={"kong_check": check_tag})]


class DatadogMetric(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: StatName
    stat_type: StatType
    tags: list[Tag] | None = None
    sample_rate: Annotated[float, Meta(ge=0, le=1)] | Annotated[int, Meta(ge=0, le=1)] | None = None
    consumer_identifier: ConsumerIdentifier | None = None


def _default_metrics() -> list[DatadogMetric]:
    """Kong's ``DEFAULT_METRICS``: tagged ``app:kong``, consumers by custom id."""
    kinds: dict[StatName, StatType] = {
        "request_count": "counter",
        "latency": "timer",
        "request_size": "timer",
        "response_size": "timer",
        "upstream_latency": "timer",
        "kong_latency": "timer",
    }
    return [
        DatadogMetric(
            name=name,
            stat_type=kind,
            tags=["app:kong"],
            sample_rate=1 if kind == "counter" else None,
            consumer_identifier="custom_id",
        )
        for name, kind in kinds.items()
    ]


class DatadogConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Annotated[Host, REFERENCEABLE] | None = "localhost"
    port: Port | None = 8125
    prefix: str = "kong"
    service_name_tag: str = "name"
    status_tag: str = "status"
    consumer_tag: str = "consumer"
    retry_count: int | None = None
    queue_size: int | None = None
    flush_timeout: float | None = None
    queue: _queue.QueueConfig = msgspec.field(default_factory=_queue.QueueConfig)
    metrics: list[DatadogMetric] = msgspec.field(default_factory=_default_metrics)


def _consumer_value(consumer: Any, how: str | None) -> str | None:
    if consumer is None or how is None:
        return None
    if how == "consumer_id":
        return str(consumer.id).replace("-", "_")
    value = getattr(consumer, how, None)
    return str(value) if value is not None else None


@register_plugin
class Datadog(MetricsPlugin):
    name = "datadog"
    priority = 10
    allowed_protocols = ALL_PROTOCOLS
    Config = DatadogConfig

    def __init__(self, config: DatadogConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        env_port = os.environ.get("KONG_DATADOG_AGENT_PORT", "")
        self.host = config.host or os.environ.get("KONG_DATADOG_AGENT_HOST") or "localhost"
        self.port = config.port or (int(env_port) if env_port.isdigit() else 8125)

    def __repr__(self) -> str:
        return f"<Datadog {self.host}:{self.port} prefix={self.config.prefix}>"

    def log(self, ctx: RequestContext) -> None:
        out = udp_sender(self.host, self.port, 10000, "datadog")
        for text in self.lines(ctx):
            out.append(text.encode())

    def lines(self, ctx: RequestContext) -> list[str]:
        config = self.config
        values = measured(ctx)
        service = ctx.service
        service_name = ""
        if service is not None:
            service_name = (service.name if service.name is not None else service.host).replace(
                ".", "_"
            )
        status = str(ctx.status) if ctx.status else "-"
        found = []
        for metric in config.metrics:
            value = values[metric.name]
            if value == -1:
                continue  # never proxied: no upstream latency (Kong sends -1)
            tags = [f"{config.service_name_tag}:{service_name}", f"{config.status_tag}:{status}"]
            consumer = _consumer_value(ctx.consumer, metric.consumer_identifier)
            if consumer is not None:
                tags.append(f"{config.consumer_tag}:{consumer}")
            tags += metric.tags or ()
            rate = metric.sample_rate
            sampled = f"|@{_lua_number(rate)}" if rate is not None and rate != 1 else ""
            found.append(
                f"{config.prefix}.{STATS[metric.name]}:{value}|{KINDS[metric.stat_type]}"
                f"{sampled}|#{','.join(tags)}"
            )
        return found
