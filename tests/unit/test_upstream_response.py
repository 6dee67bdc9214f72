"""The upstream connection's response parsing, fed bytes directly (sans-I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.proxy.upstream import (
    MAX_RESPONSE_HEAD,
    RESPONSE_HOP_BY_HOP,
    VIA,
    ConnectionPool,
    UpstreamConnection,
    UpstreamProtocolError,
    UpstreamTimeout,
    max_response_head,
    proxy_buffer_size_settings,
)
from tests.helpers import RecordingTransport


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _conn(
    loop: asyncio.AbstractEventLoop, max_response_head: int = MAX_RESPONSE_HEAD
) -> UpstreamConnection:
    pool = ConnectionPool(loop, max_response_head=max_response_head)
    conn = UpstreamConnection(pool, ("127.0.0.1", 80, False))
    conn.connection_made(RecordingTransport())  # type: ignore[arg-type]
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    return conn


def test_hop_by_hop_response_headers_are_left_out_in_any_case(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = _conn(loop)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKEEP-ALIVE: timeout=5\r\n"
        b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nTransfer-Encoding: chunked\r\n"
        b"Upgrade: h2c\r\nTrailer: x-t\r\nProxy-Connection: x\r\nTE: trailers\r\n"
        b"Expires: 0\r\nX-Custom: kept\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert conn.status == 200
    assert conn.headers == [
        (b"Content-Type", b"text/plain"),
        (b"Set-Cookie", b"a=1"),
        (b"Expires", b"0"),
        (b"X-Custom", b"kept"),
    ]
    assert conn.complete and not conn.until_eof


@pytest.mark.parametrize(
    ("head", "until_eof"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    ],
)
def test_a_body_without_framing_ends_with_the_connection(
    loop: asyncio.AbstractEventLoop, head: bytes, until_eof: bool
) -> None:
    conn = _conn(loop)
    conn.data_received(head)
    assert conn.head_done and conn.until_eof is until_eof


def test_interim_responses_reset_the_headers(loop: asyncio.AbstractEventLoop) -> None:
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\nX-Interim: 1\r\n\r\n")
    assert not conn.head_done
    conn.data_received(b"HTTP/1.1 200 OK\r\nX-Final: 1\r\n\r\n")
    assert conn.headers == [(b"X-Final", b"1")]
    assert conn.until_eof  # the interim response's Content-Length does not count


def test_each_response_gets_a_new_header_list(loop: asyncio.AbstractEventLoop) -> None:
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n")
    first = conn.headers
    first.append((b"via", b"added by the proxy"))
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-B: 1\r\n\r\n")
    assert conn.headers == [(b"Content-Length", b"0"), (b"X-B", b"1")]
    assert first == [(b"Content-Length", b"0"), (b"X-A", b"1"), (b"via", b"added by the proxy")]


def test_a_wait_past_its_deadline_fails_with_the_timeout(loop: asyncio.AbstractEventLoop) -> None:
    slow, quick, answered = _conn(loop), _conn(loop), _conn(loop)
    outcome: dict[str, object] = {}

    async def read(name: str, conn: UpstreamConnection, timeout: float) -> None:
        started = loop.time()
        try:
            await conn.read_head(timeout)
            outcome[name] = "answered"
        except UpstreamTimeout as exc:
            outcome[name] = (str(exc), loop.time() - started)

    async def scenario() -> None:
        # the long wait arms the pool's timer first; the short one must re-arm it earlier
        tasks = [
            loop.create_task(read("slow", slow, 5.0)),
            loop.create_task(read("quick", quick, 0.05)),
            loop.create_task(read("answered", answered, 0.05)),
        ]
        await asyncio.sleep(0)
        answered.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await asyncio.wait(tasks[1:])
        assert not tasks[0].done()  # the 5 s wait is still waiting
        slow.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await tasks[0]

    loop.run_until_complete(scenario())
    assert outcome["answered"] == outcome["slow"] == "answered"
    message, waited = outcome["quick"]  # type: ignore[misc]
    assert message == "timeout while reading from upstream"
    assert 0.04 <= waited < 1.0
    assert quick.closed and not slow.closed
    assert not slow.pool.waiting  # every wait left the set


def test_pool_timer_is_rearmed_after_close(loop: asyncio.AbstractEventLoop) -> None:
    conn = _conn(loop)
    conn.pool.close()

    async def scenario() -> None:
        with pytest.raises(UpstreamTimeout):
            await conn.read_head(0.02)

    loop.run_until_complete(asyncio.wait_for(scenario(), 2.0))


_NAMES = st.sampled_from(
    [
        b"Content-Type",
        b"Server",
        b"Date",
        b"X-Custom",
        b"Set-Cookie",
        b"Cache-Control",
        b"Expires",
        b"Upgrade",
        b"TE",
        b"Trailer",
        b"Keep-Alive",
        b"proxy-connection",
        b"Content-Encoding",
        b"vary",
    ]
)


@st.composite
def _responses(draw: st.DrawFn) -> tuple[bytes, list[tuple[bytes, bytes]], bytes, str]:
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500, 503]))
    headers = draw(
        st.lists(
            st.tuples(
                _NAMES.map(lambda n: n if len(n) % 2 else n.upper()),
                st.binary(min_size=1, max_size=12).map(
                    lambda v: bytes(c for c in v if 0x21 <= c <= 0x7E) or b"v"
                ),
            ),
            max_size=8,
        )
    )
    body = draw(st.binary(max_size=300)) if status not in (204, 304) else b""
    # 204 and 304 have no body whatever the framing says: sent without framing headers.
    framing = draw(st.sampled_from(["length", "chunked", "eof"]))
    if status in (204, 304):
        framing = "eof"
    head = [b"HTTP/1.1 %d X" % status]
    head += [n + b": " + v for n, v in headers]
    if framing == "length":
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        payload = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        head.append(b"Connection: close")
        payload = body
    raw = b"\r\n".join(head) + b"\r\n\r\n" + payload
    return raw, headers, body, framing


@settings(max_examples=150, deadline=None)
@given(response=_responses(), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_every_end_to_end_header_and_the_body_arrive_however_the_bytes_are_cut(
    response: tuple[bytes, list[tuple[bytes, bytes]], bytes, str], cuts: list[int]
) -> None:
    raw, headers, body, framing = response
    bounds = sorted({c for c in cuts if 0 < c < len(raw)})
    loop = asyncio.new_event_loop()
    try:
        conn = _conn(loop)
        for a, b in zip([0, *bounds], [*bounds, len(raw)], strict=True):
            conn.data_received(raw[a:b])
    finally:
        loop.close()
    assert conn.error is None and conn.head_done
    expected = [(n, v) for n, v in headers if n.lower() not in RESPONSE_HOP_BY_HOP]
    if framing == "length":
        expected.append((b"Content-Length", b"%d" % len(body)))  # end to end: kept
    assert conn.headers == expected
    no_body = conn.status in (204, 304)
    assert conn.until_eof == (framing == "eof" and not no_body)
    assert b"".join(conn.chunks) == (b"" if no_body else body)
    assert conn.complete == (framing != "eof" or no_body)


def test_a_server_header_is_noted_in_any_case_and_forgotten_per_response(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 200 OK\r\nSERVER: nginx\r\nContent-Length: 0\r\n\r\n")
    assert conn.has_server and conn.headers[0] == (b"SERVER", b"nginx")
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nX-Server: no\r\nContent-Length: 0\r\n\r\n")
    assert not conn.has_server


def test_upstream_via_values_join_the_gateways_token_per_response(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 100 Continue\r\nVia: 1.1 interim\r\n\r\n")
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nVIA: 1.1 a\r\nContent-Length: 0\r\nvia: 1.0 b, 2 c\r\n\r\n"
    )
    assert conn.via_header == b"1.1 a, 1.0 b, 2 c, " + VIA
    assert conn.headers == [(b"Content-Length", b"0")]
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert conn.via_header == VIA


def test_headers_the_connection_header_names_and_nginx_hidden_ones_are_dropped(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = _conn(loop)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nServer: up\r\nX-Gone: 1\r\nConnection: Keep-Alive, x-gone ,Server\r\n"
        b"X-Accel-Redirect: /internal\r\nX-Pad: x\r\nX-Kept: 1\r\nContent-Length: 0\r\n\r\n"
    )
    assert conn.headers == [(b"X-Kept", b"1"), (b"Content-Length", b"0")]
    assert not conn.has_server  # Kong names itself when the upstream's Server was dropped
    assert conn.keep_alive
    conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nX-Gone: 2\r\nContent-Length: 0\r\n\r\n")
    assert conn.headers == [(b"X-Gone", b"2"), (b"Content-Length", b"0")]


# -- a hostile upstream (tests/integration/test_upstream_hostile.py end to end) -------------

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_SMUGGLED = b"HTTP/1.1 404 Smuggled\r\nX-Smuggled: 1\r\nContent-Length: 3\r\n\r\nabc"


def _refused(conn: UpstreamConnection) -> bool:
    return isinstance(conn.error, UpstreamProtocolError) and conn.closed and not conn.head_done


def test_a_second_response_in_the_same_read_is_dropped_with_the_connection(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # Read on, it replaced the first response's status, headers and body (response splitting).
    conn = _conn(loop)
    conn.data_received(_OK + _SMUGGLED)
    assert (conn.status, conn.headers) == (200, [(b"Content-Length", b"2")])
    assert b"".join(conn.chunks) == b"ok" and conn.complete
    assert conn.closed and not conn.reusable()


@pytest.mark.parametrize("later", [_SMUGGLED, b"HTTP/1.1 200 OK\r\nX-Half: ", b"\x00junk"])
def test_bytes_after_the_response_close_the_connection(
    loop: asyncio.AbstractEventLoop, later: bytes
) -> None:
    # Kept, they would be read as (the start of) the next request's response.
    conn = _conn(loop)
    conn.data_received(_OK)
    assert conn.reusable()
    conn.data_received(later)
    assert conn.closed and not conn.reusable()
    assert (conn.status, b"".join(conn.chunks)) == (200, b"ok")


def test_a_body_to_head_is_not_read_and_the_connection_not_kept(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = _conn(loop)
    conn.start(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=True)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    assert conn.status == 200 and conn.complete and not conn.chunks
    assert conn.closed and not conn.reusable()


@pytest.mark.parametrize("status", [b"000", b"099"])
def test_a_status_under_100_is_refused(loop: asyncio.AbstractEventLoop, status: bytes) -> None:
    # llhttp reads any three digits; passed on, the status made Granian's worker panic.
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 " + status + b" Low\r\nContent-Length: 0\r\n\r\n")
    assert _refused(conn)


@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"identity", b"chunked, gzip"])
def test_a_transfer_coding_other_than_chunked_is_refused(
    loop: asyncio.AbstractEventLoop, coding: bytes
) -> None:
    # As nginx ("upstream sent unknown Transfer-Encoding"); llhttp would read some of them until
    # the connection closes, which the connection took for a cut body.
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n")
    assert _refused(conn)


def test_chunked_is_known_in_any_case(loop: asyncio.AbstractEventLoop) -> None:
    conn = _conn(loop)
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    assert conn.complete and b"".join(conn.chunks) == b"ok"


def test_a_trailer_field_named_transfer_encoding_frames_nothing(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn = _conn(loop)
    conn.data_received(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
        b"Transfer-Encoding: gzip\r\n\r\n"
    )
    assert conn.complete and conn.error is None and b"".join(conn.chunks) == b"ok"


def _head_of(size: int) -> bytes:
    """A response whose head (status line to blank line) is ``size`` bytes, then its body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: \r\n\r\n"
    return head.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(head))) + b"ok"


