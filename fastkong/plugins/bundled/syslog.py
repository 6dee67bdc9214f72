"""syslog: each request's log entry to the local syslog daemon (``kong:kong/plugins/syslog``).

Priority 4. Kong passes the entry to libc's ``syslog()`` (through ``lsyslog``, opened with the
ident ``kong``, ``LOG_PID`` and the configured ``facility``); fastkong writes the same bytes to
the same socket itself. One message per request, glibc's RFC 3164 shape::

    <PRI>Mmm dd hh:mm:ss kong[<worker pid>]: <JSON entry>

with the worker's local time in the C locale (``%h %e %T``), ``PRI`` the facility's code times 8
plus the severity's, and Kong's basic serializer output (:mod:`._serializer`) as the message.
The severity is ``successful_severity`` (status below 400), ``client_errors_severity`` (4xx) or
``server_errors_severity`` (5xx); a message less severe than ``log_level`` (a higher syslog
number) is not sent.

The socket is ``/dev/log``, or the node's ``FASTKONG_SYSLOG_SOCKET``: a Unix datagram socket,
one datagram per message without a newline; one that refuses datagrams (``EPROTOTYPE``) is
spoken to as a stream socket, each message followed by a NUL byte, as glibc does. Delivery never
holds a request: the log phase appends the message to the worker's buffer, sent on the next turn
of the event loop by non-blocking sends; when the daemon falls behind (its queue is full) the
rest waits until the socket is writable again, bounded by :data:`MAX_PENDING_BYTES` (newer
messages dropped beyond it); glibc's blocking send would hold Kong's worker instead. A daemon
that went away (restarted, its socket made anew) is reconnected and the message sent again,
once, as glibc does; messages that cannot be delivered (no socket there, nobody listening) are
dropped.

A message larger than the socket takes in one datagram (the kernel's ``EMSGSIZE``; about
208 KiB with Linux's default buffer sizes) is dropped whole, as glibc's ``syslog()`` drops it:
glibc does not truncate, and a truncated entry would not be JSON any more. Problems are logged
at most once every :data:`REPORT_EVERY` seconds per socket and worker, with the count of
messages dropped so far, never per request.

``custom_fields_by_lua`` is refused at config load: fastkong runs no Lua.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from fastkong.plugins.base import REQUIRED
from fastkong.plugins.bundled._serializer import (
    LogPlugin,
    LuaCode,
    serialize_json,
)
from fastkong.plugins.bundled.loggly import LEVELS, Severity
from fastkong.plugins.registry import ALL_PROTOCOLS, register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

log = logging.getLogger("fastkong.plugins.syslog")

#: The node setting naming the local syslog socket, and libc's ``_PATH_LOG``.
SOCKET_ENV: Final = "FASTKONG_SYSLOG_SOCKET"
DEFAULT_SOCKET: Final = "/dev/log"
#: The ident lsyslog opens syslog with in Kong's handler.
IDENT: Final = "kong"
_IDENT: Final = IDENT.encode()
#: glibc's send flag: a stream daemon gone away is an error, not a SIGPIPE.
_SEND_FLAGS: Final = getattr(socket, "MSG_NOSIGNAL", 0)
MAX_PENDING_BYTES: Final = 16 * 1024 * 1024
#: Seconds between two log lines about one socket's problems.
REPORT_EVERY: Final = 60.0

Facility = Literal[
    "auth",
    "authpriv",
    "cron",
    "daemon",
    "ftp",
    "kern",
    "lpr",
    "mail",
    "news",
    "syslog",
    "user",
    "uucp",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]
#: The facilities' codes (``<sys/syslog.h>``; ``LOG_<NAME>`` is the code times 8).
FACILITIES: Final = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "local0": 16,
    "local1": 17,
    "local2": 18,
    "local3": 19,
    "local4": 20,
    "local5": 21,
    "local6": 22,
    "local7": 23,
}
_MONTHS: Final = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()

RequiredSeverity = Annotated[Severity, REQUIRED]


class SyslogConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    log_level: RequiredSeverity = "info"
    successful_severity: RequiredSeverity = "info"
    client_errors_severity: RequiredSeverity = "info"
    server_errors_severity: RequiredSeverity = "info"
    custom_fields_by_lua: LuaCode | None = None
    facility: Annotated[Facility, REQUIRED] = "user"


def severity_for(config: SyslogConfig, status: int) -> Severity:
    """The severity Kong gives a response's entry: by the status class (below 400 successful)."""
    if status >= 500:
        return config.server_errors_severity
    if status >= 400:
        return config.client_errors_severity
    return config.successful_severity


