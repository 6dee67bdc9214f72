"""Kong's ``nginx_proxy_proxy_buffer_size`` read by a real ``fastkong start``: the most bytes an
upstream's response head may take, past which nginx (so Kong) answers 502 and logs "upstream
sent too big header". Seen from a raw upstream that answers heads of the size asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Gateway, LoopServer, eventually

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: sized
  url: http://127.0.0.1:{port}
  routes: [{{name: sized, paths: ["/"]}}]
"""
TOO_BIG_LOG = "upstream sent too big header while reading response header from upstream"
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def head_of(size: int) -> bytes:
    """A response whose head (status line to blank line) is ``size`` bytes, then ``ok``."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: \r\n\r\n"
    return head.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (size - len(head))) + b"ok"


class SizedHeads(LoopServer):
    """Answers ``GET /<n>`` with a head of ``n`` bytes, on a kept-alive connection."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                writer.write(head_of(int(request.split(b" ", 2)[1].lstrip(b"/"))))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture(scope="module")
def peer() -> Iterator[SizedHeads]:
    server = SizedHeads().start()
    yield server
    server.stop()


def start(workdir: Path, peer: SizedHeads) -> Gateway:
    gw = Gateway(workdir, CONFIG.format(port=peer.port))
    gw.stderr_path = workdir / "stderr.log"
    return gw.start()


def configuration(gw: Gateway) -> dict[str, object]:
    info = httpx.get(f"http://127.0.0.1:{gw.admin_port}/").json()
    return info["configuration"]  # type: ignore[no-any-return]


def test_a_raised_limit_is_honoured_even_under_the_default(
    tmp_path: Path, peer: SizedHeads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONG_NGINX_PROXY_PROXY_BUFFER_SIZE", "8k")
    gw = start(tmp_path, peer)
    try:
        with httpx.Client(timeout=5) as client:
            for size in (6 * 1024, 8 * 1024):  # 8k: a head of exactly the limit fits
                r = client.get(gw.url(f"/{size}"))
                assert r.status_code == 200 and r.text == "ok"
            for size in (8 * 1024 + 1, 10 * 1024):
                r = client.get(gw.url(f"/{size}"))
                assert r.status_code == 502
                assert "An invalid response was received from the upstream server" in r.text
            # a WebSocket handshake's answer is a response head too (relayed here as a refusal)
            for size, status in ((6 * 1024, 200), (8 * 1024, 200), (8 * 1024 + 1, 502)):
                r = client.get(gw.url(f"/{size}"), headers=UPGRADE)
                assert r.status_code == status, size
        assert configuration(gw)["nginx_proxy_proxy_buffer_size"] == "8k"
        assert gw.stderr_path is not None
        log = gw.stderr_path
        eventually(lambda: log.read_text(errors="replace").count(TOO_BIG_LOG) == 3)
    finally:
        assert gw.stop() == 0


def test_without_the_setting_the_default_is_64k(tmp_path: Path, peer: SizedHeads) -> None:
    gw = start(tmp_path, peer)
    try:
        with httpx.Client(timeout=5) as client:
            r = client.get(gw.url(f"/{10 * 1024}"))
            assert r.status_code == 200 and r.text == "ok"
            assert client.get(gw.url(f"/{64 * 1024 + 1}")).status_code == 502
        assert "nginx_proxy_proxy_buffer_size" not in configuration(gw)
    finally:
        assert gw.stop() == 0