def test_the_limit_is_kongs_nginx_proxy_buffer_size() -> None:
    assert max_response_head({}) == MAX_RESPONSE_HEAD  # fastkong's default, over Kong's 4k
    assert max_response_head({"KONG_NGINX_PROXY_PROXY_BUFFER_SIZE": "160k"}) == 160 * 1024
    assert max_response_head({"KONG_NGINX_HTTP_PROXY_BUFFER_SIZE": "1m"}) == 1024 * 1024
    # Under the default too: the user's choice, as Kong would honour it.
    assert max_response_head({"FASTKONG_NGINX_PROXY_PROXY_BUFFER_SIZE": "4096"}) == 4096
    # The proxy server block's own wins over the http block's it would inherit, as in nginx.
    both = {
        "KONG_NGINX_HTTP_PROXY_BUFFER_SIZE": "8k",
        "KONG_NGINX_PROXY_PROXY_BUFFER_SIZE": " 16K ",
    }
    assert max_response_head(both) == 16 * 1024
    assert proxy_buffer_size_settings(both) == {
        "nginx_proxy_proxy_buffer_size": "16K",
        "nginx_http_proxy_buffer_size": "8k",
    }
    assert max_response_head({"KONG_NGINX_PROXY_PROXY_BUFFER_SIZE": " "}) == MAX_RESPONSE_HEAD
    for name, value, message in [
        ("KONG_NGINX_PROXY_PROXY_BUFFER_SIZE", "16kb", "nginx_proxy_proxy_buffer_size: invalid"),
        ("KONG_NGINX_PROXY_PROXY_BUFFER_SIZE", "0", "nginx_proxy_proxy_buffer_size: expected a"),
        ("KONG_NGINX_HTTP_PROXY_BUFFER_SIZE", "-1", "nginx_http_proxy_buffer_size: invalid"),
    ]:
        with pytest.raises(ValueError, match=f"^{message}"):
            max_response_head({name: value})
    # nginx refuses a bad value in the http block even where the proxy block overrides it.
    with pytest.raises(ValueError, match="^nginx_http_proxy_buffer_size: invalid size 'x'"):
        max_response_head(
            {"KONG_NGINX_PROXY_PROXY_BUFFER_SIZE": "8k", "KONG_NGINX_HTTP_PROXY_BUFFER_SIZE": "x"}
        )


