"""udp-log: each request's log entry as one JSON datagram (``kong:kong/plugins/udp-log``).

Priority 8. The datagram is Kong's basic serializer output (:mod:`._serializer`), no newline.
The log phase only appends the entry to its destination's list; the entries gathered during one
turn of the event loop are sent from one UDP socket opened for them (the host resolved again
each time, as Kong does per entry) and closed after. An entry that cannot be sent (the name does
not resolve, the datagram is too large, the network refuses it) is dropped with one error line,
as in Kong; what waits is bounded (:data:`MAX_PENDING` entries per destination).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fastkong.config.schema import Host, Port
from fastkong.plugins.bundled._serializer import (
    LogPlugin,
    LuaCode,
    serialize_json,
)
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.udp-log")

MAX_PENDING: Final = 10_000
#: Seconds a resolved address is used before the name is resolved again.
RESOLVE_EVERY: Final = 10.0


class UdpLogConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: Host
    port: Port
    timeout: float = 10000
    custom_fields_by_lua: LuaCode | None = None


class UdpSender:
    """One destination's waiting datagrams, in one worker (``label`` names it in log lines)."""

    def __init__(self, host: str, port: int, timeout_ms: float, label: str = "udp-log") -> None:
        self.host = host
        self.port = port
        self.timeout = timeout_ms / 1000
        self.label = label
        self.pending: list[bytes] = []
        self.task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        #: The resolved address and when to resolve again (the name may move; not per batch).
        self.address: tuple[int, Any] | None = None
        self.resolved_until = 0.0

    def __repr__(self) -> str:
        return (
            f"<UdpSender {self.host}:{self.port} pending={len(self.pending)} sent={self.sent} "
            f"dropped={self.dropped}>"
        )

    def append(self, datagram: bytes) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self.pending.append(datagram)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            await self.send(batch)

    async def resolve(self) -> tuple[int, Any]:
        loop = asyncio.get_running_loop()
        if self.address is None or loop.time() >= self.resolved_until:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM), self.timeout
            )
            self.address = (infos[0][0], infos[0][4])
            self.resolved_until = loop.time() + RESOLVE_EVERY
        return self.address

    async def send(self, batch: list[bytes]) -> None:
        try:
            family, address = await self.resolve()
        except (OSError, TimeoutError) as exc:
            self.dropped += len(batch)
            log.error("[%s] could not connect to %s:%d: %s", self.label, self.host, self.port, exc)
            return
        failed: OSError | None = None
        lost = 0
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for datagram in batch:
                try:
                    # A datagram is sent whole or not at all; a full buffer is an error too.
                    sock.sendto(datagram, address)
                except OSError as exc:
                    failed = exc
                    lost += 1
                else:
                    self.sent += 1
        if failed is not None:
            self.dropped += lost
            log.error(
                "[%s] could not send %d datagram(s) to %s:%d: %s",
                self.label,
                lost,
                self.host,
                self.port,
                failed,
            )


_SENDERS: dict[tuple[str, int, float, str], UdpSender] = {}


def sender(host: str, port: int, timeout: float, label: str = "udp-log") -> UdpSender:
    """The worker's sender for a destination (shared by every instance of one plugin)."""
    key = (host, port, timeout, label)
    found = _SENDERS.get(key)
    if found is None:
        found = _SENDERS[key] = UdpSender(host, port, timeout, label)
    return found


@register_plugin
class UdpLog(LogPlugin):
    name = "udp-log"
    priority = 8
    allowed_protocols = ALL_PROTOCOLS
    Config = UdpLogConfig

    def __init__(self, config: UdpLogConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.destination = (config.host, config.port, config.timeout)

    def __repr__(self) -> str:
        host, port, _ = self.destination
        return f"<UdpLog priority={self.priority} id={self.id} {host}:{port}>"

    def log(self, ctx: RequestContext) -> None:
        self.write(serialize_json(ctx), ctx.status)

    def write(self, message: bytes, status: int = 200) -> None:
        """Log one serialized message (a request's, or a stream session's) of ``status``."""
        sender(*self.destination).append(message)
