"""zipkin: Kong's schema (spec/03-plugins/34-zipkin/schema_spec.lua), the spans and their Zipkin
v2 JSON, the tags header (request_tags_spec.lua), propagation round trips through the plugin's
own access phase, and real gateways exporting to a loopback collector (zipkin_spec.lua,
zipkin_no_endpoint_spec.lua, zipkin_queue_spec.lua)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled import _zipkin as Z
from fastkong.plugins.bundled._propagation import (
    TRACE_ID_KEY,
    Plan,
    TraceContext,
    extract_one,
    inject_one,
    to_id_size,
)
from fastkong.plugins.bundled.zipkin import KEY, Trace, Zipkin, ZipkinConfig, zipkin_plan
from fastkong.plugins.context import RequestContext
from fastkong.plugins.registry import lookup, missing_message
from fastkong.proxy.routing import Decision, decide
from fastkong.runtime import compile_runtime
from tests.helpers import (
    Echo,
    Gateway,
    LoopServer,
    echoed_headers,
    eventually,
    free_port,
    read_request,
)

TRACE_16 = "0af7651916cd43dd8448eb211c80319c"
TRACE_8 = "8448eb211c80319c"
SPAN_1 = "b7ad6b7169203331"
SPAN_2 = "b7ad6b7169203332"
PAD = "0" * 16


def document(config: dict[str, Any]) -> str:
    return json.dumps({"_format_version": "3.0", "plugins": [{"name": "zipkin", "config": config}]})


def errors_of(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(document(config))
    return [f"{e.path}: {e.message}" for e in info.value.errors]


# -- schema --------------------------------------------------------------------------------------
def test_schema_defaults_are_kongs() -> None:
    config = load_config(document({})).config.plugins[0].config
    assert config == {
        "local_service_name": "kong",
        "http_endpoint": None,
        "sample_ratio": 0.001,
        "default_service_name": None,
        "include_credential": True,
        "traceid_byte_count": 16,
        "header_type": "preserve",
        "default_header_type": "b3",
        "tags_header": "Zipkin-Tags",
        "static_tags": None,
        "http_span_name": "method",
        "connect_timeout": 2000,
        "send_timeout": 5000,
        "read_timeout": 5000,
        "http_response_header_for_traceid": None,
        "phase_duration_flavor": "annotations",
        "queue": {
            "max_batch_size": 1,  # Kong's typedefs.queue: zipkin sets no default of its own
            "max_coalescing_delay": 1,
            "max_entries": 10000,
            "max_bytes": None,
            "max_retry_time": 60,
            "initial_retry_delay": 0.01,
            "max_retry_delay": 60,
            "concurrency_limit": 1,
        },
        "propagation": {"extract": None, "clear": None, "inject": None, "default_format": "b3"},
    }
    spec = lookup("zipkin")
    assert spec is not None and spec.priority == 100000 and spec.handler is Zipkin
    assert missing_message("zipkin") is not None  # still a Kong plugin, for unknown registries


def test_schema_errors_have_kongs_paths_and_words() -> None:
    assert errors_of(
        {
            "http_endpoint": "nope",
            "sample_ratio": 1.5,
            "traceid_byte_count": 12,
            "header_type": "zipkin",
            "default_header_type": "preserve",
            "http_span_name": "path",
            "connect_timeout": -1,
            "read_timeout": 2**31,
            "phase_duration_flavor": "both",
            "queue": {"max_batch_size": 0, "size": 1},
            "propagation": {"extract": ["b3-single"], "inject": ["zipkin"]},
            # the opentelemetry plugin's deprecated batching fields: zipkin never had them
            "batch_span_count": 10,
        }
    ) == [
        "plugins[0].config.http_endpoint: missing host in url",
        "plugins[0].config.sample_ratio: value should be between 0 and 1",
        "plugins[0].config.traceid_byte_count: expected one of: 8, 16",
        "plugins[0].config.header_type: expected one of: preserve, ignore, b3, b3-single, w3c, "
        "jaeger, ot, aws, datadog, gcp",
        "plugins[0].config.default_header_type: expected one of: b3, b3-single, w3c, jaeger, ot, "
        "aws, datadog, gcp",
        "plugins[0].config.http_span_name: expected one of: method, method_path",
        "plugins[0].config.connect_timeout: value should be between 0 and 2147483646",
        "plugins[0].config.read_timeout: value should be between 0 and 2147483646",
        "plugins[0].config.phase_duration_flavor: expected one of: annotations, tags",
        "plugins[0].config.queue.max_batch_size: value should be between 1 and 1000000",
        "plugins[0].config.queue.size: unknown field",
        "plugins[0].config.propagation.extract[0]: expected one of: w3c, b3, jaeger, ot, "
        "datadog, aws, gcp",
        "plugins[0].config.propagation.inject[0]: expected one of: preserve, w3c, b3, "
        "b3-single, jaeger, ot, datadog, aws, gcp",
        "plugins[0].config.propagation.default_format: required field missing",
        "plugins[0].config.batch_span_count: unknown field",
    ]


def test_each_plugin_lists_its_own_values_in_its_own_order() -> None:
    """opentelemetry's header_type has the same values in another order: each message keeps
    its schema's."""
    plugins = [
        {"name": "opentelemetry", "config": {"traces_endpoint": "http://c/", "header_type": "x"}},
        {"name": "zipkin", "config": {"header_type": "x"}},
    ]
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps({"_format_version": "3.0", "plugins": plugins}))
    assert [e.message for e in info.value.errors] == [
        "expected one of: preserve, ignore, b3, b3-single, w3c, jaeger, ot, aws, gcp, datadog",
        "expected one of: preserve, ignore, b3, b3-single, w3c, jaeger, ot, aws, datadog, gcp",
    ]


