"""``udp`` stream routes end to end: ``fastkong start --stream-listen '... udp'`` in front of real
UDP servers on loopback, as nginx's stream proxy serves Kong's udp routes: one session per
client address (its datagrams keep their peer, answers come back from the listener's address),
balanced sessions, ip-restriction, ``read_timeout`` ending an idle session, tcp routes not
taken by datagrams, and the access log's ``UDP`` lines."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Gateway, TaggedDatagrams, eventually, free_port
from tests.integration.test_stream_proxy_protocol import _metric

pytestmark = pytest.mark.integration

DENIED_CLIENT = "127.0.0.3"


class Node:
    def __init__(self, tmp: Path) -> None:
        self.a, self.b = TaggedDatagrams("A"), TaggedDatagrams("B")
        self.balanced, self.guarded, self.tcp_only = (free_port() for _ in range(3))
        self.log = tmp / "stream.log"
        config = f"""_format_version: "3.0"
plugins:
- name: prometheus
  protocols: [udp]
  config: {{status_code_metrics: true}}
upstreams:
- name: pool
  targets:
  - target: 127.0.0.1:{self.a.port}
  - target: 127.0.0.1:{self.b.port}
services:
- name: balanced
  protocol: udp
  host: pool
  port: 53
  read_timeout: 600
  routes:
  - name: balanced
    protocols: [udp]
    destinations: [{{port: {self.balanced}}}]
- name: guarded
  protocol: udp
  host: 127.0.0.1
  port: {self.a.port}
  read_timeout: 600
  routes:
  - name: guarded
    protocols: [udp]
    destinations: [{{port: {self.guarded}}}]
    plugins:
    - name: ip-restriction
      config: {{deny: [{DENIED_CLIENT}]}}
- name: tcp-only
  protocol: tcp
  host: 127.0.0.1
  port: {self.a.port}
  routes:
  - name: tcp-only
    protocols: [tcp]
    destinations: [{{port: {self.tcp_only}}}]
"""
        self.gateway = Gateway(
            tmp,
            config,
            1,
            "--stream-listen",
            f"127.0.0.1:{self.balanced} udp, 127.0.0.1:{self.guarded} udp, "
            f"127.0.0.1:{self.tcp_only} udp",
            "--proxy-stream-access-log",
            str(self.log),
        )

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("udp"))
    n.gateway.start()
    yield n
    assert n.gateway.stop() == 0
    n.a.stop()
    n.b.stop()


def client(bind: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 0))
    sock.settimeout(2)
    return sock


def ask(sock: socket.socket, port: int, payload: bytes) -> tuple[bytes, tuple[str, int]]:
    sock.sendto(payload, ("127.0.0.1", port))
    data, addr = sock.recvfrom(65536)
    return data, addr[:2]


def silent(sock: socket.socket, port: int, payload: bytes) -> bool:
    """Whether ``payload`` sent to ``port`` goes unanswered."""
    sock.settimeout(0.5)
    sock.sendto(payload, ("127.0.0.1", port))
    try:
        sock.recvfrom(65536)
    except TimeoutError:
        return True
    return False


def test_a_clients_datagrams_keep_their_peer_and_sessions_are_balanced(node: Node) -> None:
    with client() as one, client() as two:
        first, addr = ask(one, node.balanced, b"q1")
        assert addr == ("127.0.0.1", node.balanced)  # answered from the listener's address
        tag = first.split(b":")[0]
        assert first == tag + b":q1"
        for i in range(5):
            assert ask(one, node.balanced, b"q%d" % i)[0] == tag + b":q%d" % i
        other = ask(two, node.balanced, b"x")[0].split(b":")[0]
        assert {tag, other} == {b"A", b"B"}  # round-robin over the pool, one peer per session


def test_an_idle_session_ends_after_read_timeout(node: Node) -> None:
    with client() as one:
        ask(one, node.balanced, b"hello")
        # The session ends 0.6 s after its last datagram, logged with what it moved: 7 bytes
        # to the client ("A:hello" or "B:hello"), 5 from it.
        eventually(lambda: any(" UDP 200 7 5 " in line for line in node.log_lines()), 5)
        # The same client address then opens a new session.
        assert ask(one, node.balanced, b"again")[0].endswith(b":again")


def test_ip_restriction_drops_a_denied_clients_datagrams(node: Node) -> None:
    with client() as allowed:
        assert ask(allowed, node.guarded, b"ok")[0] == b"A:ok"
    with client(DENIED_CLIENT) as denied:
        assert silent(denied, node.guarded, b"no")
    eventually(
        lambda: any(f"{DENIED_CLIENT} [" in x and " UDP 403 " in x for x in node.log_lines())
    )


def test_datagrams_take_only_udp_routes(node: Node) -> None:
    """A tcp route on the same port is not a datagram's: no route, nothing sent, nginx's 500."""
    with client() as sock:
        assert silent(sock, node.tcp_only, b"tcp?")
    eventually(lambda: any(" UDP 500 0 0 " in line for line in node.log_lines()))


def test_the_prometheus_plugin_counts_udp_sessions(node: Node) -> None:
    """Kong's stream families count udp sessions too: a refused one at once (source kong), a
    proxied one when it ends (source service)."""
    url = f"http://127.0.0.1:{node.gateway.status_port}/metrics"
    sessions = "kong_stream_sessions_total"

    def guarded_counts(text: str) -> list[float]:
        pairs = (("200", "service"), ("403", "kong"))
        return [_metric(text, sessions, route="guarded", code=c, source=s) for c, s in pairs]

    # Earlier tests' sessions on this route end up to read_timeout (0.6 s) after their last
    # datagram and reach /metrics up to 1 s (FLUSH_INTERVAL) later: the baseline is taken once
    # two readings that far apart agree, so none of them is counted as this test's.
    before = httpx.get(url).text
    while True:
        time.sleep(1.7)
        settled = httpx.get(url).text
        if guarded_counts(settled) == guarded_counts(before):
            break
        before = settled
    with client() as sock:
        ask(sock, node.guarded, b"counted")
    with client(DENIED_CLIENT) as denied:
        assert silent(denied, node.guarded, b"refused")

    def counted() -> bool:
        text = httpx.get(url).text
        return all(
            _metric(text, sessions, route="guarded", code=code, source=source)
            - _metric(before, sessions, route="guarded", code=code, source=source)
            == 1
            for code, source in (("200", "service"), ("403", "kong"))
        )

    eventually(counted, timeout=10)  # the proxied one ends after its read_timeout (0.6 s)
