"""OTLP trace export as protobuf bytes, written by hand (``kong/observability/otlp/init.lua``).

Only the messages Kong sends are encoded, and only the fields Kong fills: an
``ExportTraceServiceRequest`` with one ``ResourceSpans`` (the resource attributes), one
``ScopeSpans`` (scope ``kong-internal`` version ``0.1.0``) and the batch's spans. Field numbers
are those of ``opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto``; the tests
decode the output with the reference ``opentelemetry-proto`` package.

A span is encoded once, in the log phase, and queued as bytes; a batch is the spans' bytes
wrapped in the per-config prefix (resource and scope, encoded once per plugin instance), so the
background sender only concatenates.

Attribute values are typed as Kong types them: ``http.status_code`` is an ``int_value``, any
other number a ``double_value``, a string a ``string_value``, a boolean a ``bool_value``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

#: Kong's instrumentation scope.
SCOPE_NAME: Final = "kong-internal"
SCOPE_VERSION: Final = "0.1.0"
#: Attribute keys Kong sends as integers (``KEY_TO_ATTRIBUTE_TYPES``).
INT_KEYS: Final = frozenset({"http.status_code"})

SPAN_KIND_SERVER: Final = 2
STATUS_ERROR: Final = 2

AttributeValue = str | bool | int | float

_VARINT: Final = 0
_FIXED64: Final = 1
_LEN: Final = 2


def varint(value: int) -> bytes:
    value &= 0xFFFF_FFFF_FFFF_FFFF  # negative int64s take ten bytes, as protobuf writes them
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_delimited(field: int, payload: bytes) -> bytes:
    return _tag(field, _LEN) + varint(len(payload)) + payload


def _fixed64(field: int, value: int) -> bytes:
    return _tag(field, _FIXED64) + struct.pack("<Q", value)


def _uint(field: int, value: int) -> bytes:
    return _tag(field, _VARINT) + varint(value)


def any_value(key: str, value: AttributeValue) -> bytes:
    """An ``AnyValue`` (the oneof is always written, so an empty string stays a string)."""
    if isinstance(value, bool):
        return _uint(2, int(value))
    if isinstance(value, str):
        return length_delimited(1, value.encode())
    if key in INT_KEYS:
        return _uint(3, int(value))
    return _tag(4, _FIXED64) + struct.pack("<d", float(value))


def key_value(key: str, value: AttributeValue) -> bytes:
    return length_delimited(1, key.encode()) + length_delimited(2, any_value(key, value))


def attributes(field: int, values: Mapping[str, AttributeValue]) -> bytes:
    return b"".join(length_delimited(field, key_value(k, v)) for k, v in values.items())


def span(
    *,
    trace_id: bytes,
    span_id: bytes,
    parent_span_id: bytes | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attrs: Mapping[str, AttributeValue],
    status: int | None = None,
    events: Sequence[tuple[str, int, Mapping[str, AttributeValue]]] = (),
) -> bytes:
    """One ``Span`` message (Kong's ``transform_span``); ``events`` are (name, Unix time in
    nanoseconds, attributes), as Kong's ``record_error`` adds them."""
    out = length_delimited(1, trace_id) + length_delimited(2, span_id)
    if parent_span_id:
        out += length_delimited(4, parent_span_id)
    out += length_delimited(5, name.encode())
    if kind:
        out += _uint(6, kind)
    out += _fixed64(7, start_ns) + _fixed64(8, end_ns) + attributes(9, attrs)
    for event_name, time_ns, event_attrs in events:
        event = _fixed64(1, time_ns) + length_delimited(2, event_name.encode())
        out += length_delimited(11, event + attributes(3, event_attrs))
    if status:
        out += length_delimited(15, _uint(3, status))
    return out


class TraceEnvelope:
    """The resource and scope of one plugin config, encoded once; wraps batches of spans."""

    __slots__ = ("resource", "scope")

    def __init__(self, resource_attributes: Mapping[str, AttributeValue]) -> None:
        self.resource = length_delimited(1, attributes(1, resource_attributes))
        scope = length_delimited(1, SCOPE_NAME.encode()) + length_delimited(
            2, SCOPE_VERSION.encode()
        )
        self.scope = length_delimited(1, scope)

    def request(self, spans: Iterable[bytes]) -> bytes:
        """An ``ExportTraceServiceRequest`` carrying ``spans`` (encoded ``Span`` messages)."""
        scope_spans = self.scope + b"".join(length_delimited(2, s) for s in spans)
        resource_spans = self.resource + length_delimited(2, scope_spans)
        return length_delimited(1, resource_spans)


__all__ = [
    "INT_KEYS",
    "SCOPE_NAME",
    "SCOPE_VERSION",
    "SPAN_KIND_SERVER",
    "TraceEnvelope",
    "any_value",
    "span",
    "varint",
]
