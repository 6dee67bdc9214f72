"""Kong's ``spec/02-integration/05-proxy/06-ssl_spec.lua``, the ``traditional_compatible`` run,
against real gateways and real loopback upstreams.

Ported, one gateway for the first three blocks and one for the fourth:

* "SSL" (lines 37-571): ``proxy ssl verify`` (270-298), ``global SSL`` (300-311),
  ``handshake`` with the wildcard SNIs (313-358; "prefix second" asks what "matches
  *.wildcard.com (prefix)" asks, one case here), ``SSL termination`` with the redirects and the
  trusted/untrusted ``X-Forwarded-Proto`` blocks (360-511), ``proxy_ssl_name`` (513-570);
* "TLS proxy" (573-668): ``tls`` stream routes on an ``ssl`` ``stream_listen`` relayed to the
  plain proxy listener, one of their ``snis`` written as a FQDN (issue 7550);
* "SSL" with the catch-all ``*`` SNI (670-722);
* "kong.runloop.certificate invalid SNI" (724-790): the observable part, the handshake served
  with the default certificate and nothing logged about it.

Adapted, same observable behaviour:

* Kong's three ``helpers.restart_kong`` calls only change ``trusted_ips`` (unset, ``127.0.0.1``,
  ``1.2.3.4``): one gateway trusts ``127.0.0.1`` and the "untrusted" clients speak from
  ``127.0.0.2``; the ``proxy_ssl_name`` restart only drops ``nginx_http_proxy_ssl_verify``.
* ``nginx_http_proxy_ssl_verify = on`` with ``nginx_http_proxy_ssl_trusted_certificate``
  (nginx directives fastkong has none of) is its per-service equivalent, ``tls_verify: true`` on
  the two services those tests reach, with ``lua_ssl_trusted_certificate`` naming the CA (the
  ``kong_spec.crt`` analog) that signed the loopback "mock_upstream_ssl".
* Kong's ``dns_mock`` for ``example2.com`` and ``mock_upstream_hostname`` (``localhost``) are
  upstream entities of those names with a ``host_header`` (so the TLS name sent and checked is the
  name, as with Kong's resolved host) and one loopback target.
* Kong's ``spec/fixtures/ssl.lua`` certificates are generated ones with the same common names
  (``ssl-example.com``, ``ssl-alt.com``, ``ssl-alt-alt.com``, RSA with an ECDSA ``cert_alt``
  where Kong's have one); ``get_cert`` runs ``openssl s_client`` as Kong's does.

Left out:

* the ``assert.logfile()`` lines (Kong's error.log wording: "upstream SSL certificate verify
  error ..." and the debug "invalid SNI '...', ..." lines): log text of Kong's own, fastkong
  logs in its own words and at ``warn`` by default; the responses and handshakes are asserted.
* the ``traditional`` and ``expressions`` flavor runs (this port is ``traditional_compatible``).

Related coverage elsewhere: the 426 body and ``Upgrade`` header for every non-``https``
``X-Forwarded-Proto`` (``test_https_only.py``), ``snis`` routes matched by the SNI and not the
Host (``test_edge.py``), the server name sent to TLS upstreams (``test_upstream_tls.py``).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.helpers import (
    Echo,
    Gateway,
    HeadPeer,
    JsonPeer,
    free_port,
    pem_block,
    tls_server_context,
    wait_port,
)
from tests.pki import Pki

pytestmark = pytest.mark.integration

UNTRUSTED_CLIENT = "127.0.0.2"  # the gateway trusts 127.0.0.1 only


class SniPeer(JsonPeer):
    """Kong's ``mock_upstream_ssl``: an HTTPS upstream answering every request with the TLS
    server name it was sent (``vars.ssl_server_name``, "no SNI" when none) and the Host."""

    def __init__(self, cert: str, key: str, tmp: Path) -> None:
        context = tls_server_context(cert, key, tmp)
        context.sni_callback = self._on_sni
        super().__init__(ssl=context)
        self.by_object: dict[int, str | None] = {}

    def _on_sni(self, sock: Any, name: str | None, _: Any) -> None:
        self.by_object[id(sock)] = name

    def respond(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> tuple[Any, bytes]:
        sni = self.by_object.get(id(writer.get_extra_info("ssl_object")))
        return {"vars": {"ssl_server_name": sni or "no SNI"}, "host": headers.get("host")}, b""


class ItWorks(HeadPeer):
    """The spec's ``test_upstream_tls_server``: ``location = / { echo 'it works'; }``."""

    def answer(self, head: bytes, writer: asyncio.StreamWriter) -> bytes:
        return b"it works\n"


