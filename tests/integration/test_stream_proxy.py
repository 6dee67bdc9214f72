"""The stream proxy end to end: ``fastkong start --stream-listen`` with tcp, tls and
tls_passthrough routes in front of real loopback TCP and TLS servers."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    Gateway,
    LoopServer,
    TaggedEcho,
    eventually,
    fastkong_cli,
    free_port,
    pem_block,
    rss_kb,
    tag_and_echo,
    tls_server_context,
    wait_port,
)
from tests.pki import Pki


class Sink(LoopServer):
    """Accepts a connection and never reads from it (a stalled upstream)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()
        await asyncio.sleep(3600)


class Node:
    """The gateway, its stream ports and its upstreams."""

    def __init__(self, tmp: Path) -> None:
        self.pki = Pki("stream test CA")
        exact_cert, exact_key = self.pki.issue("tls.example.test", dns="tls.example.test")
        wild_cert, wild_key = self.pki.issue("*.example.test", dns="*.example.test")
        up_cert, up_key = self.pki.issue("pass.example.test", dns="pass.example.test")
        self.a, self.b, self.c, self.d = (TaggedEcho(t).start() for t in "ABCD")
        self.tls_up = TaggedEcho("T", tls_server_context(up_cert, up_key, tmp)).start()
        self.sink = Sink().start()
        self.plain, self.balanced, self.denied, self.tls, self.idle, self.slow = (
            free_port() for _ in range(6)
        )
        self.closed = free_port()  # nothing listens there
        self.tmp = tmp
        self.certs = (exact_cert, exact_key, wild_cert, wild_key)
        self.gateway = Gateway(
            tmp,
            self.config(self.a.port),
            1,
            "--stream-listen",
            f"127.0.0.1:{self.plain}, 127.0.0.1:{self.balanced}, 127.0.0.1:{self.denied}, "
            f"127.0.0.1:{self.tls} ssl, 127.0.0.1:{self.idle}, 127.0.0.1:{self.slow}",
        )

    def config(self, plain_port: int) -> str:
        exact_cert, exact_key, wild_cert, wild_key = self.certs
        return f"""
_format_version: "3.0"
certificates:
- cert: {pem_block(exact_cert, 4)}
  key: {pem_block(exact_key, 4)}
  snis: [tls.example.test]
- cert: {pem_block(wild_cert, 4)}
  key: {pem_block(wild_key, 4)}
  snis: ["*.example.test"]
upstreams:
- name: pool
  targets:
  - target: 127.0.0.1:{self.closed}
  - target: 127.0.0.1:{self.c.port}
services:
- name: plain
  protocol: tcp
  host: 127.0.0.1
  port: {plain_port}
  routes:
  - name: plain
    protocols: [tcp]
    destinations: [{{port: {self.plain}}}]
- name: balanced
  protocol: tcp
  host: pool
  port: 80
  retries: 3
  routes:
  - name: balanced
    protocols: [tcp]
    destinations: [{{port: {self.balanced}}}]
- name: denied
  protocol: tcp
  host: 127.0.0.1
  port: {self.a.port}
  routes:
  - name: denied
    protocols: [tcp]
    destinations: [{{port: {self.denied}}}]
    plugins:
    - name: ip-restriction
      config: {{deny: [127.0.0.0/8]}}
- name: idle
  protocol: tcp
  host: 127.0.0.1
  port: {self.a.port}
  read_timeout: 300
  routes:
  - name: idle
    protocols: [tcp]
    destinations: [{{port: {self.idle}}}]
- name: sink
  protocol: tcp
  host: 127.0.0.1
  port: {self.sink.port}
  read_timeout: 6000
  routes:
  - name: sink
    protocols: [tcp]
    destinations: [{{port: {self.slow}}}]
- name: terminated
  protocol: tcp
  host: 127.0.0.1
  port: {self.b.port}
  routes:
  - name: terminated
    protocols: [tls]
    snis: [tls.example.test]
    destinations: [{{port: {self.tls}}}]
- name: passthrough
  protocol: tcp
  host: 127.0.0.1
  port: {self.tls_up.port}
  routes:
  - name: passthrough
    protocols: [tls_passthrough]
    snis: [pass.example.test]
    destinations: [{{port: {self.tls}}}]
- name: reencrypt
  protocol: tls
  host: 127.0.0.1
  port: {self.tls_up.port}
  routes:
  - name: reencrypt
    protocols: [tls]
    snis: [again.example.test]
    destinations: [{{port: {self.tls}}}]
"""

    def start(self) -> None:
        self.gateway.start()
        for port in (self.plain, self.balanced, self.denied, self.tls, self.idle, self.slow):
            wait_port(port, proc=self.gateway.proc)

    def stop(self) -> None:
        self.gateway.stop()
        for server in (self.a, self.b, self.c, self.d, self.tls_up, self.sink):
            server.stop()

    def client_ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.pki.pem)
        return ctx


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("stream"))
    n.start()
    try:
        yield n
    finally:
        n.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_tcp_route(node: Node) -> None:
    with _connect(node.plain) as sock:
        assert tag_and_echo(sock, b"hello") == (b"A", b"hello")


