"""Headers on the way up and down, against Kong's runloop (``kong/runloop/handler.lua``) and its
spec ``spec/02-integration/05-proxy/03-upstream_headers_spec.lua``: a real ``fastkong start``
in front of the echo upstream and of a peer whose response head the test writes."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from fastkong.config import load_config
from fastkong.proxy.app import Gateway as App
from fastkong.runtime import compile_runtime
from tests.helpers import Echo, FixedPeer, Gateway, echoed_headers, free_port

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
- name: raw
  url: http://127.0.0.1:{raw}
  routes:
  - name: raw
    paths: ["/raw"]
- name: dead
  url: http://127.0.0.1:{dead}
  retries: 0
  routes:
  - name: dead
    paths: ["/dead"]
"""

#: What the raw peer answers: hop-by-hop and nginx-hidden headers around end-to-end ones.
RAW_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Length: 2\r\n"
    b"Connection: keep-alive, X-Hop\r\n"
    b"X-Hop: gone\r\n"
    b"X-Kept: here\r\n"
    b"Via: 1.1 edge, 1.0 inner\r\n"
    b"Via: 1.1 third\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"X-Pad: avoid browser bug\r\n"
    b"\r\n"
    b"ok"
)


@pytest.fixture(scope="module")
def raw_peer() -> Iterator[FixedPeer]:
    peer = FixedPeer(RAW_RESPONSE).start()
    yield peer
    peer.stop()


def _config(echo: Echo, raw_peer: FixedPeer) -> str:
    return CONFIG.format(echo=echo.port, raw=raw_peer.port, dead=free_port())


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, raw_peer: FixedPeer
) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("kong-headers"), _config(echo, raw_peer))
    gw.port_flags = "http2"  # HTTP/2 (prior knowledge) beside HTTP/1.1, for the Via test
    gw.start()
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module")
def trusting(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, raw_peer: FixedPeer
) -> Iterator[Gateway]:
    config = _config(echo, raw_peer)
    gw = Gateway(tmp_path_factory.mktemp("kong-trust"), config, 1, "--trusted-ips", "127.0.0.1")
    gw.start()
    yield gw
    assert gw.stop() == 0


def upstream_headers_raw(gateway: Gateway, lines: list[bytes]) -> dict[str, list[str]]:
    head = b"GET /echo/x HTTP/1.1\r\nHost: kong.test\r\nConnection: close\r\n"
    response = gateway.raw(head + b"".join(x + b"\r\n" for x in lines) + b"\r\n")
    return echoed_headers(json.loads(response.partition(b"\r\n\r\n")[2]))


def upstream_headers(gateway: Gateway, headers: dict[str, str]) -> dict[str, list[str]]:
    r = httpx.get(gateway.url("/echo/x"), headers=headers)
    assert r.status_code == 200
    return echoed_headers(r.json())


# -- request side -------------------------------------------------------------------------------


def test_hop_by_hop_request_headers_as_kong_spec(gateway: Gateway) -> None:
    # 03-upstream_headers_spec.lua "are removed from request".
    h = upstream_headers(
        gateway,
        {
            "Connection": "X-Foo, X-Bar",
            "Keep-Alive": "timeout=5, max=1000",
            "Proxy": "Remove-Me",
            "Proxy-Connection": "close",
            "Proxy-Authenticate": "Basic",
            "Proxy-Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "TE": "trailers, deflate;q=0.5",
            "X-Foo": "Remove-Me",
            "X-Bar": "Remove-Me",
            "X-Foo-Bar": "Keep-Me",
            "Close": "Keep-Me",
        },
    )
    for gone in ("keep-alive", "proxy", "proxy-connection", "upgrade", "x-foo", "x-bar"):
        assert gone not in h, gone
    assert h["proxy-authenticate"] == ["Basic"]
    assert h["proxy-authorization"] == ["Basic YWxhZGRpbjpvcGVuc2VzYW1l"]
    assert h["te"] == ["trailers"]
    assert h["x-foo-bar"] == ["Keep-Me"]
    assert h["close"] == ["Keep-Me"]
    # Kong's proxy_set_header Connection $upstream_connection: always keep-alive (no upgrade).
    assert h["connection"] == ["keep-alive"]


def test_te_without_trailers_is_not_forwarded(gateway: Gateway) -> None:
    h = upstream_headers(gateway, {"TE": "deflate;q=0.5"})
    assert "te" not in h


def test_connection_tokens_do_not_clear_the_gateways_own_headers(gateway: Gateway) -> None:
    # Kong clears the client's copies; the X-Forwarded-For it sets is its own variable.
    h = upstream_headers(gateway, {"Connection": "X-Forwarded-For, Via", "X-Other": "1"})
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["via"][0].startswith("1.1 fastkong/")
    assert h["x-other"] == ["1"]


