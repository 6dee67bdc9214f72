"""What the statsd and datadog plugins share: the measured values of a request, StatsD's type
letters and Kong's stat names, and the metrics' sample-rate rule (:class:`MetricsPlugin`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from fastkong.config import errors as E
from fastkong.plugins.bundled._serializer import (
    Latencies,
    LogPlugin,
    request_size,
    response_size,
)

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext

#: StatsD's type letters, by Kong's ``stat_type``.
KINDS: Final = {
    "gauge": "g",
    "counter": "c",
    "timer": "ms",
    "histogram": "h",
    "meter": "m",
    "set": "s",
    "distribution": "d",
}
#: Kong's stat names of the metrics that are one measured value each.
STATS: Final = {
    "request_count": "request.count",
    "latency": "latency",
    "request_size": "request.size",
    "response_size": "response.size",
    "upstream_latency": "upstream_latency",
    "kong_latency": "kong_latency",
}


def measured(ctx: RequestContext) -> dict[str, int]:
    """The request's values for :data:`STATS` (ms and bytes; ``upstream_latency`` is -1 when
    nothing was proxied)."""
    latencies = Latencies(ctx, time.monotonic())
    return {
        "request_count": 1,
        "latency": latencies.request,
        "request_size": request_size(ctx),
        "response_size": response_size(ctx),
        "upstream_latency": latencies.proxy,
        "kong_latency": latencies.kong,
    }


def sample_rate_checks(metrics: Any) -> list[tuple[str, str]]:
    """Kong's conditional on each metric: counters and gauges need a ``sample_rate``."""
    out: list[tuple[str, str]] = []
    for i, metric in enumerate(metrics):
        if metric.stat_type in ("counter", "gauge") and metric.sample_rate is None:
            out.append((f"metrics[{i}].sample_rate", E.REQUIRED))
            out.append((f"metrics[{i}].@entity", E.CONDITIONAL.format("stat_type")))
    return out


def raw_sample_rate_checks(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """The same conditional on a config whose fields failed (Kong runs it anyway, per metric):
    a metric given a ``sample_rate`` but no ``stat_type`` is told its ``stat_type`` is
    "required for entity check"; a counter or gauge without ``sample_rate`` still needs one."""
    metrics = raw.get("metrics")
    out: list[tuple[str, str]] = []
    for i, metric in enumerate(metrics if isinstance(metrics, list) else ()):
        if not isinstance(metric, dict):
            continue
        stat_type, sample_rate = metric.get("stat_type"), metric.get("sample_rate")
        if stat_type is None and sample_rate is not None:
            out.append((f"metrics[{i}].stat_type", E.REQUIRED_FOR_ENTITY_CHECK))
        elif stat_type in ("counter", "gauge") and sample_rate is None:
            out.append((f"metrics[{i}].sample_rate", E.REQUIRED))
            out.append((f"metrics[{i}].@entity", E.CONDITIONAL.format("stat_type")))
    return out


class MetricsPlugin(LogPlugin):
    """statsd and datadog: a log-phase plugin whose metrics follow Kong's sample-rate rule."""

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        return sample_rate_checks(config.metrics)

    @classmethod
    def check_invalid(cls, raw: dict[str, Any]) -> list[tuple[str, str]]:
        return raw_sample_rate_checks(raw)