def test_a_large_transfer_passes_intact(node: Node) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    with _connect(node.plain) as sock:
        reader = sock.makefile("rb")
        assert reader.readline() == b"A\n"
        received = bytearray()

        def pump() -> None:
            while len(received) < len(payload):
                chunk = reader.read1(65536)
                if not chunk:
                    break
                received.extend(chunk)

        import threading

        t = threading.Thread(target=pump)
        t.start()
        sock.sendall(payload)
        t.join(30)
    assert bytes(received) == payload


def test_a_refused_target_is_retried_on_the_next(node: Node) -> None:
    for _ in range(4):
        with _connect(node.balanced) as sock:
            assert tag_and_echo(sock, b"x") == (b"C", b"x")


def test_ip_restriction_closes_the_connection(node: Node) -> None:
    with _connect(node.denied) as sock:
        assert sock.recv(100) == b""


def test_tls_route_is_terminated_with_the_certificate_of_its_sni(node: Node) -> None:
    ctx = node.client_ctx()
    with ctx.wrap_socket(_connect(node.tls), server_hostname="tls.example.test") as tls:
        assert tls.getpeercert()["subject"] == ((("commonName", "tls.example.test"),),)
        assert tag_and_echo(tls, b"secret") == (b"B", b"secret")


def test_tls_to_a_tls_service_with_a_wildcard_certificate(node: Node) -> None:
    ctx = node.client_ctx()
    with ctx.wrap_socket(_connect(node.tls), server_hostname="again.example.test") as tls:
        assert tls.getpeercert()["subject"] == ((("commonName", "*.example.test"),),)
        assert tag_and_echo(tls, b"twice") == (b"T", b"twice")


def test_tls_passthrough_reaches_the_upstream_tls_untouched(node: Node) -> None:
    ctx = node.client_ctx()
    with ctx.wrap_socket(_connect(node.tls), server_hostname="pass.example.test") as tls:
        # the upstream's own certificate: fastkong did not terminate
        assert tls.getpeercert()["subject"] == ((("commonName", "pass.example.test"),),)
        assert tag_and_echo(tls, b"opaque") == (b"T", b"opaque")


def test_no_route_for_the_sni_closes_the_connection(node: Node) -> None:
    ctx = node.client_ctx()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with ctx.wrap_socket(_connect(node.tls), server_hostname="nobody.other.test") as tls:
            tls.recv(10)


def test_a_new_config_is_followed(node: Node) -> None:
    node.gateway.config_path.write_text(node.config(node.d.port))

    def moved() -> bool:
        with _connect(node.plain) as sock:
            return tag_and_echo(sock, b"?")[0] == b"D"

    try:
        eventually(moved, timeout=15)
    finally:
        node.gateway.config_path.write_text(node.config(node.a.port))
        eventually(lambda: not moved(), timeout=15)


def test_a_silent_connection_closes_after_the_read_timeout(node: Node) -> None:
    with _connect(node.idle) as sock:
        assert tag_and_echo(sock, b"ping") == (b"A", b"ping")
        started = time.monotonic()
        assert sock.recv(10) == b""  # closed by the gateway, 300 ms after the last byte
        assert time.monotonic() - started < 5


def test_the_node_reports_its_stream_listeners(node: Node) -> None:
    conf = httpx.get(f"http://127.0.0.1:{node.gateway.admin_port}/").json()["configuration"]
    assert conf["stream_listen"][3] == f"127.0.0.1:{node.tls} ssl"
    assert [x["port"] for x in conf["stream_listeners"]] == [
        node.plain, node.balanced, node.denied, node.tls, node.idle, node.slow
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1:{port} udp ssl", 'the "ssl" parameter is incompatible with "udp"'),
        ("127.0.0.1:{port} http2", "unknown flag 'http2'"),
    ],
)
def test_stream_listeners_fastkong_cannot_serve_stop_the_start(
    tmp_path: Path, value: str, message: str
) -> None:
    config = tmp_path / "kong.yml"
    config.write_text('_format_version: "3.0"\n')
    done = fastkong_cli(
        "start", "-c", str(config), "--stream-listen", value.format(port=free_port())
    )
    assert done.returncode == 1
    assert "stream_listen: " in done.stderr and message in done.stderr


def test_a_stalled_upstream_stops_the_client_not_the_gateway_memory(node: Node) -> None:
    """End-to-end flow control: pushing 64 MB at an upstream that reads nothing stalls the
    client after the socket buffers and the proxy's high-water marks, a few MB."""
    stream_pid = _stream_pid(node)
    before = rss_kb(stream_pid)
    chunk = b"x" * 65536
    sent = 0
    with _connect(node.slow) as sock:
        sock.settimeout(0.5)
        deadline = time.monotonic() + 4
        while sent < 64 * 1024 * 1024 and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
            except TimeoutError:
                pass  # stalled: the gateway stopped reading
        grown_mb = (rss_kb(stream_pid) - before) / 1024
    assert sent < 24 * 1024 * 1024, sent
    assert grown_mb < 30, grown_mb


def _stream_pid(node: Node) -> int:
    assert node.gateway.proc is not None
    for child in Path(f"/proc/{node.gateway.proc.pid}/task").glob("*/children"):
        for pid in child.read_text().split():
            if b"fastkong.stream.main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return int(pid)
    raise LookupError("no stream process")
