"""The edge, end to end: ``ssl`` proxy listeners whose TLS fastkong terminates (every
certificate of the config served by SNI, as Kong's ``find_certificate``) and ``proxy_protocol``
proxy listeners (the client's address from a trusted peer's PROXY header, as nginx's realip
with ``real_ip_header proxy_protocol``), relayed to Granian with what the request path needs.

The client speaks from 127.0.0.2 (in ``trusted_ips``) or 127.0.0.1 (not trusted)."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from fastkong.stream.proxy_protocol import encode_v1, encode_v2
from tests.helpers import Echo, Gateway, echoed_headers, eventually, free_port, pem_block
from tests.pki import Pki

pytestmark = pytest.mark.integration

TRUSTED = "127.0.0.2"
CLIENT = ("203.0.113.7", 40001)  # inside the guarded route's allow list
OTHER = ("198.51.100.9", 40002)  # outside it


def certificate_entry(cert: str, key: str, names: list[str]) -> str:
    snis = ", ".join(f'{{name: "{n}"}}' for n in names)
    return f"- cert: {pem_block(cert, 4)}  key: {pem_block(key, 4)}  snis: [{snis}]\n"


class Node:
    def __init__(self, tmp: Path, echo: Echo) -> None:
        self.pki = Pki("edge test CA")
        self.a = self.pki.issue("a.test", dns="a.test")
        self.b = self.pki.issue("b.test", dns="b.test")
        self.c = self.pki.issue("c.test", dns="c.test")
        self.echo = echo
        self.plain, self.tls, self.pp, self.pp_tls = (free_port() for _ in range(4))
        self.gateway = Gateway(
            tmp,
            self.config(),
            1,
            "--proxy-listen",
            f"127.0.0.1:{self.plain}, 127.0.0.1:{self.tls} ssl http2, "
            f"127.0.0.1:{self.pp} proxy_protocol, 127.0.0.1:{self.pp_tls} ssl proxy_protocol",
            "--trusted-ips",
            f"{TRUSTED}/32",
            "--real-ip-header",
            "proxy_protocol",
        )
        self.gateway.port = self.plain

    def config(self, more_certificates: str = "") -> str:
        return f"""_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{self.echo.port}
  routes:
  - name: echo
    paths: [/echo]
  - name: by-sni
    paths: [/sni]
    protocols: [https]
    snis: [b.test]
  - name: guarded
    paths: [/guarded]
    plugins:
    - name: ip-restriction
      config: {{allow: [203.0.113.0/24]}}
