"""Upstream HTTP/2 for ``grpc``/``grpcs`` services: many streams on one connection per peer.

Kong reaches a gRPC service with nginx's ``grpc_pass``: HTTP/2, with prior knowledge in
cleartext (``grpc``), or over TLS with ALPN ``h2`` (``grpcs``). This module is that client, on
asyncio with the sans-IO ``h2`` library: :class:`H2Connection` is an ``asyncio.Protocol`` that
feeds the socket's bytes to an ``h2`` state machine and turns its events into per-stream state
(:class:`H2Stream`: the response head, the body chunks received and not yet taken, the
trailers, the end), which one consumer per stream awaits.

Flow control is what bounds memory: the gateway advertises a stream window of
``STREAM_WINDOW`` bytes and acknowledges received data only when the consumer takes it
(:meth:`H2Stream.take`) to pass it on to the client. A slow client therefore stops the
upstream after a window or two (the one taken and being sent, the next one arriving), whatever
the size of the answer. The request body is sent as the
peer's windows allow, waiting for its WINDOW_UPDATE frames.

:class:`H2Pool` keeps one connection per ``(host, port, TLS)`` and opens streams on it; a second
connection is opened only when the first cannot take a new stream (the peer's
``MAX_CONCURRENT_STREAMS`` reached, a GOAWAY received, the stream ids used up). Connections that
carry no stream are closed after the keep-alive idle timeout. TLS contexts are the service's
:class:`~fastkong.proxy.upstream_tls.TlsProfile` (Kong's ``tls_verify``, CA and client
certificates) with ALPN ``h2``, built once per profile per worker.

Timeouts are nginx's, per wait: connect, send (waiting for a window), read (waiting for the head
or the next body chunk). A stream the peer refused (``REFUSED_STREAM``, or above a GOAWAY's last
stream id) fails with ``sent=False``: it was not processed, so it may be tried again.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from fastkong.proxy.upstream import (
    PoolKey,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    open_connection,
)
from fastkong.proxy.upstream_tls import TlsProfile

#: The receive window of each stream: the most response bytes held per request.
STREAM_WINDOW = 256 * 1024
#: The connection's receive window (shared by its streams).
CONNECTION_WINDOW = 16 * 1024 * 1024
_READ_TIMEOUT = "upstream timed out while reading from upstream"
_SEND_TIMEOUT = "upstream timed out while sending to upstream"
Headers = list[tuple[bytes, bytes]]


class H2Stream:
    """One request on an :class:`H2Connection` and its response as received so far."""

    __slots__ = (
        "conn",
        "id",
        "status",
        "headers",
        "trailers",
        "chunks",
        "pending",
        "ended",
        "error",
        "waiter",
    )

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self.conn = conn
        self.id = stream_id
        self.status = 0
        self.headers: Headers = []
        self.trailers: Headers | None = None
        #: Body chunks received and not yet taken, and their flow-controlled size.
        self.chunks: deque[bytes] = deque()
        self.pending = 0
        self.ended = False
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<H2Stream {self.id} status={self.status} ended={self.ended}>"

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: UpstreamError) -> None:
        if self.error is None and not self.ended:
            self.error = error
        self.wake()

    async def _wait(self, timeout: float, message: str) -> None:
        if self.error is not None:
            raise self.error
        loop = self.conn.loop
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, _time_out, waiter, message)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None
        if self.error is not None:
            raise self.error

    async def read_head(self, timeout: float) -> None:
        """Wait for the response head (``status`` and ``headers``)."""
        while not self.status:
            await self._wait(timeout, _READ_TIMEOUT)

    async def read(self, timeout: float) -> bytes | None:
        """The body received since the last call (waiting for some), or None at the end."""
        while not self.chunks:
            if self.ended:
                return None
            await self._wait(timeout, _READ_TIMEOUT)
        return self.take()

    def take(self) -> bytes:
        """The chunks received so far, acknowledged to the peer (its window reopens)."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if self.pending:
            self.conn.acknowledge(self.id, self.pending)
            self.pending = 0
        return data

    async def send_body(self, body: bytes, timeout: float) -> None:
        """Send ``body`` and end the request, as the peer's windows allow."""
        conn = self.conn
        view = memoryview(body)
        while view:
            if self.error is not None:
                raise self.error
            size = conn.sendable(self.id, len(view))
            if size <= 0 or conn.write_paused:
                await self._wait(timeout, _SEND_TIMEOUT)
                continue
            conn.send_data(self.id, view[:size].tobytes())
            view = view[size:]
        conn.end_request(self.id)

    def cancel(self) -> None:
        """Give the stream up (the client went away, or the answer was refused)."""
        if not self.ended:
            self.conn.reset(self.id)
        self.conn.forget(self)