def certificate(cert: str, key: str, snis: list[str], alt: tuple[str, str] | None = None) -> str:
    """One ``certificates`` entry of a kong.yml (``cert_alt``/``key_alt`` when ``alt``)."""
    text = f"- cert: {pem_block(cert, 4)}  key: {pem_block(key, 4)}"
    if alt is not None:
        text += f"  cert_alt: {pem_block(alt[0], 4)}  key_alt: {pem_block(alt[1], 4)}"
    names = ", ".join(f'{{name: "{n}"}}' for n in snis)
    return text + f"  snis: [{names}]\n"


@dataclass
class Certs:
    """Kong's ``spec/fixtures/ssl.lua`` pairs, by common name, each with an ECDSA alternative."""

    example: tuple[str, str]
    example_ecdsa: tuple[str, str]
    alt: tuple[str, str]
    alt_alt: tuple[str, str]
    alt_alt_ecdsa: tuple[str, str]

    @classmethod
    def make(cls) -> Certs:
        pki = Pki("Kong fixtures analog CA")
        return cls(
            pki.issue("ssl-example.com", rsa_key=True),
            pki.issue("ssl-example.com"),
            pki.issue("ssl-alt.com", rsa_key=True),
            pki.issue("ssl-alt-alt.com", rsa_key=True),
            pki.issue("ssl-alt-alt.com"),
        )


@pytest.fixture(scope="module")
def certs() -> Certs:
    return Certs.make()


@dataclass
class Node:
    gateway: Gateway
    ssl_port: int
    stream_port: int
    peer: SniPeer
    stderr: Path

    def https(self, client: httpx.Client, host: str, path: str = "/") -> httpx.Response:
        """Kong's ``proxy_ssl_client`` (no SNI: an IP address) with a Host header."""
        return client.get(f"https://127.0.0.1:{self.ssl_port}{path}", headers={"host": host})


def main_config(echo: Echo, peer: SniPeer, example2: int, proxy: int, certs: Certs) -> str:
    return f"""_format_version: "3.0"
upstreams:
- name: example2.com
  host_header: example2.com
  targets: [{{target: "127.0.0.1:{example2}"}}]
- name: localhost
  host_header: localhost
  targets: [{{target: "127.0.0.1:{peer.port}"}}]
services:
- name: global-cert
  url: http://127.0.0.1:{echo.port}
  routes:
  - {{protocols: [https], hosts: [global.com]}}
- name: api-1
  url: http://127.0.0.1:{echo.port}
  routes:
  - {{protocols: [https], hosts: [example.com, ssl1.com]}}
  - {{protocols: [https], hosts: [sni.example.com], snis: [sni.example.com]}}
- name: api-3
  url: https://localhost:443
  routes:
  - {{protocols: [https], hosts: [ssl3.com], preserve_host: true}}
- name: api-4
  url: https://localhost:443
  routes:
  - {{protocols: [https], hosts: [no-sni.com], preserve_host: false}}
- name: api-5
  url: https://127.0.0.1:{peer.port}
  routes:
  - {{protocols: [https], hosts: [nil-sni.com], preserve_host: false}}
- name: service-7
  url: https://localhost:443
  routes:
  - {{protocols: [https], hosts: [example.com], paths: [/redirect-301],
      https_redirect_status_code: 301, preserve_host: false}}
- name: service-8
  url: https://localhost:443
  tls_verify: true
  routes:
  - {{protocols: [https], hosts: [example.com], paths: [/redirect-302],
      https_redirect_status_code: 302, preserve_host: false}}
  - {{protocols: [http], hosts: [example-clear.com], paths: [/]}}
- name: service-example2
  url: https://example2.com:443
  tls_verify: true
  routes:
  - {{protocols: [http], hosts: [example2.com], paths: [/]}}
- name: svc-http
  protocol: tcp
  host: 127.0.0.1
  port: {proxy}
  routes:
  - {{protocols: [tls], snis: [example.com]}}
  - {{protocols: [tls], snis: [foobar.example.com.]}}
certificates:
{certificate(*certs.example, ["example.com", "ssl1.com"], certs.example_ecdsa)}\
{certificate(*certs.alt, ["*.wildcard.com", "wildcard.*"])}\
{
        certificate(
            *certs.alt_alt,
            ["wildcard.org", "test.wildcard.*", "*.www.wildcard.com"],
            certs.alt_alt_ecdsa,
        )
    }"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo, certs: Certs) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("kong-ssl")
    trusted = Pki("kong_spec.crt analog CA")
    (tmp / "peer").mkdir()
    peer = SniPeer(*trusted.issue("localhost", dns="localhost"), tmp / "peer").start()
    # example2.com's certificate, from a CA the gateway is not told to trust
    (tmp / "example2").mkdir()
    untrusted = Pki("Kong Testing Root CA analog")
    context = tls_server_context(
        *untrusted.issue("example2.com", dns="example2.com"), tmp / "example2"
    )
    example2 = ItWorks(ssl=context).start()
    (tmp / "trusted.crt").write_text(trusted.pem)
    ssl_port, stream_port = free_port(), free_port()
    gw = Gateway(tmp, None)
    gw.config_path.write_text(main_config(echo, peer, example2.port, gw.port, certs))
    gw.has_config = True
    gw.ssl_port = ssl_port
    gw.extra = ("--trusted-ips", "127.0.0.1", "--stream-listen", f"127.0.0.1:{stream_port} ssl")
    gw.stderr_path = tmp / "stderr.log"
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", str(tmp / "trusted.crt"))
            gw.start()
        wait_port(stream_port, proc=gw.proc)
        yield Node(gw, ssl_port, stream_port, peer, gw.stderr_path)
    finally:
        gw.stop()
        peer.stop()
        example2.stop()


def get_cert(port: int, server_name: str) -> str:
    """Kong's ``get_cert``: ``openssl s_client -servername`` on the port; the served
    certificate's common name."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name],
        input=b"GET /\n",
        capture_output=True,
        timeout=30,
    )
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", done.stdout, re.S)
    assert pem is not None, done.stdout + done.stderr
    cert = x509.load_pem_x509_certificate(pem.group())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture
