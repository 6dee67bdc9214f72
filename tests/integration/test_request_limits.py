"""Request heads and bodies nginx (so Kong) refuses: ``large_client_header_buffers`` (414, 400
"Request header or cookie too large"), ``client_max_body_size`` (413), an HTTP/1.1 request
without Host and a target that is not a path (400). A real ``fastkong start`` on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Echo, Gateway, fastkong_cli, free_port
from tests.ws_peer import WsClient, WsEcho

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo}
  routes:
  - name: echo
    paths: ["/echo"]
  - name: streamed
    paths: ["/streamed"]
    request_buffering: false
- name: ws
  url: http://127.0.0.1:{ws}
  routes:
  - name: ws
    paths: ["/ws"]
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, ws_echo: WsEcho
) -> Iterator[Gateway]:
    config = CONFIG.format(echo=echo.port, ws=ws_echo.port)
    gw = Gateway(tmp_path_factory.mktemp("limits"), config).start()
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module")
def tuned(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, ws_echo: WsEcho
) -> Iterator[Gateway]:
    """Buffers past Granian's own read buffer (417,792 bytes) and a 1k body limit."""
    gw = Gateway(
        tmp_path_factory.mktemp("limits-tuned"),
        CONFIG.format(echo=echo.port, ws=ws_echo.port),
        1,
        "--large-client-header-buffers",
        "2 600k",
        "--client-max-body-size",
        "1k",
        "--error-default-type",
        "application/json",
    ).start()
    yield gw
    assert gw.stop() == 0


def get(gateway: Gateway, target: str, *lines: bytes) -> bytes:
    head = f"GET {target} HTTP/1.1\r\nHost: kong.test\r\nConnection: close\r\n".encode()
    return gateway.raw(head + b"".join(x + b"\r\n" for x in lines) + b"\r\n")


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def header_line(total: int) -> bytes:
    """A header line of ``total`` bytes as nginx holds it, CRLF included."""
    return b"X-Big: " + b"a" * (total - len(b"X-Big: \r\n"))


def test_a_header_line_that_fits_a_large_buffer_passes(gateway: Gateway) -> None:
    response = get(gateway, "/echo/x", header_line(8192))
    assert status_of(response) == 200
    seen = json.loads(response.partition(b"\r\n\r\n")[2])
    assert len(dict(seen["headers"])["x-big"]) == 8192 - len(b"X-Big: \r\n")


def test_a_header_line_past_a_large_buffer_is_400_header_too_large(gateway: Gateway) -> None:
    response = get(gateway, "/echo/x", header_line(8193))
    assert status_of(response) == 400
    assert response.endswith(b"Request header or cookie too large\nrequest_id: " + _rid(response))


def test_a_long_header_is_refused_before_routing(gateway: Gateway) -> None:
    # nginx reads the head before Kong routes: no route would be a 404, the head wins.
    assert status_of(get(gateway, "/nowhere", header_line(9000))) == 400


def test_four_large_headers_fill_the_four_buffers_and_a_fifth_is_refused(
    gateway: Gateway,
) -> None:
    # A line never spans two buffers: 4 lines of 7,000 bytes take all four 8k buffers.
    lines = [header_line(7000).replace(b"X-Big", b"X-Bi%d" % i) for i in range(5)]
    assert status_of(get(gateway, "/echo/x", *lines[:4])) == 200
    response = get(gateway, "/echo/x", *lines)
    assert status_of(response) == 400
    assert b"Request header or cookie too large" in response


def test_a_request_line_past_a_large_buffer_is_414(gateway: Gateway) -> None:
    fits = "/echo/" + "a" * (8192 - len("GET /echo/ HTTP/1.1\r\n"))
    assert status_of(get(gateway, fits)) == 200
    long_path = fits + "a"
    response = get(gateway, long_path)
    assert status_of(response) == 414
    assert b"URI too long" in response
    # The query counts: it is part of the request line nginx reads.
    assert status_of(get(gateway, "/echo/x?" + "q" * 8200)) == 414