certificates:
{certificate_entry(*self.a, ["a.test"])}{certificate_entry(*self.b, ["b.test", "*.b.test"])}\
{more_certificates}"""

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.pki.pem)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("edge"), echo)
    n.gateway.start()
    for port in (n.tls, n.pp, n.pp_tls):
        eventually(lambda p=port: _listening(p))
    yield n
    assert n.gateway.stop() == 0


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def served_subject(port: int, sni: str | None, header: bytes = b"", bind: str = "") -> str:
    """The common name of the certificate the listener presents for ``sni`` (unverified)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), 10, (bind, 0) if bind else None) as raw:
        raw.sendall(header)
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def exchange(sock: socket.socket, path: str, host: str = "gw.test") -> tuple[int, Any]:
    """One HTTP/1.1 request on ``sock``; its status and JSON body (None if not JSON)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def proxied(
    port: int, header: bytes, path: str, bind: str, ctx: ssl.SSLContext | None = None
) -> tuple[int, Any]:
    """``header`` then a request, from ``bind``; over TLS (SNI b.test) when ``ctx`` is given."""
    with socket.create_connection(("127.0.0.1", port), 10, (bind, 0)) as raw:
        raw.sendall(header)
        if ctx is None:
            return exchange(raw, path)
        with ctx.wrap_socket(raw, server_hostname="b.test") as tls:
            return exchange(tls, path, "b.test")


def test_each_sni_is_served_its_certificate(node: Node) -> None:
    assert served_subject(node.tls, "a.test") == "a.test"
    assert served_subject(node.tls, "b.test") == "b.test"
    assert served_subject(node.tls, "x.b.test") == "b.test"  # the *.b.test sni
    # No certificate names it, or no SNI at all: the node's default (Kong's generated one).
    assert served_subject(node.tls, "other.test") == "localhost"
    assert served_subject(node.tls, None) == "localhost"


def test_a_verifying_client_gets_a_valid_chain_and_http2(node: Node) -> None:
    ctx = ssl.create_default_context(cadata=node.pki.pem)
    with httpx.Client(verify=ctx, http2=True) as client:
        r = client.get(
            f"https://127.0.0.1:{node.tls}/echo/x?q=1",
            headers={"host": "a.test"},
            extensions={"sni_hostname": "a.test"},
        )
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"  # ALPN h2 on the http2 listener, relayed to Granian
    seen = echoed_headers(r.json())
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-port"] == [str(node.tls)]  # the public port, not the relay's
    assert seen["x-real-ip"] == ["127.0.0.1"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert r.json()["url"] == "/x?q=1"


def test_routes_match_the_clients_sni_not_its_host(node: Node) -> None:
    ctx = node.client_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # without an SNI the default certificate comes
    cases = (("b.test", "a.test", 200), ("a.test", "b.test", 404), (None, "b.test", 404))
    for sni, host, expected in cases:
        with socket.create_connection(("127.0.0.1", node.tls), 10) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                status, body = exchange(tls, "/sni/x", host)
        assert status == expected, (sni, host)
        if status == 404:
            assert body["message"] == "no Route matched with those values"


def test_an_https_only_route_stays_426_on_the_plain_listener(node: Node) -> None:
    r = httpx.get(f"http://127.0.0.1:{node.plain}/sni/x", headers={"host": "b.test"})
    assert r.status_code == 426


def test_a_trusted_peers_proxy_header_names_the_client(node: Node) -> None:
    for header in (
        encode_v1(CLIENT, ("127.0.0.1", node.pp)),
        encode_v2(CLIENT, ("127.0.0.1", node.pp)),
    ):
        status, body = proxied(node.pp, header, "/echo/a", TRUSTED)
        assert status == 200
        seen = echoed_headers(body)
        assert seen["x-real-ip"] == [CLIENT[0]]
        assert seen["x-forwarded-for"] == [CLIENT[0]]
        assert seen["x-forwarded-proto"] == ["http"]
        assert seen["x-forwarded-port"] == [str(node.pp)]
    assert proxied(node.pp, encode_v1(CLIENT, ("127.0.0.1", 1)), "/guarded", TRUSTED)[0] == 200
    assert proxied(node.pp, encode_v1(OTHER, ("127.0.0.1", 1)), "/guarded", TRUSTED)[0] == 403


def test_an_untrusted_peers_proxy_header_is_not_believed(node: Node) -> None:
    status, body = proxied(node.pp, encode_v1(CLIENT, ("127.0.0.1", 1)), "/echo/b", "127.0.0.1")
    assert status == 200
    assert echoed_headers(body)["x-real-ip"] == ["127.0.0.1"]
    assert proxied(node.pp, encode_v1(CLIENT, ("127.0.0.1", 1)), "/guarded", "127.0.0.1")[0] == 403


def test_a_local_header_keeps_the_peer(node: Node) -> None:
    status, body = proxied(node.pp, encode_v2(None, None), "/echo/c", TRUSTED)
    assert status == 200
    assert echoed_headers(body)["x-real-ip"] == [TRUSTED]


def test_a_connection_without_a_header_is_closed_unanswered(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.pp), 10) as sock:
        sock.sendall(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536) == b""


def test_proxy_protocol_then_tls(node: Node) -> None:
    header = encode_v1(CLIENT, ("127.0.0.1", node.pp_tls))
    status, body = proxied(node.pp_tls, header, "/echo/d", TRUSTED, node.client_context())
    assert status == 200
    seen = echoed_headers(body)
    assert seen["x-real-ip"] == [CLIENT[0]]
    assert seen["x-forwarded-proto"] == ["https"]
    assert served_subject(node.pp_tls, "b.test", header, TRUSTED) == "b.test"
    # The SNI routes on this listener too.
    assert proxied(node.pp_tls, header, "/sni/y", TRUSTED, node.client_context())[0] == 200


def test_a_posted_certificate_is_served_without_a_restart(node: Node) -> None:
    """What a Kubernetes Ingress's new TLS Secret becomes: a config with one more certificate,
    served by name at once, no process replaced."""
    assert served_subject(node.tls, "c.test") == "localhost"
    before = set(node.gateway.worker_pids())
    posted = httpx.post(
        f"http://127.0.0.1:{node.gateway.admin_port}/config",
        content=node.config(certificate_entry(*node.c, ["c.test"])),
        headers={"content-type": "text/yaml"},
    )
    assert posted.status_code == 201, posted.text
    eventually(lambda: served_subject(node.tls, "c.test") == "c.test")
    assert served_subject(node.tls, "a.test") == "a.test"
    assert set(node.gateway.worker_pids()) == before


def test_plain_http_on_an_ssl_port_gets_nginx_s_400(node: Node) -> None:
    """Kong's nginx answers a plain request on an ``ssl`` port with its 497 page (a 400), then
    closes; on a ``proxy_protocol`` ``ssl`` port the header comes first."""
    for port, header in ((node.tls, b""), (node.pp_tls, encode_v1(CLIENT, ("127.0.0.1", 1)))):
        with socket.create_connection(("127.0.0.1", port), 10, (TRUSTED, 0)) as sock:
            sock.sendall(header + b"GET /echo/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"\r\nConnection: close" in head
        assert b"The plain HTTP request was sent to HTTPS port" in body
    # Bytes that are neither TLS nor HTTP: closed unanswered.
    with socket.create_connection(("127.0.0.1", node.tls), 10) as sock:
        sock.sendall(b"\x00garbage\r\n\r\n")
        assert sock.recv(65536) == b""
