"""Kong's ``spec/02-integration/05-proxy/18-upstream_tls_spec.lua``, ported against a real
``fastkong start`` (a plain HTTP proxy listener and three plain stream listeners, the spec's
19000-19002) and two TLS upstreams on loopback standing in for the spec's nginx fixtures.

Ported (the ``traditional_compatible`` run of the first ``describe``, lines 127-1232, for both
``subsystems``, ``http`` and ``stream``: each case is one test parametrized over the two):

- "mutual TLS authentication against upstream with Service object" (lines 322-550): no client
  certificate (the upstream's 400), ``service.client_certificate`` (200 ``it works``), the
  certificate entity rotated under its id (the upstream sees the new one), the field removed.
- "... with Upstream object" (lines 552-786): the same with ``upstream.client_certificate``,
  and the service's certificate taking precedence over the upstream's (an untrusted one).
- "TLS verification options against upstream" (lines 788-1078): ``tls_verify`` off by default
  and on, ``ca_certificates``, the CA entity's content replaced by another CA and back.
- "tls_verify_depth" (lines 1080-1230): fastkong documents ``tls_verify_depth`` as accepted and
  not enforced (docs/upstreams.md, "TLS to the upstream"; ``fastkong/proxy/upstream_tls.py``),
  so depth 0 passes here where Kong answers 502: asserted as documented.
- Second ``describe`` (lines 1238-1427) in part: "turn it off, request is allowed" (line 1363,
  an explicit ``tls_verify: false``).

The spec changes entities through the Admin API between cases (``PATCH /services``,
``/upstreams``, ``/certificates``, ``/ca_certificates``); DB-less, each test here posts the whole
config for the state the spec has reached at that point to ``POST /config`` and waits until
every worker and stream process serves it (Kong's ``wait_for_all_config_update``). The spec's
upstream name ``example.com`` (its DNS mock) is ``localhost`` here, the name the upstreams'
certificate carries (the routes' ``hosts`` stay ``example.com``); its ``mtls_certs`` and
``ssl_fixtures`` certificates come from ``tests/pki.py``. A stream whose upstream handshake fails
is reset in Kong (the spec's ``connection reset by peer``), asserted as such.

The http halves overlap ``tests/integration/test_upstream_mtls.py`` (client certificate, upstream
fallback, rotation, wrong CA), which checks them against a peer that refuses the handshake; here
the peer answers as the spec's nginx does (``ssl_verify_client on``: a 400 page).

Left out:

- the ``buffered_proxying = true`` twins of every http case: they switch buffering on with
  ``pre-function`` Lua (``kong.service.request.enable_buffering()``), a Lua-only feature.
- the second ``describe``'s "default is on, request is blocked": it needs the injected nginx
  directives ``nginx_proxy_proxy_ssl_verify``/``nginx_sproxy_proxy_ssl_verify``, which fastkong
  has no equivalent for.
- the ``traditional`` and ``expressions`` flavor runs, and the ``each_strategy`` loop (one run).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.helpers import Gateway, LoopServer, eventually, free_port, wait_port
from tests.pki import Pki

pytestmark = pytest.mark.integration

SUBSYSTEMS = ["http", "stream"]

#: nginx's page for ``ssl_verify_client on`` and a client that sent no certificate.
NO_CERT_PAGE = (
    b"<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n"
    b"<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
    b"<center>No required SSL certificate was sent</center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
BAD_GATEWAY = "An invalid response was received from the upstream server"


class NginxPeer(LoopServer):
    """The spec's ``upstream_mtls`` (``require_cert``) or ``upstream_tls`` nginx server: TLS for
    "localhost", no keep-alive; ``location = /`` answers ``it works`` (with ``X-Cert``, the client
    certificate escaped, as ``$ssl_client_escaped_cert``); a client without a certificate gets
    nginx's 400 page whatever the path when ``require_cert``."""

    def __init__(self, pki: Pki, workdir: Path, require_cert: bool) -> None:
        cert, key = pki.issue("localhost", dns="localhost")
        (workdir / "server.pem").write_text(cert)
        (workdir / "server.key").write_text(key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(workdir / "server.pem", workdir / "server.key")
        if require_cert:
            context.load_verify_locations(cadata=pki.pem)
            context.verify_mode = ssl.CERT_OPTIONAL  # nginx answers a missing one with a 400
        super().__init__(ssl=context)
        self.require_cert = require_cert

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            extra = b""
            if self.require_cert and der is None:
                status, body = b"400 Bad Request", NO_CERT_PAGE
            elif target != b"/":
                status, body = b"404 Not Found", b"not found\n"
            else:
                status, body = b"200 OK", b"it works\n"
                if der is not None:
                    pem = ssl.DER_cert_to_PEM_cert(der)
                    extra = b"X-Cert: %s\r\n" % urllib.parse.quote(pem, safe="").encode()
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n%s\r\n%s" % (status, len(body), extra, body)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def escaped(pem: str) -> str:
    """``$ssl_client_escaped_cert`` of a certificate, normalized through its DER form."""
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return urllib.parse.quote(ssl.DER_cert_to_PEM_cert(der), safe="")


CERT_ID, BAD_CERT_ID, CA_ID = (str(uuid.uuid4()) for _ in range(3))


@dataclass(frozen=True)
class State:
    """Where the spec's Admin API calls have taken its entities (each field applied to the http
    service or upstream and to its stream twin alike)."""

    #: ``client_certificate`` of ``protected-service-mtls``.
    service_cert: str | None = None
    #: ``client_certificate`` of the upstream ``backend-mtls``.
    upstream_cert: str | None = None
    #: ``client_certificate`` of ``protected-service-mtls-upstream``.
    service_upstream_cert: str | None = None
    #: ``protected-service``'s ``tls_verify``, ``ca_certificates`` and ``tls_verify_depth``.
    tls_verify: bool | None = None
    ca_certificates: bool = False
    tls_verify_depth: int | None = None
    #: The certificate entity holds ``cert_client2`` (rotated), the CA entity another CA.
    rotated: bool = False
    other_ca: bool = False


@dataclass
class Pems:
    ca: str
    other_ca: str
    client: tuple[str, str]
    client2: tuple[str, str]
    bad: tuple[str, str]


class Node:
    """The spec's Kong: one gateway, its upstreams, and the state last posted."""

    def __init__(self, workdir: Path) -> None:
        self.pki = Pki("mtls_certs CA")
        other = Pki("Yolo42.1")
        self.pems = Pems(
            ca=self.pki.pem,
            other_ca=other.pem,
            client=self.pki.issue("client"),
            client2=self.pki.issue("client2"),
            bad=Pki("untrusted").issue("localhost"),  # ssl_fixtures.cert: not the upstream's CA
        )
        (workdir / "mtls").mkdir()
        (workdir / "tls").mkdir()
        self.mtls = NginxPeer(self.pki, workdir / "mtls", require_cert=True)
        self.tls = NginxPeer(self.pki, workdir / "tls", require_cert=False)
        self.stream = {name: free_port() for name in ("mtls", "tls", "mtls-upstream")}
        listen = ", ".join(f"127.0.0.1:{port}" for port in self.stream.values())
        self.state = State()
        self.gateway = Gateway(workdir, self.config(self.state), 1, "--stream-listen", listen)

    def start(self) -> None:
        self.mtls.start()
        self.tls.start()
        self.gateway.start()
        for port in self.stream.values():
            wait_port(port, proc=self.gateway.proc)
        # the worker and the stream process both report the config they serve
        eventually(lambda: len(self.reports()) >= 2, timeout=20)
        self.processes = len(self.reports())

    def stop(self) -> None:
        try:
            assert self.gateway.stop() == 0
        finally:
            self.mtls.stop()
            self.tls.stop()

    def reports(self) -> dict[str, str]:
        reports: dict[str, str] = self.gateway.status()["fastkong"]["workers"]
        return reports

    def config(self, state: State) -> str:
        client = self.pems.client2 if state.rotated else self.pems.client

        def cert(field: str | None) -> dict[str, Any]:
            return {} if field is None else {"client_certificate": field}

        verify: dict[str, Any] = {}
        if state.tls_verify is not None:
            verify["tls_verify"] = state.tls_verify
        if state.ca_certificates:
            verify["ca_certificates"] = [CA_ID]
        if state.tls_verify_depth is not None:
            verify["tls_verify_depth"] = state.tls_verify_depth

        def http(name: str, url: str, path: str, extra: dict[str, Any]) -> dict[str, Any]:
            route = {"name": name, "hosts": ["example.com"], "paths": [path]}
            return {"name": name, "url": url, **extra, "routes": [route]}

        def stream(name: str, url: str, port: str, extra: dict[str, Any]) -> dict[str, Any]:
            dest = [{"port": self.stream[port]}]
            route = {"name": name, "protocols": ["tls"], "destinations": dest}
            return {"name": name, "url": url, **extra, "routes": [route]}

        mtls, tls = f"127.0.0.1:{self.mtls.port}", f"localhost:{self.tls.port}"
        doc = {
            "_format_version": "3.0",
            "certificates": [
                {"id": CERT_ID, "cert": client[0], "key": client[1]},
                {"id": BAD_CERT_ID, "cert": self.pems.bad[0], "key": self.pems.bad[1]},
            ],
            "ca_certificates": [
                {"id": CA_ID, "cert": self.pems.other_ca if state.other_ca else self.pems.ca}
            ],
            "services": [
                http(
                    "protected-service-mtls", f"https://{mtls}/", "/mtls", cert(state.service_cert)
                ),
                http("protected-service", f"https://{tls}/", "/tls", verify),
                http(
                    "protected-service-mtls-upstream",
                    "https://backend-mtls/",
                    "/mtls-upstream",
                    cert(state.service_upstream_cert),
                ),
                stream(
                    "tls-protected-service-mtls", f"tls://{mtls}", "mtls", cert(state.service_cert)
                ),
                stream("tls-protected-service", f"tls://{tls}", "tls", verify),
                # the spec's url and host: the url's host wins (a shorthand field)
                stream(
                    "tls-protected-service-mtls-upstream",
                    "tls://tls-backend-mtls",
                    "mtls-upstream",
                    cert(state.service_upstream_cert),
                ),
            ],
            "upstreams": [
                {
                    "name": "backend-mtls",
                    **cert(state.upstream_cert),
                    "targets": [{"target": mtls}],
                },
                {
                    "name": "tls-backend-mtls",
                    **cert(state.upstream_cert),
                    "targets": [{"target": f"localhost:{self.mtls.port}"}],
                },
            ],
        }
        return json.dumps(doc)

    def apply(self, state: State) -> None:
        """``POST /config`` with ``state`` (unless it is served already), then wait until every
        process serves it."""
        if state == self.state:
            return
        posted = httpx.post(
            f"http://127.0.0.1:{self.gateway.admin_port}/config",
            content=self.config(state),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert posted.status_code == 201, posted.text
        self.state = state

        def served() -> bool:
            status = self.gateway.status()
            reports = status["fastkong"]["workers"]
            return len(reports) == self.processes and set(reports.values()) == {
                status["configuration_hash"]
            }

        eventually(served, timeout=20)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


def stream_bytes(node: Node, service: str, path: str) -> bytes:
    """A plain HTTP request to the stream listener of ``service``: all it answers until it
    closes (the spec's ``proxy_client(20000, <stream port>)``)."""
    with socket.create_connection(("127.0.0.1", node.stream[service]), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    return raw


def send(node: Node, subsystem: str, service: str, path: str) -> Answer:
    """The spec's ``proxy_client:send{path = path, Host = example.com}``: to the HTTP listener,
    or to the stream listener of ``service``."""
    if subsystem == "http":
        r = httpx.get(node.gateway.url(path), headers={"Host": "example.com"}, timeout=30)
        return Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text)
    raw = stream_bytes(node, service, path)
    assert raw.startswith(b"HTTP/1.1 "), f"not an HTTP answer: {raw!r}"
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split(" ")[1]), headers, body.decode())


