"""Kong's tracing header propagation (``kong/observability/tracing/propagation/**``, Kong 3.9).

Three steps, in Kong's order, all plain code on the request headers:

1. **extract**: the configured extractors are tried in order; the first that finds anything
   wins (``extracted_from``). Each reads its own headers the way Kong's extractor does, with
   Kong's validation: an invalid header is ignored, not an error. Ids come out as bytes, resized
   to Kong's internal sizes (trace ids 16 bytes, span ids 8: shorter ids are zero-padded on the
   left, longer ones keep their last bytes), and the trace id's original size is kept so an
   injector can write it back in the same size when its format allows (64-bit b3, jaeger, ot).
2. the plugin turns the extracted context into the one to inject (its own span as the parent);
3. **clear** the configured headers, then **inject** in every configured format (``preserve``:
   the format extracted from, else ``default_format``; b3 extracted from the single header is
   written back as ``b3-single``).

"Found anything" is Kong's ``next(ctx) ~= nil``: any field set counts. That is why the b3
extractor, which always reports ``reuse_span_id``, wins as soon as one of its headers is
present, including a ``tracestate`` without a ``b3=`` entry (as in Kong 3.9).

Header values are read as Kong's ``ngx.req.get_headers()`` gives them: a string, or a list when
the header was repeated, which every extractor treats as invalid (the request context's lists
are read in place, no per-request copy).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import quote, unquote

import msgspec

from fastkong.config.schema import HeaderName

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext

Headers = Mapping[str, str | list[str]]

#: Kong's ``propagation.utils.FORMATS`` (3.9: no instana), in Kong's order.
FORMATS: Final = ("w3c", "b3", "b3-single", "jaeger", "ot", "datadog", "aws", "gcp")
#: The order the deprecated ``header_type`` extracts in (Kong's former hard-coded order).
LEGACY_EXTRACT: Final = ("b3", "w3c", "jaeger", "ot", "datadog", "aws", "gcp")

Extractor = Literal["w3c", "b3", "jaeger", "ot", "datadog", "aws", "gcp"]
Injector = Literal["w3c", "b3", "b3-single", "jaeger", "ot", "datadog", "aws", "gcp"]
InjectName = Literal["preserve", "w3c", "b3", "b3-single", "jaeger", "ot", "datadog", "aws", "gcp"]

TRACE_ID_SIZE: Final = 16
SPAN_ID_SIZE: Final = 8


class PropagationConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Kong's ``typedefs.propagation`` (``propagation/schema.lua``)."""

    extract: list[Extractor] | None = None
    clear: list[HeaderName] | None = None
    inject: list[InjectName] | None = None
    default_format: Injector


class Plan(msgspec.Struct, frozen=True):
    """What one plugin config propagates (Kong's ``get_plugin_params``, resolved once)."""

    extract: tuple[str, ...] = ()
    clear: tuple[str, ...] = ()
    inject: tuple[str, ...] = ()
    default_format: str = "w3c"


def plugin_plan(propagation: PropagationConfig, header_type: str | None) -> Plan:
    """Kong's ``propagation.get_plugin_params``: ``propagation`` as given when any of
    ``extract``/``clear``/``inject`` is set, else what the deprecated ``header_type`` meant."""
    default = propagation.default_format
    if (
        propagation.extract is not None
        or propagation.clear is not None
        or propagation.inject is not None
        or header_type is None
    ):
        return Plan(
            tuple(propagation.extract or ()),
            tuple(propagation.clear or ()),
            tuple(propagation.inject or ()),
            default,
        )
    if header_type == "preserve":
        return Plan(LEGACY_EXTRACT, (), ("preserve",), default)
    if header_type == "ignore":
        return Plan((), (), (default,), default)
    return Plan(LEGACY_EXTRACT, (), ("preserve", header_type), default)


