"""Kong's proxy specs ported against one real ``fastkong start`` (two plain listeners and an
``ssl http2`` one) in front of the echo upstream and a ``Via`` peer, on loopback:

- ``spec/02-integration/05-proxy/01-proxy_spec.lua`` 54-81 ("multiple": every ``proxy_listen``
  entry serves, a request nothing routes is 404 on each);
- ``08-uri_encoding_spec.lua`` 46-155 (query and path bytes are sent up as they came: neither
  decoded nor encoded again, with ``hosts`` and ``paths`` routes and ``strip_path``);
- ``32-query-params_spec.lua`` 55-67 (request-transformer adds a query arg to ``/x?``);
- ``35-via_spec.lua`` 135-176 (the ``Via`` sent up and the one sent back, HTTP/1.1 and HTTP/2);
- ``13-error_handlers_spec.lua`` 28-51 (nginx's 400 for a too large header and 405 for TRACE,
  with Kong's error page and ``Server``); ``test_request_limits.py`` covers these limits at
  length, the ports here add the spec's ``Server`` and whole-body checks on an unrouted path.

Kong's ``mock_upstream`` becomes the echo: its ``url`` is the request target the upstream got
(Kong's fixture prints it behind ``http://host:port``) and ``uri_args`` are its ``query`` decoded.
``SERVER_TOKENS`` are fastkong's: README "Kong compatibility notes", "`Via` and `Server` name
fastkong (`1.1 fastkong/<version>`)".

Left out:
- 01-proxy_spec.lua 44-52 "disabled": counts server blocks of the nginx template Kong writes;
  ``proxy_listen = off`` is refused by fastkong (docs/settings.md; ``test_start_settings.py``).
- 01-proxy_spec.lua 84-142 "#stream proxy interface listeners": counts nginx stream server blocks
  and Kong's internal unix sockets (Kong internals).
- 01-proxy_spec.lua 156-306 "[stream, flavor]": runs only for ``strategy ~= "off"`` (a database).
- 35-via_spec.lua 178-224 (gRPC, plain and TLS): fastkong cannot proxy a plain gRPC call (README
  "Kong compatibility notes": Granian's ASGI carries no HTTP/2 trailers), and it needs grpcbin.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fastkong import __version__
from tests.helpers import Echo, Gateway, JsonPeer, free_port, wait_port

pytestmark = pytest.mark.integration

#: Kong's ``meta._SERVER_TOKENS`` (``kong/x.y.z``), fastkong's own name (README).
SERVER_TOKENS = f"fastkong/{__version__}"
#: What 13-error_handlers_spec.lua looks for in ``Server`` (Kong: ``kong/``).
SERVER_PRODUCT = "fastkong/"

#: One declarative config holding every spec's routes. Kong's ``bp.routes:insert`` without a
#: service gives each route its own service on ``mock_upstream`` (spec/fixtures/blueprints.lua).
CONFIG = """
_format_version: "3.0"
services:
- name: host-one
  url: http://127.0.0.1:{echo}
  routes:
  - hosts: [mock_upstream]
- name: host-two
  url: http://127.0.0.1:{echo}
  routes:
  - hosts: [mock_upstream]
- name: request
  url: http://127.0.0.1:{echo}
  routes:
  - protocols: [http]
    paths: [/request]
    strip_path: false
- name: stripped
  url: http://127.0.0.1:{echo}
  routes:
  - protocols: [http]
    paths: [/stripped-path]
    strip_path: true
- name: query
  url: http://127.0.0.1:{echo}
  routes:
  - paths: [/set-query-arg]
    plugins:
    - name: request-transformer
      config:
        add:
          querystring: ["dummy:1"]
- name: via_service
  url: http://127.0.0.1:{via}/via
  routes:
  - name: via_route
    hosts: [test.via]
    paths: [/get]
"""


class ViaMock(JsonPeer):
    """35-via_spec.lua's ``http_mock`` ``/via``: answers the ``Via`` it got (``tostring`` of a
    missing one is ``"nil"``) with its own ``Server`` and ``Via``."""

    def respond(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> tuple[Any, bytes]:
        extra = b"Server: http-mock\r\nVia: 2 nginx, HTTP/1.1 http_mock\r\n"
        return {"via": headers.get("via", "nil")}, extra


class Node(Gateway):
    """The gateway and the port of its second plain listener."""

    second_port: int


@pytest.fixture(scope="module")
def via_mock() -> Iterator[ViaMock]:
    peer = ViaMock().start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo, via_mock: ViaMock) -> Iterator[Node]:
    gw = Node(
        tmp_path_factory.mktemp("kong-proxy-basics"),
        CONFIG.format(echo=echo.port, via=via_mock.port),
    )
    gw.second_port = free_port()
    # proxy_listen = "127.0.0.1:<port>, 127.0.0.1:<second>, 127.0.0.1:<ssl> ssl http2"
    gw.port_flags = f", 127.0.0.1:{gw.second_port}"
    gw.ssl_port = free_port()
    try:
        gw.start()
        wait_port(gw.second_port, proc=gw.proc)
        yield gw
    finally:
        gw.stop()


def send(
    node: Node, target: str, host: str | None = None, method: str = "GET", extra: str = ""
) -> bytes:
    """The whole answer to ``target`` sent byte for byte (no client re-encodes it), with no
    ``Accept``, as Kong's ``proxy_client`` (lua-resty-http) sends none; ``extra``: header lines."""
    head = f"{method} {target} HTTP/1.1\r\nHost: {host or 'kong.test'}\r\nConnection: close\r\n"
    return node.raw((head + extra).encode() + b"\r\n")