def test_static_tags_are_unique_and_not_the_plugins_own() -> None:
    assert errors_of(
        {"static_tags": [{"name": "foo", "value": "bar"}, {"name": "foo", "value": "baz"}]}
    ) == ["plugins[0].config.static_tags: repeated tags are not allowed: foo"]
    assert errors_of(
        {"static_tags": [{"name": "http.path", "value": "x"}, {"name": "a"}, {"value": "b"}]}
    ) == [
        "plugins[0].config.static_tags[0].name: must not be one of: error, http.method, "
        "http.path, http.status_code, kong.balancer.state, kong.balancer.try, kong.consumer, "
        "kong.credential, kong.node.id, kong.route, kong.service, lc, peer.hostname",
        "plugins[0].config.static_tags[1].value: required field missing",
        "plugins[0].config.static_tags[2].name: required field missing",
    ]
    good = {"static_tags": [{"name": "env", "value": "prod"}, {"name": "http.host", "value": "x"}]}
    assert (
        load_config(document(good)).config.plugins[0].config["static_tags"] == good["static_tags"]
    )


def test_required_fields_refuse_null_and_the_others_take_their_default() -> None:
    assert errors_of(
        {
            "local_service_name": None,
            "include_credential": None,
            "traceid_byte_count": None,
            "tags_header": None,
            "http_span_name": None,
        }
    ) == [
        "plugins[0].config.local_service_name: required field missing",
        "plugins[0].config.include_credential: required field missing",
        "plugins[0].config.traceid_byte_count: required field missing",
        "plugins[0].config.tags_header: required field missing",
        "plugins[0].config.http_span_name: required field missing",
    ]
    config = load_config(document({"sample_ratio": None, "connect_timeout": None})).config
    assert config.plugins[0].config["sample_ratio"] == 0.001
    assert config.plugins[0].config["connect_timeout"] == 2000


def test_deprecated_header_types_map_to_propagation_as_kong() -> None:
    legacy = ("b3", "w3c", "jaeger", "ot", "datadog", "aws", "gcp")

    def plan(**fields: Any) -> Plan:
        return zipkin_plan(msgspec.convert(fields, ZipkinConfig))

    # the defaults: preserve whatever came in, b3 for a new trace
    assert plan() == Plan(legacy, (), ("preserve",), "b3")
    # default_header_type replaces propagation.default_format while propagation is unused...
    assert plan(default_header_type="w3c", propagation={"default_format": "ot"}) == Plan(
        legacy, (), ("preserve",), "w3c"
    )
    assert plan(header_type="ignore", default_header_type="jaeger") == Plan(
        (), (), ("jaeger",), "jaeger"
    )
    assert plan(header_type="w3c") == Plan(legacy, (), ("preserve", "w3c"), "b3")
    # ...and neither counts once propagation says what to do
    assert plan(
        header_type="ignore",
        default_header_type="jaeger",
        propagation={"extract": ["w3c"], "inject": ["preserve"], "default_format": "datadog"},
    ) == Plan(("w3c",), (), ("preserve",), "datadog")


# -- spans and their JSON ------------------------------------------------------------------------
def _clock(wall_us: int = 1_700_000_000_000_000, mono: float = 50.0) -> Z.Clock:
    clock = Z.Clock()
    clock.wall_us, clock.mono = wall_us, mono
    return clock


