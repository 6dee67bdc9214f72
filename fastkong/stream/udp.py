"""Kong's ``udp`` stream routes: datagrams on ``stream_listen ... udp`` listeners.

nginx proxies UDP by *session*: the datagrams of one client address (host and port) on one
listener are one session. Its first datagram is routed (the route's ``sources`` and
``destinations``; ``udp`` routes only, and only on ``udp`` listeners), checked by the route's
ip-restriction, and given a peer of the service (balanced, hashed on the client's address when
the upstream says so); a socket connected to that peer carries every later datagram of the
session, and what the peer sends back on it goes to the client from the listener's own
address. The session ends when nothing moved either way for the service's ``read_timeout``
(Kong sets nginx's ``proxy_timeout`` from it; nginx's default ``proxy_responses`` is
unlimited), when the peer answers with an ICMP error, or on a drain. It is then logged (the
stream access log, ``UDP``) and counted (the prometheus plugin's stream families).

What is decided here is plain: :meth:`UdpProxy.datagram` routes and queues; the peer's socket is
made in a task, and the datagrams that came meanwhile go out once it exists (bounded: a client
that floods before the peer is ready loses the excess, as UDP may).

On a wildcard listener (``0.0.0.0:53 udp``) each datagram's own destination address is read
(``IP_PKTINFO``, :mod:`fastkong.stream.pktinfo`), as nginx does: it routes the session (a
route's ``destinations`` address entries), is part of the session's key, and the session's
replies leave from it, so a client connected to the address it wrote to gets them on a node
with several addresses. Such a listener is read by the proxy's own ``recvmsg`` loop; one bound
to an address by the event loop's datagram transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from functools import partial
from typing import Any, Final

from fastkong.runtime import ServicePlan
from fastkong.stream import access_log as status
from fastkong.stream import pktinfo
from fastkong.stream.access_log import StreamAccessLog
from fastkong.stream.router import StreamRoute
from fastkong.stream.server import refusal
from fastkong.stream.session_log import RouteLogPhase, SessionEnd, note_try
from fastkong.stream.snapshot import StreamSnapshot, empty_snapshot
from fastkong.upstreams.balancers import Peer
from fastkong.upstreams.dns import Resolver

log = logging.getLogger("fastkong.stream")

#: Sessions one process keeps at once; a new client's datagrams beyond are dropped (nginx's
#: ``worker_connections`` bound, which Kong sets to 16384 per worker).
MAX_SESSIONS: Final = 16384
#: Datagrams held per session while its peer's socket is made.
MAX_PENDING: Final = 64
#: Datagrams one wakeup reads from a wildcard listener before the loop runs other work.
READ_BATCH: Final = 64

Address = tuple[str, int]


class UdpListener:
    """One ``stream_listen ... udp`` entry and its socket."""

    __slots__ = ("host", "port", "sock", "transport", "wildcard")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self.transport: asyncio.DatagramTransport | None = None
        #: Bound to every address of the node: each datagram's destination is read.
        self.wildcard = pktinfo.is_wildcard(host)

    def __repr__(self) -> str:
        return f"<UdpListener {self.host}:{self.port} udp>"

    def bind(self, backlog: int = 0, reuseport: bool = False) -> socket.socket:
        """Bind (``backlog``: none for datagrams; the stream listeners' call); with
        ``reuseport``, beside the node's other stream processes (the kernel keeps each client
        address on one of them)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        sock.setblocking(False)
        if self.wildcard:
            pktinfo.enable(sock)
        self.sock = sock
        return sock

    def send(self, data: bytes, client: Address, reply: pktinfo.Ancillary | None) -> None:
        """``data`` to ``client``, from the address ``reply`` names (a wildcard listener's)."""
        if reply is None:
            if self.transport is not None:
                self.transport.sendto(data, client)
            return
        if self.sock is None:
            return
        try:
            self.sock.sendmsg([data], reply, 0, client)
        except (BlockingIOError, InterruptedError):
            pass  # a full send buffer drops the datagram, as UDP may
        except OSError as exc:
            log.debug("udp %s: reply to %s: %s", self, client, exc)


