"""The stream proxy: Kong's ``stream_listen`` (``tcp``, ``tls`` and ``tls_passthrough`` routes).

For each accepted connection (Kong's ``preread`` phase, ``kong/runloop/handler.lua``):

0. On a ``proxy_protocol`` listener, the PROXY protocol header is read first
   (:mod:`.proxy_protocol`); from a ``trusted_ips`` peer its source becomes the client address
   for everything below. A connection without a valid header is closed (status 400).
1. On an ``ssl`` listener, the client's ClientHello is *peeked* at (left in the socket) for its
   server name (:mod:`.clienthello`); the connection is ``tls`` when it sent one, else ``tcp``.
2. The stream router picks the route from the SNI and the source and destination addresses;
   none matched: Kong logs "no Route found with those values" and closes the connection.
3. On an ``ssl`` listener the route decides what happens to the TLS: a ``tls`` route's
   connection is terminated here (the certificate chosen by SNI, :mod:`.certs`), a
   ``tls_passthrough`` route's is passed on untouched; any other route's is closed.
4. The route's ip-restriction runs (a refused client is closed, as Kong's stream exit does).
5. The service's peer is chosen (its upstream's balancer, else its host through the DNS cache)
   and connected within ``connect_timeout``; a failed connect tries the next peer, up to the
   service's ``retries``, with passive health counted as for HTTP. A ``tls`` service is reached
   over TLS, named by the client's SNI when the route preserves the host, else by the peer's
   host (Kong's ``proxy_ssl_name $upstream_host``), verified when ``tls_verify`` says so.
6. Bytes then flow both ways (:mod:`.pipe`) until either side ends or ``read_timeout`` passes
   with nothing moving.
7. The session is logged with nginx's stream status (:mod:`.access_log`), when the
   ``proxy_stream_access_log`` is on.

Decisions are plain functions of the snapshot (:mod:`.router`, :mod:`.snapshot`); this module
does the I/O. A plain listener is served by the loop's own server (accepting, and making the
client's transport, stays in uvloop's C code; the route is chosen in ``connection_made``); an
``ssl`` listener accepts bare sockets, because its ClientHello must be peeked at before any
transport reads from them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

from fastkong.proxy.routing import strip_port
from fastkong.proxy.trust import TrustedIps
from fastkong.proxy.upstream_tls import ContextCache
from fastkong.runtime import ServicePlan
from fastkong.stream import access_log as status
from fastkong.stream.access_log import StreamAccessLog
from fastkong.stream.clienthello import NOT_TLS, Peek, peek_client_hello
from fastkong.stream.pipe import Session
from fastkong.stream.proxy_protocol import BrokenHeader, ProxyHeader, parse_proxy_header
from fastkong.stream.router import StreamRoute
from fastkong.stream.session_log import SessionEnd, note_try
from fastkong.stream.snapshot import StreamSnapshot, empty_snapshot
from fastkong.upstreams.balancers import Balancer, Peer
from fastkong.upstreams.dns import Resolver

log = logging.getLogger("fastkong.stream")

#: nginx's ``preread_timeout``: how long a client may take to send its ClientHello.
PREREAD_TIMEOUT: Final = 30.0
PREREAD_POLL: Final = 0.005
HANDSHAKE_TIMEOUT: Final = 60.0


class StreamListener:
    """One ``stream_listen`` entry: its socket, whether it takes TLS and whether its
    connections open with a PROXY protocol header."""

    __slots__ = ("host", "port", "ssl", "proxy_protocol", "sock", "task")

    def __init__(
        self, host: str, port: int, ssl: bool = False, proxy_protocol: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.proxy_protocol = proxy_protocol
        self.sock: socket.socket | None = None
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        flags = (" ssl" if self.ssl else "") + (" proxy_protocol" if self.proxy_protocol else "")
        return f"<StreamListener {self.host}:{self.port}{flags}>"

    def bind(self, backlog: int = 16384, reuseport: bool = False) -> socket.socket:
        """Listen; with ``reuseport``, beside the node's other stream processes (each has its
        own socket and accept queue, the kernel spreads connections over them)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        sock.listen(backlog)
        sock.setblocking(False)
        self.sock = sock
        return sock


