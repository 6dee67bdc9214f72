"""A fault-injecting TCP proxy for the upstream tests: put it in front of a real upstream and
make that upstream die, hang, reset or come back without touching the upstream itself.

It runs an asyncio loop in a thread (started and stopped by the test, never left running) and
records the first line of every request it sees, so a test can tell proxied traffic from
health probes by path and count each at the "upstream".

Modes:
``pass``   relay both ways
``reset``  accept, read the request head, close without answering (an upstream that dies)
``hang``   accept, read the request head, never answer (an upstream that hangs)
``down``   stop listening: connections are refused (a killed process); ``pass`` listens again
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import Counter

from tests.helpers import free_port


class FaultProxy:
    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.mode = "pass"
        self.lines: list[str] = []
        self.accepted = 0
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.lock = threading.Lock()
        self.hung: list[asyncio.StreamWriter] = []
        self.open: set[asyncio.StreamWriter] = set()

    def __repr__(self) -> str:
        return (
            f"<FaultProxy :{self.port} -> :{self.upstream_port} {self.mode} seen={len(self.lines)}>"
        )

    # -- control (from the test's thread) ------------------------------------------------------
    def start(self) -> FaultProxy:
        self.thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def set(self, mode: str) -> None:
        assert mode in ("pass", "reset", "hang", "down")
        if mode == "down":
            self._call(self._unlisten())
        elif self.server is None:
            self._call(self._listen())
        if mode != "hang":
            self._call(self._release_hung())
        self.mode = mode

    def seen(self, prefix: str = "") -> int:
        """Requests seen whose first line contains ``prefix``."""
        with self.lock:
            return sum(1 for line in self.lines if prefix in line)

    def paths(self) -> Counter[str]:
        with self.lock:
            return Counter(line.split(" ")[1] if " " in line else line for line in self.lines)

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)  # type: ignore[arg-type]

    # -- the loop's side -----------------------------------------------------------------------
    async def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.server = await asyncio.start_server(self._serve, sock=sock)

    async def _unlisten(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.open):  # a dead process takes its connections with it
            w.close()
        self.open.clear()

    async def _release_hung(self) -> None:
        for w in self.hung:
            w.close()
        self.hung.clear()

    async def _close_all(self) -> None:
        await self._unlisten()
        await self._release_hung()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        mode = self.mode
        if mode in ("reset", "hang"):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                writer.close()
                return
            self._record(head)
            if mode == "reset":
                writer.close()
            else:
                self.hung.append(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        self.open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            buffer = b""
            try:
                while data := await src.read(65536):
                    if record and self.mode in ("hang", "reset"):
                        # an established connection turns bad too: swallow the request
                        if data.startswith(b"GET") or data.startswith(b"POST"):
                            self._record(data)
                        if self.mode == "reset":
                            writer.close()
                            up_writer.close()
                            return
                        continue
                    if record:
                        buffer += data
                        while b"\r\n\r\n" in buffer:
                            head, _, buffer = buffer.partition(b"\r\n\r\n")
                            self._record(head + b"\r\n\r\n")
                        if len(buffer) > 65536:
                            buffer = b""  # a body: stop looking for heads in it
                            record = False
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                self.open.discard(dst)
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def _record(self, head: bytes) -> None:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if line.startswith(("GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS")):
            with self.lock:
                self.lines.append(line)
