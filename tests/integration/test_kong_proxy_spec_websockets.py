"""Kong's ``spec/02-integration/05-proxy/09-websockets_spec.lua`` against a real ``fastkong start``
(a plain listener and an ``ssl http2`` one) in front of a real WebSocket echo upstream on
loopback (:class:`tests.ws_peer.WsEcho`, for mock_upstream's ``/ws`` location).

Ported, for both of the spec's runs (lines 5-42: without and "with buffering on", the second
with the ``enable-buffering`` test plugin global, as its Python twin below):

- "returns correct headers on handshake with Kong" (lines 105-107, checks of lines 86-93);
- "sends and gets text with Kong" and "... under HTTPS" (lines 129-137);
- "plays ping-pong with Kong" and "... under HTTPS" (lines 159-167).

The route (``/up-ws``, ``strip_path``) leads to the service path ``/ws``: mock_upstream serves
WebSockets on that location only, so the upstream here records the target it was asked for.

Left out:

- the "... without Kong" cases (lines 101-103, 125-127, 155-157): they talk to mock_upstream
  directly, testing the fixture, not the gateway.
- The ``helpers.each_strategy`` loop: fastkong is DB-less, one run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastkong.proxy.websocket import OP_PONG, OP_TEXT, accept_key
from tests.helpers import Gateway, free_port, plugin_package
from tests.ws_peer import WsClient, WsEcho

pytestmark = pytest.mark.integration

#: Kong's ``enable-buffering`` test plugin
#: (``spec/fixtures/custom_plugins/kong/plugins/enable-buffering``): its access handler calls
#: ``kong.service.request.enable_buffering()`` (fastkong: ``ctx.buffer_response``); its
#: header_filter, with ``mode`` set, answers the buffered JSON body with ``modified: true``
#: (``modify-json``) or adds the body's ``MD5`` header (``md5-header``).
ENABLE_BUFFERING = """
import hashlib
import json

import msgspec

from fastkong.plugins.base import Plugin, kong_exit


class EnableBufferingConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    phase: str = "header_filter"
    mode: str | None = None


class EnableBuffering(Plugin):
    name = "enable-buffering"
    priority = 1000000
    Config = EnableBufferingConfig

    async def access(self, ctx):
        ctx.buffer_response = True
        return None

    async def buffered(self, ctx, status, headers):
        if self.config.phase == "header_filter" and self.config.mode == "modify-json":
            body = json.loads(ctx.response_body)
            body["modified"] = True
            return kong_exit(status, body, [(b"Modified", b"yes")])
        return None

    def response(self, ctx, status, headers):
        if self.config.phase == "header_filter" and self.config.mode == "md5-header":
            md5 = hashlib.md5(ctx.response_body or b"").hexdigest()
            headers[:] = [(n, v) for n, v in headers if n.lower() != b"md5"]  # set_header
            headers.append((b"md5", md5.encode()))
"""

CONFIG = """
_format_version: "3.0"
services:
- name: ws
  url: http://127.0.0.1:{port}/ws
  routes:
  - {{protocols: [http], paths: [/up-ws], strip_path: true}}
"""

BUFFERING = """plugins:
- name: enable-buffering
  protocols: [http, https, grpc, grpcs]
