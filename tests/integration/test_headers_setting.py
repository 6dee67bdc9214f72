"""Kong's ``headers`` and ``headers_upstream`` settings (``kong/runloop/handler.lua``'s
header_filter, ``kong/init.lua``'s admin filter): which headers the gateway adds to proxied
responses, to its own responses, to the admin API's and upstream. A real ``fastkong start``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Echo, FixedPeer, Gateway, fastkong_cli, free_port
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
  - name: denied
    paths: ["/denied"]
    plugins:
    - name: request-termination
      config: {{status_code: 403, message: nope}}
- name: via
  url: http://127.0.0.1:{via}
  routes:
  - name: via
    paths: ["/via"]
- name: ws
  url: http://127.0.0.1:{ws}
  routes:
  - name: ws
    paths: ["/ws"]
"""

GATEWAY_HEADERS = {
    "via",
    "x-kong-upstream-latency",
    "x-kong-proxy-latency",
    "x-kong-response-latency",
    "x-kong-request-id",
    "x-kong-upstream-status",
}


#: What the "via" upstream answers: its own Via and Server.
VIA_RESPONSE = (
    b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nVia: 1.1 edge\r\nServer: peer/1\r\n\r\nok"
)


@pytest.fixture(scope="module")
def via_peer() -> Iterator[FixedPeer]:
    peer = FixedPeer(VIA_RESPONSE).start()
    yield peer
    peer.stop()


def _start(workdir: object, peers: tuple[Echo, FixedPeer, WsEcho], *extra: str) -> Gateway:
    echo, via, ws = peers
    config = CONFIG.format(echo=echo.port, via=via.port, ws=ws.port)
    return Gateway(workdir, config, 1, *extra).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def off(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, via_peer: FixedPeer, ws_echo: WsEcho
) -> Iterator[Gateway]:
    gw = _start(
        tmp_path_factory.mktemp("headers-off"),
        (echo, via_peer, ws_echo),
        "--headers",
        "off",
        "--headers-upstream",
        "off",
    )
    yield gw
    assert gw.stop() == 0


def ours(response: httpx.Response) -> set[str]:
    return {name for name in response.headers if name in GATEWAY_HEADERS}


def test_off_adds_nothing_to_proxied_responses(off: Gateway) -> None:
    r = httpx.get(off.url("/echo/x"))
    assert r.status_code == 200
    assert ours(r) == set()
    assert not r.headers["server"].startswith("fastkong")  # Granian names itself instead
    sent = dict(r.json()["headers"])
    assert "x-kong-request-id" not in sent  # headers_upstream = off
    assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-real-ip"] == "127.0.0.1"


def test_off_keeps_the_upstreams_own_via_and_server(off: Gateway) -> None:
    r = httpx.get(off.url("/via/x"))
    assert r.status_code == 201
    assert r.headers.get_list("via") == ["1.1 edge"]
    assert r.headers["server"] == "peer/1"
    assert ours(r) == {"via"}


def test_off_adds_nothing_to_the_gateways_own_responses(off: Gateway) -> None:
    for path, status in (("/nowhere", 404), ("/denied", 403)):
        r = httpx.get(off.url(path))
        assert r.status_code == status
        assert ours(r) == set()
        assert not r.headers["server"].startswith("fastkong")
        # Kong's error body still carries the request id.
        if status == 404:
            assert len(r.json()["request_id"]) == 32


def test_off_on_the_admin_api(off: Gateway) -> None:
    r = httpx.get(f"http://127.0.0.1:{off.admin_port}/status")
    assert r.status_code == 200
    assert "x-kong-admin-latency" not in r.headers
    assert "server" not in r.headers


def test_off_on_websocket_handshakes(off: Gateway, ws_echo: WsEcho) -> None:
    async def scenario() -> None:
        ws = await WsClient().connect(off.port, "/ws/x")
        assert ws.status == 101
        await ws.close()

    asyncio.run(scenario())
    assert "x-kong-request-id" not in ws_echo.handshakes[-1]  # headers_upstream = off


