"""Hypothesis: a response read whole by ``_core.h1`` reads as ``httptools`` reads it.

The compiled kernel and its twin must answer alike on any bytes; and wherever they read a
response, the upstream connection must end in the very state it reaches when the same bytes
go through ``httptools`` (fed in two pieces, so that the one-step reader declines them).
"""

from __future__ import annotations

import asyncio
import importlib

from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong._core import NO_EXTENSIONS, _h1_py
from fastkong.proxy.upstream import ConnectionPool, UpstreamConnection
from tests.helpers import RecordingTransport

GOOD_NAMES = st.sampled_from(
    [
        b"Content-Type",
        b"Server",
        b"SERVER",
        b"Date",
        b"Connection",
        b"connection",
        b"Keep-Alive",
        b"X-Accel-Buffering",
        b"Upgrade",
        b"TE",
        b"Set-Cookie",
        b"X-A",
        b"x-b",
    ]
)
ODD_NAMES = st.sampled_from(
    [b"Transfer-Encoding", b"Via", b"content-length", b"x a", b"", b"X-A "]
) | st.binary(min_size=0, max_size=6)
GOOD_VALUES = st.sampled_from(
    [b"close", b"Keep-Alive", b"text/plain", b"x y  ", b"", b"\xc3\xa9", b"a=1; Path=/"]
)
ODD_VALUES = st.sampled_from([b"chunked", b"keep-alive, x", b"upgrade"]) | st.binary(max_size=8)
ODD_EOLS = st.sampled_from([b"\n", b"\r", b"\r\n "])


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """Mostly well-formed responses (so that many are read whole), each with a chance of one
    thing out of shape somewhere: version, status, a header, its line end, length or body."""
    odd = draw(st.integers(0, 9)) == 0  # one response in ten may be off anywhere

    def pick(good: st.SearchStrategy[bytes], bad: st.SearchStrategy[bytes]) -> bytes:
        return draw(bad) if odd and draw(st.integers(0, 3)) == 0 else draw(good)

    eol = lambda: pick(st.just(b"\r\n"), ODD_EOLS)  # noqa: E731
    version = pick(st.just(b"HTTP/1.1"), st.sampled_from([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "]))
    status = draw(st.sampled_from([200, 200, 201, 204, 301, 304, 404, 500, 599]))
    if odd and draw(st.booleans()):
        status = draw(st.sampled_from([100, 101, 199, 600, 99]))
    reason = draw(st.sampled_from([b" OK", b"", b" ", b" Not\tFound", b" \xe9t\xe9", b"OK"]))
    parts = [b"%s %d%s%s" % (version, status, reason, eol())]
    body = draw(st.sampled_from([b"", b"hello", b"Hello, World!", b"0\r\n\r\n"]))
    lines = [
        pick(GOOD_NAMES, ODD_NAMES)
        + draw(st.sampled_from([b": ", b":", b":  ", b":\t"]))
        + pick(GOOD_VALUES, ODD_VALUES)
        + eol()
        for _ in range(draw(st.integers(0, 5)))
    ]
    length = draw(st.sampled_from(["right", "right", "right", "none", "wrong", "twice"]))
    if length != "none":
        n = len(body) + (1 if length == "wrong" else 0)
        lines.insert(draw(st.integers(0, len(lines))), b"Content-Length: %d\r\n" % n)
        if length == "twice":
            lines.append(b"content-length: %d\r\n" % n)
    parts.extend(lines)
    parts.append(eol())
    parts.append(body)
    return b"".join(parts)


RAW = responses() | st.binary(max_size=80)


if not NO_EXTENSIONS:  # under the twins alone there is nothing to compare

    @settings(max_examples=1000, deadline=None)
    @given(RAW, st.booleans())
    def test_compiled_and_twin_agree(raw: bytes, no_body: bool) -> None:
        compiled = importlib.import_module("fastkong._core.h1")
        assert compiled.parse_response(raw, no_body) == _h1_py.parse_response(raw, no_body)


def _read(loop: asyncio.AbstractEventLoop, pieces: list[bytes], no_body: bool) -> tuple:
    conn = UpstreamConnection(ConnectionPool(loop), ("127.0.0.1", 80, None))
    conn.connection_made(RecordingTransport())  # type: ignore[arg-type]
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=no_body)
    for piece in pieces:
        conn.data_received(piece)
    return (
        conn.status,
        conn.headers,
        conn.has_server,
        conn.keep_alive,
        b"".join(conn.chunks),
        conn.head_done,
        conn.complete,
        conn.error is None,
        conn.via_header,
    )


@settings(max_examples=600, deadline=None)
@given(responses(), st.booleans())
def test_a_response_read_whole_reads_as_httptools_reads_it(raw: bytes, no_body: bool) -> None:
    if _h1_py.parse_response(raw, no_body) is None:
        return  # httptools reads it either way
    loop = asyncio.new_event_loop()
    try:
        whole = _read(loop, [raw], no_body)
        split = _read(loop, [raw[:1], raw[1:]], no_body)
    finally:
        loop.close()
    assert whole == split


REQUEST_NAMES = st.sampled_from(
    sorted(_h1_py.SPECIAL) + [b"content-length", b"user-agent", b"accept", b"x-a", b""]
) | st.binary(max_size=5)
REQUEST_VALUES = st.sampled_from([b"", b"0", b"12", b"chunked", b"1.1 a"]) | st.binary(max_size=25)

if not NO_EXTENSIONS:

    @settings(max_examples=800, deadline=None)
    @given(st.lists(st.tuples(REQUEST_NAMES, REQUEST_VALUES), max_size=8), st.booleans())
    def test_compiled_and_twin_scan_request_headers_alike(
        headers: list[tuple[bytes, bytes]], trusted: bool
    ) -> None:
        compiled = importlib.import_module("fastkong._core.h1")
        assert compiled.scan_request_headers(headers, trusted) == _h1_py.scan_request_headers(
            headers, trusted
        )


LINE_NAMES = st.sampled_from([b"accept", b"x-a", b"host", b"x-consumer-id", b""]) | st.binary(
    max_size=4
)

if not NO_EXTENSIONS:

    @settings(max_examples=600, deadline=None)
    @given(
        st.lists(
            st.tuples(LINE_NAMES, st.binary(max_size=6)).map(lambda nv: nv[0] + b": " + nv[1])
            | st.binary(max_size=8),
            max_size=6,
        ),
        st.sets(LINE_NAMES, max_size=3),
        st.dictionaries(
            LINE_NAMES, st.binary(max_size=4) | st.lists(st.binary(max_size=3), max_size=3)
        ),
    )
    def test_compiled_and_twin_edit_header_lines_alike(
        lines: list[bytes], remove: set[bytes], edits: dict[bytes, bytes | list[bytes]]
    ) -> None:
        compiled = importlib.import_module("fastkong._core.h1")
        assert compiled.edit_header_lines(lines, remove, edits) == _h1_py.edit_header_lines(
            lines, remove, edits
        )