def https_client() -> Iterator[httpx.Client]:
    with httpx.Client(verify=False, timeout=30) as client:
        yield client


# --- proxy ssl verify (spec lines 270-298) -----------------------------------------------------


def test_prevents_requests_to_upstream_without_a_trusted_certificate(node: Node) -> None:
    r = httpx.get(node.gateway.url("/"), headers={"host": "example2.com"}, timeout=30)
    assert r.status_code == 502
    assert "An invalid response was received from the upstream server" in r.text


def test_trusted_certificate_request_goes_through(node: Node) -> None:
    r = httpx.get(node.gateway.url("/"), headers={"host": "example-clear.com"}, timeout=30)
    assert r.status_code == 200
    assert r.json()["vars"]["ssl_server_name"] == "localhost"


# --- global SSL (300-311) ----------------------------------------------------------------------


def test_falls_back_on_the_default_certificate_without_sni(
    node: Node, https_client: httpx.Client
) -> None:
    assert node.https(https_client, "global.com", "/status/200").status_code == 200


# --- handshake (313-358) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server_name", "common_name"),
    [
        ("test.com", "localhost"),  # no SNI match: the default (fallback) certificate
        ("ssl1.com", "ssl-example.com"),
        ("example.com", "ssl-example.com"),
        ("test.wildcard.com", "ssl-alt.com"),  # *.wildcard.com (prefix)
        ("wildcard.eu", "ssl-alt.com"),  # wildcard.* (suffix)
        ("wildcard.org", "ssl-alt-alt.com"),  # exact first
        ("test.wildcard.org", "ssl-alt-alt.com"),  # suffix third (test.wildcard.*)
        ("test.www.wildcard.com", "ssl-alt-alt.com"),  # *.www.wildcard.com
    ],
)
def test_handshake_certificate_by_sni(node: Node, server_name: str, common_name: str) -> None:
    assert get_cert(node.ssl_port, server_name) == common_name


# --- SSL termination (360-511) -----------------------------------------------------------------


@pytest.mark.parametrize("host", ["example.com", "sni.example.com"])  # sni.example.com: #6425
def test_blocks_plain_http_on_an_https_only_route(node: Node, host: str) -> None:
    r = httpx.get(node.gateway.url("/"), headers={"host": host})
    assert r.status_code == 426
    assert "Please use HTTPS protocol" in r.json()["message"]
    assert "Upgrade" in [v.strip() for v in r.headers["connection"].split(",")]
    assert r.headers["upgrade"] == "TLS/1.2, HTTP/1.1"


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        ("/redirect-301", 301, "https://example.com/redirect-301"),
        ("/redirect-302?foo=bar", 302, "https://example.com/redirect-302?foo=bar"),
    ],
)
def test_https_redirect_status_code(node: Node, path: str, status: int, location: str) -> None:
    r = httpx.get(node.gateway.url(path), headers={"host": "example.com"})
    assert r.status_code == status
    assert r.headers["location"] == location


