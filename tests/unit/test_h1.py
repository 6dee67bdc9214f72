"""``_core.h1.parse_response``: which responses it reads whole, and what it reads from them.

Each test runs over the compiled kernel and its twin. Whatever it declines (None) goes to
``httptools``; tests/property/test_h1_property.py checks that what it reads agrees with that.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit._impls import impl_params, load

HELLO = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 11:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"Hello, World!"
)


@pytest.fixture(params=impl_params("h1"))
def h1(request: pytest.FixtureRequest) -> Any:
    return load(request.param)


def test_a_small_whole_response_is_read_in_one_step(h1: Any) -> None:
    status, headers, has_server, keep_alive, body = h1.parse_response(HELLO, False)
    assert status == 200
    assert headers == [
        (b"Server", b"nginx/1.22.1"),
        (b"Date", b"Thu, 26 Nov 2026 11:00:00 GMT"),
        (b"Content-Type", b"text/plain"),
        (b"Content-Length", b"13"),
    ]
    assert has_server and keep_alive
    assert body == b"Hello, World!"


def test_the_headers_a_proxy_drops_are_left_out_in_any_case(h1: Any) -> None:
    raw = (
        b"HTTP/1.1 404 Not Found\r\nKEEP-ALIVE: timeout=5\r\nX-Accel-Redirect: /x\r\n"
        b"Upgrade: h2c\r\nTe: trailers\r\nX-Pad: avoid browser bug\r\nX-Kept: 1\r\n"
        b"content-length: 0\r\nCONNECTION: Close\r\n\r\n"
    )
    status, headers, has_server, keep_alive, body = h1.parse_response(raw, False)
    assert (status, has_server, keep_alive, body) == (404, False, False, b"")
    assert headers == [(b"X-Kept", b"1"), (b"content-length", b"0")]


def test_values_keep_llhttps_spacing(h1: Any) -> None:
    raw = b"HTTP/1.1 200 \r\nA:  x y  \r\nB:\r\nC: \t\xc3\xa9\t\r\nContent-Length: 0\r\n\r\n"
    _, headers, *_ = h1.parse_response(raw, False)
    assert headers == [
        (b"A", b"x y  "),
        (b"B", b""),
        (b"C", b"\xc3\xa9\t"),
        (b"Content-Length", b"0"),
    ]


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodiless_status_needs_nothing_after_its_head(h1: Any, status: int) -> None:
    head = b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status
    assert h1.parse_response(head, False)[::4] == (status, b"")
    assert h1.parse_response(head + b"hello", False) is None


def test_a_response_to_head_has_no_body_whatever_its_length(h1: Any) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n"
    assert h1.parse_response(head, True)[::4] == (200, b"")
    assert h1.parse_response(HELLO, True) is None
    # without a length httptools calls the connection done: so does the upstream connection
    assert h1.parse_response(b"HTTP/1.1 200 OK\r\n\r\n", True) is None


@pytest.mark.parametrize(
    "raw",
    [
        HELLO[:-1],  # the body is still coming
        HELLO + b"H",  # more than one message
        HELLO[: HELLO.index(b"\r\n\r\n")],  # the head is still coming
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 20 X\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody",  # until the connection ends
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5 \r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nVia: 1.1 cache\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-a\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: \x7f\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: \x00\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
        b"",
    ],
)
def test_anything_else_is_left_to_httptools(h1: Any, raw: bytes) -> None:
    assert h1.parse_response(raw, False) is None


def test_the_request_scan_copies_plain_headers_and_picks_out_the_rest(h1: Any) -> None:
    headers = [
        (b"host", b"example.com"),
        (b"user-agent", b"wrk"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-forwarded-for", b"10.0.0.2"),
        (b"via", b"1.1 edge"),
        (b"kong-debug", b"1"),
        (b"connection", b"x-a"),
        (b"te", b"trailers"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-proto", b"http"),
        (b"content-length", b"12"),
        (b"keep-alive", b"300"),
    ]
    lines, host, xff, via, chunked, length, forwarded, signals, head_size, debug = (
        h1.scan_request_headers(headers, True)
    )
    assert lines == [b"user-agent: wrk\r\n", b"kong-debug: 1\r\n", b"content-length: 12\r\n"]
    assert (host, xff, via, chunked, length, debug) == (
        b"example.com",
        b"10.0.0.1",
        b"1.1 edge",
        False,
        12,
        True,
    )
    assert forwarded == {b"x-forwarded-proto": b"https"}
    assert signals == [(b"connection", b"x-a"), (b"te", b"trailers")]
    copied = {b"user-agent", b"content-length"}
    assert head_size == sum(map(len, lines)) + sum(
        len(v) + 24 for n, v in headers if n not in copied
    )
    # from a peer not trusted, the X-Forwarded-* family is dropped
    assert h1.scan_request_headers(headers, False)[6] is None


@pytest.mark.parametrize(
    ("headers", "length"),
    [
        ([(b"content-length", b"0")], 0),
        ([(b"content-length", b"12345678901234567890123")], 12345678901234567890123),
        ([(b"content-length", b"1"), (b"content-length", b"1")], -2),
        ([(b"content-length", b"+1")], -2),
        ([(b"content-length", b"")], -2),
        ([(b"host", b"a"), (b"host", b"b")], -2),
        ([(b"host", b"a"), (b"host", b"b"), (b"content-length", b"3")], -2),
    ],
)
def test_the_request_scan_marks_the_lengths_nginx_refuses(
    h1: Any, headers: list[tuple[bytes, bytes]], length: int
) -> None:
    assert h1.scan_request_headers(headers, False)[5] == length


def test_the_request_scan_reads_chunked_in_any_case(h1: Any) -> None:
    assert h1.scan_request_headers([(b"transfer-encoding", b"gzip, Chunked")], False)[4]
    assert not h1.scan_request_headers([(b"transfer-encoding", b"gzip")], False)[4]


def test_the_request_scan_refuses_headers_that_are_not_bytes(h1: Any) -> None:
    with pytest.raises(TypeError):
        h1.scan_request_headers([("host", "x")], False)


def test_header_edits_drop_set_and_cleared_names_then_add_the_set_ones(h1: Any) -> None:
    lines = [b"user-agent: wrk\r\n", b"x-consumer-id: forged\r\n", b"accept: */*\r\n"]
    edits: dict[bytes, bytes | list[bytes]] = {
        b"x-consumer-id": b"42",
        b"x-multi": [b"a", b"b"],
        b"host": b"ignored.example",
    }
    assert h1.edit_header_lines(lines, {b"accept"}, edits) == [
        b"user-agent: wrk\r\n",
        b"x-consumer-id: 42\r\n",
        b"x-multi: a\r\n",
        b"x-multi: b\r\n",
    ]
    assert h1.edit_header_lines(lines, set(), {}) == lines
