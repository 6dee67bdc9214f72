"""opentelemetry: schema, Kong's propagation formats (vectors from Kong's
spec/01-unit/26-observability/02-propagation_strategies_spec.lua), the OTLP encoding decoded by
the reference ``opentelemetry-proto``, and real gateways exporting to a loopback collector (Kong's
spec/03-plugins/37-opentelemetry)."""

from __future__ import annotations

import json
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from fastkong.config import ConfigError, load_config
from fastkong.control.default_cert import default_certificates
from fastkong.kong_conf import TracingSettings, tracing_settings
from fastkong.plugins.bundled import _otlp
from fastkong.plugins.bundled._propagation import (
    INJECTORS,
    Plan,
    PropagationConfig,
    TraceContext,
    extract,
    extract_one,
    inject_formats,
    inject_one,
    plugin_plan,
    to_id_size,
)
from fastkong.plugins.bundled.opentelemetry import sampling_decision, should_sample
from tests.helpers import (
    Echo,
    Gateway,
    echoed_headers,
    eventually,
    free_port,
)
from tests.plugins.kong_tracing_fakes import OtlpCollector as Collector

TRACE_16 = "0af7651916cd43dd8448eb211c80319c"
TRACE_8 = "8448eb211c80319c"
SPAN_1 = "b7ad6b7169203331"
SPAN_1_DEC = "13235353014750950193"
SPAN_2 = "b7ad6b7169203332"
BIG_TRACE_16 = "fffffffffffffffffffffffffffffff1"
TOO_LONG = "1234567890123456789012345678901234567890"
PAD = "0" * 16


def document(config: dict[str, Any]) -> str:
    plugin = {"name": "opentelemetry", "config": config}
    return json.dumps({"_format_version": "3.0", "plugins": [plugin]})