class TraceContext:
    """Kong's extracted / injected tracing context table (``extractors/_base.lua``)."""

    __slots__ = (
        "trace_id",
        "span_id",
        "parent_id",
        "should_sample",
        "flags",
        "w3c_flags",
        "single_header",
        "reuse_span_id",
        "baggage",
        "trace_id_original_size",
    )

    def __init__(
        self,
        trace_id: bytes | None = None,
        span_id: bytes | None = None,
        parent_id: bytes | None = None,
        should_sample: bool | None = None,
        *,
        flags: str | None = None,
        w3c_flags: int | None = None,
        single_header: bool | None = None,
        reuse_span_id: bool | None = None,
        baggage: dict[str, str] | None = None,
        trace_id_original_size: int | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.should_sample = should_sample
        self.flags = flags
        self.w3c_flags = w3c_flags
        self.single_header = single_header
        self.reuse_span_id = reuse_span_id
        self.baggage = baggage
        self.trace_id_original_size = trace_id_original_size

    def found(self) -> bool:
        """Kong's ``next(ctx) ~= nil``: any field set."""
        return any(getattr(self, name) is not None for name in self.__slots__)

    def copy(self) -> TraceContext:
        twin = TraceContext()
        for name in self.__slots__:
            setattr(twin, name, getattr(self, name))
        return twin

    def __repr__(self) -> str:
        ids = " ".join(
            f"{name}={value.hex()}"
            for name in ("trace_id", "span_id", "parent_id")
            if (value := getattr(self, name)) is not None
        )
        return f"<TraceContext {ids} sampled={self.should_sample}>"


# -- ids -----------------------------------------------------------------------------------------
def to_id_size(value: bytes | None, size: int) -> bytes | None:
    """Kong's ``to_id_size``: keep the last ``size`` bytes, or zero-pad on the left."""
    if value is None:
        return None
    if len(value) > size:
        return value[-size:]
    if len(value) < size:
        return b"\0" * (size - len(value)) + value
    return value


def from_hex(text: str) -> bytes:
    """Kong's ``from_hex`` of an already validated hex string (an odd length gets a ``0``)."""
    return bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)


def from_dec(text: str) -> bytes:
    """``bn.from_dec(text):to_binary()``: the fewest big-endian bytes (none for zero)."""
    number = int(text)
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


def to_dec(value: bytes) -> str:
    return str(int.from_bytes(value, "big"))


_HEX: Final = re.compile(r"[0-9a-fA-F]+")


def _is_hex(text: str) -> bool:
    return _HEX.fullmatch(text) is not None


def _value(headers: Headers, name: str) -> str | list[str] | None:
    """A header as ``ngx.req.get_headers()`` gives it: its value, or the list of its values
    when it was sent more than once (the request context keeps lists throughout)."""
    value = headers.get(name)
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _one(headers: Headers, name: str) -> str | None:
    """A header's value when it was sent once (Kong's ``type(v) == "string"``)."""
    value = _value(headers, name)
    return value if isinstance(value, str) else None


def _baggage(headers: Headers, prefix: str) -> dict[str, str] | None:
    found = {
        name[len(prefix) :]: unquote(value)
        for name in headers
        if name.startswith(prefix) and isinstance(value := _value(headers, name), str)
    }
    return found or None


def _flag(value: str | list[str] | None) -> bool | None:
    """``1``/``true`` and ``0``/``false`` of b3's and ot's sampled headers; else unset."""
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    return None


# -- extractors ----------------------------------------------------------------------------------
_W3C: Final = re.compile(r"([0-9a-fA-F]+)-([0-9a-fA-F]+)-([0-9a-fA-F]+)-([0-9a-fA-F]+)")


def _w3c(headers: Headers) -> TraceContext | None:
    traceparent = _one(headers, "traceparent")
    if not traceparent:
        return None
    match = _W3C.fullmatch(traceparent)
    if match is None:
        return None
    version, trace_id, parent_id, flags = match.groups()
    if version != "00":
        return None
    if len(trace_id) != 32 or int(trace_id, 16) == 0:
        return None
    if len(parent_id) != 16 or int(parent_id, 16) == 0:
        return None
    if len(flags) != 2:
        return None
    w3c_flags = int(flags, 16)
    return TraceContext(
        from_hex(trace_id), from_hex(parent_id), None, w3c_flags % 2 == 1, w3c_flags=w3c_flags
    )


_B3_SINGLE: Final = re.compile(r"([0-9a-fA-F]+)-([0-9a-fA-F]{16})-?([01d]?)-?([0-9a-fA-F]*)")


#: The b3 single header read: trace, span and parent ids, sampled, flags, and "invalid ids".
_B3Single = tuple[str | None, str | None, str | None, bool | None, str | None, bool]


