"""Log plugins on stream routes, as Kong runs their ``log`` handlers in the stream subsystem:
``file-log`` and ``tcp-log`` (and, through the same ``write``, ``udp-log`` and ``http-log``)
get Kong's stream serializer message for every tcp, tls and udp session that ends, proxied or
closed by a stream exit. Real ``fastkong start --stream-listen``, real backends and a real log
collector on loopback."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    Gateway,
    LineServer,
    TaggedDatagrams,
    TaggedEcho,
    eventually,
    free_port,
    tag_and_echo,
    udp_tag_at,
)

pytestmark = pytest.mark.integration

DENIED = "127.0.0.3"


class Node:
    def __init__(self, tmp: Path) -> None:
        self.echo = TaggedEcho("echo").start()
        self.dgram = TaggedDatagrams("dgram")
        self.collector = LineServer().start()
        self.plain, self.tls, self.udp = free_port(), free_port(), free_port()
        self.file = tmp / "stream-sessions.log"
        config = f"""_format_version: "3.0"
plugins:
- name: tcp-log
  protocols: [tcp, tls, udp]
  config: {{host: 127.0.0.1, port: {self.collector.port}}}
services:
- name: echo
  url: tcp://127.0.0.1:{self.echo.port}
  routes:
  - name: plain
    protocols: [tcp]
    destinations: [{{port: {self.plain}}}]
    plugins:
    - name: file-log
      protocols: [tcp]
      config: {{path: {self.file}}}
    - name: ip-restriction
      protocols: [tcp]
      config: {{deny: [{DENIED}]}}
  - name: terminated
    protocols: [tls]
    destinations: [{{port: {self.tls}}}]
- name: dgram
  url: udp://127.0.0.1:{self.dgram.port}
  read_timeout: 300
  routes:
  - name: datagrams
    protocols: [udp]
    destinations: [{{port: {self.udp}}}]
"""
        listen = f"127.0.0.1:{self.plain}, 127.0.0.1:{self.tls} ssl, 127.0.0.1:{self.udp} udp"
        self.gateway = Gateway(tmp, config, 1, "--stream-listen", listen)

    def collected(self, route: str) -> list[dict[str, Any]]:
        messages = [json.loads(line) for line in list(self.collector.lines)]
        return [m for m in messages if m.get("route", {}).get("name") == route]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("stream-log"))
    n.gateway.start()
    yield n
    assert n.gateway.stop() == 0
    n.echo.stop()
    n.dgram.stop()
    n.collector.stop()


def test_a_proxied_tcp_session_is_logged_with_kongs_stream_message(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.plain), timeout=10) as sock:
        assert tag_and_echo(sock, b"hello") == (b"echo", b"hello")
        client_port = sock.getsockname()[1]
    eventually(lambda: bool(node.collected("plain")))
    (message,) = node.collected("plain")
    session = message["session"]
    # From the client 5 bytes; to it the tag line and the echo.
    assert session == {"received": 5, "sent": 10, "status": 200, "server_port": node.plain}
    assert message["upstream"] == {"received": 10, "sent": 5}
    assert message["client_ip"] == "127.0.0.1" and client_port
    assert message["service"]["name"] == "echo" and message["service"]["protocol"] == "tcp"
    assert message["route"]["service"] == {"id": message["service"]["id"]}
    assert set(message["latencies"]) == {"kong", "session"}
    assert message["latencies"]["kong"] <= message["latencies"]["session"]
    assert message["workspace_name"] == "default" and message["started_at"] > 0
    # The route's own file-log wrote the same message.
    eventually(lambda: node.file.exists() and node.file.read_text().count("\n") >= 1)
    (line,) = node.file.read_text().splitlines()
    assert json.loads(line)["session"] == session


def test_a_refused_session_is_logged_with_its_status(node: Node) -> None:
    with socket.socket() as sock:
        sock.bind((DENIED, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", node.plain))
        assert sock.recv(10) == b""  # closed by ip-restriction
    eventually(lambda: any(m["client_ip"] == DENIED for m in node.collected("plain")))
    (message,) = [m for m in node.collected("plain") if m["client_ip"] == DENIED]
    assert message["session"]["status"] == 403
    assert message["upstream"] == {"received": 0, "sent": 0}


def test_a_terminated_tls_session_carries_its_tls(node: Node) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", node.tls), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert tag_and_echo(sock) == (b"echo", b"ping")
            version, cipher = sock.version(), sock.cipher()[0]
    eventually(lambda: bool(node.collected("terminated")))
    (message,) = node.collected("terminated")
    assert message["session"]["tls"] == {
        "version": version,
        "cipher": cipher,
        "client_verify": "NONE",
    }


def test_a_udp_session_is_logged_when_it_ends(node: Node) -> None:
    assert udp_tag_at(node.udp, b"abc") == b"dgram"
    # Logged when the session ends: read_timeout (300 ms) after its last datagram.
    eventually(lambda: bool(node.collected("datagrams")))
    (message,) = node.collected("datagrams")
    session = message["session"]
    assert session == {"received": 3, "sent": 9, "status": 200, "server_port": node.udp}
    assert message["service"]["protocol"] == "udp"