def test_a_chosen_list(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, via_peer: FixedPeer, ws_echo: WsEcho
) -> None:
    gw = _start(
        tmp_path_factory.mktemp("headers-list"),
        (echo, via_peer, ws_echo),
        "--headers",
        "Via, latency_tokens, X-Kong-Upstream-Status",
    )
    try:
        r = httpx.get(gw.url("/via/x"))
        assert ours(r) == {
            "via",
            "x-kong-upstream-latency",
            "x-kong-proxy-latency",
            "x-kong-upstream-status",
        }
        assert r.headers["via"].startswith("1.1 edge, 1.1 fastkong/")
        assert r.headers["x-kong-upstream-status"] == "201"
        assert r.headers["server"] == "peer/1"
        # No Server token: the upstream that sent none gets none of fastkong's.
        r = httpx.get(gw.url("/echo/x"))
        assert not r.headers["server"].startswith("fastkong")
        assert "x-kong-request-id" in dict(r.json()["headers"])  # headers_upstream default
        r = httpx.get(gw.url("/nowhere"))
        assert ours(r) == {"x-kong-response-latency"}
        admin = httpx.get(f"http://127.0.0.1:{gw.admin_port}/status")
        assert "x-kong-admin-latency" in admin.headers and "server" not in admin.headers
    finally:
        assert gw.stop() == 0


def test_kong_environment_names(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    via_peer: FixedPeer,
    ws_echo: WsEcho,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KONG_HEADERS", "server_tokens")
    gw = _start(tmp_path_factory.mktemp("headers-env"), (echo, via_peer, ws_echo))
    try:
        r = httpx.get(gw.url("/echo/x"))
        assert ours(r) == {"via"}
        assert r.headers["server"].startswith("fastkong/")
        assert httpx.get(gw.url("/nowhere")).headers["server"].startswith("fastkong/")
    finally:
        assert gw.stop() == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--headers", "server_tokens, bogus", "headers: invalid entry 'bogus'"),
        ("--headers-upstream", "via", "headers_upstream: invalid entry 'via'"),
    ],
)
def test_an_unknown_entry_stops_the_start(flag: str, value: str, message: str) -> None:
    done = fastkong_cli("start", "--proxy-listen", f"127.0.0.1:{free_port()}", flag, value)
    assert done.returncode == 1
    assert message in done.stderr


def test_kong_debug_names_the_route_and_service_when_allowed(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    via_peer: FixedPeer,
    ws_echo: WsEcho,
    off: Gateway,
) -> None:
    # Kong's allow_debug_header (off by default: the same request learns nothing).
    assert (
        "kong-route-name" not in httpx.get(off.url("/echo/x"), headers={"Kong-Debug": "1"}).headers
    )
    gw = _start(
        tmp_path_factory.mktemp("debug-header"),
        (echo, via_peer, ws_echo),
        "--allow-debug-header",
        "on",
    )
    try:
        r = httpx.get(gw.url("/echo/x"), headers={"Kong-Debug": "1"})
        assert r.headers["kong-route-name"] == "echo"
        assert r.headers["kong-service-name"] == "echo"
        assert len(r.headers["kong-route-id"]) == 36 and len(r.headers["kong-service-id"]) == 36
        assert dict(r.json()["headers"])["kong-debug"] == "1"  # still forwarded
        # Responses the gateway makes itself after routing carry them too.
        denied = httpx.get(gw.url("/denied"), headers={"Kong-Debug": "1"})
        assert denied.status_code == 403 and denied.headers["kong-route-name"] == "denied"
        assert "kong-route-id" not in httpx.get(gw.url("/echo/x")).headers

        # A WebSocket handshake refused (the echo upstream speaks no WebSocket) carries them too.
        # (Granian sends no headers of the app's with a 101, so an accepted one cannot.)
        async def handshake() -> WsClient:
            return await WsClient().connect(gw.port, "/echo/x", "Kong-Debug: 1\r\n")

        refused = asyncio.run(handshake())
        assert refused.status != 101 and refused.headers["kong-route-name"] == "echo"
    finally:
        assert gw.stop() == 0