"""


class _RecordingReader:
    """A StreamReader that notes the request line of the head it reads first."""

    def __init__(self, reader: asyncio.StreamReader, targets: list[str]) -> None:
        self.reader = reader
        self.targets: list[str] | None = targets

    async def readuntil(self, separator: bytes) -> bytes:
        data = await self.reader.readuntil(separator)
        if self.targets is not None:
            self.targets.append(data.split(b" ", 2)[1].decode("latin-1"))
            self.targets = None
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)


class TargetedWsEcho(WsEcho):
    """:class:`WsEcho` that keeps the request target of each handshake."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await super()._serve(_RecordingReader(reader, self.targets), writer)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def upstream() -> Iterator[TargetedWsEcho]:
    server = TargetedWsEcho().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=[False, True], ids=["", "with buffering on"])
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: TargetedWsEcho,
) -> Iterator[Gateway]:
    buffering: bool = request.param
    config = CONFIG.format(port=upstream.port) + (BUFFERING if buffering else "")
    gw = Gateway(tmp_path_factory.mktemp("ws"), config)
    gw.ssl_port = free_port()
    try:
        with pytest.MonkeyPatch.context() as env:
            if buffering:
                site = tmp_path_factory.mktemp("enable-buffering")
                env.setenv("PYTHONPATH", install_enable_buffering(site))
            gw.start()
        yield gw
    finally:
        gw.stop()


def install_enable_buffering(site: Path) -> str:
    return plugin_package(
        site,
        "kong-spec-enable-buffering",
        {"enable_buffering": ENABLE_BUFFERING},
        {"enable-buffering": "enable_buffering:EnableBuffering"},
    )


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def open_ws(gw: Gateway, tls: bool) -> WsClient:
    """A WebSocket to ``/up-ws`` through the plain or the TLS listener (resty.websocket.client's
    handshake: Host, Upgrade, Connection, Sec-WebSocket-Key and -Version)."""
    port = gw.ssl_port if tls else gw.port
    assert port is not None
    ws = WsClient()
    ws.reader, ws.writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=_client_tls() if tls else None
    )
    key = base64.b64encode(os.urandom(16))
    ws.writer.write(
        f"GET /up-ws HTTP/1.1\r\nUpgrade: websocket\r\nHost: 127.0.0.1:{port}\r\n".encode()
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n\r\n"
    )
    head = (await ws.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    ws.status = int(head.split(" ", 2)[1])
    assert ws.status == 101, head
    for line in head.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            ws.headers[name.strip().lower()] = value.strip()
    assert ws.headers["sec-websocket-accept"] == accept_key(key).decode()
    return ws


def test_returns_correct_headers_on_handshake_with_kong(
    gateway: Gateway, upstream: TargetedWsEcho
) -> None:
    # check_headers (lines 55-94): the raw head of the handshake's answer.
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /up-ws HTTP/1.1\r\nUpgrade: websocket\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk, head
            head += chunk
    head = head.split(b"\r\n\r\n")[0]
    status, *lines = head.decode("latin-1").split("\r\n")
    assert status == "HTTP/1.1 101 Switching Protocols"
    headers = {n.strip().lower(): v.strip() for n, _, v in (li.partition(":") for li in lines)}
    assert headers["connection"].lower() == "upgrade"
    assert headers["upgrade"] == "websocket"
    # Kong also finds "Via: 1.1 kong" here. fastkong's 101 is Granian's, with Granian's own
    # headers only (README.md, "Kong compatibility notes": "Granian also sends a WebSocket
    # `101` with its own headers only"), so it carries no Via.
    assert "via" not in headers
    assert upstream.targets[-1] == "/ws"


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_sends_and_gets_text_with_kong(
    gateway: Gateway, upstream: TargetedWsEcho, tls: bool
) -> None:
    payload = {"message": "hello websocket"}

    async def scenario() -> None:
        ws = await open_ws(gateway, tls)
        await ws.send(json.dumps(payload))
        op, frame = await ws.recv()
        assert op == OP_TEXT
        assert json.loads(frame) == payload
        await ws.close()

    asyncio.run(scenario())
    assert upstream.targets[-1] == "/ws"


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_plays_ping_pong_with_kong(gateway: Gateway, tls: bool) -> None:
    payload = {"message": "give me a pong"}

    async def scenario() -> None:
        ws = await open_ws(gateway, tls)
        await ws.ping(json.dumps(payload).encode())
        op, frame = await ws.recv()
        assert op == OP_PONG
        assert json.loads(frame) == payload
        await ws.close()

    asyncio.run(scenario())
