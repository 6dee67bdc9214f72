"""Pure-Python twin of ``h1.pyx``: the two HTTP/1 loops of every proxied request.

:func:`scan_request_headers` is the gateway's one pass over the client's headers: it copies
the ones that go upstream as ready-made ``name: value`` lines and picks out the few the gateway
acts on. :func:`parse_response` reads the upstream's whole small response in one step.

Reading a response whole
------------------------
Most upstream answers a gateway sees are small and arrive whole in one read: a status line, a
handful of headers, a ``Content-Length`` body. Read through ``httptools`` such a response costs
a Python callback per header plus four more (head complete, body, message complete, the
wake-up), which measured as a sixth of fastkong's own Python per request. :func:`parse_response`
reads the whole message in one call instead, and says "not mine" (None) for anything outside a
deliberately narrow shape, so that the caller feeds the same bytes to ``httptools``, whose
answer is then the only one. Being narrow is what makes it safe: it never has to agree with
``httptools`` about an unusual message, because it never reads one.

The shape it reads, byte for byte (anything else: None):

* ``HTTP/1.1 `` and a status of 200-599, then a reason of visible characters, spaces, tabs or
  obs-text (or none), ``CRLF``;
* header lines ``name: value CRLF``: a token name, optional spaces or tabs (left out, as
  llhttp does), a value of visible characters, spaces, tabs or obs-text (trailing spaces kept,
  as llhttp does); no folded lines, no bare ``LF``;
* one ``Content-Length`` of at most 18 digits and nothing else, no ``Transfer-Encoding``, no
  ``Via``, and a ``Connection`` of exactly ``keep-alive`` or ``close`` (any case), if any;
* then exactly the body the length says and not one byte more (a response cut across reads,
  or followed by more bytes, is ``httptools``'); for a response that has no body (to ``HEAD``,
  with a length, or a 204 or 304) nothing after the head at all. (A response to ``HEAD``
  without a length is ``httptools``': it calls that connection done, and so must this.)

The headers come back as the upstream sent them minus the ones a proxy does not forward
(hop-by-hop, and those nginx hides): the same filter as ``UpstreamConnection.on_header``.
"""

from __future__ import annotations

import re

__all__ = [
    "edit_header_lines",
    "parse_response",
    "scan_request_headers",
    "DROPPED",
    "NGINX_HIDDEN",
    "REQUEST_DEBUG",
    "RESPONSE_HOP_BY_HOP",
    "SPECIAL",
    "TRUSTED_FORWARDED",
]

#: Response headers that end at the gateway (RFC 9110 7.6.1): never forwarded to the client.
RESPONSE_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: Response headers nginx's proxy module hides by default (Kong passes only Server and Date
#: through): never forwarded to the client either.
NGINX_HIDDEN = frozenset(
    {
        b"x-pad",
        b"x-accel-expires",
        b"x-accel-redirect",
        b"x-accel-limit-rate",
        b"x-accel-buffering",
        b"x-accel-charset",
    }
)
#: The ones :func:`parse_response` drops unread (``connection`` and ``transfer-encoding`` it
#: reads first).
DROPPED = (RESPONSE_HOP_BY_HOP | NGINX_HIDDEN) - {b"connection", b"transfer-encoding"}
_MAX_DIGITS = 18

# Request headers that are not copied verbatim: hop-by-hop ones (RFC 9110 7.6.1) plus ``Proxy``
# (httpoxy; Kong clears it) and ``Expect`` (nginx's proxy module never sends it: the client was
# answered 100 Continue at the gateway), the ones the gateway sets itself, and the X-Forwarded-*
# family (kept only from trusted peers). ``Connection`` and ``TE`` are read, then acted on.
_HOP_BY_HOP = frozenset(
    {b"expect", b"keep-alive", b"proxy", b"proxy-connection", b"trailer", b"upgrade"}
)
SIGNALS = frozenset({b"connection", b"te"})
#: Kong's debug request header (``allow_debug_header``): forwarded, and noted.
DEBUG = b"kong-debug"
#: Kong's request-debug headers (``request_debug``): forwarded as sent, and noted; a node that
#: debugs requests takes them out (fastkong/proxy/request_debug.py).
REQUEST_DEBUG = frozenset(
    {b"x-kong-request-debug", b"x-kong-request-debug-token", b"x-kong-request-debug-log"}
)
#: The X-Forwarded-* family Kong keeps only from trusted peers (``trusted_ips``).
TRUSTED_FORWARDED = frozenset(
    {
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-path",
        b"x-forwarded-prefix",
        b"x-real-ip",
    }
)
#: Every request header the scan does not copy as it came.
SPECIAL = (
    _HOP_BY_HOP
    | TRUSTED_FORWARDED
    | SIGNALS
    | REQUEST_DEBUG
    | {b"host", b"transfer-encoding", b"x-forwarded-for", b"via", b"x-kong-request-id", DEBUG}
)