def priority(config: SyslogConfig, severity: Severity) -> int | None:
    """The ``PRI`` of a message of ``severity``, or None when it is less severe than
    ``log_level`` (Kong sends when the severity's number is at most the level's)."""
    level = LEVELS[severity]
    if level > LEVELS[config.log_level]:
        return None
    return FACILITIES[config.facility] * 8 + level


def timestamp(now: float) -> str:
    """glibc's ``%h %e %T`` of ``now`` in local time and the C locale: ``Jan  5 09:03:07``."""
    tm = time.localtime(now)
    month = _MONTHS[tm.tm_mon - 1]
    return f"{month} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"


class _Clock:
    """The timestamp of the current second, formatted once per second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = b""

    def __repr__(self) -> str:
        return f"<_Clock {self.text!r}>"

    def stamp(self, now: float) -> bytes:
        second = int(now)
        if second != self.second:
            self.text = timestamp(second).encode()
            self.second = second
        return self.text


_CLOCK = _Clock()


def record(pri: int, message: bytes, now: float | None = None, pid: int | None = None) -> bytes:
    """One syslog message as glibc's ``syslog()`` writes it for ``openlog("kong", LOG_PID, ..)``."""
    stamp = _CLOCK.stamp(time.time() if now is None else now)
    return b"<%d>%s %s[%d]: %s" % (
        pri,
        stamp,
        _IDENT,
        os.getpid() if pid is None else pid,
        message,
    )


