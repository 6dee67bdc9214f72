"""A small HTTP/1.1 echo upstream for the demo, the tests and the benchmarks.

It answers every request with a JSON description of what it received (method, path, query,
headers, body size and md5), streaming request bodies so a 200 MB upload costs no memory. A few
paths change the behaviour, so tests can make an upstream misbehave on purpose:

``/status/<code>``      answer with that status
``/bytes/<n>``          answer with ``n`` bytes (Content-Length, streamed in 64 KiB pieces)
``/chunked/<n>``        the same, chunked
``/delay/<ms>``         wait before answering
``/hang``               never answer
``/close``              close the connection without answering
``/static``             a fixed 13-byte body (benchmarks)
``/named``              a 2-byte body with a ``Server`` header naming this echo

Run it: ``python -m fastkong.echo --port 9001``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
from typing import Any, cast

import httptools

_STATIC = b"Hello, World!"
_PIECE = b"x" * 65536


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body_md5 = hashlib.md5()
        self.body_len = 0
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body_md5 = hashlib.md5()
        self.body_len = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body_md5.update(body)
        self.body_len += len(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        info = {
            "method": method,
            "url": self.url.decode("latin-1"),
            "headers": self.headers,
            "body_length": self.body_len,
            "body_md5": self.body_md5.hexdigest(),
            "keep_alive": self.parser.should_keep_alive(),
        }
        self.queue.put_nowait(info)

    async def _serve(self) -> None:
        while True:
            info = await self.queue.get()
            await self._answer(info)
            if not info["keep_alive"] and self.transport is not None:
                self.transport.close()
                return

    async def _answer(self, info: dict[str, Any]) -> None:
        transport = self.transport
        assert transport is not None
        url: str = info["url"]
        path, _, query = url.partition("?")
        parts = path.strip("/").split("/")
        head_only = info["method"] == "HEAD"
        kind = parts[0] if parts else ""
        if kind == "static":
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\n"
                + (b"" if head_only else _STATIC)
            )
            return
        if kind == "named":
            transport.write(
                b"HTTP/1.1 200 OK\r\nServer: %s\r\ncontent-length: 2\r\n\r\n%s"
                % (self.name.encode(), b"" if head_only else b"ok")
            )
            return
        if kind == "hang":
            await asyncio.Future()
        if kind == "close":
            transport.close()
            return
        if kind == "delay" and len(parts) > 1:
            await asyncio.sleep(int(parts[1]) / 1000)
        if kind in ("bytes", "chunked") and len(parts) > 1:
            await self._send_bytes(int(parts[1]), kind == "chunked", head_only)
            return
        status = int(parts[1]) if kind == "status" and len(parts) > 1 else 200
        body = json.dumps(
            {
                "server": self.name,
                "method": info["method"],
                "path": path,
                "query": query,
                "url": url,
                "headers": info["headers"],
                "body_length": info["body_length"],
                "body_md5": info["body_md5"],
            }
        ).encode()
        reason = b"OK" if status == 200 else b"Status"
        no_body = head_only or status in (204, 304)
        length = b"" if status in (204, 304) else b"content-length: %d\r\n" % len(body)
        transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nx-echo-server: %s\r\n%s\r\n"
            % (status, reason, self.name.encode(), length)
            + (b"" if no_body else body)
        )

    async def _send_bytes(self, n: int, chunked: bool, head_only: bool) -> None:
        transport = self.transport
        assert transport is not None
        framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % n
        transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n%s\r\n\r\n" % framing
        )
        if head_only:
            return
        left = n
        while left > 0:
            piece = _PIECE if left >= len(_PIECE) else _PIECE[:left]
            left -= len(piece)
            transport.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            await self.can_write.wait()
            if transport.is_closing():
                return
        if chunked:
            transport.write(b"0\r\n\r\n")


async def serve(host: str = "127.0.0.1", port: int = 9001, name: str = "echo") -> asyncio.Server:
    """Start the echo server; returns the listening :class:`asyncio.Server`."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _EchoProtocol(name), host, port, reuse_address=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fastkong's echo upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--name", default=os.environ.get("ECHO_NAME", "echo"))
    args = parser.parse_args(argv)

    async def run() -> None:
        server = await serve(args.host, args.port, args.name)
        print(f"echo upstream listening on http://{args.host}:{args.port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        import uvloop  # noqa: PLC0415  (optional speed-up)

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