def parse(response: bytes) -> tuple[int, dict[str, str], str]:
    """Status, headers (lower-case names) and body of a raw answer."""
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    return int(status.split()[1]), headers, body.decode()


def echoed(response: bytes) -> dict[str, Any]:
    """What the echo upstream got, from a 200."""
    status, _, body = parse(response)
    assert status == 200, response
    seen: dict[str, Any] = json.loads(body)
    return seen


# -- 01-proxy_spec.lua ---------------------------------------------------------------------------


def test_multiple_proxy_listeners_each_serve(node: Node) -> None:
    # 01-proxy_spec.lua:54 "multiple": GET / on each listener, nothing routes it.
    for port in (node.port, node.second_port):
        r = httpx.get(f"http://127.0.0.1:{port}/")
        assert r.status_code == 404, port


# -- 08-uri_encoding_spec.lua --------------------------------------------------------------------

WHERE = "%7B%22or%22:%5B%7B%22name%22:%7B%22like%22:%22%25bac%25%22%7D%7D%5D%7D"


def test_issue_1975_does_not_double_percent_encode_proxied_args(node: Node) -> None:
    # 08-uri_encoding_spec.lua:46
    seen = echoed(send(node, f"/get?limit=25&where={WHERE}", "mock_upstream"))
    assert seen["query"] == f"limit=25&where={WHERE}"
    uri_args = parse_qs(seen["query"])
    assert uri_args["limit"] == ["25"]
    assert uri_args["where"] == ['{"or":[{"name":{"like":"%bac%"}}]}']


@pytest.mark.parametrize(
    ("spec_line", "target"),
    [
        (64, "/request?param=1.2.3"),  # issue #1480: args not percent-encoded unnecessarily
        (83, "/request?param=abc%7Cdef"),  # issue #749: args not percent-decoded
        (100, "/request/foo%2Fbar"),  # issue #688: the path not percent-decoded
    ],
)
def test_the_target_reaches_the_upstream_as_sent(node: Node, spec_line: int, target: str) -> None:
    # 08-uri_encoding_spec.lua:<spec_line>: json.url == mock_upstream_url .. target.
    assert echoed(send(node, target, "mock_upstream"))["url"] == target


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("/request/auth%2F123", "mock_upstream"),  # with `hosts` matching
        ("/request/auth%2F123", None),  # with `uris` matching
        ("/stripped-path/request/auth%2F123", None),  # with `uris` matching + `strip_uri`
    ],
)
def test_issue_2512_does_not_double_percent_encode_upstream_urls(
    node: Node, target: str, host: str | None
) -> None:
    # 08-uri_encoding_spec.lua:117
    assert "/request/auth%2F123" in echoed(send(node, target, host))["url"]


# -- 32-query-params_spec.lua --------------------------------------------------------------------


def test_proxy_sets_query_args_if_uri_does_not_contain_arguments(node: Node) -> None:
    # 32-query-params_spec.lua:55. The spec also sends `Host: mock_upstream`, inert in its
    # config of one route; here the 08 spec's `hosts` routes would take it first.
    seen = echoed(send(node, "/set-query-arg?"))
    assert parse_qs(seen["query"])["dummy"] == ["1"]


# -- 35-via_spec.lua -----------------------------------------------------------------------------


def test_via_http11_in_both_the_inbound_and_outbound_directions(node: Node) -> None:
    # 35-via_spec.lua:135
    r = httpx.get(node.url("/get"), headers={"Host": "test.via", "Via": "1.1 dev"})
    assert r.status_code == 200
    assert r.json() == {"via": f"1.1 dev, 1.1 {SERVER_TOKENS}"}
    assert r.headers["via"] == f"2 nginx, HTTP/1.1 http_mock, 1.1 {SERVER_TOKENS}"
    assert r.headers["server"] == "http-mock"


def test_via_http2_in_both_the_inbound_and_outbound_directions(node: Node) -> None:
    # 35-via_spec.lua:158: helpers.proxy_client_h2() is HTTP/2 over TLS (ALPN h2).
    with httpx.Client(http1=False, http2=True, verify=False) as h2:
        r = h2.get(
            f"https://127.0.0.1:{node.ssl_port}/get", headers={"Host": "test.via", "Via": "1.1 dev"}
        )
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200
    assert r.json() == {"via": f"1.1 dev, 2 {SERVER_TOKENS}"}
    assert r.headers["via"] == f"2 nginx, HTTP/1.1 http_mock, 1.1 {SERVER_TOKENS}"
    assert r.headers["server"] == "http-mock"


# -- 13-error_handlers_spec.lua ------------------------------------------------------------------


def test_http_400_request_header_too_large(node: Node) -> None:
    # 13-error_handlers_spec.lua:28: 10 KiB past the default large_client_header_buffers 8k.
    status, headers, body = parse(send(node, "/", extra=f"X-Large: {'a' * 10 * 1024}\r\n"))
    assert status == 400
    assert SERVER_PRODUCT in headers["server"]
    assert "Request header or cookie too large" in body


def test_request_for_routers_with_trace_method_not_allowed(node: Node) -> None:
    # 13-error_handlers_spec.lua:42
    status, headers, body = parse(send(node, "/", method="TRACE"))
    assert status == 405
    assert SERVER_PRODUCT in headers["server"]
    assert re.search(r"Method not allowed\nrequest_id: [0-9a-f]+\n", body)
