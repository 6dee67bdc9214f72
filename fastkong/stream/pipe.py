"""The two halves of a proxied stream connection, as asyncio protocols.

Each side writes what it receives to the other. Flow control is end to end: when one side's
write buffer passes its high-water mark (the peer reads slowly), the other side stops reading
until it drains, so a fast sender never fills the proxy's memory. Bytes that arrive before the
other side exists (the client's first bytes while the upstream connects) are held, bounded by
the same rule: reading pauses at :data:`HOLD_LIMIT`.

Closing follows nginx's stream proxy with ``proxy_half_close off`` (Kong's default): when either
side ends (EOF, error), what the other side still has to write is flushed and both close.
``proxy_timeout`` (Kong sets it from the service's ``read_timeout``) closes a connection on which
no byte moved either way for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    from fastkong.stream.session_log import RouteLogPhase, TlsInfo

HOLD_LIMIT: Final = 256 * 1024


class Side(asyncio.Protocol):
    """One socket of a proxied connection (the client's or the upstream's)."""

    __slots__ = ("name", "transport", "peer", "held", "held_size", "closed", "received",
                 "session", "paused")  # fmt: skip

    def __init__(self, name: str, session: Session) -> None:
        self.name = name
        self.session = session
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.held: list[bytes] = []
        self.held_size = 0
        self.closed = False
        self.paused = False
        self.received = 0

    def __repr__(self) -> str:
        state = "closed" if self.closed else "paused" if self.paused else "open"
        return f"<Side {self.name} {state} received={self.received}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports do not subclass asyncio's; they have the same methods)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.session.touch()
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
            return
        self.held.append(data)
        self.held_size += len(data)
        if self.held_size >= HOLD_LIMIT:
            self.pause()

    def eof_received(self) -> bool:
        self.session.end()
        return False  # the transport closes this side; the session closes the other

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.session.end()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def link(self, peer: Side) -> None:
        """Start writing to ``peer``: first what was held, then everything as it comes."""
        self.peer = peer
        if self.held and peer.transport is not None:
            peer.transport.write(b"".join(self.held))
        self.held.clear()
        self.held_size = 0
        self.resume()

    def close(self) -> None:
        """Close after flushing what is buffered for writing (``abort`` would drop it)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def reset(self) -> None:
        """Close with a TCP reset: what nginx's close does to a socket whose received bytes it
        never read (the bytes here were read, so the kernel would send a plain FIN)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


class Session:
    """One proxied connection: its two sides, its idle deadline, and when it ended."""

    __slots__ = ("client", "upstream", "idle_timeout", "last", "done", "timer", "loop",
                 "started", "status", "client_addr", "proxied", "log_phase", "server_port",
                 "tls", "kong_ms", "tries", "on_end")  # fmt: skip

    def __init__(
        self, loop: asyncio.AbstractEventLoop, idle_timeout: float, client_addr: str = ""
    ) -> None:
        self.loop = loop
        #: The client's address as logged (after the PROXY protocol rule), and the session's
        #: status for the access log (nginx's: 200 unless the upstream could not be reached).
        self.client_addr = client_addr
        self.status = 200
        #: Whether the upstream was reached (the metrics' ``source``: service, else kong), and
        #: the route's log phase, run when the session ends (stream/session_log.py), or None.
        self.proxied = False
        self.log_phase: RouteLogPhase | None = None
        #: For the log plugins' message: the listener's port, the TLS the gateway terminated
        #: (version, cipher), and the milliseconds until the upstream was connected.
        self.server_port = 0
        self.tls: TlsInfo | None = None
        self.kong_ms = 0
        #: The peers tried (the log message's ``tries``).
        self.tries: list[dict[str, Any]] = []
        self.idle_timeout = idle_timeout
        self.client = Side("client", self)
        self.upstream = Side("upstream", self)
        self.last = loop.time()
        self.started = time.monotonic()
        self.done: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        #: Called once when the session ends, before either socket is closed (the edge forgets
        #: the relay's port while it still owns it: no other process can have it yet).
        self.on_end: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return (
            f"<Session {self.client_addr} {self.client!r} {self.upstream!r} "
            f"status={self.status} done={self.done.done()}>"
        )

    def touch(self) -> None:
        self.last = self.loop.time()

    def start_timer(self) -> None:
        if self.idle_timeout > 0:
            self.timer = self.loop.call_at(self.last + self.idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        deadline = self.last + self.idle_timeout
        if self.loop.time() >= deadline:
            # Nothing moved: a side that stopped reading would never take a flush either.
            self.abort()
        else:
            self.timer = self.loop.call_at(deadline, self._check_idle)

    def join(self) -> None:
        """Both sides are connected: bytes flow both ways from now on."""
        self.client.link(self.upstream)
        self.upstream.link(self.client)
        self.start_timer()

    def abort(self) -> None:
        """Close both sides at once, dropping what is still buffered (the idle timeout, the
        end of a drain)."""
        _abort(self.client)
        _abort(self.upstream)
        self.end()

    def _ending(self) -> None:
        hook, self.on_end = self.on_end, None
        if hook is not None:
            hook()

    def end(self) -> None:
        self._ending()
        # Bytes one side received before the other was linked still go out before closing.
        for side, other in ((self.client, self.upstream), (self.upstream, self.client)):
            if side.held and other.transport is not None and not other.transport.is_closing():
                other.transport.write(b"".join(side.held))
                side.held.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.client.close()
        self.upstream.close()
        if not self.done.done():
            self.done.set_result(None)


def _abort(side: Side) -> None:
    if side.transport is not None:
        side.transport.abort()


__all__ = ["HOLD_LIMIT", "Session", "Side"]