def path_for(subsystem: str, http_path: str) -> str:
    """The spec sends ``/mtls`` (etc.) to the HTTP listener, ``/`` to the stream one (the route
    strips the prefix over HTTP; the stream relays the request line as it is)."""
    return http_path if subsystem == "http" else "/"


def assert_works(answer: Answer) -> None:
    assert answer.status == 200, answer
    assert answer.body.strip() == "it works"


def assert_no_certificate(answer: Answer) -> None:
    assert answer.status == 400, answer
    assert "400 No required SSL certificate was sent" in answer.body


def assert_refused(node: Node, subsystem: str, service: str, path: str) -> None:
    """A failed upstream handshake: Kong's 502 over HTTP; over the stream, the client's
    connection reset (``connection reset by peer``, the spec's ``err``)."""
    if subsystem == "http":
        answer = send(node, subsystem, service, path)
        assert answer.status == 502, answer
        assert BAD_GATEWAY in answer.body
        return
    try:
        raw = stream_bytes(node, service, path)
    except ConnectionResetError:
        return
    pytest.fail(f"the stream connection was closed, not reset, after {raw!r}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("upstream-tls-spec"))
    n.start()
    try:
        yield n
    finally:
        n.stop()


# -- mutual TLS with the Service object (lines 322-550) ------------------------------------------


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_service_no_client_certificate_supplied(node: Node, subsystem: str) -> None:
    node.apply(State())
    assert_no_certificate(send(node, subsystem, "mtls", "/mtls"))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_service_client_certificate_accessing_protected_upstream(
    node: Node, subsystem: str
) -> None:
    node.apply(State(service_cert=CERT_ID))
    assert_works(send(node, subsystem, "mtls", path_for(subsystem, "/mtls")))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_service_send_updated_client_certificate(node: Node, subsystem: str) -> None:
    node.apply(State(service_cert=CERT_ID))
    path = path_for(subsystem, "/mtls")
    before = send(node, subsystem, "mtls", path)
    assert_works(before)
    assert before.headers["x-cert"] == escaped(node.pems.client[0])
    node.apply(State(service_cert=CERT_ID, rotated=True))  # PATCH /certificates/{id}
    after = send(node, subsystem, "mtls", path)
    assert_works(after)
    assert after.headers["x-cert"] != before.headers["x-cert"]
    assert after.headers["x-cert"] == escaped(node.pems.client2[0])


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_service_remove_client_certificate_removes_access(node: Node, subsystem: str) -> None:
    node.apply(State(service_cert=CERT_ID))
    assert_works(send(node, subsystem, "mtls", path_for(subsystem, "/mtls")))
    node.apply(State())  # client_certificate = ngx.null
    assert_no_certificate(send(node, subsystem, "mtls", "/mtls"))


# -- mutual TLS with the Upstream object (lines 552-786) -----------------------------------------


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_upstream_no_client_certificate_supplied(node: Node, subsystem: str) -> None:
    node.apply(State())
    assert_no_certificate(send(node, subsystem, "mtls-upstream", "/mtls-upstream"))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_upstream_client_certificate_accessing_protected_upstream(
    node: Node, subsystem: str
) -> None:
    node.apply(State(upstream_cert=CERT_ID))
    assert_works(send(node, subsystem, "mtls-upstream", path_for(subsystem, "/mtls-upstream")))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_upstream_remove_client_certificate_removes_access(node: Node, subsystem: str) -> None:
    node.apply(State(upstream_cert=CERT_ID))
    assert_works(send(node, subsystem, "mtls-upstream", path_for(subsystem, "/mtls-upstream")))
    node.apply(State())
    assert_no_certificate(send(node, subsystem, "mtls-upstream", "/mtls-upstream"))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_service_client_certificate_overrides_the_upstreams(node: Node, subsystem: str) -> None:
    node.apply(State(upstream_cert=BAD_CERT_ID, service_upstream_cert=CERT_ID))
    answer = send(node, subsystem, "mtls-upstream", path_for(subsystem, "/mtls-upstream"))
    assert_works(answer)
    assert answer.headers["x-cert"] == escaped(node.pems.client[0])


# -- TLS verification options (lines 788-1078) ---------------------------------------------------


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_tls_verify_default_is_off(node: Node, subsystem: str) -> None:
    node.apply(State())
    assert_works(send(node, subsystem, "tls", path_for(subsystem, "/tls")))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_tls_verify_turned_on_blocks_the_request(node: Node, subsystem: str) -> None:
    # The upstream's certificate is from the spec's own CA, which the system does not trust.
    node.apply(State(tls_verify=True))
    assert_refused(node, subsystem, "tls", "/tls")


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_tls_verify_turned_off_allows_the_request(node: Node, subsystem: str) -> None:
    # Second describe, "#db turn it off, request is allowed" (without its nginx directives).
    node.apply(State(tls_verify=False))
    assert_works(send(node, subsystem, "tls", path_for(subsystem, "/tls")))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_ca_certificates_allow_the_request_once_the_right_ca_is_set(
    node: Node, subsystem: str
) -> None:
    node.apply(State(tls_verify=True, ca_certificates=True))
    assert_works(send(node, subsystem, "tls", path_for(subsystem, "/tls")))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_ca_certificate_updated_to_another_ca_and_back(node: Node, subsystem: str) -> None:
    verified = State(tls_verify=True, ca_certificates=True)
    node.apply(verified)
    assert_works(send(node, subsystem, "tls", path_for(subsystem, "/tls")))
    node.apply(replace(verified, other_ca=True))  # PATCH /ca_certificates/{id}
    assert_refused(node, subsystem, "tls", path_for(subsystem, "/tls"))
    node.apply(verified)  # "updated back to the correct ca"
    assert_works(send(node, subsystem, "tls", path_for(subsystem, "/tls")))


# -- tls_verify_depth (lines 1080-1230) ----------------------------------------------------------


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_tls_verify_depth_too_low(node: Node, subsystem: str) -> None:
    node.apply(State(tls_verify=True, ca_certificates=True, tls_verify_depth=0))
    # Kong: 502 / a reset stream (nginx's proxy_ssl_verify_depth 0 refuses the CA-signed
    # leaf). fastkong documents tls_verify_depth as accepted and not enforced (docs/upstreams.md,
    # "TLS to the upstream"; fastkong/proxy/upstream_tls.py): the chain to the CA passes.
    assert_works(send(node, subsystem, "tls", path_for(subsystem, "/tls")))


@pytest.mark.parametrize("subsystem", SUBSYSTEMS)
def test_tls_verify_depth_sufficient(node: Node, subsystem: str) -> None:
    node.apply(State(tls_verify=True, ca_certificates=True, tls_verify_depth=1))
    assert_works(send(node, subsystem, "tls", path_for(subsystem, "/tls")))