class UdpSession:
    """One client's datagrams on one listener, and the peer they go to."""

    __slots__ = ("proxy", "listener", "client", "local", "reply", "route", "service",
                 "log_phase", "started", "last", "timer", "upstream", "pending", "sent",
                 "received", "status", "proxied", "ended", "release", "kong_ms",
                 "tries")  # fmt: skip

    def __init__(
        self,
        proxy: UdpProxy,
        listener: UdpListener,
        client: Address,
        route: StreamRoute,
        service: ServicePlan,
        log_phase: RouteLogPhase | None,
        local: bytes | None = None,
    ) -> None:
        self.proxy = proxy
        self.listener = listener
        self.client = client
        #: The packed address the client wrote to (a wildcard listener's), else None; the
        #: session's replies leave from it.
        self.local = local
        self.reply = pktinfo.reply_from(local) if local is not None else None
        self.route = route
        self.service = service
        self.log_phase = log_phase
        self.started = time.monotonic()
        self.last = self.started
        #: Milliseconds until the peer's socket was made (the log message's ``kong``), and
        #: the peers tried (its ``tries``).
        self.kong_ms = 0
        self.tries: list[dict[str, Any]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.upstream: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        #: Bytes to the client and from it (the access log's ``$bytes_sent``/``_received``).
        self.sent = 0
        self.received = 0
        self.status = status.OK
        self.proxied = False
        self.ended = False
        #: Called when the session ends: the balancer's count of the peer (least-connections).
        self.release: Any = None

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open" if self.upstream is not None else "connecting"
        return (
            f"<UdpSession {self.client[0]}:{self.client[1]} -> {self.service.name} {state} "
            f"sent={self.sent} received={self.received}>"
        )

    def from_client(self, data: bytes) -> None:
        self.received += len(data)
        self.last = time.monotonic()
        if self.upstream is not None:
            self.upstream.sendto(data)
        elif len(self.pending) < MAX_PENDING:
            self.pending.append(data)

    def from_peer(self, data: bytes) -> None:
        if self.ended:
            return
        self.sent += len(data)
        self.last = time.monotonic()
        self.listener.send(data, self.client, self.reply)

    def connected(self, transport: asyncio.DatagramTransport) -> None:
        self.upstream = transport
        self.proxied = True
        self.kong_ms = int((time.monotonic() - self.started) * 1000 + 0.5)
        for data in self.pending:
            transport.sendto(data)
        self.pending.clear()
        self._arm()

    def _arm(self) -> None:
        timeout = self.service.read_timeout
        if timeout > 0 and not self.ended:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(self.last + timeout - time.monotonic(), 0.0)
            self.timer = loop.call_at(deadline, self._check_idle)

    def _check_idle(self) -> None:
        if time.monotonic() - self.last >= self.service.read_timeout:
            self.end()
        else:
            self._arm()

    def end(self, code: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if code is not None:
            self.status = code
        if self.timer is not None:
            self.timer.cancel()
        if self.upstream is not None:
            self.upstream.close()
        if self.release is not None:
            self.release()
        self.proxy.ended(self)


class _Listening(asyncio.DatagramProtocol):
    def __init__(self, proxy: UdpProxy, listener: UdpListener) -> None:
        self.proxy = proxy
        self.listener = listener

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy.datagram(self.listener, data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        log.debug("udp %s: %s", self.listener, exc)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, session: UdpSession) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.session.from_peer(data)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error from the peer (port unreachable): nginx ends the session, a 502 if
        # the peer never answered.
        log.error("udp: upstream of %s failed: %s", self.session, exc)
        self.session.end(status.OK if self.session.sent else status.BAD_GATEWAY)

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.end()


class UdpProxy:
    """One process's ``udp`` listeners and their sessions (see the module docstring)."""

    def __init__(
        self,
        listeners: list[UdpListener],
        resolver: Resolver | None = None,
        access_log: StreamAccessLog | None = None,
    ) -> None:
        self.listeners = listeners
        self.resolver = resolver or Resolver()
        self.access_log = access_log
        self.snapshot: StreamSnapshot = empty_snapshot()
        #: (listener port, the address written to on a wildcard listener, client) -> session.
        self.sessions: dict[tuple[int, bytes | None, Address], UdpSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<UdpProxy listeners={self.listeners} sessions={len(self.sessions)}>"

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        for listener in self.listeners:
            if listener.wildcard and listener.sock is not None:
                loop.add_reader(listener.sock.fileno(), self._read, listener)
                continue
            transport, _ = await loop.create_datagram_endpoint(
                partial(_Listening, self, listener), sock=listener.sock
            )
            listener.transport = transport

    def _read(self, listener: UdpListener) -> None:
        """A wildcard listener is readable: its datagrams, each with its destination."""
        sock = listener.sock
        if sock is None:
            return
        for _ in range(READ_BATCH):
            try:
                data, sender, local = pktinfo.receive(sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("udp %s: %s", listener, exc)
                return
            self.datagram(listener, data, sender[:2], local)

    def datagram(
        self, listener: UdpListener, data: bytes, client: Address, local: bytes | None = None
    ) -> None:
        key = (listener.port, local, client)
        session = self.sessions.get(key)
        if session is not None:
            session.from_client(data)
            return
        if len(self.sessions) >= MAX_SESSIONS:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("udp: %d sessions open, dropping new clients' datagrams", MAX_SESSIONS)
            return
        snapshot = self.snapshot
        started = time.monotonic()
        server = listener.host if local is None else pktinfo.text(local)
        route = snapshot.udp_router.match(None, client[0], client[1], server, listener.port)
        if route is None:
            log.error(
                "no Route found with those values (client %s:%s, server %s:%s, udp)",
                client[0], client[1], server, listener.port,
            )  # fmt: skip
            self._log(client[0], status.INTERNAL_ERROR, 0, 0, started)
            return
        service = snapshot.service(route)
        refused = refusal(snapshot, route, client[0])
        if refused or service is None:
            code = refused or status.INTERNAL_ERROR
            phase = snapshot.log_phases.get(route.id)
            if phase is not None:
                phase.ended(SessionEnd(code, False, 0, 0, 0.0, client[0], listener.port))
            self._log(client[0], code, 0, 0, started)
            return
        phase = snapshot.log_phases.get(route.id)
        session = UdpSession(self, listener, client, route, service, phase, local)
        self.sessions[key] = session
        session.from_client(data)
        task = asyncio.get_running_loop().create_task(self._connect(session))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, session: UdpSession) -> None:
        """A socket connected to a peer of the session's service (retried on local errors:
        a peer whose name does not resolve is a 503, one that cannot be reached a 502)."""
        loop = asyncio.get_running_loop()
        service = session.service
        balancer = service.balancer
        hash_key = None
        if balancer is not None and balancer.hashed:
            hash_key, _ = balancer.hash_value((), session.client[0], "", b"", None, None)
        tried: tuple[Peer, ...] = ()
        for _ in range(service.retries + 1):
            peer: Peer | None = None
            if balancer is not None:
                peer = balancer.next_peer(tried, hash_key)
                if peer is None:
                    session.end(status.UNAVAILABLE)
                    return
                tried = (*tried, peer)
            host, port, _name = service.try_target(peer)
            started, address = time.monotonic(), ""
            try:
                address = (await self.resolver.resolve(host))[0]
                transport, _ = await loop.create_datagram_endpoint(
                    partial(_Upstream, session), remote_addr=(address, port)
                )
            except OSError as exc:
                log.error("udp: cannot reach %s:%d (service %s): %s", host, port, service.name, exc)
                if address:
                    note_try(session.log_phase, session.tries, address, port, started, True)
                if peer is not None and balancer is not None and balancer.tracks:
                    balancer.done(peer, None)
                continue
            note_try(session.log_phase, session.tries, address, port, started)
            if session.ended:
                transport.close()
                return
            if peer is not None and balancer is not None and balancer.tracks:
                session.release = partial(balancer.done, peer, 0.0)
            session.connected(transport)
            return
        session.end(status.BAD_GATEWAY)

    def ended(self, session: UdpSession) -> None:
        key = (session.listener.port, session.local, session.client)
        if self.sessions.get(key) is session:
            del self.sessions[key]
        seconds = time.monotonic() - session.started
        if session.log_phase is not None:
            session.log_phase.ended(
                SessionEnd(session.status, session.proxied, session.received, session.sent,
                           seconds, session.client[0], session.listener.port, None,
                           session.kong_ms, tuple(session.tries))
            )  # fmt: skip
        self._log(session.client[0], session.status, session.sent, session.received,
                  session.started)  # fmt: skip

    def _log(self, client_ip: str, code: int, sent: int, received: int, started: float) -> None:
        if self.access_log is not None:
            self.access_log.session(
                client_ip, code, sent, received, time.monotonic() - started, "UDP"
            )

    def stop(self) -> None:
        """Stop receiving and end every session (UDP has nothing in flight to wait for)."""
        for listener in self.listeners:
            if listener.transport is not None:
                listener.transport.close()
            elif listener.sock is not None:
                if self.loop is not None:
                    self.loop.remove_reader(listener.sock.fileno())
                listener.sock.close()
        for session in list(self.sessions.values()):
            session.end()
        for task in self.tasks:
            task.cancel()


__all__ = ["MAX_PENDING", "MAX_SESSIONS", "UdpListener", "UdpProxy", "UdpSession"]
