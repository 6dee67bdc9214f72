"""The stream proxy's ``proxy_protocol`` listeners and its access log, end to end:
``fastkong start --stream-listen '... proxy_protocol'`` with ``trusted_ips`` and
``--proxy-stream-access-log``, in front of real loopback TCP servers.

The test client speaks from 127.0.0.2 (trusted) or 127.0.0.1 (not trusted): a PROXY header
from the first decides the client address (route ``sources``, ip-restriction, the log); one
from the second is read and dropped, as nginx's stream realip does with Kong's
``set_real_ip_from``."""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastkong.stream.proxy_protocol import encode_v1, encode_v2
from tests.helpers import (
    Gateway,
    TaggedEcho,
    eventually,
    fastkong_cli,
    free_port,
    pem_block,
    tag_and_echo,
    wait_port,
)
from tests.pki import Pki

TRUSTED = "127.0.0.2"
CLIENT = ("203.0.113.7", 40001)  # inside the route's sources
OTHER = ("198.51.100.9", 40002)  # outside them
DENIED = ("192.0.2.66", 40003)  # ip-restriction's deny list


class Node:
    def __init__(self, tmp: Path) -> None:
        self.pki = Pki("proxy protocol test CA")
        self.cert, self.key = self.pki.issue("tls.example.test", dns="tls.example.test")
        self.a, self.b = TaggedEcho("A").start(), TaggedEcho("B").start()
        self.pp, self.pp_ssl, self.plain = free_port(), free_port(), free_port()
        self.closed = free_port()  # nothing listens there
        self.log_path = tmp / "stream-access.log"
        self.gateway = Gateway(
            tmp,
            self.config(),
            1,
            "--stream-listen",
            f"127.0.0.1:{self.pp} proxy_protocol, 127.0.0.1:{self.pp_ssl} ssl proxy_protocol, "
            f"127.0.0.1:{self.plain}",
            "--trusted-ips",
            f"{TRUSTED}/32",
            "--proxy-stream-access-log",
            f"{self.log_path} basic",
        )

    def config(self) -> str:
        return f"""
_format_version: "3.0"
certificates:
- cert: {pem_block(self.cert, 4)}
  key: {pem_block(self.key, 4)}
  snis: [tls.example.test]
upstreams:
- name: empty
plugins:
- name: prometheus
  protocols: [http, https, tcp, tls]
  config: {{status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true}}
services:
- name: by-source
  protocol: tcp
  host: 127.0.0.1
  port: {self.a.port}
  routes:
  - name: by-source
    protocols: [tcp]
    sources: [{{ip: 203.0.113.0/24}}]
    destinations: [{{port: {self.pp}}}]
- name: others
  protocol: tcp
  host: 127.0.0.1
  port: {self.b.port}
  routes:
  - name: others
    protocols: [tcp]
    destinations: [{{port: {self.pp}}}]
    plugins:
    - name: ip-restriction
      config: {{deny: [192.0.2.0/24]}}
- name: terminated
  protocol: tcp
  host: 127.0.0.1
  port: {self.a.port}
  routes:
  - name: terminated
    protocols: [tls]
    snis: [tls.example.test]
    sources: [{{ip: 203.0.113.0/24}}]
    destinations: [{{port: {self.pp_ssl}}}]
- name: unreachable
  protocol: tcp
  host: 127.0.0.1
  port: {self.closed}
  retries: 1
  routes:
  - name: unreachable
    protocols: [tcp]
    sources: [{{ip: 127.0.0.1}}]
    destinations: [{{port: {self.plain}}}]
- name: no-peer
  protocol: tcp
  host: empty
  routes:
  - name: no-peer
    protocols: [tcp]
    sources: [{{ip: {TRUSTED}}}]
    destinations: [{{port: {self.plain}}}]
"""

    def start(self) -> None:
        self.gateway.start()
        for port in (self.pp, self.pp_ssl, self.plain):
            wait_port(port, proc=self.gateway.proc)

    def stop(self) -> None:
        self.gateway.stop()
        self.a.stop()
        self.b.stop()

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines() if self.log_path.exists() else []


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("proxy-protocol"))
    n.start()
    try:
        yield n
    finally:
        n.stop()


def _connect(port: int, source: str = TRUSTED) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _logged(node: Node, pattern: str) -> str:
    """The access log's line matching ``pattern`` (lines are flushed within a second)."""
    found: list[str] = []

    def present() -> bool:
        found[:] = [x for x in node.log_lines() if re.fullmatch(pattern, x)]
        return bool(found)

    eventually(present, timeout=10)
    return found[-1]


@pytest.mark.parametrize("encode", [encode_v1, encode_v2], ids=["v1", "v2"])
def test_a_trusted_peers_header_names_the_client_for_routing(node: Node, encode: object) -> None:
    assert callable(encode)
    dst = ("127.0.0.1", node.pp)
    with _connect(node.pp) as sock:
        sock.sendall(encode(CLIENT, dst))
        assert tag_and_echo(sock, b"hello") == (b"A", b"hello")
    with _connect(node.pp) as sock:
        sock.sendall(encode(OTHER, dst))
        assert tag_and_echo(sock, b"hello") == (b"B", b"hello")


def test_bytes_sent_with_the_header_reach_the_upstream(node: Node) -> None:
    with _connect(node.pp) as sock:
        sock.sendall(encode_v1(CLIENT, ("127.0.0.1", node.pp)) + b"early bytes")
        reader = sock.makefile("rb")
        assert reader.readline() == b"A\n"
        assert reader.read(len(b"early bytes")) == b"early bytes"