def test_the_414_is_negotiated_as_kong_error_pages_are(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/echo/" + "a" * 9000), headers={"Accept": "application/json"})
    assert r.status_code == 414
    assert r.json()["message"] == "URI too long"
    assert r.json()["request_id"] == r.headers["x-kong-request-id"]


def test_an_http11_request_without_host_is_400(gateway: Gateway) -> None:
    response = gateway.raw(b"GET /echo/x HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 400
    assert b"Bad request" in response


def test_an_http10_request_without_host_is_routed(gateway: Gateway) -> None:
    response = gateway.raw(b"GET /echo/x HTTP/1.0\r\n\r\n")
    assert status_of(response) == 200
    # nginx's $host is then the server's server_name, Kong's "kong": its X-Forwarded-Host.
    seen = json.loads(response.partition(b"\r\n\r\n")[2])
    assert [v for k, v in seen["headers"] if k == "x-forwarded-host"] == ["kong"]


def test_a_target_that_is_not_a_path_is_400(gateway: Gateway) -> None:
    response = gateway.raw(b"OPTIONS * HTTP/1.1\r\nHost: kong.test\r\nConnection: close\r\n\r\n")
    assert status_of(response) == 400


@pytest.mark.parametrize(
    "head",
    [
        b"GET /echo/x HTTP/1.1\r\nHost: k\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /echo/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: k\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: k\r\n\r\n",
    ],
    ids=["header", "uri", "no-host", "asterisk"],
)
def test_a_refused_head_ends_the_connection_as_nginx_does(gateway: Gateway, head: bytes) -> None:
    # No "Connection: close" from the client: the gateway closes (raw() reads to the end).
    response = gateway.raw(head)
    assert status_of(response) in (400, 414)
    assert b"\r\nconnection: close\r\n" in response


def test_an_oversized_body_ends_the_connection(tuned: Gateway) -> None:
    head = b"POST /echo/x HTTP/1.1\r\nHost: k\r\nContent-Length: 5000\r\n\r\n"
    response = tuned.raw(head + b"x" * 100)  # the rest of the body never comes
    assert status_of(response) == 413
    assert b"\r\nconnection: close\r\n" in response


@pytest.mark.parametrize("method", [b"get", b"Put", b"wA#0", b"GET1"])
def test_a_method_nginx_cannot_parse_is_400(gateway: Gateway, method: bytes) -> None:
    # nginx takes A-Z, "_" and "-" in a method ("client sent invalid method"); Granian takes
    # any token (a non-token, G(T, is its own bare 400), and the gateway used to send it up.
    response = gateway.raw(method + b" /echo/x HTTP/1.1\r\nHost: k\r\n\r\n")
    assert status_of(response) == 400
    assert b"\r\n\r\nBad request\nrequest_id: " in response
    assert b"\r\nconnection: close\r\n" in response


@pytest.mark.parametrize("method", [b"CONNECT", b"TRACE"])
def test_connect_and_trace_are_405_as_nginx_answers(gateway: Gateway, method: bytes) -> None:
    response = gateway.raw(method + b" /echo/x HTTP/1.1\r\nHost: k\r\n\r\n")
    assert status_of(response) == 405
    assert b"\r\n\r\nMethod not allowed\nrequest_id: " in response


def test_a_method_of_capitals_is_sent_up_as_it_came(gateway: Gateway) -> None:
    r = httpx.request("PURGE", gateway.url("/echo/x"))
    assert r.status_code == 200 and r.json()["method"] == "PURGE"


@pytest.mark.parametrize(
    ("route", "framing", "sent"),
    [
        ("/echo/x", b"Content-Length: 10", b"abc"),
        ("/echo/x", b"Content-Length: 2000000", b"x" * 100_000),  # streamed up
        ("/echo/x", b"Transfer-Encoding: chunked", b"3\r\nabc\r\n"),
        ("/streamed/x", b"Transfer-Encoding: chunked", b"3\r\nabc\r\n"),
    ],
    ids=["sized", "sized-streamed", "chunked", "chunked-streamed"],
)
def test_a_body_cut_short_by_the_client_is_400_not_500_or_502(
    gateway: Gateway, route: str, framing: bytes, sent: bytes
) -> None:
    # The client ends its side halfway through its body. nginx logs 400 ("client prematurely
    # closed connection"); the gateway used to let Granian answer 500 (a body read whole) or
    # answer 502 and blame the upstream (a body streamed up).
    head = b"POST %s HTTP/1.1\r\nHost: k\r\n%s\r\n\r\n" % (route.encode(), framing)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(head + sent)
        sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert status_of(response) == 400
    assert b"\r\n\r\nBad request\nrequest_id: " in response
    assert httpx.get(gateway.url("/echo/x")).status_code == 200


def test_the_connection_serves_on_after_a_refused_head(gateway: Gateway) -> None:
    with httpx.Client() as client:
        assert client.get(gateway.url("/echo/x"), headers={"X-Big": "a" * 9000}).status_code == 400
        assert client.get(gateway.url("/echo/x")).status_code == 200


def test_websocket_handshakes_have_the_same_limits(gateway: Gateway, ws_echo: WsEcho) -> None:
    async def scenario() -> tuple[WsClient, WsClient]:
        big = await WsClient().connect(gateway.port, "/ws/x", "X-Big: " + "a" * 9000 + "\r\n")
        ok = await WsClient().connect(gateway.port, "/ws/x", "X-Big: " + "a" * 7000 + "\r\n")
        await ok.close()
        return big, ok

    before = len(ws_echo.handshakes)
    big, ok = asyncio.run(scenario())
    assert big.status == 400 and b"Request header or cookie too large" in big.body
    assert ok.status == 101
    assert len(ws_echo.handshakes) == before + 1


def test_raised_buffers_pass_heads_granian_would_refuse(tuned: Gateway) -> None:
    # 500,000 bytes: past Granian's default read buffer, inside 2 x 600k.
    response = get(tuned, "/nowhere", header_line(500_000))
    assert status_of(response) == 404
    assert b"no Route matched" in response
    assert status_of(get(tuned, "/nowhere", header_line(600 * 1024 + 1))) == 400


def test_a_declared_body_over_client_max_body_size_is_413_before_routing(tuned: Gateway) -> None:
    r = httpx.post(tuned.url("/echo/x"), content=b"x" * 1025)
    assert r.status_code == 413
    assert "Payload too large" in r.text
    assert httpx.post(tuned.url("/nowhere"), content=b"x" * 1025).status_code == 413
    r = httpx.post(tuned.url("/echo/x"), content=b"x" * 1024)
    assert r.status_code == 200 and r.json()["body_length"] == 1024


def test_error_default_type_types_error_pages_that_ask_for_none(
    tuned: Gateway, gateway: Gateway
) -> None:
    # Kong's error_default_type: nginx error pages without Accept or Content-Type.
    head = b"POST /echo/x HTTP/1.1\r\nHost: kong.test\r\nContent-Length: 2000\r\n"
    response = tuned.raw(head + b"Connection: close\r\n\r\n" + b"x" * 2000)
    assert status_of(response) == 413
    assert b"\r\ncontent-type: application/json; charset=utf-8\r\n" in response
    assert json.loads(response.partition(b"\r\n\r\n")[2])["message"] == "Payload too large"
    r = httpx.post(tuned.url("/echo/x"), content=b"x" * 2000, headers={"Accept": "text/html"})
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    # The default gateway answers the same request, asking for nothing, in text/plain.
    long_uri = b"GET /echo/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n"
    assert b"\r\ncontent-type: text/plain; charset=utf-8\r\n" in gateway.raw(long_uri)


def _chunks(total: int, size: int = 100) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"y" * min(size, total - start)


@pytest.mark.parametrize("route", ["/echo/x", "/streamed/x"])
def test_a_chunked_body_over_client_max_body_size_is_413(tuned: Gateway, route: str) -> None:
    r = httpx.post(tuned.url(route), content=_chunks(2000))
    assert r.status_code == 413
    assert "Payload too large" in r.text
    r = httpx.post(tuned.url(route), content=_chunks(1000))
    assert r.status_code == 200 and r.json()["body_length"] == 1000


def test_kong_environment_names_set_the_limits(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    ws_echo: WsEcho,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The proxy server block's setting wins over the http block's, as in Kong's template.
    monkeypatch.setenv("KONG_NGINX_HTTP_LARGE_CLIENT_HEADER_BUFFERS", "4 2k")
    monkeypatch.setenv("KONG_NGINX_PROXY_LARGE_CLIENT_HEADER_BUFFERS", "4 16k")
    monkeypatch.setenv("KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE", "10")
    config = CONFIG.format(echo=echo.port, ws=ws_echo.port)
    gw = Gateway(tmp_path_factory.mktemp("limits-env"), config).start()
    try:
        assert status_of(get(gw, "/echo/x", header_line(12000))) == 200
        assert status_of(get(gw, "/echo/x", header_line(17000))) == 400
        assert httpx.post(gw.url("/echo/x"), content=b"x" * 11).status_code == 413
    finally:
        assert gw.stop() == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--large-client-header-buffers", "4", "expected 'number size'"),
        ("--large-client-header-buffers", "4 8q", "invalid size '8q'"),
        ("--client-max-body-size", "ten", "client_max_body_size: invalid size 'ten'"),
        ("--error-default-type", "text/csv", "error_default_type: expected one of text/plain"),
    ],
)
def test_a_bad_limit_setting_stops_the_start_with_its_name(
    flag: str, value: str, message: str
) -> None:
    done = fastkong_cli("start", "--proxy-listen", f"127.0.0.1:{free_port()}", flag, value)
    assert done.returncode == 1
    assert message in done.stderr


def _rid(response: bytes) -> bytes:
    for line in response.split(b"\r\n"):
        if line.lower().startswith(b"x-kong-request-id:"):
            return line.split(b":", 1)[1].strip() + b"\n"
    raise AssertionError("no request id")
