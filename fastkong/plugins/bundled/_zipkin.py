"""The zipkin plugin's spans (Kong 3.9's ``kong/plugins/zipkin/{span,reporter,request_tags}.lua``).

A :class:`Span` is what the plugin records while the request runs: ids, a name, a kind, when it
started (``time.monotonic()``), tags and annotations. :func:`encode` turns a finished span into
one Zipkin v2 JSON object (the collector's ``POST /api/v2/spans`` takes an array of them), with
Kong's reporter rules:

* ids in lower-case hex (the trace id at the size it is kept: 16 bytes once extracted, as Kong
  keeps it, else ``traceid_byte_count``);
* times in whole microseconds since the epoch, a duration of at least 1 (Zipkin's API reads a
  duration under one as "unknown");
* tag values as strings (Lua's ``tostring``: ``true``, ``200``), empty ones left out;
* ``localEndpoint`` names ``local_service_name``; ``remoteEndpoint`` is there when the span has
  a port or a service name (its own, else ``default_service_name``), with ``ipv4`` or ``ipv6``
  by whether the address has a colon.

:func:`parse_request_tags` reads the ``tags_header`` (``Zipkin-Tags: foo=bar; baz=qux``) as
Kong's ``request_tags.lua`` does.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

#: Tag names a ``static_tags`` entry may not use (Kong's ``PROTECTED_TAGS``), in Kong's order.
PROTECTED_TAGS: Final = (
    "error",
    "http.method",
    "http.path",
    "http.status_code",
    "kong.balancer.state",
    "kong.balancer.try",
    "kong.consumer",
    "kong.credential",
    "kong.node.id",
    "kong.route",
    "kong.service",
    "lc",
    "peer.hostname",
)

SpanKind = Literal["SERVER", "CLIENT"]
TagValue = str | int | bool


class Span:
    """A span being recorded (Kong's ``span.lua``); times are ``time.monotonic()`` values."""

    __slots__ = (
        "kind",
        "name",
        "trace_id",
        "span_id",
        "parent_id",
        "start",
        "sampled",
        "tags",
        "annotations",
        "ip",
        "port",
        "service_name",
    )

    def __init__(
        self,
        kind: SpanKind,
        name: str,
        start: float,
        sampled: bool,
        trace_id: bytes,
        span_id: bytes | None = None,
        parent_id: bytes | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.start = start
        self.sampled = sampled
        self.trace_id = trace_id
        self.span_id = span_id if span_id is not None else os.urandom(8)
        self.parent_id = parent_id
        self.tags: dict[str, TagValue] = {}
        self.annotations: list[tuple[str, float]] = []
        self.ip: str | None = None
        self.port: int | None = None
        #: The service the span went to (the proxy span's), else ``default_service_name``.
        self.service_name: str | None = None

    def __repr__(self) -> str:
        parent = self.parent_id.hex() if self.parent_id else None
        return (
            f"<Span {self.kind} {self.name!r} trace={self.trace_id.hex()} "
            f"span={self.span_id.hex()} parent={parent} sampled={self.sampled}>"
        )

    def child(self, kind: SpanKind, name: str, start: float) -> Span:
        """A new span of the same trace with this one as its parent (Kong's ``new_child``)."""
        return Span(kind, name, start, self.sampled, self.trace_id, None, self.span_id)

    def annotate(self, value: str, at: float) -> None:
        self.annotations.append((value, at))


class Clock:
    """Turns ``time.monotonic()`` values into wall-clock microseconds, from one reading of
    both clocks (so the spans of a request agree with each other to the microsecond)."""

    __slots__ = ("wall_us", "mono")

    def __init__(self) -> None:
        self.wall_us = time.time_ns() // 1000
        self.mono = time.monotonic()

    def us(self, mono: float) -> int:
        return self.wall_us - int((self.mono - mono) * 1_000_000)


# -- Zipkin v2 JSON ------------------------------------------------------------------------------
class Endpoint(msgspec.Struct, omit_defaults=True, rename="camel"):
    service_name: str | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    port: int | None = None


class Annotation(msgspec.Struct):
    timestamp: int
    value: str


class ZipkinSpan(msgspec.Struct, omit_defaults=True, rename="camel"):
    """One span of the collector's ``ListOfSpans`` (zipkin2-api.yaml)."""

    trace_id: str
    name: str
    id: str
    kind: str
    timestamp: int
    duration: int
    local_endpoint: Endpoint
    parent_id: str | None = None
    remote_endpoint: Endpoint | None = None
    tags: dict[str, str] | None = None
    annotations: list[Annotation] | None = None


_encoder: Final = msgspec.json.Encoder()


def tag_text(value: TagValue) -> str:
    """Lua's ``tostring`` of a tag value."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def remote_endpoint(span: Span, default_service_name: str | None) -> Endpoint | None:
    service_name = span.service_name or default_service_name
    if span.port is None and service_name is None:
        return None
    endpoint = Endpoint(service_name=service_name, port=span.port)
    if span.ip:
        if ":" in span.ip:
            endpoint.ipv6 = span.ip
        else:
            endpoint.ipv4 = span.ip
    return endpoint


def to_zipkin(
    span: Span,
    finish: float,
    clock: Clock,
    local_service_name: str,
    default_service_name: str | None = None,
) -> ZipkinSpan:
    """The finished ``span`` (ended at ``finish``) as the collector reads it."""
    timestamp = clock.us(span.start)
    tags = {name: text for name, value in span.tags.items() if (text := tag_text(value))}
    annotations = [Annotation(clock.us(at), value) for value, at in span.annotations]
    return ZipkinSpan(
        trace_id=span.trace_id.hex(),
        name=span.name,
        id=span.span_id.hex(),
        kind=span.kind,
        timestamp=timestamp,
        duration=max(1, clock.us(finish) - timestamp),
        local_endpoint=Endpoint(service_name=local_service_name),
        parent_id=span.parent_id.hex() if span.parent_id is not None else None,
        remote_endpoint=remote_endpoint(span, default_service_name),
        tags=tags or None,
        annotations=annotations or None,
    )


def encode(
    span: Span,
    finish: float,
    clock: Clock,
    local_service_name: str,
    default_service_name: str | None = None,
) -> bytes:
    """:func:`to_zipkin` as JSON: one queue entry (a batch is these, in a JSON array)."""
    return _encoder.encode(to_zipkin(span, finish, clock, local_service_name, default_service_name))


def batch(entries: list[bytes]) -> bytes:
    """The body of one POST: the queued spans as a JSON array."""
    return b"[" + b",".join(entries) + b"]"


# -- the tags header -----------------------------------------------------------------------------
#: Kong's ``^%s*(%S+)%s*=%s*(.*%S)%s*$`` with Lua's ``%s`` (ASCII white space, \v included).
_TAG: Final = re.compile(
    r"[ \t\n\v\f\r]*([^ \t\n\v\f\r]+)[ \t\n\v\f\r]*=[ \t\n\v\f\r]*(.*[^ \t\n\v\f\r])"
    r"[ \t\n\v\f\r]*",
    re.DOTALL,
)


def parse_request_tags(values: Iterable[str]) -> tuple[dict[str, str], str | None]:
    """The tags of the tags header's values (one per time the header was sent): ``name=value``
    items separated by ``;``. Returns the tags and, when some items were not ``name=value``,
    Kong's warning naming them (the good items are kept)."""
    tags: dict[str, str] = {}
    bad: list[str] = []
    for value in values:
        for item in value.split(";"):
            if not item:
                continue
            match = _TAG.fullmatch(item)
            if match is None:
                bad.append(item)
            else:
                tags[match.group(1)] = match.group(2)
    error = "Could not parse the following Zipkin tags: " + ", ".join(bad) if bad else None
    return tags, error


__all__ = [
    "PROTECTED_TAGS",
    "Clock",
    "Span",
    "ZipkinSpan",
    "batch",
    "encode",
    "parse_request_tags",
    "remote_endpoint",
    "tag_text",
    "to_zipkin",
]