def test_an_untrusted_peers_header_is_read_and_dropped(node: Node) -> None:
    with _connect(node.pp, source="127.0.0.1") as sock:
        sock.sendall(encode_v1(CLIENT, ("127.0.0.1", node.pp)))
        # routed as 127.0.0.1 (not in by-source's sources); the header's bytes never went up
        assert tag_and_echo(sock, b"x") == (b"B", b"x")


def test_a_local_command_keeps_the_peer_address(node: Node) -> None:
    with _connect(node.pp) as sock:
        sock.sendall(encode_v2(None, None))
        assert tag_and_echo(sock, b"hc") == (b"B", b"hc")


def test_ip_restriction_judges_the_headers_client(node: Node) -> None:
    with _connect(node.pp) as sock:
        sock.sendall(encode_v2(DENIED, ("127.0.0.1", node.pp)))
        assert sock.recv(10) == b""
    _logged(node, r"192\.0\.2\.66 \[[^]]+\] TCP 403 0 0 \d+\.\d{3}")


def test_a_connection_without_a_header_is_closed_with_400(node: Node) -> None:
    with _connect(node.pp) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(10) == b""
    _logged(node, r"127\.0\.0\.2 \[[^]]+\] TCP 400 0 0 \d+\.\d{3}")


def test_header_then_tls_on_an_ssl_listener(node: Node) -> None:
    ctx = ssl.create_default_context(cadata=node.pki.pem)
    raw = _connect(node.pp_ssl)
    raw.sendall(encode_v1(CLIENT, ("127.0.0.1", node.pp_ssl)))
    with ctx.wrap_socket(raw, server_hostname="tls.example.test") as tls:
        assert tls.getpeercert()["subject"] == ((("commonName", "tls.example.test"),),)
        assert tag_and_echo(tls, b"secret") == (b"A", b"secret")


def test_sessions_are_logged_with_their_bytes_and_time(node: Node) -> None:
    source = ("203.0.113.99", 40100)
    with _connect(node.pp) as sock:
        sock.sendall(encode_v2(source, ("127.0.0.1", node.pp)))
        assert tag_and_echo(sock, b"0123456789") == (b"A", b"0123456789")
        time.sleep(0.2)
    # sent to the client: the tag line and the echo; received from it: the ten bytes
    line = _logged(node, r"203\.0\.113\.99 \[[^]]+\] TCP 200 12 10 (\d+\.\d{3})")
    seconds = float(line.rsplit(" ", 1)[1])
    assert 0.2 <= seconds < 10


def test_unreachable_and_peerless_services_are_logged_502_and_503(node: Node) -> None:
    with _connect(node.plain, source="127.0.0.1") as sock:
        assert sock.recv(10) == b""  # both tries refused
    _logged(node, r"127\.0\.0\.1 \[[^]]+\] TCP 502 0 0 \d+\.\d{3}")
    with _connect(node.plain) as sock:
        assert sock.recv(10) == b""  # the upstream has no target
    _logged(node, r"127\.0\.0\.2 \[[^]]+\] TCP 503 0 0 \d+\.\d{3}")


def test_no_route_is_logged_500(node: Node) -> None:
    with _connect(node.plain, source="127.0.0.3") as sock:
        assert sock.recv(10) == b""
    _logged(node, r"127\.0\.0\.3 \[[^]]+\] TCP 500 0 0 \d+\.\d{3}")


def test_a_stream_access_log_with_another_format_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "kong.yml"
    config.write_text('_format_version: "3.0"\n')
    done = fastkong_cli(
        "start",
        "-c",
        str(config),
        "--stream-listen",
        f"127.0.0.1:{free_port()}",
        "--proxy-stream-access-log",
        "/dev/stdout main",
    )
    assert done.returncode == 1
    assert "proxy_stream_access_log: only Kong's 'basic' format" in done.stderr


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of the series ``name`` whose labels include ``labels`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_prometheus_plugin_counts_stream_sessions(node: Node) -> None:
    url = f"http://127.0.0.1:{node.gateway.status_port}/metrics"
    by_source = {"service": "by-source", "route": "by-source"}
    before = httpx.get(url).text
    for _ in range(2):
        with _connect(node.pp) as sock:
            sock.sendall(encode_v1(CLIENT, ("127.0.0.1", node.pp)))
            assert tag_and_echo(sock, b"12345") == (b"A", b"12345")
    with _connect(node.pp) as sock:
        sock.sendall(encode_v1(DENIED, ("127.0.0.1", node.pp)))
        assert sock.recv(10) == b""

    def counted() -> bool:
        text = httpx.get(url).text
        sessions = "kong_stream_sessions_total"
        return (
            _metric(text, sessions, **by_source, code="200", source="service")
            - _metric(before, sessions, **by_source, code="200", source="service")
            == 2
            and _metric(text, sessions, route="others", code="403", source="kong")
            - _metric(before, sessions, route="others", code="403", source="kong")
            == 1
        )

    eventually(counted, timeout=10)
    text = httpx.get(url).text
    duration = "kong_session_duration_ms_count"
    assert _metric(text, duration, **by_source) - _metric(before, duration, **by_source) == 2
    bandwidth = "kong_bandwidth_bytes"
    for direction, size in (("ingress", 5), ("egress", 7)):  # the tag line "A\n", the echo
        delta = _metric(text, bandwidth, **by_source, direction=direction) - _metric(
            before, bandwidth, **by_source, direction=direction
        )
        assert delta == 2 * size, direction
    assert 'kong_subsystem="stream"' in text  # the stream process's memory
    assert "# TYPE kong_stream_sessions_total counter" in text