class Listening:
    """Listeners and the connections they accepted, for the stream proxy and the edge: a plain
    listener is served by the loop's own server (its connections go through
    :meth:`header_reader`), an ``ssl`` one accepts bare sockets for :meth:`handle`; a drain
    stops accepting and gives open connections a while."""

    def __init__(self, listeners: Sequence[StreamListener]) -> None:
        self.listeners = listeners
        self.sessions: set[Session] = set()
        self.handlers: set[asyncio.Task[None]] = set()
        self.connections = 0

    def header_reader(self, listener: StreamListener) -> HeaderReader:
        raise NotImplementedError

    async def handle(self, conn: socket.socket, listener: StreamListener) -> None:
        raise NotImplementedError

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        for listener in self.listeners:
            if listener.sock is None:
                listener.bind()
            serve = self._accept if listener.ssl else self._serve_plain
            listener.task = loop.create_task(serve(listener))

    def stop_accepting(self) -> None:
        for listener in self.listeners:
            if listener.task is not None:
                listener.task.cancel()
            if listener.sock is not None and listener.ssl:
                listener.sock.close()  # a plain listener's server closes its own socket
            listener.sock = None

    async def drain(self, timeout: float) -> None:
        """Stop accepting, let open connections finish for up to ``timeout``, then close them."""
        self.stop_accepting()
        pending = [s.done for s in self.sessions] + list(self.handlers)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for session in list(self.sessions):
            session.abort()
        for task in list(self.handlers):
            task.cancel()

    async def _serve_plain(self, listener: StreamListener) -> None:
        loop = asyncio.get_running_loop()
        assert listener.sock is not None
        server = await loop.create_server(
            partial(self.header_reader, listener), sock=listener.sock, backlog=16384
        )
        try:
            await asyncio.Future()  # until cancelled
        finally:
            server.close()

    async def _accept(self, listener: StreamListener) -> None:
        loop = asyncio.get_running_loop()
        assert listener.sock is not None
        while True:
            try:
                conn, _ = await loop.sock_accept(listener.sock)
            except OSError as exc:
                # EMFILE and the like: wait a little rather than spin, as nginx does.
                log.error("%s: accept failed: %s", listener, exc)
                await asyncio.sleep(0.1)
                continue
            self.connections += 1
            task = loop.create_task(self.handle(conn, listener))
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)