def _b3_single(headers: Headers) -> _B3Single | None:
    """The b3 single header (or ``tracestate: b3=...``): ``(trace, span, parent, sampled,
    flags, invalid)``; None when there is none."""
    value = _value(headers, "b3")
    if value is None:
        tracestate = _value(headers, "tracestate")
        for state in [tracestate] if isinstance(tracestate, str) else tracestate or ():
            if state.startswith("b3=") and len(state) > 3:
                value = state[3:]
                break
    if not isinstance(value, str):
        return None
    if value in ("1", "d"):
        return None, None, None, True, "1" if value == "d" else None, False
    if value == "0":
        return None, None, None, False, None, False
    match = _B3_SINGLE.fullmatch(value)
    if match is None:
        return None, None, None, None, None, True
    trace_id, span_id, sampled, parent_id = match.groups()
    if len(trace_id) not in (16, 32) or len(parent_id) not in (0, 16):
        return None, None, None, None, None, True
    should_sample = True if sampled in ("1", "d") else False if sampled == "0" else None
    flags = "1" if sampled == "d" else None
    return trace_id, span_id, parent_id or None, should_sample, flags, False


def _b3_id(value: str | list[str] | None, sizes: tuple[int, ...]) -> tuple[str | None, bool]:
    """A multi-header b3 id: ``(id, invalid)``."""
    if value is None:
        return None, False
    if isinstance(value, list) or len(value) not in sizes or not _is_hex(value):
        return None, True
    return value, False


def _b3(headers: Headers) -> TraceContext:
    trace_id = span_id = parent_id = flags = None
    should_sample: bool | None = None
    single = _b3_single(headers)
    single_header = None
    if single is not None:
        single_header = True
        s_trace, s_span, s_parent, should_sample, flags, invalid = single
        if not invalid:
            trace_id, span_id, parent_id = s_trace, s_span, s_parent
    # the multi headers fill what the single header left unset
    multi_sample = _flag(_value(headers, "x-b3-sampled"))
    debug = _value(headers, "x-b3-flags")
    if debug == "1":
        multi_sample = True
    if should_sample is None:
        should_sample = multi_sample
    if flags is None and isinstance(debug, str):
        flags = debug
    m_trace, bad_trace = _b3_id(_value(headers, "x-b3-traceid"), (16, 32))
    m_span, bad_span = _b3_id(_value(headers, "x-b3-spanid"), (16,))
    m_parent, bad_parent = _b3_id(_value(headers, "x-b3-parentspanid"), (16,))
    if not (bad_trace or bad_span or bad_parent):
        trace_id = trace_id or m_trace
        span_id = span_id or m_span
        parent_id = parent_id or m_parent
    if trace_id is None:
        span_id = parent_id = None
    return TraceContext(
        from_hex(trace_id) if trace_id else None,
        from_hex(span_id) if span_id else None,
        from_hex(parent_id) if parent_id else None,
        should_sample,
        flags=flags,
        single_header=single_header,
        reuse_span_id=True,
    )


_JAEGER: Final = re.compile(r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)")


def _jaeger(headers: Headers) -> TraceContext | None:
    value = _one(headers, "uber-trace-id")
    if not value:
        return None
    match = _JAEGER.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id, parent_id, trace_flags = match.groups()
    if len(trace_id) > 32 or int(trace_id, 16) == 0:
        return None
    # an invalid parent id is only warned about in Kong: it is kept
    if len(span_id) > 16 or int(span_id, 16) == 0:
        return None
    if len(trace_flags) not in (1, 2):
        return None
    return TraceContext(
        from_hex(trace_id),
        from_hex(span_id),
        from_hex(parent_id),
        int(trace_flags, 16) % 2 == 1,
        reuse_span_id=True,
        baggage=_baggage(headers, "uberctx-"),
    )


def _ot(headers: Headers) -> TraceContext:
    should_sample = _flag(_value(headers, "ot-tracer-sampled"))
    trace_id, bad_trace = _b3_id(_value(headers, "ot-tracer-traceid"), (16, 32))
    span_id, bad_span = _b3_id(_value(headers, "ot-tracer-spanid"), (16,))
    if trace_id is None or bad_trace or bad_span:
        trace_id = span_id = None
    return TraceContext(
        from_hex(trace_id) if trace_id else None,
        from_hex(span_id) if span_id else None,
        None,
        should_sample,
        baggage=_baggage(headers, "ot-baggage-"),
    )


