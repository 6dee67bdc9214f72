"""Routes that allow only ``https``, reached through a trusted TLS-terminating proxy.

Kong (``kong/runloop/handler.lua``, access phase) takes a trusted peer's ``X-Forwarded-Proto``
as sent and answers 426 (or the route's redirect, to the trusted ``X-Forwarded-Host``) whenever
it is not exactly ``https``; WebSocket handshakes go through the same check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Echo, Gateway
from tests.ws_peer import WsClient, WsEcho

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo}
  routes:
  - {{name: secure, paths: ["/secure"], protocols: ["https"]}}
  - {{name: redirect, paths: ["/redirect"], protocols: ["https"], https_redirect_status_code: 308}}
- name: ws
  url: http://127.0.0.1:{ws}
  routes:
  - {{name: ws-secure, paths: ["/ws-secure"], protocols: ["https"]}}
  - {{name: ws-redirect, paths: ["/ws-redirect"], protocols: ["https"],
      https_redirect_status_code: 301}}
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, ws_echo: WsEcho
) -> Iterator[Gateway]:
    config = CONFIG.format(echo=echo.port, ws=ws_echo.port)
    gw = Gateway(tmp_path_factory.mktemp("https-only"), config, 1, "--trusted-ips", "127.0.0.1")
    gw.start()
    yield gw
    gw.stop()


def test_trusted_https_passes(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/secure/x"), headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 200
    assert ["x-forwarded-proto", "https"] in r.json()["headers"]


@pytest.mark.parametrize("proto", [None, "http", "HTTPS", "ftp", ""])
def test_anything_but_https_is_refused(gateway: Gateway, proto: str | None) -> None:
    headers = {"X-Forwarded-Proto": proto} if proto is not None else {}
    r = httpx.get(gateway.url("/secure/x"), headers=headers)
    assert r.status_code == 426
    assert r.json()["message"] == "Please use HTTPS protocol"
    assert r.headers["upgrade"] == "TLS/1.2, HTTP/1.1"


def test_redirect_goes_to_the_forwarded_host(gateway: Gateway) -> None:
    headers = {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "Shop.Example:8443"}
    r = httpx.get(gateway.url("/redirect/a?b=1"), headers=headers)
    assert r.status_code == 308
    assert r.headers["location"] == "https://Shop.Example:8443/redirect/a?b=1"
    r = httpx.get(gateway.url("/redirect/a?b=1"), headers={"Host": "shop.example:8000"})
    assert r.status_code == 308
    assert r.headers["location"] == "https://shop.example/redirect/a?b=1"


def test_websocket_handshake_is_checked_too(gateway: Gateway, ws_echo: WsEcho) -> None:
    async def scenario() -> None:
        refused = await WsClient().connect(gateway.port, "/ws-secure/x")
        assert refused.status == 426
        assert b"Please use HTTPS protocol" in refused.body
        assert refused.headers["upgrade"] == "TLS/1.2, HTTP/1.1"
        moved = await WsClient().connect(
            gateway.port, "/ws-redirect/x?y=1", "X-Forwarded-Host: edge.example\r\n"
        )
        assert moved.status == 301
        assert moved.headers["location"] == "https://edge.example/ws-redirect/x?y=1"
        ok = await WsClient().connect(
            gateway.port,
            "/ws-secure/x",
            "X-Forwarded-Proto: https\r\nX-Forwarded-Host: edge.example\r\n"
            "X-Real-IP: 198.51.100.7\r\nX-Forwarded-Prefix: /api\r\nProxy: http://evil\r\n",
        )
        assert ok.status == 101
        await ok.send("hello")
        assert await ok.recv() == (0x1, b"hello")
        await ok.close()

    asyncio.run(scenario())
    assert len(ws_echo.handshakes) == 1  # the refused handshakes never reached the upstream
    # a trusted peer's forwarding headers are kept, as for any request
    (hs,) = ws_echo.handshakes
    assert hs["x-forwarded-proto"] == "https"
    assert hs["x-forwarded-host"] == "edge.example"
    assert hs["x-real-ip"] == "198.51.100.7"
    assert hs["x-forwarded-for"] == "198.51.100.7"
    assert hs["x-forwarded-prefix"] == "/api"
    assert "proxy" not in hs  # httpoxy: never forwarded
