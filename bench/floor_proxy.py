"""The floor: the least a Python proxy on Granian can do per request, for ``bench/run``'s
``floor`` and ``floor-asgi`` targets.

No routing, no header processing, no timeouts, no error handling: an app on uvloop that
forwards ``GET`` to one upstream over kept-alive connections (a bare ``asyncio.Protocol`` that
only finds the end of the response) and returns the status, content type and body. Whatever a
real gateway does costs more than this, so its req/s is the ceiling for a Python proxy on
Granian on the machine that runs it. ``app`` speaks RSGI (Granian's fastest interface): the
ceiling of any design; ``asgi_app`` the same over ASGI, fastkong's interface: the ceiling of
fastkong's design (the distance between the two is what the interface alone costs).

    granian --interface rsgi --runtime-mode st --loop uvloop bench.floor_proxy:app
    granian --interface asgi --runtime-mode st --loop uvloop bench.floor_proxy:asgi_app
    (FLOOR_UPSTREAM=127.0.0.1:PORT in the environment)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

HOST, _, PORT = os.environ.get("FLOOR_UPSTREAM", "127.0.0.1:8080").rpartition(":")


class _Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.waiter: asyncio.Future[None] | None = None
        self.buffer = bytearray()
        self.status = 0
        self.content_type = "text/plain"
        self.body = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).split(b"\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"content-type":
                self.content_type = value.strip().decode()
        if len(self.buffer) - end - 4 < length:
            return
        self.status = int(head[0].split(b" ", 2)[1])
        self.body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[:]
        if self.waiter is not None:
            self.waiter.set_result(None)


class Floor:
    def __init__(self) -> None:
        self.idle: list[_Upstream] = []

    async def forward(self, path: str) -> _Upstream:
        """One exchange with the upstream; the connection returned holds the response."""
        loop = asyncio.get_running_loop()
        conn = self.idle.pop() if self.idle else None
        if conn is None:
            _, conn = await loop.create_connection(_Upstream, HOST, int(PORT))
        conn.waiter = loop.create_future()
        conn.transport.write(f"GET {path} HTTP/1.1\r\nhost: {HOST}:{PORT}\r\n\r\n".encode())
        await conn.waiter
        conn.waiter = None
        self.idle.append(conn)
        return conn

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        conn = await self.forward(scope.path)
        proto.response_bytes(conn.status, [("content-type", conn.content_type)], conn.body)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The same over ASGI (Granian calls ``__rsgi__`` when it serves RSGI)."""
        if scope["type"] != "http":
            return  # lifespan: nothing to set up
        conn = await self.forward(scope["path"])
        headers = [(b"content-type", conn.content_type.encode())]
        await send({"type": "http.response.start", "status": conn.status, "headers": headers})
        await send({"type": "http.response.body", "body": conn.body})


app = Floor()
asgi_app = Floor()