def test_spans_are_zipkin_v2_json() -> None:
    request = Z.Span(
        "SERVER", "GET", 40.0, True, bytes.fromhex(TRACE_16), bytes.fromhex(SPAN_1), None
    )
    request.tags.update({"lc": "kong", "http.status_code": 200, "error": True, "empty": ""})
    request.ip, request.port = "10.0.0.7", 51234
    request.annotate("krs", 40.0)
    proxy = request.child("CLIENT", "GET (proxy)", 40.001)
    proxy.ip, proxy.port, proxy.service_name = "::1", 8080, "orders"
    clock = _clock()
    assert json.loads(Z.encode(request, 40.0105, clock, "kong")) == {
        "traceId": TRACE_16,
        "name": "GET",
        "id": SPAN_1,
        "kind": "SERVER",
        "timestamp": 1_700_000_000_000_000 - 10_000_000,
        "duration": 10_500,
        "localEndpoint": {"serviceName": "kong"},
        "remoteEndpoint": {"ipv4": "10.0.0.7", "port": 51234},
        "tags": {"lc": "kong", "http.status_code": "200", "error": "true"},
        "annotations": [{"timestamp": 1_700_000_000_000_000 - 10_000_000, "value": "krs"}],
    }
    encoded = json.loads(Z.encode(proxy, 40.001, clock, "edge", "fallback"))
    assert encoded["parentId"] == SPAN_1 and encoded["traceId"] == TRACE_16
    assert encoded["id"] != SPAN_1 and len(encoded["id"]) == 16
    assert encoded["duration"] == 1  # under a microsecond is "unknown" to Zipkin: round up
    assert encoded["localEndpoint"] == {"serviceName": "edge"}
    assert encoded["remoteEndpoint"] == {"serviceName": "orders", "ipv6": "::1", "port": 8080}
    assert "tags" not in encoded and "annotations" not in encoded
    both = json.loads(Z.batch([Z.encode(request, 41, clock, "k"), Z.encode(proxy, 41, clock, "k")]))
    assert [span["kind"] for span in both] == ["SERVER", "CLIENT"]


def test_remote_endpoint_needs_a_port_or_a_service_name() -> None:
    span = Z.Span("CLIENT", "GET (proxy)", 1.0, True, b"\x01" * 8)
    assert Z.remote_endpoint(span, None) is None
    assert "remoteEndpoint" not in json.loads(Z.encode(span, 2.0, _clock(), "kong"))
    assert Z.remote_endpoint(span, "default") == Z.Endpoint(service_name="default")
    span.ip = "192.0.2.1"  # an address alone says nothing Zipkin keeps
    assert Z.remote_endpoint(span, None) is None
    span.port = 443
    assert Z.remote_endpoint(span, None) == Z.Endpoint(ipv4="192.0.2.1", port=443)
    span.service_name = "svc"
    assert Z.remote_endpoint(span, "default") == Z.Endpoint("svc", "192.0.2.1", None, 443)


def test_tags_header_is_read_as_kong_reads_it() -> None:
    assert Z.parse_request_tags(["foo=bar; baz=qux"]) == ({"foo": "bar", "baz": "qux"}, None)
    assert Z.parse_request_tags(["foo=bar", "baz = qux ;;", "foo=again"]) == (
        {"foo": "again", "baz": "qux"},
        None,
    )
    assert Z.parse_request_tags(["  k =  a value with spaces  "]) == (
        {"k": "a value with spaces"},
        None,
    )
    # Lua's greedy (%S+) keeps the last "=" that leaves a value: a=b=c is "a=b" -> "c"
    assert Z.parse_request_tags(["a=b=c"]) == ({"a=b": "c"}, None)
    assert Z.parse_request_tags(["good=1;bad;=x; no = "]) == (
        {"good": "1"},
        "Could not parse the following Zipkin tags: bad, =x,  no = ",
    )


# -- the plugin's phases on a compiled config ---------------------------------------------------
def _plugin_and_ctx(
    config: dict[str, Any], headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[Zipkin, RequestContext]:
    text = json.dumps(
        {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "orders",
                    "url": "http://127.0.0.1:9/base",
                    "routes": [
                        {
                            "name": "api",
                            "paths": ["/api"],
                            "plugins": [{"name": "zipkin", "config": config}],
                        }
                    ],
                }
            ],
        }
    )
    loaded = load_config(text)
    runtime = compile_runtime(loaded.config, loaded.hash)
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": "/api/items",
        "raw_path": b"/api/items",
        "query_string": b"",
        "headers": [(b"host", b"gw.example")]
        + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "scheme": "http",
        "http_version": "1.1",
        "client": ("10.0.0.7", 51234),
    }
    decision = decide(runtime, method, "gw.example", 8000, "/api/items", "http", None)
    assert isinstance(decision, Decision)
    ctx = RequestContext(
        runtime,
        scope,
        None,  # type: ignore[arg-type]
        decision.plan,
        decision.match,
        decision.path,
        decision.host,
        8000,
        "10.0.0.7",
        "req-1",
        time.monotonic(),
    )
    plugin = decision.plan.plugins[0]
    assert isinstance(plugin, Zipkin)
    return plugin, ctx


def _upstream(ctx: RequestContext) -> dict[str, str]:
    found = {}
    for key, value in ctx.upstream_set.items():
        assert isinstance(value, bytes)
        found[key.decode()] = value.decode()
    return found


def _trace(ctx: RequestContext) -> Trace:
    trace = ctx.plugin_data[KEY]
    assert isinstance(trace, Trace)
    return trace