class StreamProxy(Listening):
    """One process's stream proxy (see the module docstring)."""

    def __init__(
        self,
        listeners: list[StreamListener],
        resolver: Resolver | None = None,
        trusted_ips: TrustedIps | None = None,
        access_log: StreamAccessLog | None = None,
    ) -> None:
        super().__init__(listeners)
        #: Whose PROXY protocol header is believed (Kong's ``set_real_ip_from``).
        self.trusted_ips = trusted_ips or TrustedIps()
        self.access_log = access_log
        self.snapshot: StreamSnapshot = empty_snapshot()
        self.resolver = resolver or Resolver()
        self.contexts = ContextCache()

    def __repr__(self) -> str:
        return (
            f"<StreamProxy listeners={self.listeners} {self.snapshot!r} "
            f"open={len(self.sessions)} total={self.connections}>"
        )

    def header_reader(self, listener: StreamListener) -> HeaderReader:
        return HeaderReader(partial(self.accepted, listener), listener, self.log_broken_header)

    # -- one connection --------------------------------------------------------------------------
    def client_address(self, peer: tuple[str, int], header: ProxyHeader | None) -> tuple[str, int]:
        """The client as routed and logged: a trusted peer's PROXY header source, else the
        peer itself (nginx's stream realip with Kong's ``set_real_ip_from``)."""
        if header is not None and header.source is not None and peer[0] in self.trusted_ips:
            return header.source
        return peer

    def accepted(
        self,
        listener: StreamListener,
        transport: asyncio.BaseTransport,
        header: ProxyHeader | None = None,
        first: bytes = b"",
        started: float | None = None,
    ) -> None:
        """A plain listener's new connection, from the accepting protocol (at once, or once a
        ``proxy_protocol`` listener's header is read; ``first``: client bytes that came after
        it): route it, hand its transport to the session's client side, and start connecting
        the upstream."""
        self.connections += 1
        started = time.monotonic() if started is None else started
        snapshot = self.snapshot
        src_ip, src_port = self.client_address(transport.get_extra_info("peername")[:2], header)
        dst_ip, dst_port = transport.get_extra_info("sockname")[:2]
        decided = self.decide(snapshot, listener, None, src_ip, src_port, dst_ip, dst_port)
        if isinstance(decided, int):
            transport.close()
            self.log_refused(src_ip, decided, started)
            return
        route, service, _ = decided
        loop = asyncio.get_running_loop()
        session = self.open_session(loop, snapshot, route, service, src_ip, started, dst_port)
        transport.set_protocol(session.client)
        session.client.connection_made(transport)
        if first:
            session.client.data_received(first)
        task = loop.create_task(self._proxy(session, snapshot, route, None, src_ip))
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)

    def open_session(
        self,
        loop: asyncio.AbstractEventLoop,
        snapshot: StreamSnapshot,
        route: StreamRoute,
        service: ServicePlan,
        client_ip: str,
        started: float,
        server_port: int,
    ) -> Session:
        session = Session(loop, service.read_timeout, client_ip)
        session.started = started
        session.server_port = server_port
        session.log_phase = snapshot.log_phases.get(route.id)
        self.sessions.add(session)
        session.done.add_done_callback(partial(self._ended, session))
        return session

    def _ended(self, session: Session, _: object) -> None:
        """The session's log phase: its access log line, its metrics and log plugins."""
        self.sessions.discard(session)
        seconds = time.monotonic() - session.started
        sent, received = session.upstream.received, session.client.received
        if self.access_log is not None:
            self.access_log.session(session.client_addr, session.status, sent, received, seconds)
        if session.log_phase is not None:
            session.log_phase.ended(
                SessionEnd(session.status, session.proxied, received, sent, seconds,
                           session.client_addr, session.server_port, session.tls, session.kong_ms,
                           tuple(session.tries))
            )  # fmt: skip

    @staticmethod
    def end_refused(
        snapshot: StreamSnapshot, route: StreamRoute, code: int, client_ip: str, port: int
    ) -> None:
        """The log phase of a routed connection closed before proxying (Kong logs its stream
        exits)."""
        phase = snapshot.log_phases.get(route.id)
        if phase is not None:
            phase.ended(SessionEnd(code, False, 0, 0, 0.0, client_ip, port))

    def log_broken_header(self, client_ip: str, started: float) -> None:
        self.log_refused(client_ip, status.BAD_REQUEST, started)

    def log_refused(self, client_ip: str, code: int, started: float) -> None:
        """The access log's line for a connection closed before it was proxied."""
        if self.access_log is not None:
            self.access_log.session(client_ip, code, 0, 0, time.monotonic() - started)

    def decide(
        self,
        snapshot: StreamSnapshot,
        listener: StreamListener,
        sni: str | None,
        src_ip: str,
        src_port: int,
        dst_ip: str,
        dst_port: int,
    ) -> tuple[StreamRoute, ServicePlan, bool] | int:
        """The route, its service and whether to terminate TLS; else the status the connection
        is closed with (Kong's stream exits: :mod:`.access_log`)."""
        route = snapshot.router.match(sni, src_ip, src_port, dst_ip, dst_port)
        if route is None:
            log.error(
                "no Route found with those values (client %s:%s, server %s:%s, sni %s)",
                src_ip, src_port, dst_ip, dst_port, sni,
            )  # fmt: skip
            return status.INTERNAL_ERROR
        terminate = False
        if listener.ssl:
            if "tls" in route.protocols:
                terminate = True
            elif "tls_passthrough" not in route.protocols:
                log.error("unexpected protocols in matched Route %s", route.name or route.id)
                self.end_refused(snapshot, route, status.INTERNAL_ERROR, src_ip, dst_port)
                return status.INTERNAL_ERROR
        service = snapshot.service(route)
        refused = refusal(snapshot, route, src_ip)
        if refused:
            self.end_refused(snapshot, route, refused, src_ip, dst_port)
            return refused
        if service is None:
            log.error("stream route %s has no service", route.name or route.id)
            self.end_refused(snapshot, route, status.INTERNAL_ERROR, src_ip, dst_port)
            return status.INTERNAL_ERROR
        return route, service, terminate

    async def _proxy(
        self,
        session: Session,
        snapshot: StreamSnapshot,
        route: StreamRoute,
        sni: str | None,
        src_ip: str,
    ) -> None:
        # The client's bytes wait (held, bounded) while the upstream connects.
        outcome = await self.connect_upstream(session, snapshot, route, sni, src_ip)
        session.kong_ms = int((time.monotonic() - session.started) * 1000 + 0.5)
        if outcome == status.OK and not session.done.done():
            session.proxied = True
            session.join()
        else:
            if not session.done.done():
                session.status = outcome
            if session.client.held:
                # nginx reads a stream client only once its upstream is connected: closing
                # with the client's bytes unread, it resets the connection (Kong's clients see
                # "connection reset by peer")
                session.client.reset()
            session.end()

    async def handle(self, conn: socket.socket, listener: StreamListener) -> None:
        try:
            await self._handle(conn, listener)
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception:
            log.exception("stream %s: connection failed", listener)
            conn.close()

    async def _handle(self, conn: socket.socket, listener: StreamListener) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        snapshot = self.snapshot
        peer, header, broken = await bare_prologue(loop, conn, listener)
        if broken:
            self.log_refused(peer[0], status.BAD_REQUEST, started)
            return
        src_ip, src_port = self.client_address(peer, header)
        dst_ip, dst_port = conn.getsockname()[:2]
        hello = NOT_TLS
        if listener.ssl:
            hello = await preread(loop, conn, PREREAD_TIMEOUT)
        decided = self.decide(snapshot, listener, hello.sni, src_ip, src_port, dst_ip, dst_port)
        if isinstance(decided, int):
            conn.close()
            self.log_refused(src_ip, decided, started)
            return
        route, service, terminate = decided
        session = self.open_session(loop, snapshot, route, service, src_ip, started, dst_port)
        ssl_ctx = None
        if terminate:
            assert snapshot.certificates is not None
            ssl_ctx = snapshot.certificates.find(hello.sni)
        try:
            await loop.connect_accepted_socket(
                lambda: session.client,
                conn,
                ssl=ssl_ctx,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ssl_ctx is not None else None,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("stream: client %s:%s went away before proxying: %s", src_ip, src_port, exc)
            conn.close()
            # nginx ends a session whose TLS handshake failed with its 500.
            session.status = status.INTERNAL_ERROR if ssl_ctx is not None else status.OK
            session.end()
            return
        if ssl_ctx is not None and session.client.transport is not None:
            tls = session.client.transport.get_extra_info("ssl_object")
            if isinstance(tls, ssl.SSLObject):
                session.tls = (tls.version() or "", (tls.cipher() or ("",))[0])
        await self._proxy(session, snapshot, route, hello.sni, src_ip)
        await session.done

    async def connect_upstream(
        self,
        session: Session,
        snapshot: StreamSnapshot,
        route: StreamRoute,
        sni: str | None,
        client_ip: str,
    ) -> int:
        """Connect the session's upstream side to a peer of the route's service, retrying:
        200 once connected, 503 with no peer to try (none healthy, or a name that does not
        resolve), 502 when every try failed."""
        loop = asyncio.get_running_loop()
        service = snapshot.service(route)
        assert service is not None
        balancer = service.balancer
        profile = service.tls_profile if service.scheme == "tls" else None
        tried: tuple[Peer, ...] = ()
        hash_key = None
        if balancer is not None and balancer.hashed:
            hash_key, _ = balancer.hash_value((), client_ip, "", b"", None, None)
        for _ in range(service.retries + 1):
            peer: Peer | None = None
            if balancer is not None:
                peer = balancer.next_peer(tried, hash_key)
                if peer is None:
                    log.error("stream: no peer available for service %s", service.name)
                    return status.UNAVAILABLE
                tried = (*tried, peer)
            host, port, name = service.try_target(peer)
            try:
                address = (await self.resolver.resolve(host))[0]
            except OSError as exc:
                log.error("stream: cannot resolve %s: %s", host, exc)
                if peer is not None and balancer is not None and balancer.tracks:
                    balancer.done(peer, None)
                return status.UNAVAILABLE
            ctx = None
            server_name = None
            if profile is not None:
                ctx = self.contexts.get(profile)
                # An IP address names no server (no SNI sent; verified against its IP names).
                server_name = (
                    sni if route.route.preserve_host and sni else strip_port(name).strip("[]")
                )
            started = time.monotonic()
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda: session.upstream,
                        address,
                        port,
                        ssl=ctx,
                        server_hostname=server_name,
                    ),
                    service.connect_timeout,
                )
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                timed_out = isinstance(exc, TimeoutError)
                note_try(session.log_phase, session.tries, address, port, started, True, timed_out)
                log.error(
                    "stream: connect to %s:%d (service %s) failed: %s",
                    address, port, service.name, "timeout" if timed_out else exc,
                )  # fmt: skip
                if peer is not None and balancer is not None:
                    if balancer.tracks:
                        balancer.done(peer, None)
                    if balancer.passive:
                        balancer.report_failure(peer, timed_out)
                if session.done.done():
                    return status.BAD_GATEWAY  # the client left meanwhile
                continue
            note_try(session.log_phase, session.tries, address, port, started)
            if peer is not None and balancer is not None and balancer.tracks:
                elapsed = time.monotonic() - started
                session.done.add_done_callback(partial(_release, balancer, peer, elapsed))
            return status.OK
        return status.BAD_GATEWAY


