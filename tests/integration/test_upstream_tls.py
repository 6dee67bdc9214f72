"""HTTPS upstreams: the TLS server name and the Host header Kong sends, and ``tls_verify``.

Kong names the TLS server by the Host header it sends upstream (nginx ``proxy_ssl_name
$upstream_host``, port cut off): the target's name, the upstream's ``host_header``, or the
client's Host under ``preserve_host``; that Host carries the port unless it is the scheme's
default (``set_host_header``). Kept-alive connections are not shared between server names.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, JsonPeer
from tests.integration.test_listeners import self_signed

pytestmark = pytest.mark.integration


class TlsPeer(JsonPeer):
    """An HTTPS server on loopback answering each request with its Host and the connection's
    SNI as JSON; it also counts the TLS connections by server name."""

    def __init__(self, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.sni_callback = self._on_sni
        super().__init__(ssl=context)
        self.names: list[str | None] = []
        self.by_object: dict[int, str | None] = {}

    def _on_sni(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        self.names.append(name)
        self.by_object[id(sock)] = name

    def respond(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> tuple[Any, bytes]:
        sni = self.by_object.get(id(writer.get_extra_info("ssl_object")))
        return {"host": headers.get("host", ""), "sni": sni}, b""


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # A certificate for "localhost" only (tests/integration/test_listeners.py).
    return self_signed(tmp_path_factory.mktemp("upstream-tls"))


@pytest.fixture(scope="module")
def peer(cert: tuple[Path, Path]) -> Iterator[TlsPeer]:
    server = TlsPeer(*cert).start()
    yield server
    server.stop()


CONFIG = """
_format_version: "3.0"
services:
- name: by-ip
  url: https://127.0.0.1:{port}
  tls_verify: false
  routes: [{{name: by-ip, paths: ["/by-ip"]}}]
- name: named
  host: named.internal
  protocol: https
  port: 443
  tls_verify: true
  routes:
  - {{name: named, paths: ["/named"]}}
  - {{name: preserved, paths: ["/preserved"], preserve_host: true}}
- name: wrong-name
  host: wrong.internal
  protocol: https
  port: 443
  tls_verify: true
  routes: [{{name: wrong-name, paths: ["/wrong-name"]}}]
upstreams:
- name: named.internal
  host_header: localhost
  targets: [{{target: "127.0.0.1:{port}"}}]
- name: wrong.internal
  host_header: not-localhost.test
  targets: [{{target: "127.0.0.1:{port}"}}]
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, peer: TlsPeer, cert: tuple[Path, Path]
) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gw"), CONFIG.format(port=peer.port))
    # The gateway trusts the peer's self-signed certificate, as Kong would be told to.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", f"system,{cert[0]}")
        gw.start()
    yield gw
    gw.stop()


def test_verification_uses_only_the_trusted_roots_setting(
    tmp_path: Path, peer: TlsPeer, cert: tuple[Path, Path]
) -> None:
    """Without the peer's CA in ``lua_ssl_trusted_certificate`` (the system's roots alone, as by
    default) a verified service is Kong's 502; listed alone, the CA is enough."""
    (tmp_path / "a").mkdir()
    untrusting = Gateway(tmp_path / "a", CONFIG.format(port=peer.port))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", raising=False)
        untrusting.start()
    try:
        assert httpx.get(untrusting.url("/named/x")).status_code == 502
        assert httpx.get(untrusting.url("/by-ip/x")).status_code == 200  # tls_verify: false
    finally:
        untrusting.stop()
    (tmp_path / "b").mkdir()
    only_ca = Gateway(tmp_path / "b", CONFIG.format(port=peer.port))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", str(cert[0]))
        only_ca.start()
    try:
        assert httpx.get(only_ca.url("/named/x")).status_code == 200
    finally:
        only_ca.stop()


def test_ip_upstream_sends_no_server_name(gateway: Gateway, peer: TlsPeer) -> None:
    r = httpx.get(gateway.url("/by-ip/x"))
    assert r.status_code == 200, r.text
    assert r.json() == {"host": f"127.0.0.1:{peer.port}", "sni": None}


def test_host_header_names_the_tls_server_and_keeps_the_port(
    gateway: Gateway, peer: TlsPeer
) -> None:
    r = httpx.get(gateway.url("/named/x"))
    assert r.status_code == 200, r.text  # verified: the certificate names "localhost"
    assert r.json() == {"host": f"localhost:{peer.port}", "sni": "localhost"}


def test_preserved_host_names_the_tls_server(gateway: Gateway, peer: TlsPeer) -> None:
    r = httpx.get(gateway.url("/preserved/x"), headers={"Host": "localhost:9999"})
    assert r.status_code == 200, r.text
    assert r.json() == {"host": "localhost:9999", "sni": "localhost"}
    # Another name on the same route and target gets its own connection, not localhost's,
    # and the certificate does not name it.
    before = len(peer.names)
    r = httpx.get(gateway.url("/preserved/x"), headers={"Host": "elsewhere.test"})
    assert r.status_code == 502
    assert set(peer.names[before:]) == {"elsewhere.test"}  # each try (retries) a new handshake


def test_tls_verify_checks_the_name_sent(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/wrong-name/x"))
    assert r.status_code == 502