@pytest.mark.parametrize(
    ("client_ip", "host", "proto", "status"),
    [
        # "from not trusted_ip" and "blocks with https x-forwarded-proto from untrusted client"
        (UNTRUSTED_CLIENT, "ssl1.com", "https", 426),
        (UNTRUSTED_CLIENT, "example.com", "https", 426),
        # "from trusted_ip"
        ("127.0.0.1", "example.com", "https", 200),
        ("127.0.0.1", "example.com", "httpsa", 426),
    ],
)
def test_x_forwarded_proto_is_believed_from_trusted_ips_only(
    node: Node, client_ip: str, host: str, proto: str, status: int
) -> None:
    transport = httpx.HTTPTransport(local_address=client_ip)
    with httpx.Client(transport=transport, timeout=30) as client:
        r = client.get(
            node.gateway.url("/status/200"), headers={"host": host, "x-forwarded-proto": proto}
        )
    assert r.status_code == status


# --- proxy_ssl_name (513-570) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "server_name"),
    [
        ("ssl3.com", "ssl3.com"),  # preserve_host = true
        ("no-sni.com", "localhost"),  # preserve_host = false
        ("nil-sni.com", "no SNI"),  # preserve_host = false, IP-based upstream
    ],
)
def test_upstream_sni_with_preserve_host(
    node: Node, https_client: httpx.Client, host: str, server_name: str
) -> None:
    r = node.https(https_client, host)
    assert r.status_code == 200
    assert r.json()["vars"]["ssl_server_name"] == server_name


# --- TLS proxy (573-668) -----------------------------------------------------------------------


@pytest.mark.parametrize("server_name", ["example.com", "foobar.example.com"])
def test_tls_stream_route_relays_to_the_proxy(node: Node, server_name: str) -> None:
    """``foobar.example.com`` reaches the route whose ``snis`` name it as a FQDN
    (``foobar.example.com.``, regression for issue 7550)."""
    with httpx.Client(verify=False, timeout=30) as client:
        r = client.get(
            f"https://127.0.0.1:{node.stream_port}/",
            extensions={"sni_hostname": server_name},
        )
    assert r.status_code == 404  # the plain proxy listener: no route for this request
    if server_name == "example.com":
        # this fails if the "example.com" SNI wasn't in the config
        assert get_cert(node.ssl_port, "example.com") == "ssl-example.com"


# --- kong.runloop.certificate invalid SNI (724-790) --------------------------------------------


@pytest.mark.parametrize(
    "server_name",
    [
        "a.example.com",  # a normal SNI
        "a.example.com:600",  # must not have a port
        "a.example.com:88888",  # must not have a port (invalid port)
        "127.0.0.1",  # must not be an IP
        "127.0.0.1:443",  # must not be an IP (with port)
        "256.256.256.256",  # invalid value
        "*.exam*le.com",  # only one wildcard must be specified
        "a.exam*le.com",  # wildcard must be leftmost or rightmost character
    ],
)
def test_an_invalid_sni_gets_the_default_certificate(node: Node, server_name: str) -> None:
    """Kong's ``find_certificate`` (``kong/runloop/certificate.lua`` lines 298-331): an SNI no
    ``snis`` name may be is looked up, found nowhere, and served the default certificate,
    logging no error."""
    before = node.stderr.read_text(errors="replace")
    assert get_cert(node.ssl_port, server_name) == "localhost"
    added = node.stderr.read_text(errors="replace")[len(before) :]
    assert server_name not in added and "Traceback" not in added, added


# --- SSL with the catch-all '*' SNI (670-722) --------------------------------------------------


def test_sets_the_default_certificate_of_the_catch_all_sni(
    tmp_path: Path, echo: Echo, certs: Certs
) -> None:
    config = f"""_format_version: "3.0"
services:
- name: default-cert
  url: http://127.0.0.1:{echo.port}
  routes:
  - {{protocols: [https], hosts: [example.com]}}
certificates:
{certificate(*certs.example, ["*"], certs.example_ecdsa)}"""
    gw = Gateway(tmp_path, config)
    gw.ssl_port = free_port()
    try:
        gw.start()
        assert get_cert(gw.ssl_port, "example.com") == "ssl-example.com"
    finally:
        gw.stop()