#: What :func:`scan_request_headers` returns, in this order:
#:
#: * ``lines``: the headers that go upstream as sent, each ``name: value\r\n``;
#: * ``host``: the first Host value (b"" if none);
#: * ``xff``, ``via``: the first X-Forwarded-For and Via values, as Kong reads them (b"");
#: * ``chunked``: a Transfer-Encoding naming ``chunked``;
#: * ``content_length``: -1 when absent; -2 when nginx refuses the request (a length that is
#:   not all digits or comes twice, or a second Host header);
#: * ``forwarded``: the first value of each X-Forwarded-*/X-Real-IP from a trusted peer, or None;
#: * ``signals``: the Connection and TE headers, or None;
#: * ``head_size``: an upper bound of the headers' bytes: the lines' sizes, plus each header
#:   not in ``lines`` counted with a name of at most 24 bytes;
#: * ``debug``: 0, or 1 when a ``Kong-Debug`` header came, plus 2 when a request-debug header
#:   (:data:`REQUEST_DEBUG`) came (they are in ``lines`` too).
Scanned = tuple[
    list[bytes],
    bytes,
    bytes,
    bytes,
    bool,
    int,
    "dict[bytes, bytes] | None",
    "list[tuple[bytes, bytes]] | None",
    int,
    int,
]


def scan_request_headers(headers: list[tuple[bytes, bytes]], trusted: bool) -> Scanned:
    """One pass over the client's (lower-case) headers; ``trusted``: the peer is in
    ``trusted_ips``. Returns :data:`Scanned`."""
    lines: list[bytes] = []
    host = b""
    xff = b""
    via = b""
    chunked = False
    content_length = -1
    forwarded: dict[bytes, bytes] | None = None
    signals: list[tuple[bytes, bytes]] | None = None
    head_size = 0
    debug = 0
    for name, value in headers:
        if name not in SPECIAL:
            if name == b"content-length":
                if value.isdigit() and content_length == -1:
                    content_length = int(value)
                else:
                    content_length = -2
            line = name + b": " + value + b"\r\n"
            lines.append(line)
            head_size += len(line)
            continue
        head_size += len(value) + 24
        if name == b"host":
            if host:
                content_length = -2
            host = value
        elif name == b"x-forwarded-for":
            if not xff:
                xff = value
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"via":
            if not via:
                via = value
        elif name == DEBUG:
            line = name + b": " + value + b"\r\n"
            lines.append(line)
            head_size += len(line)
            debug |= 1
        elif name in REQUEST_DEBUG:
            line = name + b": " + value + b"\r\n"
            lines.append(line)
            head_size += len(line)
            debug |= 2
        elif name in SIGNALS:
            if signals is None:
                signals = []
            signals.append((name, value))
        elif trusted and name in TRUSTED_FORWARDED:
            if forwarded is None:
                forwarded = {}
            forwarded.setdefault(name, value)
    return lines, host, xff, via, chunked, content_length, forwarded, signals, head_size, debug


_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([2-5][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?\r\n")
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*)\r\n")

Parsed = tuple[int, list[tuple[bytes, bytes]], bool, bool, bytes]


def parse_response(data: bytes, no_body: bool) -> Parsed | None:
    """``(status, headers, has_server, keep_alive, body)`` for a whole, plain response, else
    None (see the module docstring). ``no_body``: the request was ``HEAD``."""
    line = _STATUS_LINE.match(data)
    if line is None:
        return None
    status = int(line.group(1))
    at = line.end()
    headers: list[tuple[bytes, bytes]] = []
    has_server = False
    keep_alive = True
    length = -1
    size = len(data)
    while True:
        if data.startswith(b"\r\n", at):
            at += 2
            break
        header = _HEADER_LINE.match(data, at)
        if header is None:
            return None
        at = header.end()
        name, value = header.group(1), header.group(2)
        lower = name.lower()
        if lower == b"content-length":
            if length >= 0 or not value.isdigit() or len(value) > _MAX_DIGITS:
                return None
            length = int(value)
        elif lower in DROPPED:
            continue
        elif lower == b"connection":
            token = value.lower()
            if token == b"close":
                keep_alive = False
            elif token != b"keep-alive":
                return None
            continue
        elif lower == b"server":
            has_server = True
        elif lower == b"transfer-encoding" or lower == b"via":
            return None
        headers.append((name, value))
    if status == 204 or status == 304 or (no_body and length >= 0):
        if at != size:
            return None
        return status, headers, has_server, keep_alive, b""
    if length < 0 or size - at != length:
        return None
    return status, headers, has_server, keep_alive, data[at:]


def edit_header_lines(
    lines: list[bytes], remove: set[bytes], edits: dict[bytes, bytes | list[bytes]]
) -> list[bytes]:
    """The copied header ``lines`` (``name: value\\r\\n``, lower-case names) without the names
    in ``remove`` or ``edits``, then each of ``edits`` as lines (a list value: one line per value).
    ``host`` in ``edits`` is left out: the proxy writes Host itself."""
    kept = [
        line
        for line in lines
        if (name := line[: line.find(b":")]) not in remove and name not in edits
    ]
    for name, value in edits.items():
        if name == b"host":
            continue
        for one in value if isinstance(value, list) else (value,):
            kept.append(name + b": " + one + b"\r\n")
    return kept