def _time_out(waiter: asyncio.Future[None], message: str) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout(message))


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection to a peer, its streams multiplexed (see the module docstring)."""

    def __init__(self, pool: H2Pool, key: PoolKey) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.key = key
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        #: No new stream may start: GOAWAY received, or the connection failed.
        self.draining = False
        self.write_paused = False
        self.served = 0
        self._idle: asyncio.TimerHandle | None = None
        #: Set when the peer's first SETTINGS came: its stream limit is known from then on.
        self.ready: asyncio.Future[None] = self.loop.create_future()

    def __repr__(self) -> str:
        host, port, _ = self.key
        return (
            f"<H2Connection {host}:{port} streams={len(self.streams)} served={self.served}"
            f"{' draining' if self.draining else ''}{' closed' if self.closed else ''}>"
        )

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, only alike)
        self.transport = cast(asyncio.Transport, transport)
        h2conn = self.h2
        h2conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        h2conn.initiate_connection()
        h2conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._flush()
            self._fail_all(UpstreamProtocolError(f"upstream sent invalid HTTP/2: {exc}"))
            self.close()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.draining = True
        if not self.ready.done():
            self.ready.set_exception(UpstreamConnectError("upstream closed the connection"))
            self.ready.exception()  # (retrieved: nobody may be waiting)
        self._fail_all(UpstreamError("upstream prematurely closed connection"))
        self.pool.dropped(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in self.streams.values():
            stream.wake()

    # -- events ------------------------------------------------------------------------------

    def _handle(self, event: Any) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            if stream is None:
                # Data for a stream given up: its bytes still count against the connection.
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                return
            if event.data:
                stream.chunks.append(event.data)
            stream.pending += event.flow_controlled_length
            if not event.data and stream.pending:
                # Padding only: nothing for the consumer to take, so acknowledged now.
                self.acknowledge(stream.id, stream.pending)
                stream.pending = 0
            stream.wake()
        elif isinstance(event, h2.events.ResponseReceived):
            if stream is not None:
                stream.status, stream.headers = _head(event.headers)
                stream.wake()
        elif isinstance(event, h2.events.TrailersReceived):
            if stream is not None:
                stream.trailers = [(k, v) for k, v in event.headers if not k.startswith(b":")]
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                stream.ended = True
                stream.wake()
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                refused = event.error_code == ErrorCodes.REFUSED_STREAM and not stream.status
                stream.fail(
                    UpstreamError(
                        f"upstream reset the stream ({_code_name(event.error_code)})",
                        sent=not refused,
                    )
                )
        elif isinstance(event, h2.events.WindowUpdated):
            targets = self.streams.values() if not event.stream_id else (stream,)
            for s in targets:
                if s is not None:
                    s.wake()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event.last_stream_id or 0, event.error_code)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if not self.ready.done():
                self.ready.set_result(None)

    def _goaway(self, last_stream_id: int, code: Any) -> None:
        """GOAWAY: no new stream here; streams above ``last_stream_id`` were not processed."""
        self.draining = True
        self.pool.dropped(self)
        for stream in list(self.streams.values()):
            if stream.id > last_stream_id:
                stream.fail(UpstreamError("upstream sent GOAWAY", sent=False))
        if not self.streams:
            self.close()

    def _fail_all(self, error: UpstreamError) -> None:
        for stream in list(self.streams.values()):
            stream.fail(error)

    # -- requests ----------------------------------------------------------------------------

    def can_open(self) -> bool:
        """A new stream may start here (not closing, below the peer's stream limit)."""
        if self.draining or self.closed:
            return False
        h2conn = self.h2
        if h2conn.open_outbound_streams >= h2conn.remote_settings.max_concurrent_streams:
            return False
        highest = h2conn.highest_outbound_stream_id
        return highest is None or highest < 2**31 - 64

    def open(self, headers: Headers, end: bool) -> H2Stream:
        """Start a request: its head (and its end, when it has no body)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        stream_id = self.h2.get_next_available_stream_id()
        stream = self.streams[stream_id] = H2Stream(self, stream_id)
        try:
            self.h2.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            # The peer's stream limit, or a connection closing: nothing went out.
            del self.streams[stream_id]
            raise UpstreamError(f"cannot open a stream: {exc}", sent=False) from None
        self._flush()
        self.served += 1
        return stream

    def sendable(self, stream_id: int, wanted: int) -> int:
        h2conn = self.h2
        return min(
            wanted, h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size
        )

    def send_data(self, stream_id: int, data: bytes) -> None:
        self.h2.send_data(stream_id, data)
        self._flush()

    def end_request(self, stream_id: int) -> None:
        self.h2.end_stream(stream_id)
        self._flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        if not self.closed:
            self.h2.acknowledge_received_data(size, stream_id)
            self._flush()

    def reset(self, stream_id: int) -> None:
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        except h2.exceptions.StreamClosedError:
            return
        self._flush()

    def forget(self, stream: H2Stream) -> None:
        """``stream`` is done with: its unread bytes are acknowledged, its slot freed."""
        if self.streams.pop(stream.id, None) is None:
            return
        if stream.pending:
            self.acknowledge(stream.id, stream.pending)
            stream.pending = 0
        if not self.streams:
            if self.draining:
                self.close()
            elif self.pool.idle_timeout:
                self._idle = self.loop.call_later(self.pool.idle_timeout, self._close_idle)

    def _close_idle(self) -> None:
        self._idle = None
        if not self.streams:
            self.close()

    def close(self, abort: bool = False) -> None:
        """Close (GOAWAY first); ``abort``: at once, without TLS's closing handshake."""
        if self.closed:
            return
        self.closed = self.draining = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.transport is not None:
            try:
                self.h2.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
        self.pool.dropped(self)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _head(headers: list[tuple[bytes, bytes]]) -> tuple[int, Headers]:
    status = 0
    kept: Headers = []
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif not name.startswith(b":"):
            kept.append((name, value))
    return status, kept


def _code_name(code: Any) -> str:
    return getattr(code, "name", str(code))


class H2Pool:
    """One worker's HTTP/2 connections, by ``(host, port, TLS)`` (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_timeout: float = 60.0) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self.connections: dict[PoolKey, list[H2Connection]] = {}
        #: Connections being opened, so that concurrent first requests share one.
        self.opening: dict[PoolKey, asyncio.Future[H2Connection]] = {}
        self.contexts: dict[TlsProfile, ssl.SSLContext] = {}
        self.opened = 0

    def __repr__(self) -> str:
        live = sum(len(v) for v in self.connections.values())
        return f"<H2Pool peers={len(self.connections)} connections={live} opened={self.opened}>"

    def usable(self, key: PoolKey) -> H2Connection | None:
        for conn in self.connections.get(key, ()):
            if conn.can_open():
                return conn
        return None

    async def connection(
        self, key: PoolKey, resolve: Any, timeout: float
    ) -> tuple[H2Connection, bool]:
        """A connection that can take a stream, and whether it was open already.

        ``resolve`` is an async callable giving the address to connect to (called only when a
        connection is opened)."""
        while True:
            conn = self.usable(key)
            if conn is not None:
                return conn, True
            pending = self.opening.get(key)
            if pending is None:
                break
            try:
                await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # this request was cancelled, not the opening it waited for
            except UpstreamError:
                pass  # that opening failed: this request opens its own
        future: asyncio.Future[H2Connection] = self.loop.create_future()
        self.opening[key] = future
        try:
            conn = await self._connect(key, await resolve(), timeout)
        except BaseException as exc:
            if isinstance(exc, UpstreamError):
                future.set_exception(exc)
                future.exception()  # retrieved: waiters may be gone
            else:
                future.cancel()
            raise
        finally:
            del self.opening[key]
        self.connections.setdefault(key, []).append(conn)
        future.set_result(conn)
        return conn, False

    def ssl_context(self, profile: TlsProfile) -> ssl.SSLContext:
        ctx = self.contexts.get(profile)
        if ctx is None:
            ctx = profile.context()
            ctx.set_alpn_protocols(["h2"])
            self.contexts[profile] = ctx
        return ctx

    async def _connect(self, key: PoolKey, address: str, timeout: float) -> H2Connection:
        host, port, tls = key
        transport, conn = await open_connection(
            self.loop, lambda: H2Connection(self, key), key, address, timeout, self.ssl_context
        )
        if tls is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                conn.close()
                raise UpstreamConnectError(f"{host}:{port} did not agree to HTTP/2 (ALPN h2)")
        # The peer's SETTINGS (its stream limit) before any stream: requests that waited for
        # this connection all start on it at once.
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
        except TimeoutError:
            conn.close(abort=True)
            raise UpstreamTimeout(
                f"upstream timed out while waiting for the HTTP/2 settings of {host}:{port}",
                sent=False,
            ) from None
        except UpstreamError:
            conn.close(abort=True)
            raise
        self.opened += 1
        return conn

    def dropped(self, conn: H2Connection) -> None:
        """``conn`` takes no new stream: out of the pool."""
        conns = self.connections.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.connections[conn.key]

    def close(self) -> None:
        for conns in list(self.connections.values()):
            for conn in list(conns):
                conn.close(abort=True)
        self.connections.clear()


__all__ = ["H2Connection", "H2Pool", "H2Stream", "STREAM_WINDOW"]