def errors_of(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(document(config))
    return [f"{e.path}: {e.message}" for e in info.value.errors]


# -- schema --------------------------------------------------------------------------------------
def test_schema_defaults_are_kongs() -> None:
    loaded = load_config(document({"traces_endpoint": "http://collector:4318/v1/traces"}))
    config = loaded.config.plugins[0].config
    assert config["traces_endpoint"] == "http://collector:4318/v1/traces"
    assert config["queue"]["max_batch_size"] == 200  # the plugin's queue default
    assert config["queue"]["max_coalescing_delay"] == 1
    assert (config["connect_timeout"], config["send_timeout"], config["read_timeout"]) == (
        1000,
        5000,
        5000,
    )
    assert config["header_type"] == "preserve"
    assert config["sampling_rate"] is None
    assert config["propagation"] == {
        "extract": None,
        "clear": None,
        "inject": None,
        "default_format": "w3c",
    }
    assert config["http_response_header_for_traceid"] is None


def test_schema_errors_have_kongs_paths_and_words() -> None:
    assert errors_of({}) == [
        "plugins[0].config: at least one of these fields must be non-empty: "
        "'traces_endpoint', 'logs_endpoint'"
    ]
    assert errors_of(
        {
            "traces_endpoint": "nope",
            "logs_endpoint": "http:///x",
            "headers": {"bad header": "x"},
            "sampling_rate": 2,
            "header_type": "zipkin",
            "connect_timeout": -1,
            "queue": {"max_batch_size": 0},
            "propagation": {"extract": ["b3-single"], "inject": ["foo"], "clear": ["a b"]},
            "custom_by_lua": {},
        }
    ) == [
        "plugins[0].config.traces_endpoint: missing host in url",
        "plugins[0].config.logs_endpoint: missing host in url",
        "plugins[0].config.headers: bad header name 'bad header', allowed characters are "
        "A-Z, a-z, 0-9, '_', and '-'",
        "plugins[0].config.sampling_rate: value should be between 0 and 1",
        "plugins[0].config.header_type: expected one of: preserve, ignore, b3, b3-single, w3c, "
        "jaeger, ot, aws, gcp, datadog",
        "plugins[0].config.connect_timeout: value should be between 0 and 2147483646",
        "plugins[0].config.queue.max_batch_size: value should be between 1 and 1000000",
        "plugins[0].config.propagation.extract[0]: expected one of: w3c, b3, jaeger, ot, "
        "datadog, aws, gcp",
        "plugins[0].config.propagation.inject[0]: expected one of: preserve, w3c, b3, "
        "b3-single, jaeger, ot, datadog, aws, gcp",
        "plugins[0].config.propagation.clear[0]: bad header name 'a b', allowed characters "
        "are A-Z, a-z, 0-9, '_', and '-'",
        "plugins[0].config.propagation.default_format: required field missing",
        "plugins[0].config.custom_by_lua: unknown field",
    ]


def test_schema_resource_attributes_are_non_empty_strings() -> None:
    assert errors_of({"traces_endpoint": "http://c/", "resource_attributes": {"a": ""}}) == [
        "plugins[0].config.resource_attributes: length must be at least 1"
    ]
    assert errors_of({"traces_endpoint": "http://c/", "resource_attributes": {"a": 1}}) == [
        "plugins[0].config.resource_attributes: expected a string"
    ]


def test_schema_endpoint_is_the_deprecated_traces_endpoint() -> None:
    loaded = load_config(document({"endpoint": "http://old:4318/v1/traces"}))
    config = loaded.config.plugins[0].config
    assert (config["traces_endpoint"], config["endpoint"]) == ("http://old:4318/v1/traces", None)
    both = {"endpoint": "http://old/", "traces_endpoint": "http://new/"}
    assert load_config(document(both)).config.plugins[0].config["traces_endpoint"] == "http://new/"
    assert errors_of({"endpoint": "x"}) == ["plugins[0].config.endpoint: missing host in url"]


def test_tracing_settings_are_read_as_kong_reads_them() -> None:
    assert tracing_settings({}) == TracingSettings(("off",), 0.01)
    assert not tracing_settings({}).enabled
    settings = tracing_settings(
        {"KONG_TRACING_INSTRUMENTATIONS": "request, router", "KONG_TRACING_SAMPLING_RATE": "1"}
    )
    assert settings == TracingSettings(("request", "router"), 1.0) and settings.enabled
    assert tracing_settings({"KONG_OPENTELEMETRY_TRACING": "all"}).instrumentations == ("all",)
    with pytest.raises(ValueError, match="invalid tracing type: bogus"):
        tracing_settings({"KONG_TRACING_INSTRUMENTATIONS": "bogus"})
    with pytest.raises(ValueError, match="off, other types are mutually exclusive"):
        tracing_settings({"KONG_TRACING_INSTRUMENTATIONS": "off,request"})
    with pytest.raises(ValueError, match="must be between 0 and 1"):
        tracing_settings({"KONG_TRACING_SAMPLING_RATE": "1.5"})


# -- propagation: Kong's vectors ---------------------------------------------------------------
@dataclass
class Vector:
    extractor: str
    headers: dict[str, Any]
    trace_id: str | None = None
    span_id: str | None = None
    parent_id: str | None = None
    should_sample: bool | None = None
    size: int | None = None
    flags: str | None = None
    w3c_flags: int | None = None
    single_header: bool | None = None
    baggage: dict[str, str] | None = None


def _aws(trace: str, parent: str, sampled: str, before: str = "") -> str:
    return f"{before}Root=1-{trace[:8]}-{trace[8:]};Parent={parent};Sampled={sampled}"


EXTRACTED = [
    Vector("w3c", {"traceparent": f"00-{TRACE_16}-{SPAN_1}-01"}, TRACE_16, SPAN_1, None, True, 16, w3c_flags=1),  # noqa: E501
    Vector("w3c", {"traceparent": f"00-{TRACE_16}-{SPAN_1}-08"}, TRACE_16, SPAN_1, None, False, 16, w3c_flags=8),  # noqa: E501
    Vector("w3c", {"traceparent": f"00-{TRACE_16}-{SPAN_1}-ef"}, TRACE_16, SPAN_1, None, True, 16, w3c_flags=0xEF),  # noqa: E501
    Vector(
        "b3",
        {"x-b3-traceid": TRACE_16, "x-b3-spanid": SPAN_1, "x-b3-parentspanid": SPAN_2, "x-b3-sampled": "1"},  # noqa: E501
        TRACE_16, SPAN_1, SPAN_2, True, 16,
    ),
    Vector("b3", {"x-b3-sampled": "0"}, should_sample=False),
    Vector(
        "b3",
        {"x-b3-traceid": TRACE_16, "x-b3-spanid": SPAN_1, "x-b3-parentspanid": SPAN_2, "x-b3-flags": "1"},  # noqa: E501
        TRACE_16, SPAN_1, SPAN_2, True, 16, flags="1",
    ),
    Vector(
        "b3",
        {"x-b3-traceid": TRACE_8, "x-b3-spanid": SPAN_1, "x-b3-sampled": "1"},
        PAD + TRACE_8, SPAN_1, None, True, 8,
    ),
    Vector(
        "b3", {"b3": f"{TRACE_16}-{SPAN_1}-d-{SPAN_2}"},
        TRACE_16, SPAN_1, SPAN_2, True, 16, flags="1", single_header=True,
    ),
    Vector("b3", {"b3": "1"}, should_sample=True, single_header=True),
    Vector("b3", {"b3": "d"}, should_sample=True, flags="1", single_header=True),
    Vector("b3", {"b3": f"{TRACE_8}-{SPAN_1}-1"}, PAD + TRACE_8, SPAN_1, None, True, 8, single_header=True),  # noqa: E501
    Vector("b3", {"b3": f"{TRACE_16}-{SPAN_1}"}, TRACE_16, SPAN_1, None, None, 16, single_header=True),  # noqa: E501
    Vector(
        "b3", {"tracestate": f"b3={TRACE_16}-{SPAN_1}-d-{SPAN_2}"},
        TRACE_16, SPAN_1, SPAN_2, True, 16, flags="1", single_header=True,
    ),
    Vector(
        "b3", {"tracestate": ["test", f"b3={TRACE_16}-{SPAN_1}-1-{SPAN_2}", "test2"]},
        TRACE_16, SPAN_1, SPAN_2, True, 16, single_header=True,
    ),
    Vector(
        "jaeger", {"uber-trace-id": f"{TRACE_16}:{SPAN_1}:{SPAN_2}:01", "uberctx-foo": "bar"},
        TRACE_16, SPAN_1, SPAN_2, True, 16, baggage={"foo": "bar"},
    ),
    Vector("jaeger", {"uber-trace-id": f"{TRACE_16}:{SPAN_1}:0:01"}, TRACE_16, SPAN_1, PAD, True, 16),  # noqa: E501
    Vector("jaeger", {"uber-trace-id": f"{TRACE_16}:123:{SPAN_2}:01"}, TRACE_16, "0000000000000123", SPAN_2, True, 16),  # noqa: E501
    Vector("jaeger", {"uber-trace-id": f"1234:{SPAN_1}:{SPAN_2}:01"}, "0" * 28 + "1234", SPAN_1, SPAN_2, True, 2),  # noqa: E501
    Vector(
        "ot",
        {"ot-tracer-traceid": TRACE_16, "ot-tracer-spanid": SPAN_1, "ot-tracer-sampled": "1", "ot-baggage-foo": "bar"},  # noqa: E501
        TRACE_16, SPAN_1, None, True, 16, baggage={"foo": "bar"},
    ),
    Vector("ot", {"ot-tracer-traceid": TRACE_8, "ot-tracer-spanid": SPAN_1, "ot-tracer-sampled": "0"}, PAD + TRACE_8, SPAN_1, None, False, 8),  # noqa: E501
    Vector(
        "datadog",
        {"x-datadog-trace-id": "9532127138774266268", "x-datadog-parent-id": SPAN_1_DEC, "x-datadog-sampling-priority": "1"},  # noqa: E501
        PAD + TRACE_8, SPAN_1, None, True, 8,
    ),
    Vector("datadog", {"x-datadog-sampling-priority": "-1"}, should_sample=False),
    Vector("aws", {"x-amzn-trace-id": _aws(TRACE_16, SPAN_1, "1", "Foo=bar;")}, TRACE_16, SPAN_1, None, True, 16),  # noqa: E501
    Vector("aws", {"x-amzn-trace-id": _aws(BIG_TRACE_16, SPAN_1, "0")}, BIG_TRACE_16, SPAN_1, None, False, 16),  # noqa: E501
    Vector("gcp", {"x-cloud-trace-context": f"{TRACE_16}/{SPAN_1_DEC};o=1"}, TRACE_16, SPAN_1, None, True, 16),  # noqa: E501
    Vector("gcp", {"x-cloud-trace-context": f"{TRACE_16}/{SPAN_1_DEC}"}, TRACE_16, SPAN_1, None, False, 16),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize("vector", EXTRACTED, ids=lambda v: f"{v.extractor}-{list(v.headers)}")
def test_extractors_read_kongs_vectors(vector: Vector) -> None:
    found = extract_one(vector.extractor, vector.headers)
    assert found is not None
    hexed = {
        name: value.hex() if value is not None else None
        for name, value in (
            ("trace_id", found.trace_id),
            ("span_id", found.span_id),
            ("parent_id", found.parent_id),
        )
    }
    assert hexed == {
        "trace_id": vector.trace_id,
        "span_id": vector.span_id,
        "parent_id": vector.parent_id,
    }
    assert found.should_sample is vector.should_sample
    assert found.trace_id_original_size == vector.size
    assert found.flags == vector.flags
    assert found.w3c_flags == vector.w3c_flags
    assert found.single_header == vector.single_header
    assert found.baggage == vector.baggage


INVALID = [
    ("w3c", {"traceparent": f"vv-{TRACE_16}-{SPAN_1}-00"}),
    ("w3c", {"traceparent": f"00-{'v' * 32}-{SPAN_1}-00"}),
    ("w3c", {"traceparent": f"00-123-{SPAN_1}-00"}),
    ("w3c", {"traceparent": f"00-{'0' * 32}-{SPAN_1}-00"}),
    ("w3c", {"traceparent": f"00-{TOO_LONG}-{SPAN_1}-00"}),
    ("w3c", {"traceparent": f"00-{TRACE_16}-{'0' * 16}-00"}),
    ("w3c", {"traceparent": f"01-{TRACE_16}-{SPAN_1}-00"}),
    ("w3c", {"traceparent": f"00-{TRACE_16}-{SPAN_1}-000"}),
    ("w3c", {"traceparent": [f"00-{TRACE_16}-{SPAN_1}-01"] * 2}),  # sent twice
    ("jaeger", {"uber-trace-id": f"vv:{SPAN_1}:{SPAN_2}:00"}),
    ("jaeger", {"uber-trace-id": f"{TOO_LONG}:{SPAN_1}:{SPAN_2}:00"}),
    ("jaeger", {"uber-trace-id": f"{'0' * 32}:{SPAN_1}:{SPAN_2}:00"}),
    ("jaeger", {"uber-trace-id": f"{TRACE_16}:{TOO_LONG}:{SPAN_1}:00"}),
    ("jaeger", {"uber-trace-id": f"{TRACE_16}:{SPAN_1}:{SPAN_2}:123"}),
    ("aws", {"x-amzn-trace-id": _aws(TRACE_8, SPAN_1, "0").replace("Root=1", "Root=0")}),
    ("aws", {"x-amzn-trace-id": f"Root=1-vv-{TRACE_8};Parent={SPAN_1};Sampled=0"}),
    ("aws", {"x-amzn-trace-id": f"Root=;Parent={SPAN_1};Sampled=0"}),
    ("aws", {"x-amzn-trace-id": _aws(TRACE_16, "123", "0")}),
    ("aws", {"x-amzn-trace-id": _aws(TRACE_16, "", "0")}),
    ("aws", {"x-amzn-trace-id": _aws(TRACE_16, SPAN_1, "2")}),
    ("gcp", {"x-cloud-trace-context": f"{TRACE_16.upper()}/{SPAN_1_DEC};o=1"}),
    ("gcp", {"x-cloud-trace-context": f"{TRACE_16}/{SPAN_1};o=1"}),
    ("datadog", {"x-datadog-trace-id": "1", "x-datadog-sampling-priority": "yes"}),
]


@pytest.mark.parametrize(("extractor", "headers"), INVALID)
def test_invalid_headers_are_ignored(extractor: str, headers: dict[str, Any]) -> None:
    assert extract_one(extractor, headers) is None


@pytest.mark.parametrize(
    "value",
    [
        f"xxx-{SPAN_1}-1-{SPAN_2}",
        f"{TOO_LONG}-{SPAN_1}-1-{SPAN_2}",
        f"123-{SPAN_1}-1-{SPAN_2}",
        "",
        f"{TRACE_16}-",
        f"{TRACE_16}-xxx",
        f"{TRACE_16}-{SPAN_1}-x",
        f"{TRACE_16}-{SPAN_1}-d-xxx",
        f"{TRACE_16}-{SPAN_1}-d-123",
    ],
)
def test_b3_single_invalid_ids_are_dropped(value: str) -> None:
    # Kong keeps the b3 extractor's result (it always reports reuse_span_id), without ids
    found = extract_one("b3", {"b3": value})
    assert found is not None and found.trace_id is None and found.span_id is None


def test_headers_are_read_from_the_request_contexts_lists() -> None:
    one = extract_one(
        "jaeger", {"uber-trace-id": [f"{TRACE_16}:{SPAN_1}:0:01"], "uberctx-k": ["v"]}
    )
    assert one is not None and one.span_id == bytes.fromhex(SPAN_1) and one.baggage == {"k": "v"}
    twice = extract_one("b3", {"x-b3-sampled": ["1", "1"], "x-b3-traceid": [TRACE_16]})
    assert twice is not None and twice.should_sample is None  # repeated: invalid, as in Kong


def test_b3_invalid_multi_header_id_drops_all_ids() -> None:
    found = extract_one("b3", {"x-b3-traceid": "x", "x-b3-spanid": SPAN_1, "x-b3-sampled": "0"})
    assert found is not None
    assert (found.trace_id, found.span_id, found.should_sample) == (None, None, False)


def test_first_extractor_that_finds_anything_wins() -> None:
    headers = {
        "traceparent": f"00-{TRACE_16}-{SPAN_1}-01",
        "uber-trace-id": f"{TRACE_8}:{SPAN_2}:0:00",
    }
    found, source = extract(headers, ("b3", "jaeger", "w3c"))
    assert source == "jaeger" and found.span_id == bytes.fromhex(SPAN_2)
    found, source = extract(headers, ("w3c", "jaeger"))
    assert source == "w3c" and found.trace_id == bytes.fromhex(TRACE_16)
    found, source = extract({}, ("w3c", "b3"))
    assert source is None and not found.found()
    # Kong 3.9: a tracestate without b3= makes the b3 extractor win, with no ids
    found, source = extract(
        {"traceparent": f"00-{TRACE_16}-{SPAN_1}-01", "tracestate": "rojo=1"}, ("b3", "w3c")
    )
    assert source == "b3" and found.trace_id is None


def _ctx(**fields: Any) -> TraceContext:
    for name in ("trace_id", "span_id", "parent_id"):
        if isinstance(fields.get(name), str):
            fields[name] = bytes.fromhex(fields[name])
    return TraceContext(**fields)


INJECTED = [
    ("w3c", _ctx(trace_id=TRACE_16, span_id=SPAN_1, should_sample=True), {"traceparent": f"00-{TRACE_16}-{SPAN_1}-01"}),  # noqa: E501
    ("w3c", _ctx(trace_id=PAD + TRACE_8, span_id=SPAN_1, should_sample=False, trace_id_original_size=8), {"traceparent": f"00-{PAD}{TRACE_8}-{SPAN_1}-00"}),  # noqa: E501
    ("b3", _ctx(trace_id=TRACE_16, span_id=SPAN_1, parent_id=SPAN_2, should_sample=True), {"x-b3-traceid": TRACE_16, "x-b3-spanid": SPAN_1, "x-b3-parentspanid": SPAN_2, "x-b3-sampled": "1"}),  # noqa: E501
    ("b3", _ctx(trace_id=PAD + TRACE_8, span_id=SPAN_1, flags="1", trace_id_original_size=8), {"x-b3-traceid": TRACE_8, "x-b3-spanid": SPAN_1, "x-b3-flags": "1"}),  # noqa: E501
    ("b3", _ctx(should_sample=False), {"x-b3-sampled": "0"}),
    ("b3-single", _ctx(trace_id=TRACE_16, span_id=SPAN_1, parent_id=SPAN_2, should_sample=True, flags="1"), {"b3": f"{TRACE_16}-{SPAN_1}-d-{SPAN_2}"}),  # noqa: E501
    ("b3-single", _ctx(trace_id=TRACE_16, span_id=SPAN_1), {"b3": f"{TRACE_16}-{SPAN_1}"}),
    ("b3-single", _ctx(should_sample=True), {"b3": "1"}),
    ("jaeger", _ctx(trace_id=TRACE_16, span_id=SPAN_1, parent_id=SPAN_2, should_sample=True, baggage={"foo": "b r"}), {"uber-trace-id": f"{TRACE_16}:{SPAN_1}:{SPAN_2}:01", "uberctx-foo": "b%20r"}),  # noqa: E501
    ("jaeger", _ctx(trace_id=TRACE_16, span_id=SPAN_1, should_sample=False), {"uber-trace-id": f"{TRACE_16}:{SPAN_1}:0:00"}),  # noqa: E501
    ("ot", _ctx(trace_id=PAD + TRACE_8, span_id=SPAN_1, should_sample=True, baggage={"foo": "bar"}), {"ot-tracer-traceid": TRACE_8, "ot-tracer-spanid": SPAN_1, "ot-tracer-sampled": "1", "ot-baggage-foo": "bar"}),  # noqa: E501
    ("ot", _ctx(trace_id=TRACE_16, span_id=SPAN_1, trace_id_original_size=16), {"ot-tracer-traceid": TRACE_16, "ot-tracer-spanid": SPAN_1}),  # noqa: E501
    ("datadog", _ctx(trace_id=TRACE_16, span_id=SPAN_1, should_sample=True), {"x-datadog-trace-id": "9532127138774266268", "x-datadog-parent-id": SPAN_1_DEC, "x-datadog-sampling-priority": "1"}),  # noqa: E501
    ("aws", _ctx(trace_id=TRACE_16, span_id=SPAN_1, should_sample=True), {"x-amzn-trace-id": _aws(TRACE_16, SPAN_1, "1")}),  # noqa: E501
    ("gcp", _ctx(trace_id=TRACE_16, span_id=SPAN_1, should_sample=False), {"x-cloud-trace-context": f"{TRACE_16}/{SPAN_1_DEC};o=0"}),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("injector", "ctx", "expected"), INJECTED, ids=[i[0] for i in INJECTED])
def test_injectors_write_kongs_headers(
    injector: str, ctx: TraceContext, expected: dict[str, str]
) -> None:
    headers, _ = inject_one(injector, ctx)
    assert dict(headers) == expected


def test_injectors_needing_ids_write_nothing_without_them() -> None:
    for name in ("w3c", "jaeger", "ot", "aws", "gcp"):
        assert inject_one(name, _ctx(span_id=SPAN_1)) == ([], None)
        assert inject_one(name, _ctx(trace_id=TRACE_16)) == ([], None)


def test_injectors_report_the_trace_id_as_written() -> None:
    ctx = _ctx(trace_id=TRACE_16, span_id=SPAN_1, should_sample=True)
    assert inject_one("w3c", ctx)[1] == TRACE_16
    assert inject_one("ot", ctx)[1] == TRACE_8
    assert inject_one("datadog", ctx)[1] == "9532127138774266268"


IDS_16 = st.binary(min_size=16, max_size=16).filter(any)
IDS_8 = st.binary(min_size=8, max_size=8).filter(any)


@pytest.mark.parametrize("injector", sorted(INJECTORS))
@given(trace_id=IDS_16, span_id=IDS_8, sampled=st.booleans(), size=st.sampled_from([8, 16]))
def test_inject_then_extract_round_trips(
    injector: str, trace_id: bytes, span_id: bytes, sampled: bool, size: int
) -> None:
    ctx = TraceContext(trace_id, span_id, None, sampled, trace_id_original_size=size)
    headers, _ = inject_one(injector, ctx)
    extractor = "b3" if injector == "b3-single" else injector
    found = extract_one(extractor, dict(headers))
    assert found is not None
    sizes = INJECTORS[injector].sizes
    written = size if size in sizes else sizes[0]
    assert found.trace_id == to_id_size(to_id_size(trace_id, written), 16)
    assert found.span_id == span_id
    assert found.should_sample is sampled


def test_header_type_maps_to_propagation_as_kong() -> None:
    default = PropagationConfig(default_format="w3c")
    legacy = ("b3", "w3c", "jaeger", "ot", "datadog", "aws", "gcp")
    assert plugin_plan(default, "preserve") == Plan(legacy, (), ("preserve",), "w3c")
    assert plugin_plan(default, "ignore") == Plan((), (), ("w3c",), "w3c")
    assert plugin_plan(default, "jaeger") == Plan(legacy, (), ("preserve", "jaeger"), "w3c")
    assert plugin_plan(default, None) == Plan((), (), (), "w3c")
    given_ = PropagationConfig(extract=["gcp"], inject=["b3"], default_format="ot")
    assert plugin_plan(given_, "jaeger") == Plan(("gcp",), (), ("b3",), "ot")
    plan = Plan(("b3",), (), ("preserve", "w3c"), "jaeger")
    assert inject_formats(plan, "b3", True) == ["b3-single", "w3c"]
    assert inject_formats(plan, None, False) == ["jaeger", "w3c"]


def test_sampling_is_kongs() -> None:
    low = bytes(8) + os.urandom(8)
    high = b"\xff" * 16
    assert should_sample(low, 0.5) and not should_sample(high, 0.5)
    assert should_sample(high, 1) and not should_sample(low, 0)
    # the trace id's first 8 bytes, read little-endian as on Kong's builds
    assert should_sample(b"\xff" * 7 + b"\x00" + bytes(8), 0.01)
    assert sampling_decision(False, low, 1) is False  # an incoming "not sampled" wins
    assert sampling_decision(True, high, 0.5) is False  # an incoming "sampled" does not
    assert sampling_decision(None, low, 0.5) is True


# -- OTLP encoding -------------------------------------------------------------------------------
def test_otlp_request_decodes_with_the_reference_definitions() -> None:
    trace_id, span_id, parent = os.urandom(16), os.urandom(8), os.urandom(8)
    attrs: dict[str, _otlp.AttributeValue] = {
        "http.method": "GET",
        "http.status_code": 503,
        "http.route": "",
        "kong.flag": False,
        "latency": 1.5,
        "count": -3,
    }
    one = _otlp.span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name="kong",
        kind=_otlp.SPAN_KIND_SERVER,
        start_ns=1_700_000_000_000_000_000,
        end_ns=1_700_000_000_123_456_789,
        attrs=attrs,
        status=_otlp.STATUS_ERROR,
    )
    other = _otlp.span(
        trace_id=trace_id, span_id=parent, parent_span_id=None, name="x", kind=0,
        start_ns=1, end_ns=2, attrs={},
    )  # fmt: skip
    envelope = _otlp.TraceEnvelope({"service.name": "kong", "team": "edge"})
    request = ExportTraceServiceRequest.FromString(envelope.request([one, other]))
    (resource_spans,) = request.resource_spans
    assert {a.key: a.value.string_value for a in resource_spans.resource.attributes} == {
        "service.name": "kong",
        "team": "edge",
    }
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("kong-internal", "0.1.0")
    first, second = scope_spans.spans
    assert (first.trace_id, first.span_id, first.parent_span_id) == (trace_id, span_id, parent)
    assert first.name == "kong" and first.kind == PbSpan.SPAN_KIND_SERVER
    assert first.start_time_unix_nano == 1_700_000_000_000_000_000
    assert first.end_time_unix_nano == 1_700_000_000_123_456_789
    assert first.status.code == 2
    values = {a.key: a.value for a in first.attributes}
    assert values["http.method"] == AnyValue(string_value="GET")
    assert values["http.status_code"] == AnyValue(int_value=503)
    assert values["http.route"].WhichOneof("value") == "string_value"
    assert values["kong.flag"].WhichOneof("value") == "bool_value"
    assert values["latency"] == AnyValue(double_value=1.5)
    assert values["count"] == AnyValue(double_value=-3)
    assert second.parent_span_id == b"" and second.kind == 0 and second.name == "x"


def test_varint_matches_protobuf() -> None:
    for value in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        assert _otlp.varint(value) == AnyValue(int_value=value).SerializeToString()[1:]
    assert len(_otlp.varint(-1)) == 10


# -- through real gateways -----------------------------------------------------------------------
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


@dataclass
class TlsCollectors:
    trusted: Collector
    untrusted: Collector
    #: The trusted collector's certificate, which the gateway is told to trust.
    cert: Path


def _tls_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    cert, key = default_certificates(directory)[0]  # self-signed, for "localhost"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


@pytest.fixture(scope="module")
def tls_collectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCollectors]:
    trusted_context, cert = _tls_context(tmp_path_factory.mktemp("trusted"))
    untrusted_context, _ = _tls_context(tmp_path_factory.mktemp("untrusted"))
    servers = TlsCollectors(
        Collector(trusted_context).start(), Collector(untrusted_context).start(), cert
    )
    yield servers
    servers.trusted.stop()
    servers.untrusted.stop()