async def preread(loop: asyncio.AbstractEventLoop, conn: socket.socket, timeout: float) -> Peek:
    """Peek at the client's first bytes until they hold a whole ClientHello (or show there is
    none), leaving them in the socket for whoever reads it next."""
    deadline = loop.time() + timeout
    seen = -1
    while True:
        if loop.time() >= deadline:
            return NOT_TLS  # nginx's preread timeout: routed as a connection without SNI
        await _readable(loop, conn, deadline)
        try:
            data = conn.recv(65536, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        except OSError:
            return NOT_TLS
        if not data:
            return NOT_TLS  # closed before saying anything
        verdict = peek_client_hello(data)
        if verdict.done:
            return verdict
        if len(data) == seen:
            # Nothing new: the unread bytes keep the socket readable, so wait a moment.
            await asyncio.sleep(PREREAD_POLL)
        seen = len(data)


async def _readable(loop: asyncio.AbstractEventLoop, conn: socket.socket, deadline: float) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, max(0.0, deadline - loop.time()))
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)


async def bare_prologue(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, listener: StreamListener
) -> tuple[tuple[str, int], ProxyHeader | None, bool]:
    """An accepted bare socket made ready (non-blocking, no Nagle) and, on a
    ``proxy_protocol`` listener, its PROXY header read: (peer, header, broken). A broken or
    missing header is logged and the socket closed (``broken`` True)."""
    conn.setblocking(False)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    peer = conn.getpeername()[:2]
    if not listener.proxy_protocol:
        return peer, None, False
    try:
        return peer, await read_proxy_header(loop, conn, PREREAD_TIMEOUT), False
    except BrokenHeader as exc:
        log.error("%s: broken PROXY protocol header from %s: %s", listener, peer[0], exc)
        conn.close()
        return peer, None, True


