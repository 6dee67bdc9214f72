"""The edge's answer to plain HTTP on an ``ssl`` listener: nginx's 497 page, as Kong sends it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fastkong.stream.plain_on_tls import BODY, MAX_HEAD, answer, head_complete


def split(response: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines)
    return status, fields, body


def test_a_request_gets_nginx_s_400_page_and_a_close() -> None:
    response = answer(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n", "fastkong/1.0")
    assert response is not None
    status, fields, body = split(response)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert fields[b"Connection"] == b"close"
    assert fields[b"Content-Type"] == b"text/html"
    assert fields[b"Server"] == b"fastkong/1.0"
    assert int(fields[b"Content-Length"]) == len(body) == len(BODY)
    assert b"The plain HTTP request was sent to HTTPS port" in body
    assert b"<h1>400 Bad Request</h1>" in body


def test_head_gets_no_body_and_a_hidden_server_header_is_left_out() -> None:
    response = answer(b"HEAD / HTTP/1.0\r\n\r\n", None)
    assert response is not None
    _, fields, body = split(response)
    assert body == b""
    assert int(fields[b"Content-Length"]) == len(BODY)
    assert b"Server" not in fields


def test_bytes_that_are_no_request_get_no_answer() -> None:
    for data in (b"", b"\x00\x01\x02", b"hello\r\n\r\n", b"get / HTTP/1.1\r\n\r\n"):
        assert answer(data, "s") is None


def test_the_head_is_complete_at_its_blank_line_or_at_the_limit() -> None:
    assert not head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head_complete(b"GET / HTTP/1.1\nHost: a\n\n")
    assert head_complete(b"x" * MAX_HEAD)


@given(st.binary(max_size=200))
def test_any_bytes_get_a_400_or_nothing(data: bytes) -> None:
    response = answer(data, "s")
    assert response is None or response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