def _routes(collector: Collector, tls: TlsCollectors | None = None) -> dict[str, dict[str, Any]]:
    url = f"http://127.0.0.1:{collector.port}/v1/traces"
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    fast = {"max_coalescing_delay": 0.1, "initial_retry_delay": 0.05, "max_retry_time": 0.5}
    secure: dict[str, dict[str, Any]] = {}
    if tls is not None:
        for name, server in (("tls-trusted", tls.trusted), ("tls-untrusted", tls.untrusted)):
            secure[name] = {
                "traces_endpoint": f"https://localhost:{server.port}/v1/traces",
                "sampling_rate": 1,
                "queue": fast,
                "http_response_header_for_traceid": "X-Trace-Id",
            }
    return {
        **secure,
        "traced": {
            "traces_endpoint": url,
            "sampling_rate": 1,
            "headers": {"Authorization": "Bearer s3cret", "X-Tenant": "edge"},
            "resource_attributes": {"deployment.environment": "test"},
            "http_response_header_for_traceid": "X-Trace-Id",
            "queue": fast,
        },
        "unsampled": {"traces_endpoint": url, "sampling_rate": 0, "queue": fast},
        "b3": {
            "traces_endpoint": url,
            "sampling_rate": 1,
            "queue": fast,
            "propagation": {
                "extract": ["b3", "w3c"],
                "inject": ["preserve", "jaeger"],
                "clear": ["x-b3-sampled"],
                "default_format": "w3c",
            },
        },
        "dead": {"traces_endpoint": dead, "sampling_rate": 1, "queue": fast},
        "guarded": {
            "traces_endpoint": url,
            "queue": fast,
            "http_response_header_for_traceid": "X-Trace-Id",
        },
    }