def test_first_x_forwarded_for_and_via_headers_only(gateway: Gateway) -> None:
    # Kong reads request headers through kong.tools.http.get_header: the first of repeated ones.
    h = upstream_headers_raw(
        gateway,
        [
            b"X-Forwarded-For: 203.0.113.1",
            b"X-Forwarded-For: 203.0.113.2",
            b"Via: 1.1 first",
            b"Via: 1.1 second",
        ],
    )
    assert h["x-forwarded-for"] == ["203.0.113.1, 127.0.0.1"]
    assert len(h["via"]) == 1 and h["via"][0].startswith("1.1 first, 1.1 fastkong/")


def test_trusted_first_forwarded_header_wins(trusting: Gateway) -> None:
    h = upstream_headers_raw(
        trusting,
        [b"X-Forwarded-Proto: https", b"X-Forwarded-Proto: http", b"X-Forwarded-Host: a.test"],
    )
    assert h["x-forwarded-proto"] == ["https"]
    assert h["x-forwarded-host"] == ["a.test"]


def test_trusted_real_ip_is_remote_addr(trusting: Gateway) -> None:
    # nginx's realip module makes a trusted peer's X-Real-IP the $remote_addr, which Kong sends
    # as X-Real-IP and, when the client sent no X-Forwarded-For, as X-Forwarded-For.
    h = upstream_headers(trusting, {"X-Real-IP": "10.0.0.2"})
    assert h["x-real-ip"] == ["10.0.0.2"]
    assert h["x-forwarded-for"] == ["10.0.0.2"]
    # With an X-Forwarded-For, the connecting peer is appended ($realip_remote_addr).
    h = upstream_headers(trusting, {"X-Real-IP": "10.0.0.2", "X-Forwarded-For": "10.0.0.9"})
    assert h["x-forwarded-for"] == ["10.0.0.9, 127.0.0.1"]
    assert h["x-real-ip"] == ["10.0.0.2"]


def test_trusted_real_ip_that_is_no_address_is_ignored(trusting: Gateway) -> None:
    h = upstream_headers(trusting, {"X-Real-IP": "not-an-ip"})
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["x-forwarded-for"] == ["127.0.0.1"]


# -- response side ------------------------------------------------------------------------------


def test_response_via_is_the_upstreams_plus_ours_in_one_header(gateway: Gateway) -> None:
    # handler.lua header_filter: Via = $upstream_http_via .. ", " .. "1.1 <server token>".
    r = httpx.get(gateway.url("/raw"))
    assert r.status_code == 200 and r.content == b"ok"
    vias = r.headers.get_list("via")
    assert len(vias) == 1
    head, _, token = vias[0].rpartition(", ")
    assert head == "1.1 edge, 1.0 inner, 1.1 third"
    assert token.startswith("1.1 fastkong/")


def test_response_connection_listed_and_nginx_hidden_headers_are_dropped(
    gateway: Gateway,
) -> None:
    r = httpx.get(gateway.url("/raw"))
    assert r.status_code == 200
    assert "x-hop" not in r.headers
    assert r.headers["x-kept"] == "here"
    assert "x-accel-buffering" not in r.headers
    assert "x-pad" not in r.headers
    # The kept-alive upstream connection still serves the next request.
    assert httpx.get(gateway.url("/raw")).headers["x-kept"] == "here"


def test_502_after_a_failed_proxy_attempt_has_proxied_latency_headers(gateway: Gateway) -> None:
    # 14-server_tokens_spec.lua "should be returned with 502 errors (error_page executing)".
    r = httpx.get(gateway.url("/dead/x"))
    assert r.status_code == 502
    assert int(r.headers["x-kong-upstream-latency"]) >= 0
    assert int(r.headers["x-kong-proxy-latency"]) >= 0
    assert "x-kong-response-latency" not in r.headers
    assert r.headers["via"].startswith("1.1 fastkong/")
    assert r.headers["server"].startswith("fastkong/")


