"""The proxy end to end: a real ``fastkong start`` (Granian) in front of real echo upstreams."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import fastkong
from tests.helpers import Echo, Gateway, free_port

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo}
  routes:
  - name: strip
    paths: ["/echo"]
  - name: keep
    paths: ["/keep"]
    strip_path: false
  - name: regex
    paths: ["~/v(?<version>\\\\d+)/orders/(?<id>\\\\d+)$"]
  - name: host-route
    hosts: ["api.example.com"]
  - name: preserve
    paths: ["/preserve"]
    preserve_host: true
  - name: https-only
    paths: ["/secure"]
    protocols: ["https"]
  - name: https-redirect
    paths: ["/redirect"]
    protocols: ["https"]
    https_redirect_status_code: 301
  - name: raw
    paths: ["/raw"]
- name: with-path
  url: http://127.0.0.1:{echo}/base
  routes:
  - name: based
    paths: ["/based"]
- name: dead
  url: http://127.0.0.1:{dead}
  retries: 2
  routes:
  - name: dead
    paths: ["/dead"]
- name: slow
  url: http://127.0.0.1:{echo}
  read_timeout: 300
  retries: 0
  routes:
  - name: slow
    paths: ["/delay", "/hang"]
    strip_path: false
- name: balanced
  host: pool.internal
  routes:
  - name: balanced
    paths: ["/balanced"]
- name: failover
  host: failover.internal
  routes:
  - name: failover
    paths: ["/failover"]
routes:
- name: orphan
  paths: ["/orphan"]
upstreams:
- name: pool.internal
  targets:
  - target: 127.0.0.1:{echo}
    weight: 100
  - target: 127.0.0.1:{echo2}
    weight: 300
- name: failover.internal
  targets:
  - target: 127.0.0.1:{dead}
  - target: 127.0.0.1:{echo}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo, echo2: Echo) -> Iterator[Gateway]:
    config = CONFIG.format(echo=echo.port, echo2=echo2.port, dead=free_port())
    gw = Gateway(tmp_path_factory.mktemp("proxy"), config).start()
    yield gw
    assert gw.stop() == 0


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url(""), timeout=10) as c:
        yield c


def seen(response: httpx.Response) -> dict:  # type: ignore[type-arg]
    """What the echo upstream received."""
    return json.loads(response.content)


def upstream_headers(response: httpx.Response) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in seen(response)["headers"]:
        found.setdefault(name, []).append(value)
    return found


REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def test_strip_path_and_query_byte_exact(client: httpx.Client) -> None:
    r = client.get("/echo/hello", params=None, headers={}, extensions={})
    assert r.status_code == 200
    assert seen(r)["path"] == "/hello"
    raw = httpx.URL(client.base_url.join("/echo/a%20b")).copy_with(query=b"x=1%20&y=%2F&z")
    r = client.get(raw)
    assert seen(r)["url"] == "/a%20b?x=1%20&y=%2F&z"


def test_strip_path_false_keeps_the_path(client: httpx.Client) -> None:
    assert seen(client.get("/keep/x"))["path"] == "/keep/x"


def test_service_path_is_joined(client: httpx.Client) -> None:
    assert seen(client.get("/based/foo"))["path"] == "/base/foo"
    assert seen(client.get("/based"))["path"] == "/base"


def test_regex_route_strips_the_whole_match(client: httpx.Client) -> None:
    r = client.get("/v2/orders/42")
    assert r.status_code == 200
    assert seen(r)["path"] == "/"


def test_host_route(client: httpx.Client) -> None:
    r = client.get("/anything", headers={"Host": "API.example.com:1234"})
    assert r.status_code == 200
    assert seen(r)["path"] == "/anything"
    assert client.get("/anything", headers={"Host": "other.example.com"}).status_code == 404


def test_response_headers(client: httpx.Client) -> None:
    r = client.get("/echo/x")
    assert r.headers["via"].startswith("1.1 fastkong/")
    assert int(r.headers["x-kong-upstream-latency"]) >= 0
    assert int(r.headers["x-kong-proxy-latency"]) >= 0
    assert REQUEST_ID.match(r.headers["x-kong-request-id"])
    assert r.headers["x-echo-server"] == "echo-1"
    # Kong sends its own Connection: keep-alive upstream, never the client's.
    assert upstream_headers(r)["connection"] == ["keep-alive"]


def test_request_id_reaches_upstream(client: httpx.Client) -> None:
    r = client.get("/echo/x", headers={"X-Kong-Request-Id": "spoofed"})
    assert upstream_headers(r)["x-kong-request-id"] == [r.headers["x-kong-request-id"]]


def test_forwarded_headers_untrusted_peer(client: httpx.Client, gateway: Gateway) -> None:
    r = client.get(
        "/echo/fwd?q=1",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "X-Real-IP": "203.0.113.8",
            "Via": "1.0 edge",
        },
    )
    h = upstream_headers(r)
    assert h["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert h["x-forwarded-host"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-port"] == [str(gateway.port)]
    assert h["x-forwarded-path"] == ["/echo/fwd"]
    assert h["x-forwarded-prefix"] == ["/echo"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["via"][0].startswith("1.0 edge, 1.1 fastkong/")


def test_hop_by_hop_headers_are_removed(client: httpx.Client) -> None:
    r = client.get(
        "/echo/hop",
        headers={"Keep-Alive": "t=5", "TE": "trailers", "Proxy-Connection": "x", "X-Keep": "1"},
    )
    h = upstream_headers(r)
    assert "keep-alive" not in h and "proxy-connection" not in h
    assert h["te"] == ["trailers"]  # as Kong: only a TE that asks for trailers, only that
    assert h["x-keep"] == ["1"]


def test_upstream_host_header(client: httpx.Client, echo: Echo) -> None:
    r = client.get("/echo/h", headers={"Host": "client.example"})
    assert upstream_headers(r)["host"] == [f"127.0.0.1:{echo.port}"]
    r = client.get("/preserve", headers={"Host": "client.example:81"})
    assert upstream_headers(r)["host"] == ["client.example:81"]


def test_the_proxy_names_itself_only_when_the_upstream_does_not(client: httpx.Client) -> None:
    """nginx (so Kong) adds its own Server header to a proxied response that has none."""
    plain = client.get("/keep")  # the echo sends no Server header
    assert plain.headers.get_list("server") == [f"fastkong/{fastkong.__version__}"]
    named = client.get("/echo/named")  # the route strips /echo: the echo sees /named
    assert named.status_code == 200 and named.text == "ok"
    assert named.headers.get_list("server") == ["echo-1"]


def test_no_route_is_kongs_404(client: httpx.Client) -> None:
    r = client.get("/nope", headers={"Accept": "*/*"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    rid = r.headers["x-kong-request-id"]
    assert r.text == (
        '{\n  "message":"no Route matched with those values",\n  "request_id":"' + rid + '"\n}'
    )
    assert r.headers["server"].startswith("fastkong/")
    assert "x-kong-response-latency" in r.headers
    html = client.get("/nope", headers={"Accept": "text/html"})
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert "<p>no Route matched with those values.</p>" in html.text


def test_route_without_service_is_503(client: httpx.Client) -> None:
    r = client.get("/orphan")
    assert r.status_code == 503
    # Kong 3.3+ (init.lua access.after): kong.response.error, with the request id.
    rid = r.headers["x-kong-request-id"]
    assert r.json() == {"message": "no Service found with those values", "request_id": rid}
    assert int(r.headers["x-kong-response-latency"]) >= 0
    html = client.get("/orphan", headers={"Accept": "text/html"})
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert "<p>no Service found with those values.</p>" in html.text


def test_dead_upstream_is_502_with_negotiated_body(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as s:
        s.sendall(b"GET /dead HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502")
    assert b"content-type: text/plain; charset=utf-8" in head.lower()
    message = b"An invalid response was received from the upstream server\nrequest_id: "
    assert body.startswith(message)
    r = httpx.get(gateway.url("/dead"), headers={"Accept": "application/json"})
    assert r.status_code == 502
    assert r.json()["message"] == "An invalid response was received from the upstream server"


def test_read_timeout_is_504(client: httpx.Client) -> None:
    r = client.get("/hang", headers={"Accept": "application/json"})
    assert r.status_code == 504
    assert r.json()["message"] == "The upstream server is timing out"
    assert client.get("/delay/10").status_code == 200


def test_connect_failure_retries_next_peer(client: httpx.Client) -> None:
    for _ in range(6):
        r = client.get("/failover/x")
        assert r.status_code == 200
        assert r.headers["x-echo-server"] == "echo-1"


def test_weighted_round_robin(client: httpx.Client) -> None:
    counts = Counter(client.get("/balanced").headers["x-echo-server"] for _ in range(400))
    assert counts == {"echo-1": 100, "echo-2": 300}


def test_https_only_route_over_http(client: httpx.Client) -> None:
    r = client.get("/secure")
    assert r.status_code == 426
    assert r.headers["connection"].lower() == "upgrade"
    assert r.headers["upgrade"] == "TLS/1.2, HTTP/1.1"
    assert r.json()["message"] == "Please use HTTPS protocol"
    r = client.get("/redirect/x?a=1", headers={"Host": "shop.example:8000"})
    assert r.status_code == 301
    assert r.headers["location"] == "https://shop.example/redirect/x?a=1"


def test_head_204_304_have_no_body(client: httpx.Client) -> None:
    r = client.head("/echo/x")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) > 0
    r = client.get("/raw/status/204")
    assert r.status_code == 204 and r.content == b""
    r = client.get("/raw/status/304")
    assert r.status_code == 304 and r.content == b""
    assert client.get("/echo/x").status_code == 200  # the connection is still usable


def test_request_bodies_content_length_and_chunked(client: httpx.Client) -> None:
    body = b"0123456789" * 1000
    r = client.post("/echo/post", content=body)
    assert seen(r)["body_length"] == len(body)
    assert seen(r)["body_md5"] == hashlib.md5(body).hexdigest()

    def pieces() -> Iterator[bytes]:
        for i in range(50):
            yield bytes([65 + i % 26]) * 3000

    r = client.post("/echo/chunked", content=pieces())
    expected = b"".join(pieces())
    assert seen(r)["body_length"] == len(expected)
    assert seen(r)["body_md5"] == hashlib.md5(expected).hexdigest()
    # Kong's request_buffering (on by default): a small chunked body goes up sized.
    assert upstream_headers(r)["content-length"] == [str(len(expected))]
    assert "transfer-encoding" not in upstream_headers(r)


def test_chunked_and_sized_responses(client: httpx.Client) -> None:
    r = client.get("/raw/chunked/300000")
    assert r.status_code == 200 and len(r.content) == 300000
    r = client.get("/raw/bytes/1000000")
    assert r.headers["content-length"] == "1000000" and len(r.content) == 1000000


def test_a_body_without_length_goes_out_chunked_even_when_whole(client: httpx.Client) -> None:
    # nginx relays an upstream body that has no Content-Length chunked, however early all of it
    # arrived (Kong's proxy-cache spec, l.828, asserts no Content-Length on such an answer); a
    # sized one keeps its length
    for _ in range(5):
        r = client.get("/raw/chunked/10")
        assert r.status_code == 200 and r.content == b"x" * 10
        assert "content-length" not in r.headers
        assert r.headers["transfer-encoding"] == "chunked"
    r = client.get("/raw/bytes/10")
    assert r.headers["content-length"] == "10" and "transfer-encoding" not in r.headers


def test_invalid_path_escape_is_400(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port)) as s:
        s.sendall(b"GET /echo/%zz HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 400")
    assert b'"message":"Bad request"' in raw


def test_status_reports_the_config_hash(gateway: Gateway) -> None:
    status = gateway.status()
    expected = hashlib.md5(Path(gateway.config_path).read_bytes()).hexdigest()
    assert status["configuration_hash"] == expected
    assert set(status["fastkong"]["workers"].values()) == {expected}
    ready = httpx.get(gateway.status_url("/status/ready"))
    assert ready.status_code == 200 and ready.json() == {"message": "ready"}
