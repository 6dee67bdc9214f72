"""tcp-log: each request's log entry as a JSON line to a TCP server (``kong:kong/plugins/tcp-log``).

Priority 7. The line is Kong's basic serializer output (:mod:`._serializer`) and a newline. As
in Kong, delivery never holds a request: the log phase appends the line to its destination's
buffer (no I/O), and one task per destination and worker writes buffered lines over one kept-alive
connection (Kong takes a pooled socket per entry; the bytes on the wire are the same). A
connection idle for ``keepalive`` ms is closed; ``timeout`` bounds the connect, the TLS handshake
and each write. ``tls`` wraps the connection in TLS without verifying the server (Kong's
``sslhandshake(false, tls_sni, false)``), with ``tls_sni`` as the server name.

Lines that cannot be delivered (the server refuses, times out, or the connection breaks) are
dropped with one error line, as Kong drops the entry of a failed timer; what waits is bounded
(:data:`MAX_PENDING_BYTES` per destination, the newest dropped beyond it).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec

from fastkong.config.schema import Host, Port
from fastkong.plugins.base import REQUIRED
from fastkong.plugins.bundled._serializer import (
    LogPlugin,
    LuaCode,
    serialize_json,
)
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.tcp-log")

MAX_PENDING_BYTES: Final = 16 * 1024 * 1024


class TcpLogConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Host
    port: Port
    timeout: float = 10000
    keepalive: float = 60000
    tls: Annotated[bool, REQUIRED] = False
    tls_sni: str | None = None
    custom_fields_by_lua: LuaCode | None = None


Destination = tuple[str, int, bool, str | None, float, float]


class TcpSender:
    """One destination's buffered lines and its connection, in one worker."""

    def __init__(self, destination: Destination, label: str = "tcp-log") -> None:
        self.host, self.port, self.tls, self.sni, timeout_ms, keepalive_ms = destination
        self.label = label
        self.timeout = timeout_ms / 1000
        self.keepalive = keepalive_ms / 1000
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.sent = 0
        self.dropped = 0
        self.connects = 0
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"<TcpSender {self.host}:{self.port} tls={self.tls} pending={len(self.pending)} "
            f"sent={self.sent} dropped={self.dropped} connected={self.writer is not None}>"
        )

    def append(self, line: bytes) -> None:
        if self.pending_bytes + len(line) > MAX_PENDING_BYTES:
            self.dropped += 1
            return
        self.pending.append(line)
        self.pending_bytes += len(line)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run())
        self.wake.set()

    async def run(self) -> None:
        """Write what is pending; close the connection after ``keepalive`` idle, then end."""
        while True:
            if not self.pending:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), self.keepalive)
                except TimeoutError:
                    self.close()
                    return
                continue
            data = b"".join(self.pending)
            count = len(self.pending)
            self.pending.clear()
            self.pending_bytes = 0
            error = await self.deliver(data)
            if error is None:
                self.sent += count
            else:
                self.dropped += count
                log.error("[%s] %s %s:%d: %s", self.label, *error)
                self.close()

    async def deliver(self, data: bytes) -> tuple[str, str, int, str] | None:
        """One write on the kept connection (opened first if needed); None, or Kong's words
        for what failed."""
        if self.writer is None:
            failure = await self.connect()
            if failure is not None:
                return ("failed to connect to", self.host, self.port, failure)
        writer = self.writer
        assert writer is not None
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.timeout)
        except (OSError, TimeoutError) as exc:
            return ("failed to send data to", self.host, self.port, _reason(exc))
        return None

    async def connect(self) -> str | None:
        """Open the connection (and its TLS); None, or why it failed."""
        context = None
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            _, self.writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=context,
                    server_hostname=(self.sni or "") if context else None,
                ),
                self.timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            return _reason(exc)
        self.connects += 1
        return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _reason(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__


_SENDERS: dict[tuple[Destination, str], TcpSender] = {}


def sender(destination: Destination, label: str = "tcp-log") -> TcpSender:
    """The worker's sender for a destination (shared by every instance of one plugin that
    names it; ``label`` names it in log lines)."""
    found = _SENDERS.get((destination, label))
    if found is None:
        found = _SENDERS[(destination, label)] = TcpSender(destination, label)
    return found


@register_plugin
class TcpLog(LogPlugin):
    name = "tcp-log"
    priority = 7
    allowed_protocols = ALL_PROTOCOLS
    Config = TcpLogConfig

    def __init__(self, config: TcpLogConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.destination: Destination = (
            config.host,
            config.port,
            config.tls,
            config.tls_sni,
            config.timeout,
            config.keepalive,
        )

    def __repr__(self) -> str:
        host, port, tls = self.destination[:3]
        return f"<TcpLog priority={self.priority} id={self.id} {host}:{port} tls={tls}>"

    def log(self, ctx: RequestContext) -> None:
        self.write(serialize_json(ctx), ctx.status)

    def write(self, message: bytes, status: int = 200) -> None:
        """Log one serialized message (a request's, or a stream session's) of ``status``."""
        sender(self.destination).append(message + b"\n")
