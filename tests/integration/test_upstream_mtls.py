"""Mutual TLS and private CAs towards ``https`` services: Kong's ``client_certificate`` (the
service's, else its upstream's, also on active health probes), ``ca_certificates`` and
``tls_verify`` (``kong/runloop/upstream_ssl.lua``), against a real TLS peer on loopback that
requires a client certificate from its own CA."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Gateway, HeadPeer, eventually
from tests.pki import Pki

pytestmark = pytest.mark.integration


class MtlsPeer(HeadPeer):
    """HTTPS for "localhost", requiring a client certificate from ``pki``; answers every request
    with the client certificate's common name, and counts handshakes and requests."""

    content_type = b"application/json"

    def __init__(self, pki: Pki, workdir: Path) -> None:
        cert, key = pki.issue("localhost", dns="localhost")
        (workdir / "server.pem").write_text(cert)
        (workdir / "server.key").write_text(key)
        (workdir / "ca.pem").write_text(pki.pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(workdir / "server.pem", workdir / "server.key")
        context.load_verify_locations(workdir / "ca.pem")
        context.verify_mode = ssl.CERT_REQUIRED
        super().__init__(ssl=context)
        self.requests: list[str] = []

    def answer(self, head: bytes, writer: asyncio.StreamWriter) -> bytes:
        peer = writer.get_extra_info("peercert") or {}
        names = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"]
        self.requests.append(head.split(b" ", 2)[1].decode())
        return json.dumps({"client": names[0] if names else ""}).encode()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("fastkong test CA")


@pytest.fixture(scope="module")
def peer(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtlsPeer]:
    server = MtlsPeer(pki, tmp_path_factory.mktemp("mtls-peer")).start()
    yield server
    server.stop()


CERT_ID = str(uuid.uuid4())
CA_ID = str(uuid.uuid4())
OTHER_CA_ID = str(uuid.uuid4())


def config(pki: Pki, peer: MtlsPeer, client_cn: str = "gateway") -> str:
    cert, key = pki.issue(client_cn)
    url = f"https://localhost:{peer.port}"
    target = f"127.0.0.1:{peer.port}"
    probes = {
        "active": {
            "type": "https",
            "http_path": "/probe",
            "https_verify_certificate": False,
            "healthy": {"interval": 0.2, "successes": 1},
            "unhealthy": {"interval": 0.2, "tcp_failures": 1, "http_failures": 1},
        }
    }
    return json.dumps(
        {
            "_format_version": "3.0",
            "certificates": [{"id": CERT_ID, "cert": cert, "key": key}],
            "ca_certificates": [
                {"id": CA_ID, "cert": pki.pem},
                {"id": OTHER_CA_ID, "cert": Pki("another CA").pem},
            ],
            "services": [
                {
                    "name": "mtls",
                    "url": url,
                    "tls_verify": True,
                    "ca_certificates": [CA_ID],
                    "client_certificate": CERT_ID,
                    "routes": [{"name": "mtls", "paths": ["/mtls"]}],
                },
                {
                    "name": "no-cert",
                    "url": url,
                    "retries": 0,
                    "routes": [{"name": "no-cert", "paths": ["/no-cert"]}],
                },
                {
                    "name": "wrong-ca",
                    "url": url,
                    "retries": 0,
                    "tls_verify": True,
                    "ca_certificates": [OTHER_CA_ID],
                    "client_certificate": CERT_ID,
                    "routes": [{"name": "wrong-ca", "paths": ["/wrong-ca"]}],
                },
                {
                    "name": "ca-without-verify",
                    "url": url,
                    "ca_certificates": [OTHER_CA_ID],
                    "client_certificate": CERT_ID,
                    "routes": [{"name": "ca-without-verify", "paths": ["/ca-without-verify"]}],
                },
                {
                    "name": "by-upstream",
                    "host": "mtls.internal",
                    "protocol": "https",
                    "port": 443,
                    "routes": [{"name": "by-upstream", "paths": ["/by-upstream"]}],
                },
            ],
            "upstreams": [
                {
                    "name": "mtls.internal",
                    "host_header": "localhost",
                    "client_certificate": CERT_ID,
                    "healthchecks": probes,
                    "targets": [{"target": target}],
                },
                {
                    "name": "no-cert.internal",
                    "healthchecks": probes,
                    "targets": [{"target": target}],
                },
            ],
        }
    )


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, peer: MtlsPeer
) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("mtls-gw"), config(pki, peer)).start()
    yield gw
    assert gw.stop() == 0


def test_the_client_certificate_is_presented_and_the_peer_verified(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/mtls/x"))
    assert r.status_code == 200, r.text
    assert r.json() == {"client": "gateway"}


def test_without_a_client_certificate_the_peer_refuses(gateway: Gateway) -> None:
    assert httpx.get(gateway.url("/no-cert/x")).status_code == 502


def test_ca_certificates_replace_the_trusted_roots(gateway: Gateway) -> None:
    # The peer's certificate is from another CA than the one the service trusts.
    assert httpx.get(gateway.url("/wrong-ca/x")).status_code == 502


def test_ca_certificates_without_tls_verify_change_nothing(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/ca-without-verify/x"))
    assert r.status_code == 200 and r.json() == {"client": "gateway"}


def test_the_upstreams_client_certificate_when_the_service_has_none(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/by-upstream/x"))
    assert r.status_code == 200, r.text
    assert r.json() == {"client": "gateway"}


def test_https_probes_present_the_upstreams_client_certificate(
    gateway: Gateway, peer: MtlsPeer
) -> None:
    def health(name: str) -> str:
        url = f"http://127.0.0.1:{gateway.admin_port}/upstreams/{name}/health"
        return str(httpx.get(url).json()["data"][0]["health"])

    eventually(lambda: peer.requests.count("/probe") >= 2)
    eventually(lambda: health("no-cert.internal") == "UNHEALTHY")
    assert health("mtls.internal") == "HEALTHY"


def test_a_rotated_certificate_is_used_at_once(gateway: Gateway, pki: Pki, peer: MtlsPeer) -> None:
    # Same certificate id, new key pair: kept-alive connections made with the old one must not
    # carry the next request.
    assert httpx.get(gateway.url("/mtls/x")).json() == {"client": "gateway"}
    posted = httpx.post(
        f"http://127.0.0.1:{gateway.admin_port}/config",
        content=config(pki, peer, client_cn="rotated"),
        headers={"content-type": "application/json"},
    )
    assert posted.status_code == 201, posted.text
    eventually(lambda: httpx.get(gateway.url("/mtls/x")).json() == {"client": "rotated"})
    assert httpx.get(gateway.url("/by-upstream/x")).json() == {"client": "rotated"}