def _incoming(
    fmt: str, sampled: bool | None, size: int = 16
) -> tuple[TraceContext, dict[str, str]]:
    trace_hex = TRACE_16 if size == 16 else TRACE_8
    sent = TraceContext(
        to_id_size(bytes.fromhex(trace_hex), 16),
        bytes.fromhex(SPAN_1),
        bytes.fromhex(SPAN_2),
        sampled,
        trace_id_original_size=size,
    )
    headers, _ = inject_one(fmt, sent)
    return sent, dict(headers)


#: format -> the extractor reading it, and whether the receiver reuses the incoming span id.
ROUND_TRIPS = [
    ("b3", "b3", True),
    ("b3-single", "b3", True),
    ("w3c", "w3c", False),
    ("jaeger", "jaeger", True),
    ("ot", "ot", False),
    ("datadog", "datadog", False),
    ("aws", "aws", False),
    ("gcp", "gcp", False),
]


@pytest.mark.parametrize(("fmt", "extractor", "reused"), ROUND_TRIPS)
def test_propagation_round_trips_through_the_access_phase(
    fmt: str, extractor: str, reused: bool
) -> None:
    # datadog carries 64-bit trace ids only
    sent, headers = _incoming(fmt, True, size=8 if fmt == "datadog" else 16)
    plugin, ctx = _plugin_and_ctx(
        {
            "http_endpoint": "http://127.0.0.1:9411/api/v2/spans",
            "propagation": {
                "extract": [extractor],
                "inject": ["preserve"],
                "default_format": "w3c",
            },
        },
        headers,
    )
    asyncio.run(plugin.access(ctx))
    trace = _trace(ctx)
    request, proxy = trace.request, trace.proxy
    assert request.trace_id == sent.trace_id and request.sampled and trace.recording
    if reused:  # b3, jaeger: the client's span is ours, its parent is our parent
        assert (request.span_id, request.parent_id) == (sent.span_id, sent.parent_id)
    else:  # the others name the client's span: ours is its child
        assert request.parent_id == sent.span_id and request.span_id != sent.span_id
    assert proxy.parent_id == request.span_id and proxy.trace_id == request.trace_id
    # what went upstream reads back as the proxy span, in the incoming format
    got = extract_one(extractor, _upstream(ctx))
    assert got is not None
    assert got.trace_id == sent.trace_id and got.span_id == proxy.span_id
    assert got.should_sample is True
    if fmt in ("b3", "b3-single", "jaeger"):
        assert got.parent_id == request.span_id
    assert (fmt == "b3-single") == ("b3" in _upstream(ctx))
    assert ctx.plugin_data[TRACE_ID_KEY]  # the log serializer's trace_id


def test_64_bit_ids_keep_their_size_where_the_format_allows() -> None:
    sent, headers = _incoming("b3", True, size=8)
    plugin, ctx = _plugin_and_ctx({}, headers)
    asyncio.run(plugin.access(ctx))
    up = _upstream(ctx)
    assert up["x-b3-traceid"] == TRACE_8 and up["x-b3-parentspanid"] == SPAN_1
    assert ctx.plugin_data[TRACE_ID_KEY] == {"b3": TRACE_8}
    assert _trace(ctx).request.trace_id.hex() == PAD + TRACE_8  # kept at 16 bytes, as Kong
    # a new trace with traceid_byte_count 8: 64-bit, padded where the format writes 128
    plugin, ctx = _plugin_and_ctx({"traceid_byte_count": 8, "default_header_type": "w3c"})
    asyncio.run(plugin.access(ctx))
    trace_id = _trace(ctx).request.trace_id
    assert len(trace_id) == 8
    assert _upstream(ctx)["traceparent"].split("-")[1] == PAD + trace_id.hex()


@pytest.mark.parametrize(
    ("incoming", "fmt"),
    [
        ({"x-b3-sampled": "0"}, "b3"),
        ({"traceparent": f"00-{TRACE_16}-{SPAN_1}-00"}, "w3c"),
        ({"b3": f"{TRACE_16}-{SPAN_1}-0"}, "b3-single"),
        ({}, "ot"),
    ],
)
def test_an_unsampled_request_propagates_without_a_sampled_flag_but_b3s(
    incoming: dict[str, str], fmt: str
) -> None:
    plugin, ctx = _plugin_and_ctx(
        {"http_endpoint": "http://127.0.0.1:9411/", "sample_ratio": 0, "default_header_type": fmt},
        incoming,
    )
    asyncio.run(plugin.access(ctx))
    trace = _trace(ctx)
    assert not trace.request.sampled and not trace.recording
    up = _upstream(ctx)
    proxy = trace.proxy
    span, parent = proxy.span_id.hex(), trace.request.span_id.hex()
    if fmt == "b3":  # no ids came in: the new trace's go up, b3 always writes the flag
        assert up["x-b3-sampled"] == "0" and up["x-b3-spanid"] == span
        assert up["x-b3-traceid"] == proxy.trace_id.hex()
    elif fmt == "w3c":
        assert up["traceparent"] == f"00-{TRACE_16}-{span}-00"
    elif fmt == "b3-single":  # Kong's inject context leaves "sampled" unset, b3 single omits it
        assert up["b3"] == f"{TRACE_16}-{span}-{parent}" and parent == SPAN_1
    else:
        assert "ot-tracer-sampled" not in up and up["ot-tracer-spanid"] == span
    assert plugin.entries(ctx, time.monotonic()) == []  # nothing is exported


