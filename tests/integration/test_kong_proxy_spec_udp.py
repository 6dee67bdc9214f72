"""Kong's ``spec/02-integration/05-proxy/26-udp_spec.lua`` (lines 20-63, "proxies udp") against
a real ``fastkong start --stream-listen '... udp'`` in front of a real UDP echo server on
loopback (mock_upstream's stream port echoes what it gets): a ``udp`` route matched by its
``sources`` alone, to a service given by a ``udp://`` URL.

Left out: the ``traditional`` and ``expressions`` flavors of the spec's loop (this port runs
``traditional_compatible``) and the ``helpers.each_strategy`` loop (DB-less, one run).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.helpers import DatagramCollector, Gateway, free_port

pytestmark = pytest.mark.integration


class UdpEcho(DatagramCollector):
    """A UDP server on loopback that sends every datagram back to its sender."""

    def _run(self) -> None:
        while self.running:
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.sock.sendto(data, addr)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, int]]:
    echo = UdpEcho()
    port = free_port()
    config = f"""
_format_version: "3.0"
services:
- name: udp-service
  url: udp://127.0.0.1:{echo.port}
  routes:
  - protocols: [udp]
    sources: [{{ip: 127.0.0.1}}]
"""
    gw = Gateway(
        tmp_path_factory.mktemp("udp"), config, 1, "--stream-listen", f"127.0.0.1:{port} udp"
    )
    try:
        gw.start()
        yield gw, port
    finally:
        gw.stop()
        echo.stop()


def test_proxies_udp(setup: tuple[Gateway, int]) -> None:
    _, port = setup
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(10)
        client.connect(("127.0.0.1", port))
        client.send(b"HELLO WORLD!\n")
        assert client.recv(65536) == b"HELLO WORLD!\n"