def _config(
    echo: Echo, routes: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None
) -> str:
    return json.dumps(
        {
            "_format_version": "3.0",
            "services": [
                {
                    "name": "echo",
                    "url": f"http://127.0.0.1:{echo.port}",
                    "routes": [
                        {
                            "name": name,
                            "paths": [f"/{name}"],
                            "plugins": [
                                {"name": "opentelemetry", "config": config},
                                *([extra] if extra and name == "traced" else []),
                                *([{"name": "key-auth"}] if name == "guarded" else []),
                            ],
                        }
                        for name, config in routes.items()
                    ],
                }
            ],
        }
    )


def _start(
    gateway_with: Callable[[str], Gateway],
    config: str,
    instrumentations: str,
    trust: Path | None = None,
) -> Gateway:
    with pytest.MonkeyPatch.context() as patch:
        if trust is not None:
            patch.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", f"system,{trust}")
        patch.setenv("KONG_TRACING_INSTRUMENTATIONS", instrumentations)
        patch.setenv("KONG_TRACING_SAMPLING_RATE", "1")
        return gateway_with(config)


@pytest.fixture(scope="module")
def access_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("file-log") / "access.log"


@pytest.fixture(scope="module")
def traced(
    gateway_with: Callable[[str], Gateway],
    echo: Echo,
    collector: Collector,
    access_log: Path,
    tls_collectors: TlsCollectors,
) -> Gateway:
    file_log = {"name": "file-log", "config": {"path": str(access_log)}}
    config = _config(echo, _routes(collector, tls_collectors), file_log)
    return _start(gateway_with, config, "request", tls_collectors.cert)