async def read_proxy_header(
    loop: asyncio.AbstractEventLoop, conn: socket.socket, timeout: float
) -> ProxyHeader:
    """Read the PROXY protocol header off ``conn`` and no byte more (what follows, a
    ClientHello, stays in the socket for :func:`preread`); BrokenHeader if the client sends
    something else, closes, or says nothing within ``timeout``."""
    deadline = loop.time() + timeout
    seen = -1
    while True:
        if loop.time() >= deadline:
            raise BrokenHeader("no PROXY protocol header in time")
        await _readable(loop, conn, deadline)
        try:
            data = conn.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            continue
        except OSError as exc:
            raise BrokenHeader(f"connection failed: {exc}") from None
        if not data:
            raise BrokenHeader("closed before a PROXY protocol header")
        header = parse_proxy_header(data)
        if header is not None:
            remaining = header.length
            while remaining:  # the peeked bytes are there: these reads do not block
                try:
                    taken = len(conn.recv(remaining))
                except OSError as exc:
                    raise BrokenHeader(f"connection failed: {exc}") from None
                if not taken:
                    raise BrokenHeader("closed inside the PROXY protocol header")
                remaining -= taken
            return header
        if len(data) == seen:
            await asyncio.sleep(PREREAD_POLL)
        seen = len(data)