#: The default, nginx's own 4k page (Kong's), and a limit under any usual head: the pool's
#: limit (nginx_proxy_proxy_buffer_size) is honoured whatever it is.
LIMITS = [MAX_RESPONSE_HEAD, 4096, 100]


@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("cut", [None, "1", "half", "limit - 1", "limit + 1"])
def test_the_head_must_end_within_the_limit(
    loop: asyncio.AbstractEventLoop, limit: int, cut: str | None
) -> None:
    at = {"1": 1, "half": limit // 2, "limit - 1": limit - 1, "limit + 1": limit + 1}
    for size, fits in ((limit, True), (limit + 1, False)):
        conn = _conn(loop, limit)
        raw = _head_of(size)
        for piece in (raw,) if cut is None else (raw[: at[cut]], raw[at[cut] :]):
            conn.data_received(piece)
        if fits:
            assert conn.complete and b"".join(conn.chunks) == b"ok"
        else:
            assert _refused(conn) and str(conn.error) == "upstream sent too big header"


@pytest.mark.parametrize("limit", LIMITS)
def test_the_body_does_not_count_against_the_head_limit(
    loop: asyncio.AbstractEventLoop, limit: int
) -> None:
    body = b"b" * (2 * limit)
    # The whole response in one read (the one-step read), or the head with a little or more
    # than the limit's worth of body, then the rest.
    for pieces in ((body,), (body[:1], body[1:]), (body[:limit], body[limit:])):
        conn = _conn(loop, limit)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        conn.data_received(head + pieces[0])
        for piece in pieces[1:]:
            conn.data_received(piece)
        assert conn.complete and conn.error is None and b"".join(conn.chunks) == body


@pytest.mark.parametrize("limit", LIMITS)
def test_a_head_that_never_ends_is_refused_once_past_the_limit(
    loop: asyncio.AbstractEventLoop, limit: int
) -> None:
    conn = _conn(loop, limit)
    conn.data_received(b"HTTP/1.1 200 OK\r\n")
    line = b"X-More: " + b"m" * 50 + b"\r\n"
    sent = 0
    while not conn.closed:
        conn.data_received(line)
        sent += len(line)
        assert sent < limit + len(line)
    assert _refused(conn)


def test_bytes_before_the_request_fail_the_connection_before_it_is_written(
    loop: asyncio.AbstractEventLoop,
) -> None:
    # An HTTP/2 server's SETTINGS frame, sent on accept, arrived before the request head was
    # written: the connection failed (nginx would read the bytes as an invalid response, 502),
    # and the head must not go to the closed transport (it raised out of the proxy, a 500)
    pool = ConnectionPool(loop)
    conn = UpstreamConnection(pool, ("127.0.0.1", 80, False))
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64")
    assert transport.closed
    with pytest.raises(UpstreamProtocolError):
        conn.start(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", no_body=False)
    assert transport.written == []
