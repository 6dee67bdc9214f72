"""nginx's request-size rules (fastkong/proxy/limits.py), without sockets."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastkong.kong_conf import parse_size
from fastkong.proxy.limits import (
    BodyLimitExceeded,
    RequestLimits,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("8k", 8192), ("24K", 24576), ("1m", 1 << 20), ("2G", 2 << 30), (" 0 ", 0)],
)
def test_nginx_sizes(text: str, size: int) -> None:
    assert parse_size(text, "x") == size


@pytest.mark.parametrize("text", ["", "8kb", "-1", "1.5m", "k"])
def test_bad_sizes_name_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match="^client_max_body_size: invalid size"):
        parse_size(text, "client_max_body_size")


def test_parse_and_repr() -> None:
    limits = RequestLimits.parse("8 24k", "10m")
    assert (limits.number, limits.size, limits.max_body) == (8, 24576, 10 << 20)
    assert repr(limits) == (
        "<RequestLimits large_client_header_buffers=8x24576 client_max_body_size=10485760>"
    )
    assert "client_max_body_size=off" in repr(RequestLimits())
    with pytest.raises(ValueError, match="number and size must be positive"):
        RequestLimits.parse("0 8k")


def line(total: int) -> tuple[bytes, bytes]:
    """A header whose line (``name: value`` CRLF) is ``total`` bytes."""
    return b"x", b"v" * (total - 5)


def test_the_first_kilobyte_then_whole_lines_per_buffer() -> None:
    limits = RequestLimits(2, 100)
    # "GET / HTTP/1.1\r\n" is 16 bytes: 1,008 left in the first buffer.
    assert limits.head_status("GET", 1, [line(1008)]) == 0
    # One more byte: the line moves to a large buffer, where it is too long.
    assert limits.head_status("GET", 1, [line(1009)]) == 494
    # Two 100-byte lines after a full first buffer take both large buffers; a third cannot.
    assert limits.head_status("GET", 1, [line(1008), line(100), line(100)]) == 0
    assert limits.head_status("GET", 1, [line(1008), line(100), line(100), line(1)]) == 494
    # Lines share a buffer while they fit.
    assert limits.head_status("GET", 1, [line(1008), line(50), line(50), line(100)]) == 0


def test_the_request_line() -> None:
    limits = RequestLimits(4, 8192)
    fits = 8192 - len("GET  HTTP/1.1\r\n")
    assert limits.head_status("GET", fits, []) == 0
    assert limits.head_status("GET", fits + 1, []) == 414


@given(st.lists(st.integers(5, 300), max_size=30), st.integers(1, 4), st.integers(50, 400))
def test_a_head_within_one_large_buffer_always_fits(
    sizes: list[int], number: int, size: int
) -> None:
    # The proxy skips the check when its bound of the head's size is at most ``fast_limit``.
    limits = RequestLimits(number, size)
    headers = [line(n) for n in sizes]
    total = len("GET / HTTP/1.1\r\n") + sum(sizes)
    if total <= limits.fast_limit:
        assert limits.head_status("GET", 1, headers) == 0


def test_refuse_orders_the_head_before_the_body() -> None:
    limits = RequestLimits(1, 100, max_body=10)
    assert limits.refuse("GET", b"/", b"", [line(1100)], 11) == 494
    assert limits.refuse("GET", b"/", b"", [], 11) == 413
    assert limits.refuse("GET", b"/", b"", [], 10) == 0
    assert RequestLimits().refuse("GET", b"/", b"q=1", [], 1 << 40) == 0


def test_limit_body_counts_what_is_read() -> None:
    messages = [
        {"type": "http.request", "body": b"abcd", "more_body": True},
        {"type": "http.request", "body": b"efgh", "more_body": True},
        {"type": "http.request", "body": b"ij", "more_body": False},
    ]

    async def run(limit: int) -> list[bytes]:
        source = iter(messages)

        async def receive() -> dict:  # type: ignore[type-arg]
            return next(source)

        counted = RequestLimits(max_body=limit).limit_body(receive)
        return [(await counted())["body"] for _ in messages]

    assert asyncio.run(run(10)) == [b"abcd", b"efgh", b"ij"]
    with pytest.raises(BodyLimitExceeded):
        asyncio.run(run(9))