def test_spans_of_a_request_with_annotations() -> None:
    plugin, ctx = _plugin_and_ctx(
        {
            "http_endpoint": "http://127.0.0.1:9411/api/v2/spans",
            "sample_ratio": 1,
            "static_tags": [{"name": "env", "value": "test"}],
            "http_response_header_for_traceid": "X-Trace-Id",
        },
        {"zipkin-tags": "foo=bar; error = true", "x-b3-traceid": TRACE_16},
    )
    asyncio.run(plugin.access(ctx))
    ctx.access_ended = time.monotonic()  # as the runner notes it
    ctx.upstream_peer = ("127.0.0.1", 9, "127.0.0.1")
    headers: list[tuple[bytes, bytes]] = []
    ctx.status = 200
    plugin.response(ctx, 200, headers)
    assert headers == [(b"x-trace-id", TRACE_16.encode())]
    assert plugin.body(ctx, b"he", False) == b"he"
    assert plugin.body(ctx, b"llo", True) == b"llo"
    proxy_json, request_json = (json.loads(e) for e in plugin.entries(ctx, time.monotonic()))
    tags = request_json["tags"]
    uuid.UUID(tags.pop("kong.node.id"))
    assert tags == {
        "lc": "kong",
        "http.method": "GET",
        "http.host": "gw.example",
        "http.path": "/api/items",
        "http.protocol": "HTTP/1.1",
        "http.status_code": "200",
        "env": "test",
        "foo": "bar",
        "error": "true",  # the tags header may set any tag, as in Kong
    }
    assert request_json["remoteEndpoint"] == {"ipv4": "10.0.0.7", "port": 51234}
    assert [a["value"] for a in request_json["annotations"]] == ["krs"]
    assert proxy_json["name"] == "GET (proxy)" and proxy_json["parentId"] == request_json["id"]
    assert proxy_json["remoteEndpoint"] == {"serviceName": "orders", "ipv4": "127.0.0.1", "port": 9}
    assert set(proxy_json["tags"]) == {
        "kong.service",
        "kong.service_name",
        "kong.route",
        "kong.route_name",
        "peer.hostname",
    }
    marks = {a["value"]: a["timestamp"] for a in proxy_json["annotations"]}
    assert [a["value"] for a in proxy_json["annotations"]] == [
        "khs", "khf", "kbs", "kas", "kaf", "kbf",
    ]  # fmt: skip
    assert marks["kas"] <= marks["kaf"] <= marks["khs"] <= marks["khf"] == marks["kbs"]
    assert marks["kbs"] <= marks["kbf"]
    assert proxy_json["timestamp"] == marks["kas"]
    assert request_json["timestamp"] <= proxy_json["timestamp"]
    assert request_json["duration"] >= proxy_json["duration"]


def test_a_plugin_that_answered_first_and_the_tags_flavor() -> None:
    plugin, ctx = _plugin_and_ctx(
        {
            "http_endpoint": "http://127.0.0.1:9411/api/v2/spans",
            "sample_ratio": 1,
            "phase_duration_flavor": "tags",
            "http_span_name": "method_path",
            "default_service_name": "clients",
        },
        method="POST",
    )
    asyncio.run(plugin.access(ctx))
    ctx.access_ended = time.monotonic()
    ctx.status = 401  # answered by a later plugin: no peer was chosen
    plugin.response(ctx, 401, [])
    plugin.body(ctx, b"{}", True)
    proxy_json, request_json = (json.loads(e) for e in plugin.entries(ctx, time.monotonic()))
    assert (request_json["name"], proxy_json["name"]) == (
        "POST /api/items",
        "POST /api/items (proxy)",
    )
    assert request_json["tags"]["http.status_code"] == "401"
    assert "annotations" not in request_json and "annotations" not in proxy_json
    durations = {k: v for k, v in proxy_json["tags"].items() if k.endswith("duration_ms")}
    assert set(durations) == {
        "kong.access.duration_ms",
        "kong.header_filter.duration_ms",
        "kong.body_filter.duration_ms",
    }
    assert all(int(v) >= 0 for v in durations.values())
    assert "peer.hostname" not in proxy_json["tags"]
    assert proxy_json["remoteEndpoint"] == {"serviceName": "orders"}
    assert request_json["remoteEndpoint"]["serviceName"] == "clients"