@pytest.fixture(scope="module")
def propagating(
    gateway_with: Callable[[str], Gateway], echo: Echo, collector: Collector
) -> Gateway:
    return _start(gateway_with, _config(echo, _routes(collector)), "off")


def _traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


@pytest.mark.integration
def test_traced_request_propagates_and_exports_its_span(
    traced: Gateway, collector: Collector
) -> None:
    trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
    r = httpx.get(
        traced.url("/traced/path?q=1"),
        headers={"traceparent": _traceparent(trace_id, parent, True), "X-Real-IP": "10.0.0.1"},
    )
    assert r.status_code == 200
    assert r.headers["x-trace-id"] == trace_id
    upstream = echoed_headers(r.json())["traceparent"]
    assert len(upstream) == 1
    version, up_trace, up_span, flags = upstream[0].split("-")
    assert (version, up_trace, flags) == ("00", trace_id, "01")
    assert up_span != parent

    export, span = collector.wait_span(trace_id)
    assert span.span_id.hex() == up_span  # fastkong's span is the upstream's parent
    assert span.parent_span_id.hex() == parent
    assert span.name == "kong" and span.kind == PbSpan.SPAN_KIND_SERVER
    assert 0 < span.end_time_unix_nano - span.start_time_unix_nano < 5e9
    assert abs(span.start_time_unix_nano - time.time_ns()) < 60e9
    attributes = {a.key: a.value for a in span.attributes}
    assert {k: v.string_value for k, v in attributes.items() if k != "http.status_code"} == {
        "http.method": "GET",
        "http.url": "http://127.0.0.1/traced/path?q=1",
        "http.host": "127.0.0.1",
        "http.scheme": "http",
        "http.flavor": "1.1",
        "http.client_ip": "127.0.0.1",
        "net.peer.ip": "127.0.0.1",
        "kong.request.id": r.headers["x-kong-request-id"],
        "http.route": "/traced",
    }
    assert attributes["http.status_code"].int_value == 200

    assert export.target == "/v1/traces"
    assert export.headers["content-type"] == "application/x-protobuf"
    assert export.headers["authorization"] == "Bearer s3cret"
    assert export.headers["x-tenant"] == "edge"
    request = ExportTraceServiceRequest.FromString(export.body)
    resource = {a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "kong"
    assert resource["service.version"] == "3.10.0"
    assert resource["deployment.environment"] == "test"
    uuid.UUID(resource["service.instance.id"])
    scope = request.resource_spans[0].scope_spans[0].scope
    assert (scope.name, scope.version) == ("kong-internal", "0.1.0")


@pytest.mark.integration
def test_logging_plugins_get_the_injected_trace_id(traced: Gateway, access_log: Path) -> None:
    trace_id = os.urandom(16).hex()
    httpx.get(traced.url("/traced"), headers={"traceparent": _traceparent(trace_id, SPAN_1, True)})

    def logged() -> bool:
        if not access_log.exists():
            return False
        entries = [json.loads(line) for line in access_log.read_text().splitlines() if line]
        return any(entry.get("trace_id") == {"w3c": trace_id} for entry in entries)

    eventually(logged)


@pytest.mark.integration
def test_a_new_trace_without_incoming_context(traced: Gateway, collector: Collector) -> None:
    r = httpx.get(traced.url("/traced"))
    trace_id = r.headers["x-trace-id"]
    _, up_trace, up_span, flags = echoed_headers(r.json())["traceparent"][0].split("-")
    assert (up_trace, flags) == (trace_id, "01")
    _, span = collector.wait_span(trace_id)
    assert span.span_id.hex() == up_span and span.parent_span_id == b""


@pytest.mark.integration
def test_incoming_not_sampled_wins(traced: Gateway, collector: Collector) -> None:
    trace_id = os.urandom(16).hex()
    r = httpx.get(
        traced.url("/traced"), headers={"traceparent": _traceparent(trace_id, SPAN_1, False)}
    )
    assert echoed_headers(r.json())["traceparent"][0].endswith("-00")
    sampled = httpx.get(traced.url("/traced")).headers["x-trace-id"]
    collector.wait_span(sampled)  # exported after the unsampled one would have been
    assert all(span.trace_id.hex() != trace_id for _, span in collector.spans())


@pytest.mark.integration
def test_sampling_rate_0_exports_nothing_but_propagates(
    traced: Gateway, collector: Collector
) -> None:
    trace_id = os.urandom(16).hex()
    r = httpx.get(
        traced.url("/unsampled"), headers={"traceparent": _traceparent(trace_id, SPAN_1, True)}
    )
    _, up_trace, up_span, flags = echoed_headers(r.json())["traceparent"][0].split("-")
    assert (up_trace, flags) == (trace_id, "00") and up_span != SPAN_1
    marker = httpx.get(traced.url("/traced")).headers["x-trace-id"]
    collector.wait_span(marker)
    time.sleep(0.3)  # the unsampled route's queue coalesces for 0.1 s
    assert all(span.trace_id.hex() != trace_id for _, span in collector.spans())


@pytest.mark.integration
def test_b3_in_preserve_and_jaeger_out_with_clear(traced: Gateway, collector: Collector) -> None:
    trace_8 = os.urandom(8).hex()
    r = httpx.get(
        traced.url("/b3"),
        headers={"x-b3-traceid": trace_8, "x-b3-spanid": SPAN_1, "x-b3-sampled": "1"},
    )
    seen = echoed_headers(r.json())
    assert seen["x-b3-traceid"] == [trace_8]  # a 64-bit trace id stays 64-bit in b3
    assert seen["x-b3-parentspanid"] == [SPAN_1]
    own_span = seen["x-b3-spanid"][0]
    assert "x-b3-sampled" in seen  # cleared, then injected again by the b3 injector
    assert seen["x-b3-sampled"] == ["1"]
    assert seen["uber-trace-id"] == [f"{trace_8}:{own_span}:{SPAN_1}:01"]
    _, span = collector.wait_span(PAD + trace_8)
    assert span.span_id.hex() == own_span and span.parent_span_id.hex() == SPAN_1


@pytest.mark.integration
def test_a_dead_collector_neither_slows_nor_fails_requests(traced: Gateway) -> None:
    with httpx.Client() as client:
        client.get(traced.url("/dead"))
        started = time.monotonic()
        statuses = [client.get(traced.url("/dead")).status_code for _ in range(20)]
        elapsed = time.monotonic() - started
    assert statuses == [200] * 20
    assert elapsed < 2.0, elapsed


@pytest.mark.integration
def test_instrumentations_off_propagates_only(propagating: Gateway, collector: Collector) -> None:
    trace_id = os.urandom(16).hex()
    r = httpx.get(
        propagating.url("/traced"),
        headers={"traceparent": _traceparent(trace_id, SPAN_1, True)},
    )
    _, up_trace, up_span, flags = echoed_headers(r.json())["traceparent"][0].split("-")
    # Kong's propagation-only root span: a new span id, never sampled
    assert (up_trace, flags) == (trace_id, "00") and up_span != SPAN_1
    assert r.headers["x-trace-id"] == trace_id
    time.sleep(0.5)
    assert all(span.trace_id.hex() != trace_id for _, span in collector.spans())


@pytest.mark.integration
def test_a_request_stopped_before_the_plugin_still_gets_its_span(
    traced: Gateway, collector: Collector
) -> None:
    # key-auth (priority 1250) answers before this plugin's access phase runs: as in Kong the
    # request span exists anyway, sampled at the node's tracing_sampling_rate (1 here)
    r = httpx.get(
        traced.url("/guarded"), headers={"traceparent": _traceparent(TRACE_16, SPAN_1, True)}
    )
    assert r.status_code == 401
    trace_id = r.headers["x-trace-id"]
    assert trace_id != TRACE_16  # nothing was extracted
    _, span = collector.wait_span(trace_id)
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["http.status_code"].int_value == 401
    assert span.parent_span_id == b""


@pytest.mark.integration
def test_an_https_collector_is_verified_against_the_trusted_roots(
    traced: Gateway, tls_collectors: TlsCollectors
) -> None:
    untrusted = httpx.get(traced.url("/tls-untrusted")).headers["x-trace-id"]
    trusted = httpx.get(traced.url("/tls-trusted")).headers["x-trace-id"]
    tls_collectors.trusted.wait_span(trusted)
    time.sleep(0.3)
    assert tls_collectors.untrusted.exports == []  # its certificate is not trusted
    assert untrusted != trusted
