"""Kong's upstream timeout and keep-alive pool specs, ported against a real ``fastkong start``
and real upstreams on loopback.

Ported:

- ``spec/02-integration/05-proxy/07-upstream_timeouts_spec.lua`` lines 59-204: a service's
  ``connect_timeout`` (HEAD, and PUT with a 32 MB body), ``write_timeout`` (POST with a 32 MB
  body) and ``read_timeout`` (GET) of 1 ms each end in 504. ``konghq.com:81`` (a port that never
  answers) is a loopback listener whose accept queue is full, so connecting hangs; the slow
  upstream is one that reads a request and never answers, or never reads at all.
- ``spec/02-integration/05-proxy/25-upstream_keepalive_spec.lua`` lines 50-435 (a ``#postgres``
  spec, whose entities are all declarative ones): the pools Kong keys by address, port, SNI
  and client certificate, seen from a TLS upstream that keeps a record of every connection
  (its SNI, its client certificate, its requests, whether it was closed) instead of Kong's
  debug log lines; ``upstream_keepalive_pool_size = 0`` and ``upstream_keepalive_max_requests
  = 1`` each get a gateway of their own.

Ported in part (what cannot be seen outside Kong left out):

- 07 "sets status for last try" (lines 152-171) reads ``balancer_data.tries`` through the
  ``ctx-checker-last`` test plugin (Kong internals); ported as far as it can be seen outside:
  the 504 comes after every try (the first and ``retries`` = 5 more) reached the upstream.
- 07 "upstream_connect_timeout with enable_buffering" (lines 191-204) switches buffering on
  with ``pre-function`` Lua (``kong.service.request.enable_buffering()``): ported without it
  (same PUT with a 32 MB body, same 504).

Left out:

- 25: the debug log lines themselves (``enabled connection keepalive (pool=...)``, ``keepalive
  saving connection``, the pool name's crc32) are nginx/Kong internals; the crc32-colliding
  names are kept as two server names that must not share a connection.
- The ``helpers.each_strategy``/hybrid loops: fastkong is DB-less, one run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, LoopServer, eventually, free_port, read_request
from tests.pki import Pki

pytestmark = pytest.mark.integration

BIG = 2**25  # the spec's string.rep("a", 2^25)


class FullBacklog:
    """A loopback listener whose accept queue is full: a connect to it hangs (SYNs dropped),
    as to the spec's ``konghq.com:81``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)

    def stop(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.sock.close()


class Silent(LoopServer):
    """Reads request heads (``reads``) or nothing at all, and never answers; keeps the request
    targets it read."""

    def __init__(self, reads: bool) -> None:
        super().__init__()
        self.reads = reads
        self.targets: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self.reads:
                head = await reader.readuntil(b"\r\n\r\n")
                self.targets.append(head.split(b" ", 2)[1].decode())
            await asyncio.Future()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class Conn:
    """One TLS connection the upstream accepted."""

    sni: str | None
    fingerprint: str
    requests: int = 0
    closed: bool = False


class TlsUpstream(LoopServer):
    """HTTPS on loopback for "localhost" that asks for an optional client certificate from
    ``pki`` (no session resumption, as the spec's ``ssl_session_tickets off``): ``/echo_sni``
    answers ``SNI=<name>`` (mock_upstream's), any other path the client certificate's SHA-1
    fingerprint (the spec's mTLS server). Keeps a :class:`Conn` per connection."""

    def __init__(self, pki: Pki, workdir: Path) -> None:
        cert, key = pki.issue("localhost", dns="localhost")
        (workdir / "up.pem").write_text(cert)
        (workdir / "up.key").write_text(key)
        (workdir / "ca.pem").write_text(pki.pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(workdir / "up.pem", workdir / "up.key")
        context.load_verify_locations(workdir / "ca.pem")
        context.verify_mode = ssl.CERT_OPTIONAL
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
        context.sni_callback = self._on_sni
        super().__init__(ssl=context)
        self.names: dict[int, str | None] = {}
        self.conns: list[Conn] = []

    def _on_sni(self, sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        self.names[id(sock)] = name

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = writer.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True)
        conn = Conn(self.names.get(id(tls)), hashlib.sha1(der).hexdigest() if der else "")
        self.conns.append(conn)
        try:
            while True:
                request = await read_request(reader)
                conn.requests += 1
                if request.target.startswith("/echo_sni"):
                    body = f"SNI={conn.sni}".encode()
                else:
                    body = conn.fingerprint.encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            conn.closed = True
            writer.close()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("fastkong keepalive CA")


@pytest.fixture(scope="module")
def tls_upstream(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsUpstream]:
    server = TlsUpstream(pki, tmp_path_factory.mktemp("tls-upstream")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def full_backlog() -> Iterator[FullBacklog]:
    server = FullBacklog()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hanging() -> Iterator[Silent]:
    server = Silent(reads=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def deaf() -> Iterator[Silent]:
    server = Silent(reads=False).start()
    yield server
    server.stop()


CA_ID = str(uuid.uuid4())
CERT1_ID = str(uuid.uuid4())
CERT2_ID = str(uuid.uuid4())


def keepalive_config(pki: Pki, upstream: TlsUpstream) -> dict[str, Any]:
    """The spec's lazy_setup (lines 50-142): TLS services on one upstream address."""
    tls = {"tls_verify": False, "tls_verify_depth": 3}
    base = f"https://127.0.0.1:{upstream.port}"
    (cert1, key1), (cert2, key2) = pki.issue("client-1"), pki.issue("client-2")
    services: list[dict[str, Any]] = [
        {"name": "one", "url": base, **tls, "ca_certificates": [CA_ID]},
        {"name": "two", "url": base, **tls, "ca_certificates": [CA_ID]},
        {"name": "plumless", "url": base},  # the spec's crc32-colliding pool names
        {"name": "buckeroo", "url": base},
        {"name": "example", "url": base, **tls, "ca_certificates": [CA_ID]},
        {"name": "example2", "url": base, **tls, "ca_certificates": [CA_ID]},
    ]
    hosts = ["one.test", "two.test", "plumless.xxx", "buckeroo.xxx"]
    for service, host in zip(services, hosts, strict=False):
        service["routes"] = [{"name": service["name"], "hosts": [host], "preserve_host": True}]
    for service, host, cert_id in (
        (services[4], "example.test", CERT1_ID),
        (services[5], "example2.test", CERT2_ID),
    ):
        service["client_certificate"] = cert_id
        service["routes"] = [{"name": service["name"], "hosts": [host]}]
    return {
        "_format_version": "3.0",
        "ca_certificates": [{"id": CA_ID, "cert": pki.pem}],
        "certificates": [
            {"id": CERT1_ID, "cert": cert1, "key": key1},
            {"id": CERT2_ID, "cert": cert2, "key": key2},
        ],
        "services": services,
    }


def timeouts_services(
    echo: Echo, full_backlog: FullBacklog, hanging: Silent, deaf: Silent
) -> list[dict[str, Any]]:
    """07's insert_routes (lines 66-102): routes told apart by method alone."""
    refused = f"http://127.0.0.1:{full_backlog.port}"
    rows = [
        ("api-1", "HEAD", refused, "connect_timeout"),
        ("api-2", "POST", f"http://127.0.0.1:{deaf.port}", "write_timeout"),
        ("api-3", "GET", f"http://127.0.0.1:{hanging.port}", "read_timeout"),
        ("api-4", "PUT", refused, "connect_timeout"),
    ]
    return [
        {
            "name": name,
            "url": url,
            timeout: 1,
            "routes": [{"name": name, "methods": [method], "protocols": ["http"]}],
        }
        for name, method, url, timeout in rows
    ]


def start_gateway(
    tmp_path_factory: pytest.TempPathFactory, config: dict[str, Any], env: dict[str, str]
) -> Gateway:
    gw = Gateway(tmp_path_factory.mktemp("kong-upstream"), json.dumps(config))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        gw.start()
    return gw


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    tls_upstream: TlsUpstream,
    echo: Echo,
    full_backlog: FullBacklog,
    hanging: Silent,
    deaf: Silent,
) -> Iterator[Gateway]:
    """Kong's default keep-alive settings; the timeout services of 07 ride along."""
    config = keepalive_config(pki, tls_upstream)
    config["services"] += timeouts_services(echo, full_backlog, hanging, deaf)
    gw = start_gateway(tmp_path_factory, config, {})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def no_pool_gateway(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, tls_upstream: TlsUpstream
) -> Iterator[Gateway]:
    env = {"KONG_UPSTREAM_KEEPALIVE_POOL_SIZE": "0"}
    gw = start_gateway(tmp_path_factory, keepalive_config(pki, tls_upstream), env)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def one_request_gateway(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, tls_upstream: TlsUpstream
) -> Iterator[Gateway]:
    env = {"KONG_UPSTREAM_KEEPALIVE_MAX_REQUESTS": "1"}
    gw = start_gateway(tmp_path_factory, keepalive_config(pki, tls_upstream), env)
    yield gw
    gw.stop()


# --- 07-upstream_timeouts_spec.lua ---------------------------------------------------------


def test_connect_timeout(gateway: Gateway) -> None:
    """07 lines 133-140: HEAD to a service whose connect never completes."""
    assert httpx.head(gateway.url("/"), timeout=30).status_code == 504


def test_read_timeout(gateway: Gateway) -> None:
    """07 lines 144-151."""
    assert httpx.get(gateway.url("/delay/2"), timeout=30).status_code == 504


def test_read_timeout_status_for_last_try(gateway: Gateway, hanging: Silent) -> None:
    """07 lines 152-171: every try failed on the timeout; the upstream saw each of them (the
    first and the service's default 5 retries), the client the 504."""
    path = f"/delay/2?try={uuid.uuid4()}"
    assert httpx.get(gateway.url(path), timeout=30).status_code == 504
    eventually(lambda: hanging.targets.count(path) >= 6)
    assert hanging.targets.count(path) == 6


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/post"), ("PUT", "/put")],
    ids=["write-timeout", "connect-timeout-with-body"],
)
def test_timeout_with_a_large_body(gateway: Gateway, method: str, path: str) -> None:
    """07 lines 175-188 (POST: the upstream never reads, ``write_timeout`` 1 ms) and 192-203
    (PUT: the connect never completes; the spec's ``enable_buffering`` is Lua, left out)."""
    body = json.dumps({"huge": "a" * BIG}).encode()
    r = httpx.request(
        method,
        gateway.url(path),
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 504


# --- 25-upstream_keepalive_spec.lua --------------------------------------------------------


def send(gw: Gateway, host: str, upstream: TlsUpstream, path: str = "/echo_sni") -> Conn:
    """A GET with ``host`` through ``gw``: the upstream connection that served it (its
    answer checked: the name it was handshaken with, or for ``/`` its client certificate)."""
    counts = [c.requests for c in upstream.conns]
    with httpx.Client(timeout=10) as client:
        r = client.get(gw.url(path), headers={"Host": host})
    assert r.status_code == 200, r.text
    (conn,) = [
        c for i, c in enumerate(upstream.conns) if i >= len(counts) or c.requests > counts[i]
    ]
    assert r.text == (f"SNI={conn.sni}" if path == "/echo_sni" else conn.fingerprint)
    return conn


def test_pools_by_host_port_sni(gateway: Gateway, tls_upstream: TlsUpstream) -> None:
    """25 lines 154-214: one.test and two.test, same address: each its own connection,
    handshaken with its own name, and kept."""
    one = send(gateway, "one.test", tls_upstream)
    two = send(gateway, "two.test", tls_upstream)
    assert (one.sni, two.sni) == ("one.test", "two.test")
    assert one is not two
    assert not one.closed and not two.closed


def test_pools_by_client_certificate(gateway: Gateway, tls_upstream: TlsUpstream) -> None:
    """25 lines 217-254: same address and no SNI (an IP), two client certificates: two
    fingerprints, and the first certificate's kept connection is not lent to the second."""
    first = send(gateway, "example.test", tls_upstream, "/")
    second = send(gateway, "example2.test", tls_upstream, "/")
    assert first.fingerprint != ""
    assert second.fingerprint != ""
    assert first.fingerprint != second.fingerprint
    assert send(gateway, "example.test", tls_upstream, "/") is first
    assert send(gateway, "example2.test", tls_upstream, "/") is second


def test_pool_size_zero_disables_pooling(
    no_pool_gateway: Gateway, tls_upstream: TlsUpstream
) -> None:
    """25 lines 257-290: no keep-alive: each request its own connection, closed after it."""
    conns = [send(no_pool_gateway, host, tls_upstream) for host in ("one.test", "two.test")]
    conns.append(send(no_pool_gateway, "one.test", tls_upstream))
    assert [c.sni for c in conns] == ["one.test", "two.test", "one.test"]
    assert len({id(c) for c in conns}) == 3
    eventually(lambda: all(c.closed for c in conns))


def test_reuses_the_pool(gateway: Gateway, tls_upstream: TlsUpstream) -> None:
    """25 lines 293-348: a second request to one.test reuses the kept connection."""
    first = send(gateway, "one.test", tls_upstream)
    assert send(gateway, "one.test", tls_upstream) is first
    assert not first.closed


def test_max_requests_one_frees_the_pool(
    one_request_gateway: Gateway, tls_upstream: TlsUpstream
) -> None:
    """25 lines 351-379: ``upstream_keepalive_max_requests = 1``: the connection is not saved
    (closed after its request) and the next request opens another."""
    first = send(one_request_gateway, "one.test", tls_upstream)
    eventually(lambda: first.closed)
    second = send(one_request_gateway, "one.test", tls_upstream)
    assert second is not first
    assert (first.requests, second.requests) == (1, 1)


def test_pools_with_crc32_collision(gateway: Gateway, tls_upstream: TlsUpstream) -> None:
    """25 lines 383-435: plumless.xxx and buckeroo.xxx (pool names whose crc32 collide in
    Kong's spec) never share a connection: each is served by its own, named for it."""
    hosts = ("plumless.xxx", "buckeroo.xxx", "plumless.xxx", "buckeroo.xxx")
    conns = [send(gateway, host, tls_upstream) for host in hosts]
    assert [c.sni for c in conns] == list(hosts)
    assert conns[0] is conns[2] and conns[1] is conns[3]
    assert conns[0] is not conns[1]