def test_without_an_endpoint_headers_still_propagate() -> None:
    plugin, ctx = _plugin_and_ctx(
        {"sample_ratio": 1, "http_response_header_for_traceid": "X-Trace-Id"}
    )
    asyncio.run(plugin.access(ctx))
    trace = _trace(ctx)
    assert trace.request.sampled and not trace.recording
    up = _upstream(ctx)
    assert up["x-b3-sampled"] == "1" and up["x-b3-spanid"] == trace.proxy.span_id.hex()
    headers: list[tuple[bytes, bytes]] = []
    plugin.response(ctx, 200, headers)
    assert headers == [(b"x-trace-id", trace.request.trace_id.hex().encode())]
    assert plugin.entries(ctx, time.monotonic()) == []


def test_timeouts_are_kongs_milliseconds() -> None:
    plugin, _ = _plugin_and_ctx({"connect_timeout": 250, "send_timeout": 100, "read_timeout": 700})
    assert (plugin.connect_timeout, plugin.read_timeout) == (0.25, 0.7)
    plugin, _ = _plugin_and_ctx({})
    assert (plugin.connect_timeout, plugin.read_timeout) == (2.0, 5.0)


# -- through real gateways -----------------------------------------------------------------------
@dataclass
class Post:
    target: str
    headers: dict[str, str]
    spans: list[dict[str, Any]]


class Collector(LoopServer):
    """A Zipkin collector on loopback: keeps every POST; answers 202, or 500 to ``/fail``."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[Post] = []
        self.failed = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                headers, body, target = request.lowered, request.body, request.target
                if target == "/hang":  # read, never answer: the gateway's read timeout ends it
                    await reader.read()
                    return
                if target == "/fail":
                    self.failed += 1
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                else:
                    self.posts.append(Post(target, headers, json.loads(body)))
                    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def spans(self, trace_id: str) -> list[dict[str, Any]]:
        return [s for post in list(self.posts) for s in post.spans if s["traceId"] == trace_id]

    def wait(self, trace_id: str, count: int = 2, timeout: float = 10.0) -> dict[str, Any]:
        """The trace's spans by kind, once ``count`` arrived."""
        eventually(lambda: len(self.spans(trace_id)) >= count, timeout)
        found = self.spans(trace_id)
        assert len(found) == count, found
        return {span["kind"]: span for span in found}


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    server = Echo().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector().start()
    yield server
    server.stop()


FAST = {"max_coalescing_delay": 0.1, "initial_retry_delay": 0.05, "max_retry_time": 0.4}


