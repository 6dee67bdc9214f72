"""The edge and the stream proxy with ``--workers 2``: one stream process per worker, each with
its own listening socket (``SO_REUSEPORT``), the kernel spreading connections over them, all of
them writing what they know of their clients into the one edge table the Granian workers read.

Each client connection comes from its own loopback address, so a request whose worker read
another connection's entry (or none) would show the wrong ``X-Real-IP``."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Echo, Gateway, echoed_headers, eventually, free_port
from tests.integration.test_edge import exchange

pytestmark = pytest.mark.integration

CONNECTIONS = 24


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("edge-workers")
    config = f"""_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: echo
    paths: [/echo]
"""
    gw = Gateway(tmp, config, 2)
    gw.ssl_port = free_port()
    gw.start()
    eventually(lambda: len(stream_pids(gw)) == 2)
    yield gw
    assert gw.stop() == 0


def stream_pids(gw: Gateway) -> list[int]:
    """The node's stream processes, among the workers it reports."""
    found = []
    for pid in gw.worker_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"fastkong.stream.main" in cmdline:
            found.append(pid)
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of the IPv4 sockets whose local port is ``port`` in ``state`` (/proc/net/tcp:
    0A listening, 01 established)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(int(fields[9]))
    return inodes


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # Kong's generated default certificate
    return ctx


def test_each_stream_process_listens_on_the_public_port(gateway: Gateway) -> None:
    assert gateway.ssl_port is not None
    listening = tcp_sockets(gateway.ssl_port, "0A")
    pids = stream_pids(gateway)
    assert len(pids) == 2
    owned = [socket_inodes(pid) & listening for pid in pids]
    assert all(len(inodes) == 1 for inodes in owned)
    assert owned[0] != owned[1]


def test_connections_spread_over_both_and_each_client_is_named(gateway: Gateway) -> None:
    assert gateway.ssl_port is not None
    ctx = client_context()
    held = []
    try:
        for i in range(CONNECTIONS):
            raw = socket.create_connection(
                ("127.0.0.1", gateway.ssl_port), 10, (f"127.0.0.{10 + i}", 0)
            )
            held.append(ctx.wrap_socket(raw, server_hostname="gw.test"))
        # While all are open: which stream process accepted each (the kernel's hash of the
        # 4-tuple; all on one of two would be a 1 in 2**23 chance).
        established = tcp_sockets(gateway.ssl_port, "01")
        per_process = [len(socket_inodes(pid) & established) for pid in stream_pids(gateway)]
        assert sum(per_process) == CONNECTIONS
        assert all(n > 0 for n in per_process), per_process
        for i, tls in enumerate(held):
            status, body = exchange(tls, f"/echo/{i}")
            assert status == 200
            seen = echoed_headers(body)
            assert seen["x-real-ip"] == [f"127.0.0.{10 + i}"]
            assert seen["x-forwarded-proto"] == ["https"]
            assert seen["x-forwarded-port"] == [str(gateway.ssl_port)]
    finally:
        for tls in held:
            tls.close()
