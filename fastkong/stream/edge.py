"""The edge: the proxy listeners Granian cannot serve by itself, relayed to Granian.

Granian serves one certificate per listener and reads no PROXY protocol header. Kong's nginx
does both: it picks each connection's certificate by SNI from the config's
``certificates``/``snis`` (``find_certificate``), and takes the client's address from a PROXY
header on ``proxy_protocol`` listeners. So the supervisor runs such a ``proxy_listen`` entry's
Granian on a loopback port of its own, and this process (the stream process, which already
terminates TLS by SNI for ``tls`` stream routes) listens on the public address instead. For each
connection:

1. On a ``proxy_protocol`` listener, the PROXY protocol header is read (a connection without a
   valid one within 30 s is closed, as nginx's ``listen ... proxy_protocol`` does).
2. On an ``ssl`` listener, the ClientHello is peeked at for its server name, and the TLS
   handshake is done with the certificate Kong would choose for it (:mod:`.certs`: the
   ``snis`` entity, its wildcards, the catch-all ``*``, else the node's default), offering
   ``h2`` by ALPN on ``http2`` listeners. A plain HTTP request instead gets nginx's 400 "The
   plain HTTP request was sent to HTTPS port" (:mod:`.plain_on_tls`).
3. A relay connection is opened to the listener's Granian on ``127.0.0.1``; what the worker
   needs to know about the client (its address, TLS, SNI, the PROXY header's source) is written
   to the edge table under that connection's local port (``fastkong/proxy/edge.py``), and the
   bytes then flow both ways (:mod:`.pipe`) until either side closes.

Granian keeps the HTTP side: keep-alive and header timeouts, HTTP/2 (over the plain relay,
by its preface), request parsing. Decisions here are only about the connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from functools import partial
from typing import Final

from fastkong.proxy.edge import EdgeEntry, EdgeTable
from fastkong.stream import plain_on_tls
from fastkong.stream.pipe import Session
from fastkong.stream.proxy_protocol import ProxyHeader
from fastkong.stream.server import (
    HANDSHAKE_TIMEOUT,
    PREREAD_TIMEOUT,
    HeaderReader,
    Listening,
    StreamListener,
    bare_prologue,
    preread,
)
from fastkong.stream.snapshot import StreamSnapshot, empty_snapshot

log = logging.getLogger("fastkong.edge")

HTTP2_ALPN: Final = ("h2", "http/1.1")
HTTP1_ALPN: Final = ("http/1.1",)
#: nginx's ``lingering_timeout``.
LINGERING_TIMEOUT: Final = 5.0


class EdgeListener(StreamListener):
    """One ``proxy_listen`` entry served by the edge: its public socket, and the loopback port
    of the Granian that serves its requests (``target``) with its slot in the edge table."""

    __slots__ = ("http2", "target", "slot")

    def __init__(
        self,
        host: str,
        port: int,
        ssl: bool,
        proxy_protocol: bool,
        http2: bool,
        target: int,
        slot: int,
    ) -> None:
        super().__init__(host, port, ssl, proxy_protocol)
        self.http2 = http2
        self.target = target
        self.slot = slot

    def __repr__(self) -> str:
        flags = "".join(
            f" {name}"
            for name, on in (
                ("ssl", self.ssl),
                ("http2", self.http2),
                ("proxy_protocol", self.proxy_protocol),
            )
            if on
        )
        return f"<EdgeListener {self.host}:{self.port}{flags} -> 127.0.0.1:{self.target}>"

    @property
    def alpn(self) -> tuple[str, ...]:
        return HTTP2_ALPN if self.http2 else HTTP1_ALPN


class Edge(Listening):
    """The edge's listeners in one process (see the module docstring)."""

    def __init__(
        self, listeners: list[EdgeListener], table: EdgeTable, server: str | None = None
    ) -> None:
        super().__init__(listeners)
        self.edge_listeners = listeners
        self.table = table
        #: The ``Server`` header of the edge's own answers (None: the ``headers`` setting hides it).
        self.server = server
        self.snapshot: StreamSnapshot = empty_snapshot()

    def __repr__(self) -> str:
        return (
            f"<Edge listeners={self.listeners} open={len(self.sessions)} total={self.connections}>"
        )

    def header_reader(self, listener: StreamListener) -> HeaderReader:
        assert isinstance(listener, EdgeListener)
        return HeaderReader(partial(self._plain, listener), listener)

    async def handle(self, conn: socket.socket, listener: StreamListener) -> None:
        assert isinstance(listener, EdgeListener)
        try:
            session = await self._terminate(conn, listener)
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception:
            log.exception("edge %s: connection failed", listener)
            conn.close()
            return
        if session is not None:
            await session.done

    # -- one connection --------------------------------------------------------------------------
    def _plain(
        self,
        listener: EdgeListener,
        transport: asyncio.BaseTransport,
        header: ProxyHeader | None,
        first: bytes,
        started: float | None,
    ) -> None:
        """A plain ``proxy_protocol`` listener's connection, its header read."""
        self.connections += 1
        peer = transport.get_extra_info("peername")[:2]
        loop = asyncio.get_running_loop()
        session = self._open(loop, peer[0], started)
        transport.set_protocol(session.client)
        session.client.connection_made(transport)
        if first:
            session.client.data_received(first)
        entry = EdgeEntry(peer, False, None, header.source if header is not None else None)
        task = loop.create_task(self._relay(session, listener, entry))
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)

    async def _terminate(self, conn: socket.socket, listener: EdgeListener) -> Session | None:
        """An ``ssl`` listener's connection: its PROXY header, its SNI, the handshake with the
        certificate for that SNI, then the relay; None if it ended before."""
        loop = asyncio.get_running_loop()
        peer, header, broken = await bare_prologue(loop, conn, listener)
        if broken:
            return None
        hello = await preread(loop, conn, PREREAD_TIMEOUT)
        if not hello.tls:
            await self._plain_on_tls(loop, conn, peer)
            return None
        certificates = self.snapshot.edge_certificates.get(listener.alpn)
        if certificates is None:
            log.error("edge %s: no certificate loaded yet; closing", listener)
            conn.close()
            return None
        session = self._open(loop, peer[0])
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: session.client,
                conn,
                ssl=certificates.find(hello.sni),
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("edge: client %s:%s failed its TLS handshake: %s", peer[0], peer[1], exc)
            conn.close()
            session.end()
            return None
        tls = transport.get_extra_info("ssl_object")
        cipher = tls.cipher() if tls is not None else None
        entry = EdgeEntry(
            peer,
            True,
            hello.sni,
            header.source if header is not None else None,
            (tls.version() or "", cipher[0]) if tls is not None and cipher else None,
        )
        await self._relay(session, listener, entry)
        return session

    async def _plain_on_tls(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, peer: tuple[str, int]
    ) -> None:
        """No ClientHello came: a plain HTTP request gets nginx's 400 "plain HTTP request was
        sent to HTTPS port" (:mod:`.plain_on_tls`), anything else is closed unanswered."""
        head = b""
        try:
            async with asyncio.timeout(PREREAD_TIMEOUT):
                while not plain_on_tls.head_complete(head):
                    chunk = await loop.sock_recv(conn, plain_on_tls.MAX_HEAD - len(head))
                    if not chunk:
                        break
                    head += chunk
            response = plain_on_tls.answer(head, self.server)
            if response is not None:
                log.info("edge: client %s:%s sent plain HTTP to an ssl port", *peer)
                await loop.sock_sendall(conn, response)
                # nginx's lingering close: a body still arriving must not turn the close into
                # a reset that discards the answer before the client has read it.
                conn.shutdown(socket.SHUT_WR)
                async with asyncio.timeout(LINGERING_TIMEOUT):
                    while await loop.sock_recv(conn, 65536):
                        pass
        except (OSError, TimeoutError):
            pass
        finally:
            conn.close()

    def _open(
        self, loop: asyncio.AbstractEventLoop, client_ip: str, started: float | None = None
    ) -> Session:
        # No idle timeout here: Granian closes idle connections (keepalive_timeout), and a
        # request's body may take as long as its service's timeouts allow.
        session = Session(loop, 0, client_ip)
        session.started = time.monotonic() if started is None else started
        self.sessions.add(session)
        session.done.add_done_callback(lambda _: self.sessions.discard(session))
        return session

    async def _relay(self, session: Session, listener: EdgeListener, entry: EdgeEntry) -> None:
        """Connect the session to the listener's Granian and note the client under the relay
        connection's local port before its first byte is sent."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: session.upstream, "127.0.0.1", listener.target
            )
        except OSError as exc:
            log.error("edge %s: cannot reach its workers: %s", listener, exc)
            session.end()
            return
        if session.done.done():
            transport.close()  # the client left while the relay connected
            return
        port = transport.get_extra_info("sockname")[1]
        recorded = self.table.record(listener.slot, port, entry)
        # Cleared before the relay socket closes: once closed, its port is free for another
        # edge process's next relay, whose fresh entry a later clear would wipe out. When the
        # relay connection fails, the event loop has closed its socket first: the clear then
        # leaves an entry that is no longer this connection's.
        session.on_end = partial(self.table.clear, listener.slot, port, recorded)
        session.join()


__all__ = ["Edge", "EdgeListener", "HTTP1_ALPN", "HTTP2_ALPN"]