def _routes(collector: Collector) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    url = f"http://127.0.0.1:{collector.port}/api/v2/spans"
    return {
        "traced": (
            {
                "http_endpoint": url,
                "sample_ratio": 1,
                "static_tags": [{"name": "static", "value": "ok"}],
                "http_response_header_for_traceid": "X-Trace-Id",
                "queue": {**FAST, "max_batch_size": 10},
            },
            [],
        ),
        "short": (
            {
                "http_endpoint": url,
                "sample_ratio": 1,
                "traceid_byte_count": 8,
                "http_span_name": "method_path",
                "phase_duration_flavor": "tags",
                "http_response_header_for_traceid": "X-Trace-Id",
                "queue": FAST,
            },
            [],
        ),
        "unsampled": (
            {"http_endpoint": url, "sample_ratio": 0, "queue": FAST, "default_header_type": "w3c"},
            [],
        ),
        "no-endpoint": ({"sample_ratio": 1, "http_response_header_for_traceid": "X-Trace-Id"}, []),
        "guarded": (
            {"http_endpoint": url, "sample_ratio": 1, "queue": FAST},
            [{"name": "key-auth"}],
        ),
        "refused": (
            {
                "http_endpoint": f"http://127.0.0.1:{collector.port}/fail",
                "sample_ratio": 1,
                "queue": FAST,
                "http_response_header_for_traceid": "X-Trace-Id",
            },
            [],
        ),
        "hung": (
            {
                "http_endpoint": f"http://127.0.0.1:{collector.port}/hang",
                "sample_ratio": 1,
                "send_timeout": 100,
                "read_timeout": 300,
                "queue": {**FAST, "max_retry_time": 0.1},
            },
            [],
        ),
        "dead": (
            {
                "http_endpoint": f"http://127.0.0.1:{free_port()}/api/v2/spans",
                "sample_ratio": 1,
                "connect_timeout": 200,
                "queue": FAST,
            },
            [],
        ),
    }


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, collector: Collector
) -> Iterator[Gateway]:
    routes = [
        {
            "name": name,
            "paths": [f"/{name}"],
            "plugins": [{"name": "zipkin", "config": config}, *others],
        }
        for name, (config, others) in _routes(collector).items()
    ]
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
        "consumers": [{"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]}],
    }
    workdir = tmp_path_factory.mktemp("zipkin")
    server = Gateway(workdir, json.dumps(config))
    server.stderr_path = workdir / "stderr.log"
    server.start()
    yield server
    server.stop()


def _stderr(gateway: Gateway) -> str:
    assert gateway.stderr_path is not None
    return gateway.stderr_path.read_text(errors="replace")


@pytest.mark.integration
def test_a_sampled_b3_request_exports_its_server_and_client_spans(
    gateway: Gateway, collector: Collector, echo: Echo
) -> None:
    trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
    r = httpx.get(
        gateway.url("/traced/items?q=1"),
        headers={
            "x-b3-traceid": trace_id,
            "x-b3-spanid": SPAN_1,
            "x-b3-parentspanid": parent,
            "x-b3-sampled": "1",
            "zipkin-tags": "foo=bar; baz=qux",
        },
    )
    assert r.status_code == 200
    assert r.headers["x-trace-id"] == trace_id
    up = echoed_headers(r.json())
    # the upstream's parent is the proxy span; b3 came in, b3 goes up
    assert up["x-b3-traceid"] == [trace_id] and up["x-b3-parentspanid"] == [SPAN_1]
    assert up["x-b3-sampled"] == ["1"]
    spans = collector.wait(trace_id)
    request, proxy = spans["SERVER"], spans["CLIENT"]
    # b3 shares the client's span: the request span is it, with its parent
    assert (request["id"], request["parentId"], request["name"]) == (SPAN_1, parent, "GET")
    assert (proxy["id"], proxy["parentId"]) == (up["x-b3-spanid"][0], SPAN_1)
    assert proxy["name"] == "GET (proxy)"
    assert request["localEndpoint"] == proxy["localEndpoint"] == {"serviceName": "kong"}
    assert request["remoteEndpoint"]["ipv4"] == "127.0.0.1"
    assert isinstance(request["remoteEndpoint"]["port"], int)
    assert proxy["remoteEndpoint"] == {
        "serviceName": "echo",
        "ipv4": "127.0.0.1",
        "port": echo.port,
    }
    tags = request["tags"]
    uuid.UUID(tags.pop("kong.node.id"))
    assert tags == {
        "lc": "kong",
        "http.method": "GET",
        "http.path": "/traced/items",
        "http.host": "127.0.0.1",
        "http.protocol": "HTTP/1.1",
        "http.status_code": "200",
        "static": "ok",
        "foo": "bar",
        "baz": "qux",
    }
    assert proxy["tags"]["kong.service_name"] == "echo"
    assert proxy["tags"]["kong.route_name"] == "traced"
    assert proxy["tags"]["peer.hostname"] == "127.0.0.1"
    uuid.UUID(proxy["tags"]["kong.route"]), uuid.UUID(proxy["tags"]["kong.service"])
    marks = {a["value"]: a["timestamp"] for a in proxy["annotations"]}
    assert sorted(marks) == ["kaf", "kas", "kbf", "kbs", "khf", "khs"]
    assert marks["kas"] <= marks["kaf"] <= marks["khs"] <= marks["khf"] <= marks["kbf"]
    assert [a["value"] for a in request["annotations"]] == ["krs"]
    assert request["timestamp"] <= proxy["timestamp"]
    assert proxy["timestamp"] + proxy["duration"] <= request["timestamp"] + request["duration"]
    assert abs(request["timestamp"] / 1e6 - time.time()) < 60
    post = next(p for p in collector.posts if any(s["traceId"] == trace_id for s in p.spans))
    assert post.target == "/api/v2/spans"
    assert post.headers["content-type"] == "application/json"


@pytest.mark.integration
def test_an_incoming_w3c_context_is_honoured(gateway: Gateway, collector: Collector) -> None:
    trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
    r = httpx.get(gateway.url("/traced"), headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    version, up_trace, up_parent, flags = echoed_headers(r.json())["traceparent"][0].split("-")
    assert (version, up_trace, flags) == ("00", trace_id, "01")
    assert "x-b3-traceid" not in echoed_headers(r.json())  # preserve: w3c in, w3c out
    spans = collector.wait(trace_id)
    request, proxy = spans["SERVER"], spans["CLIENT"]
    # w3c names the client's span: the request span is its child
    assert request["parentId"] == parent and request["id"] != parent
    assert proxy["parentId"] == request["id"] and proxy["id"] == up_parent


@pytest.mark.integration
def test_a_new_64_bit_trace_with_the_path_in_names_and_phase_tags(
    gateway: Gateway, collector: Collector
) -> None:
    r = httpx.post(gateway.url("/short/x"), content=b"hello")
    trace_id = r.headers["x-trace-id"]
    assert len(trace_id) == 16
    up = echoed_headers(r.json())
    assert up["x-b3-traceid"] == [PAD + trace_id]  # b3 writes a new trace's id in 128 bits
    assert up["x-b3-sampled"] == ["1"] and "x-b3-parentspanid" in up
    spans = collector.wait(trace_id)
    request, proxy = spans["SERVER"], spans["CLIENT"]
    assert (request["name"], proxy["name"]) == ("POST /short/x", "POST /short/x (proxy)")
    assert "parentId" not in request
    assert "annotations" not in request and "annotations" not in proxy
    for phase in ("access", "header_filter", "body_filter"):
        assert int(proxy["tags"][f"kong.{phase}.duration_ms"]) >= 0


@pytest.mark.integration
def test_unsampled_requests_export_nothing_but_propagate(
    gateway: Gateway, collector: Collector
) -> None:
    not_sampled = os.urandom(16).hex()
    r = httpx.get(
        gateway.url("/traced"),
        headers={"x-b3-traceid": not_sampled, "x-b3-spanid": SPAN_1, "x-b3-sampled": "0"},
    )
    up = echoed_headers(r.json())
    assert up["x-b3-traceid"] == [not_sampled] and up["x-b3-sampled"] == ["0"]
    assert up["x-b3-parentspanid"] == [SPAN_1]
    r = httpx.get(gateway.url("/unsampled"))
    _, by_ratio, _, flags = echoed_headers(r.json())["traceparent"][0].split("-")
    assert flags == "00"
    marker = httpx.get(gateway.url("/traced")).headers["x-trace-id"]
    collector.wait(marker)  # queued after the unsampled one would have been
    time.sleep(0.3)  # the unsampled route's own queue would coalesce for 0.1 s
    assert collector.spans(not_sampled) == [] and collector.spans(by_ratio) == []


@pytest.mark.integration
def test_without_an_endpoint_headers_and_the_trace_id_still_go_out(gateway: Gateway) -> None:
    trace_id = os.urandom(16).hex()
    r = httpx.get(gateway.url("/no-endpoint"), headers={"b3": f"{trace_id}-{SPAN_1}-1-{SPAN_2}"})
    assert r.status_code == 200 and r.headers["x-trace-id"] == trace_id
    up_trace, up_span, sampled, up_parent = echoed_headers(r.json())["b3"][0].split("-")
    assert (up_trace, sampled, up_parent) == (trace_id, "1", SPAN_1) and up_span != SPAN_1


@pytest.mark.integration
def test_consumer_and_credential_tags_on_an_authenticated_request(
    gateway: Gateway, collector: Collector
) -> None:
    trace_id = os.urandom(16).hex()
    headers = {"traceparent": f"00-{trace_id}-{SPAN_1}-01"}
    r = httpx.get(gateway.url("/guarded"), headers={**headers, "apikey": "alice-key"})
    assert r.status_code == 200
    tags = collector.wait(trace_id)["SERVER"]["tags"]
    uuid.UUID(tags["kong.consumer"]), uuid.UUID(tags["kong.credential"])
    # key-auth answers after this plugin's access phase: both spans still go out, no peer
    refused = os.urandom(16).hex()
    r = httpx.get(gateway.url("/guarded"), headers={"traceparent": f"00-{refused}-{SPAN_1}-01"})
    assert r.status_code == 401
    spans = collector.wait(refused)
    assert spans["SERVER"]["tags"]["http.status_code"] == "401"
    assert "kong.consumer" not in spans["SERVER"]["tags"]
    assert "peer.hostname" not in spans["CLIENT"]["tags"]
    assert spans["CLIENT"]["remoteEndpoint"] == {"serviceName": "echo"}


@pytest.mark.integration
def test_a_refusing_or_dead_collector_neither_slows_nor_fails_requests(
    gateway: Gateway, collector: Collector
) -> None:
    with httpx.Client() as client:
        started = time.monotonic()
        statuses = [client.get(gateway.url(path)).status_code for path in ["/dead"] * 10]
        statuses.append(client.get(gateway.url("/refused")).status_code)
        statuses.append(client.get(gateway.url("/hung")).status_code)
        elapsed = time.monotonic() - started
    assert statuses == [200] * 12
    assert elapsed < 2.0, elapsed
    eventually(lambda: collector.failed >= 2)  # the batch was retried...

    def given_up() -> bool:
        text = _stderr(gateway)
        return "zipkin server responded unexpectedly: 500 Internal Server Error" in text and (
            "max_retry_time exceeded" in text
        )

    eventually(given_up)  # ...then dropped, with one error line for the batch
    text = _stderr(gateway)
    lost = [line for line in text.splitlines() if "max_retry_time exceeded" in line]
    assert any("zipkin plugin" in line for line in lost)
    # in Kong's words (its reporter and lua-resty-http): the dead one's...
    assert "zipkin request failed: connection refused" in text
    # ...and the hung one's: the larger of send_timeout and read_timeout bounds the wait
    hung = "zipkin request failed: timeout"
    eventually(lambda: hung in _stderr(gateway))
