"""A WebSocket echo upstream and a small WebSocket client, for the gateway's WebSocket tests.

Both use the gateway's own frame codec (``fastkong.proxy.websocket``). The upstream runs an
asyncio loop in a thread that the test starts and stops. It echoes text and binary messages,
answers pings, and on the text ``close:<code>`` closes with that code (reason ``bye``); on the
text ``ping`` it pings the client and later reports whether the pong came back
(``pongs``).
"""

from __future__ import annotations

import asyncio
import base64
import os

from fastkong.proxy.websocket import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    accept_key,
    close_payload,
    encode_frame,
    parse_close,
    read_frame,
)
from tests.helpers import LoopServer


class WsEcho(LoopServer):
    def __init__(self) -> None:
        super().__init__()
        self.pongs = 0
        self.closes: list[int] = []
        self.handshakes: list[dict[str, str]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            self.handshakes.append(headers)
            if b"/refuse" in head.split(b"\r\n", 1)[0]:
                writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 4\r\n\r\nnope")
                writer.close()
                return
            key = headers["sec-websocket-key"].encode()
            extra = b""
            if "sec-websocket-protocol" in headers:
                chosen = headers["sec-websocket-protocol"].split(",")[0].strip()
                extra = b"sec-websocket-protocol: " + chosen.encode() + b"\r\n"
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                b"sec-websocket-accept: " + accept_key(key) + b"\r\n" + extra + b"\r\n"
            )
            parts: list[bytes] = []
            kind = OP_TEXT
            while True:
                fin, op, payload = await read_frame(reader)
                if op == OP_PING:
                    writer.write(encode_frame(OP_PONG, payload, False))
                elif op == OP_PONG:
                    self.pongs += 1
                elif op == OP_CLOSE:
                    code, _ = parse_close(payload)
                    self.closes.append(code)
                    writer.write(encode_frame(OP_CLOSE, payload, False))
                    writer.close()
                    return
                else:
                    if op != OP_CONT:
                        kind, parts = op, []
                    parts.append(payload)
                    if not fin:
                        continue
                    data = b"".join(parts)
                    if kind == OP_TEXT and data.startswith(b"close:"):
                        code = int(data[6:])
                        writer.write(encode_frame(OP_CLOSE, close_payload(code, "bye"), False))
                        await writer.drain()
                        return
                    if kind == OP_TEXT and data == b"ping":
                        writer.write(encode_frame(OP_PING, b"hi", False))
                    # echo, fragmented when large (the gateway must reassemble)
                    if len(data) > 100_000:
                        half = len(data) // 2
                        writer.write(encode_frame(kind, data[:half], False, fin=False))
                        writer.write(encode_frame(OP_CONT, data[half:], False))
                    else:
                        writer.write(encode_frame(kind, data, False))
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError, KeyError):
            pass
        finally:
            writer.close()


class WsClient:
    """A minimal client: ``await connect(port, path)``, ``send``, ``recv``, ``close``."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    async def connect(self, port: int, path: str, extra: str = "") -> WsClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        key = base64.b64encode(os.urandom(16))
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{extra}".encode()
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            self.body = await self.reader.readexactly(n) if n else b""
            await self.aclose()
        else:
            assert self.headers["sec-websocket-accept"] == accept_key(key).decode()
        return self

    async def send(self, data: str | bytes) -> None:
        assert self.writer is not None
        if isinstance(data, str):
            self.writer.write(encode_frame(OP_TEXT, data.encode(), True))
        else:
            self.writer.write(encode_frame(OP_BINARY, data, True))
        await self.writer.drain()

    async def ping(self, payload: bytes) -> None:
        assert self.writer is not None
        self.writer.write(encode_frame(OP_PING, payload, True))
        await self.writer.drain()

    async def recv(self) -> tuple[int, bytes]:
        """The next message or control frame: ``(opcode, payload)`` (close: code and reason)."""
        assert self.reader is not None
        parts: list[bytes] = []
        kind = OP_TEXT
        while True:
            fin, op, payload = await read_frame(self.reader)
            if op in (OP_PING, OP_PONG, OP_CLOSE):
                return op, payload
            if op != OP_CONT:
                kind, parts = op, []
            parts.append(payload)
            if fin:
                return kind, b"".join(parts)

    async def close(self, code: int = 1000) -> tuple[int, str]:
        assert self.writer is not None and self.reader is not None
        self.writer.write(encode_frame(OP_CLOSE, close_payload(code), True))
        await self.writer.drain()
        while True:
            op, payload = await self.recv()
            if op == OP_CLOSE:
                await self.aclose()
                return parse_close(payload)

    async def aclose(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
