"""A wildcard ``udp`` listener (``--stream-listen '0.0.0.0:P udp'``) as nginx serves one: each
datagram's own destination (``IP_PKTINFO``) routes its session and is the source of the
session's replies, so a client whose socket is connected to the address it wrote to (as most
resolvers' are) gets its answers, and a route's ``destinations`` address entries match.

The gateway binds every address of its network, so the test runs in a network namespace of
its own (``unshare -rn``: a new user and network namespace whose one interface is loopback,
brought up with ``ip link set lo up``): the wildcard socket can take nothing but the test's
loopback datagrams. The test re-runs itself there with ``FASTKONG_TEST_NETNS=1``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import Gateway, TaggedDatagrams, free_port, in_own_network, udp_tag_at

pytestmark = pytest.mark.integration


def connected_ask(server: str, port: int, payload: bytes = b"ping") -> bytes:
    """The answer a client connected to ``server:port`` gets (it takes datagrams from that
    address only, as a resolver's socket does); b"" when none comes."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.connect((server, port))
        sock.send(payload)
        try:
            return sock.recv(65536)
        except (TimeoutError, ConnectionRefusedError):
            return b""


def test_a_wildcard_udp_listener_answers_from_and_routes_by_the_address_written_to(
    tmp_path: Path,
) -> None:
    if not in_own_network(tmp_path):
        return
    named, other = TaggedDatagrams("named"), TaggedDatagrams("other")
    port = free_port()
    config = f"""_format_version: "3.0"
services:
- name: named
  url: udp://127.0.0.1:{named.port}
  routes:
  - name: to-127-0-0-2
    protocols: [udp]
    destinations: [{{ip: 127.0.0.2, port: {port}}}]
- name: other
  url: udp://127.0.0.1:{other.port}
  routes:
  - name: any-address
    protocols: [udp]
    destinations: [{{port: {port}}}]
"""
    gateway = Gateway(tmp_path, config, 1, "--stream-listen", f"0.0.0.0:{port} udp")
    gateway.start()
    try:
        # Written to 127.0.0.2: that route, and the answer comes from 127.0.0.2.
        assert connected_ask("127.0.0.2", port) == b"named:ping"
        # Written to 127.0.0.3 (or 127.0.0.1): the port-only route, answered from there.
        assert connected_ask("127.0.0.3", port) == b"other:ping"
        assert connected_ask("127.0.0.1", port) == b"other:ping"
        # One client address writing to two addresses of the node: two sessions.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            for server, tag in (("127.0.0.2", b"named"), ("127.0.0.4", b"other")) * 2:
                sock.sendto(b"x", (server, port))
                data, source = sock.recvfrom(65536)
                assert (data, source) == (tag + b":x", (server, port))
        assert udp_tag_at(port) == b"other"  # an unconnected client, to 127.0.0.1
    finally:
        assert gateway.stop() == 0
        named.stop()
        other.stop()


def test_an_ipv6_wildcard_answers_ipv6_and_mapped_ipv4_clients_from_their_address(
    tmp_path: Path,
) -> None:
    if not in_own_network(tmp_path):
        return
    echo = TaggedDatagrams("echo")
    port = free_port()
    config = f"""_format_version: "3.0"
services:
- name: echo
  url: udp://127.0.0.1:{echo.port}
  routes:
  - name: any
    protocols: [udp]
    destinations: [{{port: {port}}}]
"""
    gateway = Gateway(tmp_path, config, 1, "--stream-listen", f"[::]:{port} udp")
    gateway.start()
    try:
        assert connected_ask("::1", port) == b"echo:ping"
        # An IPv4 client of the dual-stack socket, written to 127.0.0.2: answered from there.
        assert connected_ask("127.0.0.2", port) == b"echo:ping"
    finally:
        assert gateway.stop() == 0
        echo.stop()
