"""Log plugins on stream routes, as Kong runs their ``log`` handlers in the stream subsystem:
``file-log``, ``tcp-log``, ``syslog`` and ``loggly`` (and, through the same ``write``,
``udp-log`` and ``http-log``) get Kong's stream serializer message for every tcp, tls and udp
session that ends, proxied or closed by a stream exit; syslog and loggly with the severity of
the session's status. Real ``fastkong start --stream-listen``, real backends and a real log
collector on loopback."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    DatagramCollector,
    Gateway,
    LineServer,
    TaggedDatagrams,
    TaggedEcho,
    eventually,
    free_port,
    tag_and_echo,
    udp_tag_at,
)
from tests.plugins.test_syslog import UnixCollector

pytestmark = pytest.mark.integration

DENIED = "127.0.0.3"


class Node:
    def __init__(self, tmp: Path) -> None:
        self.echo = TaggedEcho("echo").start()
        self.dgram = TaggedDatagrams("dgram")
        self.collector = LineServer().start()
        self.loggly = DatagramCollector()
        self.syslog = UnixCollector(tmp / "syslog.sock")
        self.plain, self.tls, self.udp = free_port(), free_port(), free_port()
        self.dead, self.nobody = free_port(), free_port()  # nothing listens on the second
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
    - name: syslog
      protocols: [tcp]
      config: {{client_errors_severity: warning}}
    - name: loggly
      protocols: [tcp]
      config: {{key: k, host: 127.0.0.1, port: {self.loggly.port}, log_level: debug}}
  - name: terminated
    protocols: [tls]
    destinations: [{{port: {self.tls}}}]
- name: gone
  url: tcp://127.0.0.1:{self.nobody}
  retries: 1
  routes:
  - name: dead
    protocols: [tcp]
    destinations: [{{port: {self.dead}}}]
- name: dgram
  url: udp://127.0.0.1:{self.dgram.port}
  read_timeout: 300
  routes:
  - name: datagrams
    protocols: [udp]
    destinations: [{{port: {self.udp}}}]
"""
        listen = (
            f"127.0.0.1:{self.plain}, 127.0.0.1:{self.tls} ssl, 127.0.0.1:{self.udp} udp, "
            f"127.0.0.1:{self.dead}"
        )
        self.gateway = Gateway(tmp, config, 1, "--stream-listen", listen)

    def collected(self, route: str) -> list[dict[str, Any]]:
        messages = [json.loads(line) for line in list(self.collector.lines)]
        return [m for m in messages if m.get("route", {}).get("name") == route]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("stream-log"))
    # The node's syslog socket, as FASTKONG_SYSLOG_SOCKET names it to the gateway.
    before = os.environ.get("FASTKONG_SYSLOG_SOCKET")
    os.environ["FASTKONG_SYSLOG_SOCKET"] = str(n.syslog.path)
    try:
        n.gateway.start()
    finally:
        if before is None:
            del os.environ["FASTKONG_SYSLOG_SOCKET"]
        else:
            os.environ["FASTKONG_SYSLOG_SOCKET"] = before
    yield n
    assert n.gateway.stop() == 0
    n.echo.stop()
    n.dgram.stop()
    n.collector.stop()
    n.loggly.stop()
    n.syslog.stop()


def syslog_messages(node: Node) -> list[tuple[int, dict[str, Any]]]:
    """(PRI, message) of each syslog datagram (glibc's ``<PRI>time kong[pid]: JSON``)."""
    out = []
    for packet in list(node.syslog.packets):
        found = re.match(rb"<(\d+)>.*? kong\[\d+\]: (.*)", packet, re.DOTALL)
        assert found is not None, packet
        out.append((int(found[1]), json.loads(found[2])))
    return out


def loggly_messages(node: Node) -> list[tuple[int, dict[str, Any]]]:
    """(PRI, message) of each loggly datagram (RFC 5424 head, then the JSON)."""
    out = []
    for packet in list(node.loggly.packets):
        found = re.match(rb"<(\d+)>1 \S+ \S+ kong - - \[[^]]*\] (.*)", packet, re.DOTALL)
        assert found is not None, packet
        out.append((int(found[1]), json.loads(found[2])))
    return out


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
    (tried,) = message["tries"]
    assert (tried["ip"], tried["port"], tried["balancer_latency"]) == (
        "127.0.0.1",
        node.echo.port,
        0,
    )
    assert message["started_at"] <= tried["balancer_start"] <= message["started_at"] + 5000
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
    assert "tries" not in message


def test_a_session_whose_peer_cannot_be_reached_logs_its_failed_tries(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.dead), timeout=10) as sock:
        assert sock.recv(10) == b""  # closed: no peer answered
    eventually(lambda: bool(node.collected("dead")))
    (message,) = node.collected("dead")
    assert message["session"]["status"] == 502
    # The first try and its one retry, both refused.
    assert [(t["port"], t["state"], t["code"]) for t in message["tries"]] == [
        (node.nobody, "failed", 502),
        (node.nobody, "failed", 502),
    ]


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
    assert [t["port"] for t in message["tries"]] == [node.dgram.port]


def test_syslog_and_loggly_log_sessions_with_their_statuss_severity(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.plain), timeout=10) as sock:
        assert tag_and_echo(sock, b"sev") == (b"echo", b"sev")
    with socket.socket() as sock:
        sock.bind((DENIED, 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", node.plain))
        assert sock.recv(10) == b""

    def both(found: list[tuple[int, dict[str, Any]]]) -> dict[int, int]:
        """Session status -> PRI."""
        return {m["session"]["status"]: pri for pri, m in found}

    eventually(lambda: {200, 403} <= set(both(syslog_messages(node))))
    eventually(lambda: {200, 403} <= set(both(loggly_messages(node))))
    # syslog: facility user (1 * 8); info (6) for a 200, the configured warning (4) for a 403.
    assert both(syslog_messages(node)) == {200: 14, 403: 12}
    # loggly: facility user; its defaults, info for 200 and info for 4xx.
    assert both(loggly_messages(node)) == {200: 14, 403: 14}