def test_404_is_not_proxied_and_has_a_response_latency(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/nowhere"))
    assert r.status_code == 404
    assert int(r.headers["x-kong-response-latency"]) >= 0
    assert "x-kong-upstream-latency" not in r.headers and "via" not in r.headers


def test_via_sent_up_names_the_clients_http_version(gateway: Gateway) -> None:
    # 35-via_spec.lua: "1.1 dev, 2 <tokens>" for an HTTP/2 client; Kong prints the version as
    # LuaJIT prints ngx.req.http_version() (2.0 -> "2", 1.0 -> "1").
    with httpx.Client(http1=False, http2=True) as h2:
        r = h2.get(gateway.url("/echo/x"), headers={"Via": "1.1 dev"})
    assert r.http_version == "HTTP/2"
    via = [v for k, v in r.json()["headers"] if k == "via"]
    assert len(via) == 1 and via[0].startswith("1.1 dev, 2 fastkong/")
    response = gateway.raw(b"GET /echo/x HTTP/1.0\r\nHost: kong.test\r\n\r\n")
    body = json.loads(response.partition(b"\r\n\r\n")[2])
    via = [v for k, v in body["headers"] if k == "via"]
    assert len(via) == 1 and via[0].startswith("1 fastkong/")
    h = upstream_headers(gateway, {})
    assert h["via"][0].startswith("1.1 fastkong/")


def test_https_redirect_location_uses_nginx_host(tmp_path_factory: pytest.TempPathFactory) -> None:
    # handler.lua: Location = "https://" .. forwarded_host .. request_uri, where forwarded_host is
    # ctx.host ($host: lowercased, no port) unless a trusted peer sent X-Forwarded-Host.
    config = """
_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  routes:
  - name: r
    paths: ["/redirect"]
    protocols: ["https"]
    https_redirect_status_code: 308
"""
    gw = Gateway(tmp_path_factory.mktemp("kong-redirect"), config).start()
    try:
        r = httpx.get(gw.url("/redirect/a?b=1"), headers={"Host": "Shop.Example.COM:8000"})
        assert r.status_code == 308
        assert r.headers["location"] == "https://shop.example.com/redirect/a?b=1"
        assert r.content == b""
    finally:
        assert gw.stop() == 0


def test_expect_is_not_sent_upstream(gateway: Gateway) -> None:
    # nginx's proxy module sets Expect to "" (ngx_http_proxy_headers): the upstream never sees it.
    head = (
        b"POST /echo/x HTTP/1.1\r\nHost: kong.test\r\nConnection: close\r\n"
        b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"
    )
    data = gateway.raw(head)
    if data.startswith(b"HTTP/1.1 100"):
        data = data.partition(b"\r\n\r\n")[2]
    assert data.startswith(b"HTTP/1.1 200")
    body = json.loads(data.partition(b"\r\n\r\n")[2])
    names = [name for name, _ in body["headers"]]
    assert "expect" not in names
    assert body["body_length"] == 5


def _chunks(total: int, size: int = 65536) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield bytes([sent % 251]) * n
        sent += n


def _md5(total: int) -> str:
    digest = hashlib.md5()
    for chunk in _chunks(total):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.parametrize("size", [0, 10, 300_000])
def test_a_chunked_body_goes_up_sized_with_request_buffering(gateway: Gateway, size: int) -> None:
    # Kong's request_buffering (on by default): nginx reads the body, sends it with Content-Length.
    r = httpx.post(gateway.url("/echo/up"), content=_chunks(size))
    assert r.status_code == 200
    seen = r.json()
    names = dict(seen["headers"])
    assert "transfer-encoding" not in names
    assert names["content-length"] == str(size)
    assert seen["body_length"] == size and seen["body_md5"] == _md5(size)


def test_a_chunked_body_past_the_buffer_limit_streams_whole(gateway: Gateway) -> None:
    size = 3 * 1024 * 1024 + 7
    r = httpx.post(gateway.url("/echo/up"), content=_chunks(size), timeout=30)
    assert r.status_code == 200
    seen = r.json()
    assert dict(seen["headers"])["transfer-encoding"] == "chunked"
    assert seen["body_length"] == size and seen["body_md5"] == _md5(size)


def test_a_chunked_body_streams_without_request_buffering(gateway: Gateway) -> None:
    r = httpx.post(gateway.url("/streamed/up"), content=_chunks(10))
    seen = r.json()
    assert dict(seen["headers"])["transfer-encoding"] == "chunked"
    assert seen["body_length"] == 10 and seen["body_md5"] == _md5(10)


@pytest.mark.parametrize(
    "lines",
    [
        [b"Host: a.test", b"Host: b.test"],
    ],
    ids=["two-hosts"],
)
def test_a_repeated_host_is_refused_as_nginx_does(gateway: Gateway, lines: list[bytes]) -> None:
    head = b"POST /echo/x HTTP/1.1\r\nConnection: close\r\n" + b"\r\n".join(lines)
    response = gateway.raw(head + b"\r\n\r\nok")
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert b"Bad request" in response


@pytest.mark.parametrize(
    "lengths",
    [[b"2", b"2"], [b"+2"], [b"1_0"]],
    ids=["repeated", "signed", "underscore"],
)
def test_a_content_length_nginx_would_refuse_is_400_at_the_asgi_level(
    lengths: list[bytes],
) -> None:
    # Granian refuses most of these itself; under any ASGI server the gateway must too, as nginx
    # (ngx_atoof, duplicate header line) does, and never send two lengths upstream.
    loaded = load_config(CONFIG.format(echo=9, raw=9, dead=9))
    app = App(compile_runtime(loaded.config, loaded.hash))
    headers = [(b"host", b"kong.test")] + [(b"content-length", v) for v in lengths]
    scope = {
        "type": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "POST",
        "path": "/echo/x",
        "raw_path": b"/echo/x",
        "query_string": b"",
        "headers": headers,
    }
    sent: list[dict] = []  # type: ignore[type-arg]

    async def receive() -> dict:  # type: ignore[type-arg]
        return {"type": "http.request", "body": b"ok", "more_body": False}

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    asyncio.run(app.http(scope, receive, send))
    assert sent[0]["status"] == 400
    assert b"Bad request" in sent[1]["body"]