_DECIMAL: Final = re.compile(r"\s*(\d+)\s*")


def _decimal(value: str | list[str] | None) -> str | None:
    if not isinstance(value, str):
        return None
    match = _DECIMAL.fullmatch(value)
    return match.group(1) if match else None


def _datadog(headers: Headers) -> TraceContext | None:
    priority = _value(headers, "x-datadog-sampling-priority")
    should_sample: bool | None
    if priority in ("1", "2"):
        should_sample = True
    elif priority in ("0", "-1"):
        should_sample = False
    elif priority is not None:
        return None
    else:
        should_sample = None
    trace_id = _decimal(_value(headers, "x-datadog-trace-id"))
    parent_id = _decimal(_value(headers, "x-datadog-parent-id")) if trace_id else None
    return TraceContext(
        from_dec(trace_id) if trace_id else None,
        from_dec(parent_id) if parent_id else None,
        None,
        should_sample,
    )


_AWS_ROOT: Final = re.compile(r"([0-9a-fA-F]+)-([0-9a-fA-F]+)-([0-9a-fA-F]+)")


def _aws(headers: Headers) -> TraceContext | None:
    value = _one(headers, "x-amzn-trace-id")
    if value is None:
        return None
    trace_id = parent_id = None
    should_sample = None
    for pair in value.split(";"):
        key, _, item = pair.partition("=")
        key, item = key.strip(), item.partition("=")[0].strip()
        if key == "Root":
            match = _AWS_ROOT.fullmatch(item)
            if (
                len(item) != 35
                or match is None
                or match.group(1) != "1"
                or len(match.group(2)) != 8
                or len(match.group(3)) != 24
            ):
                return None
            trace_id = from_hex(match.group(2) + match.group(3))
        elif key == "Parent":
            # Kong checks only the length; a non-hex id is refused here rather than garbled
            if len(item) != 16 or not _is_hex(item):
                return None
            parent_id = from_hex(item)
        elif key == "Sampled":
            if item not in ("0", "1"):
                return None
            should_sample = item == "1"
    return TraceContext(trace_id, parent_id, None, should_sample)


_GCP: Final = re.compile(r"([0-9a-f]{32})/([0-9]{1,20})(?:;o=([0-9]))?")


def _gcp(headers: Headers) -> TraceContext | None:
    value = _one(headers, "x-cloud-trace-context")
    if value is None:
        return None
    match = _GCP.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    return TraceContext(from_hex(trace_id), from_dec(span_id), None, flags == "1")


#: Extractor -> (the headers any of which it needs, how it reads them).
EXTRACTORS: Final[dict[str, tuple[tuple[str, ...], Callable[[Headers], TraceContext | None]]]] = {
    "w3c": (("traceparent",), _w3c),
    "b3": (
        (
            "b3",
            "tracestate",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-parentspanid",
            "x-b3-sampled",
            "x-b3-flags",
        ),
        _b3,
    ),
    "jaeger": (("uber-trace-id",), _jaeger),
    "ot": (("ot-tracer-sampled", "ot-tracer-traceid", "ot-tracer-spanid"), _ot),
    "datadog": (
        ("x-datadog-trace-id", "x-datadog-parent-id", "x-datadog-sampling-priority"),
        _datadog,
    ),
    "aws": (("x-amzn-trace-id",), _aws),
    "gcp": (("x-cloud-trace-context",), _gcp),
}


def extract_one(name: str, headers: Headers) -> TraceContext | None:
    """One extractor (Kong's ``_EXTRACTOR:extract``): the context with Kong's id sizes, or None."""
    needs, read = EXTRACTORS[name]
    if not any(header in headers for header in needs):
        return None
    found = read(headers)
    if found is None:
        return None
    if found.trace_id is not None:
        found.trace_id_original_size = len(found.trace_id)
    found.trace_id = to_id_size(found.trace_id, TRACE_ID_SIZE)
    found.span_id = to_id_size(found.span_id, SPAN_ID_SIZE)
    found.parent_id = to_id_size(found.parent_id, SPAN_ID_SIZE)
    return found


