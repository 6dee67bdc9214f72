"""Kong's ``spec/03-plugins/37-opentelemetry/01-otlp_spec.lua``, against fastkong's OTLP encoding
(:mod:`fastkong.plugins.bundled._otlp`) decoded with the reference ``opentelemetry-proto``.

Ported (spec lines): 89-164 "encode/decode pb (traces)": Kong's "full-span" and a run of spans
of every kind and status with string, integer, boolean and double attributes, each decoded back
to what was encoded (200 spans where Kong makes 10000: the encoding is the same code for each);
201-246 "check lengths of trace_id and span_id": Kong's ``transform_span`` resizes the ids (a
17-byte trace id keeps its last 16 bytes, a 15-byte one gets a zero byte in front, parent ids
to 8 bytes the same way). fastkong resizes ids where they enter, in the extractors (Kong's
``to_id_size``, :mod:`fastkong.plugins.bundled._propagation`), and encodes what it is given: the
test checks the ids the encoder is handed come out at Kong's sizes, through the extractor for
a short trace id that a header can carry (a 15-byte jaeger trace id).

Left out:

- the ``array`` and ``map`` attributes and the span events of 89-164: fastkong records only the
  request's ``kong`` span, whose attributes are strings and numbers and which has no events
  (docs/plugins.md, opentelemetry), so its encoder has no array, key-value list or event;
- 166-199 "encode/decode pb (logs)": fastkong exports no logs over OTLP (docs/plugins.md).
"""

from __future__ import annotations

import os
import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from fastkong.plugins.bundled import _otlp
from fastkong.plugins.bundled._propagation import (
    SPAN_ID_SIZE,
    TRACE_ID_SIZE,
    extract_one,
    to_id_size,
)

N = 200


def decode(span: bytes) -> PbSpan:
    decoded: PbSpan = PbSpan.FromString(span)
    return decoded


def value_kind(span: PbSpan, key: str) -> str:
    (attribute,) = [a for a in span.attributes if a.key == key]
    kind: str | None = attribute.value.WhichOneof("value")
    assert kind is not None
    return kind


def test_encode_decode_the_full_span() -> None:
    trace_id, span_id, parent_id = os.urandom(16), os.urandom(8), os.urandom(8)
    start = time.time_ns()
    encoded = _otlp.span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_id,
        name="full-span",
        kind=0,
        start_ns=start,
        end_ns=start + 1000,
        attrs={"foo": "bar", "test": True, "version": 0.1},
    )
    span = decode(encoded)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (trace_id, span_id, parent_id)
    assert (span.name, span.start_time_unix_nano, span.end_time_unix_nano) == (
        "full-span",
        start,
        start + 1000,
    )
    assert value_kind(span, "foo") == "string_value"
    assert value_kind(span, "test") == "bool_value"
    assert value_kind(span, "version") == "double_value"
    assert span.SerializeToString() == encoded  # decodes to exactly what was encoded


@pytest.mark.parametrize("i", range(1, N + 1, 7))
def test_encode_decode_spans_of_every_kind_and_status(i: int) -> None:
    trace_id, span_id = os.urandom(16), os.urandom(8)
    start = time.time_ns()
    attrs: dict[str, _otlp.AttributeValue] = {
        "str": f"tag-{i}",
        "int": i,
        "bool": i % 2 == 0,
        "double": i / (N * 1000),
    }
    encoded = _otlp.span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=None,
        name=str(i),
        kind=i % 6,
        start_ns=start,
        end_ns=start + i,
        attrs=attrs,
        status=i % 3,
    )
    span = decode(encoded)
    assert span.name == str(i) and span.kind == i % 6 and span.status.code == i % 3
    assert span.parent_span_id == b""
    # as Kong types them: an integer other than http.status_code is a double
    kinds = {key: value_kind(span, key) for key in attrs}
    assert kinds == {
        "str": "string_value",
        "int": "double_value",
        "bool": "bool_value",
        "double": "double_value",
    }
    values = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in span.attributes}
    assert values == {"str": f"tag-{i}", "int": float(i), "bool": i % 2 == 0, "double": i / 2e5}
    # the whole request decodes too, with the span in it
    request = ExportTraceServiceRequest.FromString(_otlp.TraceEnvelope({}).request([encoded]))
    assert request.resource_spans[0].scope_spans[0].spans[0] == span


@pytest.mark.parametrize(("trace_size", "parent_size"), [(17, 9), (15, 7)])
def test_lengths_of_trace_id_and_parent_span_id(trace_size: int, parent_size: int) -> None:
    trace_id, parent_id = os.urandom(trace_size), os.urandom(parent_size)
    if trace_size > TRACE_ID_SIZE:
        expected_tid, expected_pid = trace_id[-16:], parent_id[-8:]
    else:
        expected_tid, expected_pid = b"\0" + trace_id, b"\0" + parent_id
    span = decode(
        _otlp.span(
            trace_id=to_id_size(trace_id, TRACE_ID_SIZE) or b"",
            span_id=os.urandom(8),
            parent_span_id=to_id_size(parent_id, SPAN_ID_SIZE),
            name="full-span",
            kind=0,
            start_ns=time.time_ns(),
            end_ns=time.time_ns() + 1000,
            attrs={"foo": "bar"},
        )
    )
    assert (span.trace_id, span.parent_span_id) == (expected_tid, expected_pid)


def test_a_short_incoming_trace_id_reaches_the_encoder_at_16_bytes() -> None:
    trace_id, span_id = os.urandom(15), os.urandom(8)
    found = extract_one("jaeger", {"uber-trace-id": f"{trace_id.hex()}:{span_id.hex()}:0:01"})
    assert found is not None and found.trace_id is not None
    span = decode(
        _otlp.span(
            trace_id=found.trace_id,
            span_id=os.urandom(8),
            parent_span_id=found.span_id,
            name="kong",
            kind=_otlp.SPAN_KIND_SERVER,
            start_ns=1,
            end_ns=2,
            attrs={},
        )
    )
    assert (span.trace_id, span.parent_span_id) == (b"\0" + trace_id, span_id)