class HeaderReader(asyncio.Protocol):
    """A plain listener's connection until it is handed over: in ``connection_made`` itself
    (so no byte can arrive before the new protocol takes the transport over), or on a
    ``proxy_protocol`` listener once the header has arrived. ``ready(transport, header, first,
    started)`` takes it (``first``: client bytes that came after the header); ``refused(client,
    started)`` is told of a connection closed for a broken or missing header."""

    __slots__ = ("ready", "refused", "listener", "transport", "buffer", "timer", "started",
                 "settled")  # fmt: skip

    def __init__(
        self,
        ready: Callable[[asyncio.BaseTransport, ProxyHeader | None, bytes, float | None], None],
        listener: StreamListener,
        refused: Callable[[str, float], None] | None = None,
    ) -> None:
        self.ready = ready
        self.refused = refused
        self.listener = listener
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None
        self.started = 0.0
        self.settled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.listener.proxy_protocol:
            self._hand_over(transport, None, b"")
            return
        self.transport = transport
        self.started = time.monotonic()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(PREREAD_TIMEOUT, self._broken, "no header in time")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            header = parse_proxy_header(self.buffer)
        except BrokenHeader as exc:
            self._broken(str(exc))
            return
        if header is None or self.transport is None:
            return  # (bounded: a header longer than the protocol allows is broken)
        self._settle()
        first = self.buffer[header.length :]
        self.buffer = b""
        self._hand_over(self.transport, header, first)

    def eof_received(self) -> bool:
        self._broken("closed before a PROXY protocol header")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle()

    def _settle(self) -> None:
        self.settled = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _broken(self, why: str) -> None:
        if self.settled or self.transport is None:
            return
        self._settle()
        peer = self.transport.get_extra_info("peername")
        client = str(peer[0]) if peer else "-"
        log.error("%s: broken PROXY protocol header from %s: %s", self.listener, client, why)
        self.transport.close()
        if self.refused is not None:
            self.refused(client, self.started)

    def _hand_over(
        self, transport: asyncio.BaseTransport, header: ProxyHeader | None, first: bytes
    ) -> None:
        try:
            self.ready(transport, header, first, self.started or None)
        except Exception:
            log.exception("%s: connection failed", self.listener)
            transport.close()


def _release(balancer: Balancer, peer: Peer, elapsed: float, _: object) -> None:
    balancer.done(peer, elapsed)  # least-connections counts the connection until it ends


def refusal(snapshot: StreamSnapshot, route: StreamRoute, client_ip: str) -> int:
    """0 if the route's ip-restriction (if any) lets ``client_ip`` through, else the status
    Kong's stream exit closes the connection with (the plugin's ``status``, 403 unless set)."""
    for plugin in snapshot.guards.get(route.id, ()):
        if not plugin.admits(client_ip):
            return int(getattr(plugin, "status", status.FORBIDDEN))
    return 0


__all__ = [
    "HeaderReader",
    "Listening",
    "bare_prologue",
    "StreamListener",
    "StreamProxy",
    "preread",
    "read_proxy_header",
    "refusal",
]