def extract(headers: Headers, extractors: Sequence[str]) -> tuple[TraceContext, str | None]:
    """The first extractor's context that holds anything, and its name (Kong's
    ``extracted_from``); an empty context and None when none does."""
    for name in extractors:
        found = extract_one(name, headers)
        if found is not None and found.found():
            return found, name
    return TraceContext(), None


# -- injectors -----------------------------------------------------------------------------------
def _sampled(ctx: TraceContext, yes: str, no: str) -> str:
    return yes if ctx.should_sample else no


def _inject_w3c(ctx: TraceContext) -> list[tuple[str, str]]:
    assert ctx.trace_id is not None and ctx.span_id is not None
    sampled = _sampled(ctx, "01", "00")
    return [("traceparent", f"00-{ctx.trace_id.hex()}-{ctx.span_id.hex()}-{sampled}")]


def _inject_b3(ctx: TraceContext) -> list[tuple[str, str]]:
    headers = []
    if ctx.trace_id is not None and ctx.span_id is not None:
        headers += [("x-b3-traceid", ctx.trace_id.hex()), ("x-b3-spanid", ctx.span_id.hex())]
        if ctx.parent_id is not None:
            headers.append(("x-b3-parentspanid", ctx.parent_id.hex()))
    if ctx.flags is not None:
        headers.append(("x-b3-flags", ctx.flags))
    else:
        headers.append(("x-b3-sampled", _sampled(ctx, "1", "0")))
    return headers


def _inject_b3_single(ctx: TraceContext) -> list[tuple[str, str]]:
    sampled = None
    if ctx.flags == "1":
        sampled = "d"
    elif ctx.should_sample is not None:
        sampled = _sampled(ctx, "1", "0")
    if ctx.trace_id is None or ctx.span_id is None:
        return [("b3", sampled or "0")]
    value = f"{ctx.trace_id.hex()}-{ctx.span_id.hex()}"
    if sampled:
        value += f"-{sampled}"
    if ctx.parent_id is not None:
        value += f"-{ctx.parent_id.hex()}"
    return [("b3", value)]


def _escape(value: str) -> str:
    return quote(value, safe="")


def _inject_jaeger(ctx: TraceContext) -> list[tuple[str, str]]:
    assert ctx.trace_id is not None and ctx.span_id is not None
    parent = ctx.parent_id.hex() if ctx.parent_id is not None else "0"
    sampled = _sampled(ctx, "01", "00")
    headers = [("uber-trace-id", f"{ctx.trace_id.hex()}:{ctx.span_id.hex()}:{parent}:{sampled}")]
    for key, value in (ctx.baggage or {}).items():
        headers.append((f"uberctx-{key}", _escape(value)))
    return headers


def _inject_ot(ctx: TraceContext) -> list[tuple[str, str]]:
    assert ctx.trace_id is not None and ctx.span_id is not None
    headers = [("ot-tracer-traceid", ctx.trace_id.hex()), ("ot-tracer-spanid", ctx.span_id.hex())]
    if ctx.should_sample is not None:
        headers.append(("ot-tracer-sampled", _sampled(ctx, "1", "0")))
    for key, value in (ctx.baggage or {}).items():
        headers.append((f"ot-baggage-{key}", _escape(value)))
    return headers


def _inject_datadog(ctx: TraceContext) -> list[tuple[str, str]]:
    headers = []
    if ctx.trace_id is not None:
        headers.append(("x-datadog-trace-id", to_dec(ctx.trace_id)))
    if ctx.span_id is not None:
        headers.append(("x-datadog-parent-id", to_dec(ctx.span_id)))
    if ctx.should_sample is not None:
        headers.append(("x-datadog-sampling-priority", _sampled(ctx, "1", "0")))
    return headers


def _inject_aws(ctx: TraceContext) -> list[tuple[str, str]]:
    assert ctx.trace_id is not None and ctx.span_id is not None
    trace = ctx.trace_id.hex()
    sampled = _sampled(ctx, "1", "0")
    value = f"Root=1-{trace[:8]}-{trace[8:]};Parent={ctx.span_id.hex()};Sampled={sampled}"
    return [("x-amzn-trace-id", value)]


def _inject_gcp(ctx: TraceContext) -> list[tuple[str, str]]:
    assert ctx.trace_id is not None and ctx.span_id is not None
    sampled = _sampled(ctx, "1", "0")
    return [("x-cloud-trace-context", f"{ctx.trace_id.hex()}/{to_dec(ctx.span_id)};o={sampled}")]


