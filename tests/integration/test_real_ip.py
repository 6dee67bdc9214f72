"""Kong's ``real_ip_header`` and ``real_ip_recursive`` (nginx's realip module) behind a trusted
load balancer: the client address sent upstream as X-Real-IP, used by ip-restriction and by
``hash_on: ip``, on plain requests and WebSocket handshakes. A real ``fastkong start``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers
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
  - name: guarded
    paths: ["/guarded"]
    plugins:
    - name: ip-restriction
      config: {{deny: ["203.0.113.7"]}}
- name: hashed
  host: hashed-up
  routes:
  - name: hashed
    paths: ["/hashed"]
- name: ws
  url: http://127.0.0.1:{ws}
  routes:
  - name: ws-guarded
    paths: ["/ws"]
    plugins:
    - name: ip-restriction
      config: {{deny: ["203.0.113.7"]}}
upstreams:
- name: hashed-up
  hash_on: ip
  targets:
  - target: 127.0.0.1:{echo}
  - target: 127.0.0.1:{echo2}
"""


def _gateway(workdir: object, echoes: tuple[Echo, Echo], ws_echo: WsEcho, *extra: str) -> Gateway:
    echo, echo2 = echoes
    config = CONFIG.format(echo=echo.port, echo2=echo2.port, ws=ws_echo.port)
    return Gateway(workdir, config, 1, *extra).start()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def recursive(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, echo2: Echo, ws_echo: WsEcho
) -> Iterator[Gateway]:
    gw = _gateway(
        tmp_path_factory.mktemp("realip-rec"),
        (echo, echo2),
        ws_echo,
        "--trusted-ips",
        "127.0.0.1,10.0.0.0/8",
        "--real-ip-header",
        "X-Forwarded-For",
        "--real-ip-recursive",
        "on",
    )
    yield gw
    assert gw.stop() == 0


def sent_up(gateway: Gateway, headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    r = httpx.get(gateway.url("/echo/x"), headers=headers)
    assert r.status_code == 200
    return echoed_headers(r.json())


def test_recursive_takes_the_rightmost_untrusted_address(recursive: Gateway) -> None:
    h = sent_up(recursive, [("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.2, 10.1.1.1")])
    assert h["x-real-ip"] == ["203.0.113.7"]
    # X-Forwarded-For goes up as received plus the connecting peer ($realip_remote_addr).
    assert h["x-forwarded-for"] == ["198.51.100.1, 203.0.113.7, 10.0.0.2, 10.1.1.1, 127.0.0.1"]


def test_recursive_walks_into_earlier_headers(recursive: Gateway) -> None:
    h = sent_up(
        recursive, [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "10.0.0.2, 10.0.0.3")]
    )
    assert h["x-real-ip"] == ["203.0.113.9"]


def test_all_trusted_takes_the_leftmost_and_junk_stops_the_walk(recursive: Gateway) -> None:
    assert sent_up(recursive, [("X-Forwarded-For", "10.0.0.5, 10.0.0.6")])["x-real-ip"] == [
        "10.0.0.5"
    ]
    assert sent_up(recursive, [("X-Forwarded-For", "bogus, 10.0.0.6")])["x-real-ip"] == ["10.0.0.6"]


def test_x_real_ip_is_not_the_source_when_another_header_is(recursive: Gateway) -> None:
    h = sent_up(recursive, [("X-Real-IP", "203.0.113.50")])
    assert h["x-real-ip"] == ["127.0.0.1"]  # no X-Forwarded-For: the peer


def test_ip_restriction_sees_the_real_client(recursive: Gateway) -> None:
    denied = httpx.get(
        recursive.url("/guarded"), headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.2"}
    )
    assert denied.status_code == 403
    assert denied.json()["message"] == "IP address not allowed: 203.0.113.7"
    allowed = httpx.get(
        recursive.url("/guarded"), headers={"X-Forwarded-For": "203.0.113.8, 10.0.0.2"}
    )
    assert allowed.status_code == 200


def test_hash_on_ip_hashes_the_real_client(recursive: Gateway) -> None:
    # Kong's balancer hashes $remote_addr: behind one load balancer, clients still spread.
    def target(client: str) -> str:
        r = httpx.get(recursive.url("/hashed/named"), headers={"X-Forwarded-For": client})
        assert r.status_code == 200
        return r.headers["server"]

    seen = {f"198.51.100.{i}": target(f"198.51.100.{i}, 10.0.0.2") for i in range(1, 25)}
    assert set(seen.values()) == {"echo-1", "echo-2"}
    for client, name in list(seen.items())[:6]:
        assert target(client) == name  # the same client, the same target


def test_websocket_handshakes_use_the_real_client(recursive: Gateway, ws_echo: WsEcho) -> None:
    async def scenario() -> tuple[int, int]:
        denied = await WsClient().connect(
            recursive.port, "/ws/x", "X-Forwarded-For: 203.0.113.7, 10.0.0.2\r\n"
        )
        ok = await WsClient().connect(
            recursive.port, "/ws/x", "X-Forwarded-For: 203.0.113.8, 10.0.0.2\r\n"
        )
        await ok.close()
        return denied.status, ok.status

    before = len(ws_echo.handshakes)
    assert asyncio.run(scenario()) == (403, 101)
    assert len(ws_echo.handshakes) == before + 1
    assert ws_echo.handshakes[-1]["x-real-ip"] == "203.0.113.8"


def test_non_recursive_takes_the_last_address(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, echo2: Echo, ws_echo: WsEcho
) -> None:
    gw = _gateway(
        tmp_path_factory.mktemp("realip-last"),
        (echo, echo2),
        ws_echo,
        "--trusted-ips",
        "127.0.0.1",
        "--real-ip-header",
        "X-Forwarded-For",
    )
    try:
        h = sent_up(gw, [("X-Forwarded-For", "203.0.113.7, 10.0.0.2")])
        assert h["x-real-ip"] == ["10.0.0.2"]
    finally:
        assert gw.stop() == 0


def test_untrusted_peers_headers_never_name_the_client(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    echo2: Echo,
    ws_echo: WsEcho,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kong's environment names; the peer (127.0.0.1) is not in trusted_ips.
    monkeypatch.setenv("KONG_TRUSTED_IPS", "10.0.0.0/8")
    monkeypatch.setenv("KONG_REAL_IP_HEADER", "X-Forwarded-For")
    monkeypatch.setenv("KONG_REAL_IP_RECURSIVE", "on")
    gw = _gateway(tmp_path_factory.mktemp("realip-untrusted"), (echo, echo2), ws_echo)
    try:
        h = sent_up(gw, [("X-Forwarded-For", "203.0.113.7")])
        assert h["x-real-ip"] == ["127.0.0.1"]
        assert httpx.get(gw.url("/"), timeout=5).status_code == 404
        root = httpx.get(f"http://127.0.0.1:{gw.admin_port}/").json()["configuration"]
        assert root["real_ip_header"] == "X-Forwarded-For"
        assert root["real_ip_recursive"] == "on"
        assert root["trusted_ips"] == ["10.0.0.0/8"]
    finally:
        assert gw.stop() == 0