def socket_path() -> str:
    """The node's syslog socket (``FASTKONG_SYSLOG_SOCKET``, else ``/dev/log``)."""
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class SyslogSocket:
    """One worker's messages for one syslog socket, and its connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        #: The socket type to try first: datagrams, unless the socket proved a stream one.
        self.kind = socket.SOCK_DGRAM
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        #: In stream mode, the unsent rest of the records taken from ``pending``, and how many.
        self.partial = memoryview(b"")
        self.in_flight = 0
        self.scheduled = False
        #: Waiting for the socket to be writable again (the daemon fell behind).
        self.waiting = False
        self.sent = 0
        self.dropped = 0
        self.reported_at = -REPORT_EVERY

    def __repr__(self) -> str:
        kind = "stream" if self.kind == socket.SOCK_STREAM else "dgram"
        return (
            f"<SyslogSocket {self.path} {kind} pending={len(self.pending)} sent={self.sent} "
            f"dropped={self.dropped} connected={self.sock is not None}>"
        )

    def append(self, message: bytes) -> None:
        if self.pending_bytes + self.partial.nbytes + len(message) > MAX_PENDING_BYTES:
            self._drop(1, "the syslog daemon is not taking messages as fast as they come")
            return
        self.pending.append(message)
        self.pending_bytes += len(message)
        if not self.scheduled and not self.waiting:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self, final: bool = False) -> None:
        """Send what is pending without blocking (runs on the event loop); when the socket
        is full, wait for it to be writable, or with ``final`` drop the rest."""
        self.scheduled = False
        if self.waiting:
            return
        retried = False
        while self.pending or self.partial:
            if self.sock is None:
                failure = self._connect()
                if failure is not None:
                    self._drop_all(f"cannot connect to {self.path}: {failure}")
                    return
            try:
                if self.kind == socket.SOCK_STREAM:
                    self._send_stream()
                else:
                    self._send_datagrams()
            except BlockingIOError:
                if final:
                    self._drop_all(f"{self.path} is full at shutdown")
                else:
                    self._wait_writable()
                return
            except OSError as exc:
                # The daemon went away (restarted, socket re-created): reconnect once, as
                # glibc does. A stream record cut short is lost with the connection.
                cut = self.in_flight
                self.close()
                if cut:
                    self._drop(cut, f"the connection to {self.path} broke: {_reason(exc)}")
                if retried:
                    self._drop_all(f"cannot send to {self.path}: {_reason(exc)}")
                    return
                retried = True

    def _send_datagrams(self) -> None:
        sock = self.sock
        assert sock is not None
        pending = self.pending
        while pending:
            message = pending[0]
            try:
                sock.send(message, _SEND_FLAGS)
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                pending.popleft()
                self.pending_bytes -= len(message)
                self._drop(
                    1,
                    f"a message of {len(message)} bytes is larger than {self.path} takes in "
                    "one datagram",
                )
                continue
            pending.popleft()
            self.pending_bytes -= len(message)
            self.sent += 1

    def _send_stream(self) -> None:
        sock = self.sock
        assert sock is not None
        while True:
            if not self.partial:
                if not self.pending:
                    return
                records = list(self.pending)
                self.pending.clear()
                self.pending_bytes = 0
                # glibc sends the C string's NUL as the record terminator.
                self.partial = memoryview(b"\0".join(records) + b"\0")
                self.in_flight = len(records)
            n = sock.send(self.partial, _SEND_FLAGS)
            self.partial = self.partial[n:]
            if not self.partial:
                self.sent += self.in_flight
                self.in_flight = 0

    def _connect(self) -> str | None:
        """Connect, trying the other socket type on ``EPROTOTYPE`` (glibc's fallback);
        None, or why it failed."""
        reason = ""
        for kind in (self.kind, _other(self.kind)):
            sock = socket.socket(socket.AF_UNIX, kind)
            sock.setblocking(False)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                reason = _reason(exc)
                if exc.errno == errno.EPROTOTYPE:
                    continue
                return reason
            self.sock = sock
            self.kind = kind
            return None
        return reason

    def _wait_writable(self) -> None:
        sock = self.sock
        assert sock is not None
        self.waiting = True
        asyncio.get_running_loop().add_writer(sock.fileno(), self._writable)

    def _writable(self) -> None:
        self._stop_waiting()
        self.flush()

    def _stop_waiting(self) -> None:
        if self.waiting and self.sock is not None:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())
        self.waiting = False

    def _drop_all(self, why: str) -> None:
        count = len(self.pending) + self.in_flight
        self.pending.clear()
        self.pending_bytes = 0
        self.partial = memoryview(b"")
        self.in_flight = 0
        self._drop(count, why)

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self.reported_at >= REPORT_EVERY:
            self.reported_at = now
            log.error(
                "[syslog] %s; %d message(s) dropped so far (said at most every %d s)",
                why,
                self.dropped,
                REPORT_EVERY,
            )

    def shutdown(self) -> None:
        """Send what the socket takes now, drop the rest, close."""
        self._stop_waiting()
        self.flush(final=True)
        self.close()

    def close(self) -> None:
        """Close the connection (a stream record cut short is the caller's to count)."""
        if self.sock is not None:
            self._stop_waiting()
            self.sock.close()
            self.sock = None
        self.waiting = False
        self.in_flight = 0
        self.partial = memoryview(b"")


def _other(kind: socket.SocketKind) -> socket.SocketKind:
    return socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


_SOCKETS: dict[str, SyslogSocket] = {}


def sender(path: str) -> SyslogSocket:
    """The worker's sender for the socket at ``path`` (shared by every syslog instance)."""
    found = _SOCKETS.get(path)
    if found is None:
        found = _SOCKETS[path] = SyslogSocket(path)
    return found


def close_all() -> None:
    """Send what is pending now, as far as the sockets take it, and close them (call at
    worker shutdown)."""
    for found in _SOCKETS.values():
        found.shutdown()


@register_plugin
class Syslog(LogPlugin):
    name = "syslog"
    priority = 4
    allowed_protocols = ALL_PROTOCOLS
    Config = SyslogConfig

    def __init__(self, config: SyslogConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        #: The PRI of each status class's message (None: not sent), fixed per config.
        self.successful = priority(config, config.successful_severity)
        self.client_errors = priority(config, config.client_errors_severity)
        self.server_errors = priority(config, config.server_errors_severity)
        self.path = socket_path()

    def __repr__(self) -> str:
        config = self.config
        return (
            f"<Syslog priority={self.priority} id={self.id} {self.path} "
            f"facility={config.facility} level={config.log_level}>"
        )

    def log(self, ctx: RequestContext) -> None:
        self.write(serialize_json(ctx), ctx.status)

    def write(self, message: bytes, status: int = 200) -> None:
        """Log one serialized message (a request's, or a stream session's) of ``status``."""
        if status >= 500:
            pri = self.server_errors
        elif status >= 400:
            pri = self.client_errors
        else:
            pri = self.successful
        if pri is None:
            return
        sender(self.path).append(record(pri, message))
