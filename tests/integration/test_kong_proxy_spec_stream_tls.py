"""Kong's ``spec/02-integration/05-proxy/31-stream_tls_spec.lua`` (lines 1-163: the three
``it`` at 71, 81 and 110), the ``traditional_compatible`` run, against a real gateway and a
real loopback TLS upstream: the server name a ``tls`` stream route's service
(``tls://upstream_srv``, an upstream entity whose target is an IP address) is sent, by
``preserve_host`` and the upstream's ``host_header``.

Kong (``kong/templates/nginx_kong_stream.lua``: ``proxy_ssl_name $upstream_host``,
``proxy_ssl_server_name on``) names the upstream's TLS server by ``$upstream_host``: the client's
SNI under ``preserve_host`` (``kong/runloop/handler.lua`` preread ``before``), else what
``set_host_header`` (``kong/runloop/balancer/init.lua`` lines 441-480) makes of the upstream's
``host_header`` or the target's name, port cut off by nginx; an IP address sends no SNI.

Adapted: the spec runs on PostgreSQL and changes ``preserve_host`` and ``host_header`` through
Admin API ``PATCH``es between connections. Here (DB-less) each state is a route of its own on
an ``ssl`` stream listener of its own, in one config; the last test also changes a running node
by posting a new declarative config (``POST /config``), Kong's ``PATCH`` then
``wait_for_all_config_update``.

Left out: the ``logger`` custom test plugin (a Lua plugin from ``spec/fixtures/custom_plugins``
that only writes log lines, nothing is asserted on them) and ``proxy_stream_error_log``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, eventually, free_port, tls_server_context, wait_port
from tests.pki import Pki

pytestmark = pytest.mark.integration

CLIENT_SNI = "ssl-hello.test"


class SniStream(LoopServer):
    """Kong's stream mock (its ``ssl`` listener, in ``spec/fixtures/template_inject/``
    ``nginx_kong_test_custom_inject_stream.lua``): reads a line; ``get_sni`` is answered with
    the TLS server name the connection was opened with (``nil`` when none) and a newline, then
    the connection ends."""

    def __init__(self, tmp: Path) -> None:
        context = tls_server_context(*Pki("stream mock CA").issue("localhost"), tmp)
        context.sni_callback = self._on_sni
        super().__init__(ssl=context)
        self.by_object: dict[int, str | None] = {}

    def _on_sni(self, sock: Any, name: str | None, _: Any) -> None:
        self.by_object[id(sock)] = name

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if b"get_sni" in line:
                sni = self.by_object.get(id(writer.get_extra_info("ssl_object")))
                writer.write(f"{sni or 'nil'}\n".encode())
            else:
                writer.write(line)
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def config(mock: int, plain: int, preserved: int, named: int, srv_host_header: bool) -> str:
    """Three ``tls`` routes on their own listeners: ``preserve_host`` false and true on
    ``upstream_srv``, and one on an upstream with ``host_header``; with ``srv_host_header``,
    ``upstream_srv`` has that ``host_header`` too."""
    header = f"\n  host_header: {CLIENT_SNI}" if srv_host_header else ""
    return f"""_format_version: "3.0"
upstreams:
- name: upstream_srv{header}
  targets: [{{target: "127.0.0.1:{mock}"}}]
- name: upstream_named
  host_header: {CLIENT_SNI}
  targets: [{{target: "127.0.0.1:{mock}"}}]
services:
- name: tls
  url: tls://upstream_srv
  routes:
  - {{name: routes_stream, protocols: [tls], destinations: [{{port: {plain}}}]}}
  - name: routes_stream_preserved
    protocols: [tls]
    destinations: [{{port: {preserved}}}]
    preserve_host: true
- name: tls-named
  url: tls://upstream_named
  routes:
  - {{name: routes_stream_named, protocols: [tls], destinations: [{{port: {named}}}]}}
"""


@dataclass
class Node:
    gateway: Gateway
    mock: SniStream
    plain: int
    preserved: int
    named: int

    def config(self, srv_host_header: bool = False) -> str:
        return config(self.mock.port, self.plain, self.preserved, self.named, srv_host_header)

    def post(self, text: str) -> None:
        """Load ``text`` through the Admin API and wait until every worker serves it."""
        admin = f"http://127.0.0.1:{self.gateway.admin_port}/config"
        posted = httpx.post(admin, content=text, headers={"content-type": "text/yaml"})
        assert posted.status_code == 201, posted.text
        wanted = self.gateway.status()["configuration_hash"]
        eventually(
            lambda: set(self.gateway.status()["fastkong"]["workers"].values()) == {wanted},
            timeout=20,
        )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("kong-stream-tls")
    mock = SniStream(tmp).start()
    plain, preserved, named = free_port(), free_port(), free_port()
    n = Node(Gateway(tmp, None), mock, plain, preserved, named)
    n.gateway.config_path.write_text(n.config())
    n.gateway.has_config = True
    listen = ", ".join(f"127.0.0.1:{port} ssl" for port in (plain, preserved, named))
    n.gateway.extra = ("--stream-listen", listen)
    try:
        n.gateway.start()
        for port in (plain, preserved, named):
            wait_port(port, proc=n.gateway.proc)
        yield n
    finally:
        n.gateway.stop()
        mock.stop()


def get_sni(port: int) -> str:
    """The spec's exchange: a TLS handshake naming ``ssl-hello.test`` (not verified), then
    ``get_sni`` and everything read until the connection ends."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=CLIENT_SNI) as tls:
            tls.sendall(b"get_sni\n")
            body = b""
            while chunk := tls.recv(65536):
                body += chunk
    return body.decode()


def test_tls_not_set_host_header(node: Node) -> None:
    # the target is an IP address, which names no server: no SNI
    assert get_sni(node.plain) == "nil\n"


def test_tls_set_preserve_host(node: Node) -> None:
    assert get_sni(node.preserved) == f"{CLIENT_SNI}\n"


def test_tls_set_host_header(node: Node) -> None:
    assert get_sni(node.plain) == "nil\n"  # preserve_host false, no host_header
    assert get_sni(node.named) == f"{CLIENT_SNI}\n"


def test_tls_host_header_set_on_a_running_node(node: Node) -> None:
    """The spec's ``PATCH /upstreams/upstream_srv`` with ``host_header``, as a new config."""
    assert get_sni(node.plain) == "nil\n"
    try:
        node.post(node.config(srv_host_header=True))
        assert get_sni(node.plain) == f"{CLIENT_SNI}\n"
    finally:
        node.post(node.config())
    assert get_sni(node.plain) == "nil\n"