class _Injector(msgspec.Struct, frozen=True):
    #: Trace id sizes the format carries; the first is the default (Kong's
    #: ``trace_id_allowed_sizes``).
    sizes: tuple[int, ...]
    #: Whether trace and span ids are required (Kong's ``context_validate.all``).
    needs_ids: bool
    create: Callable[[TraceContext], list[tuple[str, str]]]
    #: How the trace id appears in Kong's serialized ``trace_id`` (hex, or decimal).
    decimal: bool = False


INJECTORS: Final[dict[str, _Injector]] = {
    "w3c": _Injector((16,), True, _inject_w3c),
    "b3": _Injector((16, 8), False, _inject_b3),
    "b3-single": _Injector((16, 8), False, _inject_b3_single),
    "jaeger": _Injector((16, 8), True, _inject_jaeger),
    "ot": _Injector((8, 16), True, _inject_ot),
    "datadog": _Injector((8,), False, _inject_datadog, decimal=True),
    "aws": _Injector((16,), True, _inject_aws),
    "gcp": _Injector((16,), True, _inject_gcp),
}


def inject_one(name: str, ctx: TraceContext) -> tuple[list[tuple[str, str]], str | None]:
    """One injector (Kong's ``_INJECTOR:inject``): the headers to set and the trace id as the
    format writes it (for the log serializer's ``trace_id``); ``([], None)`` when the context
    lacks what the format needs."""
    injector = INJECTORS[name]
    if injector.needs_ids and (ctx.trace_id is None or ctx.span_id is None):
        return [], None
    out = ctx.copy()
    size = ctx.trace_id_original_size
    out.trace_id = to_id_size(ctx.trace_id, size if size in injector.sizes else injector.sizes[0])
    out.span_id = to_id_size(ctx.span_id, SPAN_ID_SIZE)
    out.parent_id = to_id_size(ctx.parent_id, SPAN_ID_SIZE)
    headers = injector.create(out)
    if out.trace_id is None:
        formatted = None if injector.decimal else ""
    else:
        formatted = to_dec(out.trace_id) if injector.decimal else out.trace_id.hex()
    return headers, formatted


def inject_formats(plan: Plan, extracted_from: str | None, single_header: bool) -> list[str]:
    """The injectors to run, ``preserve`` resolved (Kong's ``inject_tracing_context``)."""
    names = []
    for name in plan.inject:
        if name == "preserve":
            name = extracted_from or plan.default_format or "w3c"
            if name == "b3" and single_header:
                name = "b3-single"
        names.append(name)
    return names


#: Where the injected trace ids are kept for the log serializer (Kong's serialized ``trace_id``).
TRACE_ID_KEY: Final = "trace_id"


def propagate(
    ctx: RequestContext,
    plan: Plan,
    clear: Sequence[bytes],
    extracted_from: str | None,
    out: TraceContext,
) -> None:
    """Kong's ``propagate`` once the plugin made its inject context ``out``: clear the
    configured headers (lower-cased bytes), inject every format, and add the trace id each
    format wrote to the log serializer's ``trace_id`` (merged with what another tracing plugin
    wrote, as Kong's ``add_trace_id_formats`` merges)."""
    for key in clear:
        ctx.clear_upstream_raw(key)
    formatted: dict[str, str] = {}
    for name in inject_formats(plan, extracted_from, bool(out.single_header)):
        headers, trace_text = inject_one(name, out)
        for header, value in headers:
            ctx.set_upstream_header(header, value)
        if trace_text is not None:
            formatted["b3" if name == "b3-single" else name] = trace_text
    if formatted:
        known = ctx.plugin_data.get(TRACE_ID_KEY)
        if known:
            known.update(formatted)
        else:
            ctx.plugin_data[TRACE_ID_KEY] = formatted


__all__ = [
    "EXTRACTORS",
    "FORMATS",
    "INJECTORS",
    "LEGACY_EXTRACT",
    "Headers",
    "Plan",
    "PropagationConfig",
    "TRACE_ID_KEY",
    "TraceContext",
    "extract",
    "extract_one",
    "inject_formats",
    "inject_one",
    "plugin_plan",
    "propagate",
    "to_id_size",
]
