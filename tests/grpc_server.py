"""A real gRPC server on loopback for the grpc-web tests: ``grpc.aio`` with a generic handler and
raw-bytes messages (no generated code), on its own event loop in a thread.

Methods (service ``test.Echo``):

``Unary``    answers ``echo:`` + the request, and its metadata as received is recorded
``Stream``   the request is ``<count>,<pause ms>,<size>``: that many messages of ``size`` bytes
             (``b"m<i>:"`` then filler), waiting between them; the bytes yielded so far are
             counted in :attr:`GrpcServer.yielded`
``Fail``     aborts with INVALID_ARGUMENT and a message, before any message (trailers-only)
``Late``     one message, then aborts with NOT_FOUND (the status in trailers)
``Slow``     waits 3 s, then answers
``Peer``     answers the client address it sees (one per connection)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from tests.helpers import LoopServer, free_port


class GrpcServer:
    def __init__(
        self,
        credentials: grpc.ServerCredentials | None = None,
        extra: dict[str, grpc.RpcMethodHandler] | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        #: grpc server options (``grpc.max_concurrent_streams``, ...).
        self.options = options or []
        self.port = free_port()
        self.credentials = credentials
        #: More methods, by path (the JSON tests' service).
        self.extra = extra or {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: grpc.aio.Server | None = None
        #: The metadata (lower-case name, value) and method of each call.
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.yielded = 0
        self.peers: set[str] = set()

    def __repr__(self) -> str:
        return f"<GrpcServer 127.0.0.1:{self.port} calls={len(self.calls)}>"

    def start(self) -> GrpcServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(20)
        return self

    async def _start(self) -> None:
        server = grpc.aio.server(options=self.options)
        server.add_generic_rpc_handlers((_Handlers(self),))
        address = f"127.0.0.1:{self.port}"
        if self.credentials is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, self.credentials)
        await server.start()
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)
        self.loop.close()

    def record(self, context: grpc.aio.ServicerContext, method: str) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        self.calls.append((method, metadata))
        self.peers.add(context.peer())


class _Handlers(grpc.GenericRpcHandler):
    def __init__(self, server: GrpcServer) -> None:
        self.server = server

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method = details.method  # type: ignore[attr-defined]
        if method in self.server.extra:
            return self.server.extra[method]
        name = method.rsplit("/", 1)[-1] if method.startswith("/test.Echo/") else ""
        server = self.server

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            server.record(context, method)
            if name == "Fail":
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request: no name")
            if name == "Slow":
                await asyncio.sleep(3)
            if name == "Peer":
                return context.peer().encode()
            return b"echo:" + request

        async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            server.record(context, method)
            if name == "Late":
                yield b"first"
                await context.abort(grpc.StatusCode.NOT_FOUND, "gone after one")
            count, pause, size = (int(x) for x in request.decode().split(","))
            for i in range(count):
                head = b"m%d:" % i
                message = head + b"x" * max(0, size - len(head))
                server.yielded += len(message)
                yield message
                if pause:
                    await asyncio.sleep(pause / 1000)

        if name in ("Stream", "Late"):
            return grpc.unary_stream_rpc_method_handler(stream)
        if name in ("Unary", "Fail", "Slow", "Peer"):
            return grpc.unary_unary_rpc_method_handler(unary)
        return None


class MockGrpc(LoopServer):
    """Kong's ``http_mock`` server block: ``application/grpc``, no body, and the ``Host`` and
    ``TE`` the request came with in ``received-host`` / ``received-te``."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                headers: dict[str, str] = {}
                for line in head.split("\r\n")[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
                        await reader.readexactly(size + 2)
                    await reader.readline()
                elif length := int(headers.get("content-length", "0")):
                    await reader.readexactly(length)
                extra = "".join(
                    f"received-{name}: {headers[name]}\r\n"
                    for name in ("host", "te")
                    if name in headers
                )
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\n"
                    + extra.encode()
                    + b"content-length: 0\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
