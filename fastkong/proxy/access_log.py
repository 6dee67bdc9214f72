"""Kong's ``proxy_access_log``: one line per request in Kong's ``kong_log_format``.

Kong's nginx writes, for every proxy request (``kong/templates/nginx_kong.lua``)::

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent" kong_request_id: "$kong_request_id"

(on one line). ``$remote_addr`` is the client address after the real-IP rules, ``$remote_user``
the user of a ``Basic`` Authorization header, ``$request`` the request line as received, a
missing value ``-``, and values are escaped as nginx escapes them (``"``, ``\\`` and bytes
outside printable ASCII as ``\\xHH``). A client that goes away before its response started is
logged with nginx's 499.

How it is written: the setting names a file (``/dev/stdout`` or ``/dev/stderr`` in a
container, as Kong's images set it) or ``off``. Each worker appends whole lines with
``O_APPEND`` writes, so workers never interleave inside a line; lines are batched, up to
32 KiB or a quarter of a second, like nginx's ``access_log ... buffer= flush=``, so a request
pays for formatting one line and not for a system call: about 3 us per request on the
benchmark machine (``timeit`` of :meth:`AccessLog.line`), a few per cent of a request's CPU.
Nothing of this runs when the setting is off (fastkong's default, see the README: Kong's own
default is a file under its prefix).

Log rotation: logrotate renames the file away (and may create an empty one at the path). A
file is reopened by its path when a flush finds the path names another file than the one
written (its inode, looked at once a second at most, never per request), and at once on
SIGUSR1 (nginx's reopen, which the supervisor forwards to each worker): lines go to the new
file within about a second of the rename, with or without logrotate's ``postrotate`` signal.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import re
import signal
import time
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Handler = Callable[[Scope, Receive, Send, str], Awaitable[None]]

FLUSH_BYTES = 32 * 1024
FLUSH_SECONDS = 0.25
#: nginx's status for a request whose client closed the connection before the response.
CLIENT_CLOSED = 499
_STANDARD_STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}
#: ``$server_protocol`` by the ASGI ``http_version``.
_PROTOCOLS = {"1.1": " HTTP/1.1", "1.0": " HTTP/1.0", "2": " HTTP/2.0"}
_NEEDS_ESCAPE = re.compile(rb'[^\x20-\x7e]|["\\]')
#: How often a flush looks at whether the path still names the open file (seconds).
FOLLOW_INTERVAL = 1.0
#: The open logs of this process, reopened together on SIGUSR1 (:func:`reopen_all`).
_OPEN: weakref.WeakSet[AccessLog] = weakref.WeakSet()


def escape(value: bytes) -> str:
    """nginx's default log escaping: ``"``, ``\\`` and bytes outside 0x20-0x7e as ``\\xHH``."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value.decode("ascii")
    return "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02X}" for b in value
    )


def remote_user(authorization: bytes | None) -> str:
    """``$remote_user``: the user name of a ``Basic`` Authorization header, else ``-``."""
    if not authorization or not authorization[:6].lower() == b"basic ":
        return "-"
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return "-"
    user, colon, _ = decoded.partition(b":")
    return escape(user) if colon and user else "-"


class AccessLog:
    """One worker's access log (see the module docstring)."""

    __slots__ = (
        "path", "fd", "lines", "size", "flush_handle", "stamp_second", "stamp", "identity",
        "next_check", "__weakref__",
    )  # fmt: skip

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.lines: list[bytes] = []
        self.size = 0
        self.flush_handle: asyncio.TimerHandle | None = None
        self.stamp_second = -1
        self.stamp = ""
        #: (device, inode) of the open file; None for a standard stream (never reopened).
        self.identity: tuple[int, int] | None = None
        #: When a flush next compares the path's inode with the open file's (monotonic).
        self.next_check = 0.0

    def __repr__(self) -> str:
        return f"<AccessLog {self.path} buffered={self.size}>"

    def open(self) -> None:
        standard = _STANDARD_STREAMS.get(self.path)
        if standard is not None:
            self.fd = os.dup(standard)
            return
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        stat = os.fstat(self.fd)
        self.identity = (stat.st_dev, stat.st_ino)
        self.next_check = time.monotonic() + FOLLOW_INTERVAL
        _OPEN.add(self)

    def close(self) -> None:
        self.flush()
        _OPEN.discard(self)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def reopen(self) -> None:
        """Write what is buffered, then open the path again (nginx's SIGUSR1)."""
        self.flush()
        self._reopen()

    def _reopen(self) -> None:
        if self.identity is None or self.fd < 0:
            return
        old = self.fd
        try:
            self.open()
        except OSError:
            self.fd = old  # the directory is gone or not writable: keep the file we have
            self.next_check = time.monotonic() + FOLLOW_INTERVAL
            return
        os.close(old)

    def _path_moved(self) -> bool:
        """Whether the path names another file than the open one, or none (renamed away)."""
        self.next_check = time.monotonic() + FOLLOW_INTERVAL
        try:
            stat = os.stat(self.path)
        except OSError:
            return True
        return (stat.st_dev, stat.st_ino) != self.identity

    def time_local(self, now: float) -> str:
        """``$time_local``: ``26/Nov/2026:07:18:00 +0000``, formatted once per second."""
        second = int(now)
        if second != self.stamp_second:
            self.stamp_second = second
            self.stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self.stamp

    def write(self, line: str) -> None:
        data = line.encode("utf-8", "surrogateescape")
        self.lines.append(data)
        self.size += len(data)
        if self.size >= FLUSH_BYTES:
            self.flush()
        elif self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if not self.lines or self.fd < 0:
            return
        if self.identity is not None and time.monotonic() >= self.next_check:
            if self._path_moved():
                self._reopen()  # these lines go to the new file
        data = b"".join(self.lines)
        self.lines.clear()
        self.size = 0
        try:
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except OSError:
            pass  # a full disk or a closed pipe must not fail requests; the lines are lost

    async def serve(
        self,
        handler: Handler,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        remote: Callable[[Scope], str],
    ) -> None:
        """Run ``handler`` for one request, then log it."""
        status = 0
        sent = 0

        async def observe(message: Message) -> None:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await handler(scope, receive, observe, request_id)
        finally:
            self.write(self.line(scope, status or CLIENT_CLOSED, sent, request_id, remote(scope)))

    def line(self, scope: Scope, status: int, sent: int, request_id: str, addr: str) -> str:
        referer = agent = authorization = None
        for name, value in scope["headers"]:
            if name == b"referer":
                referer = referer or value
            elif name == b"user-agent":
                agent = agent or value
            elif name == b"authorization":
                authorization = authorization or value
        target: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string") or b""
        if query:
            target += b"?" + query
        return "".join(
            (
                addr,
                " - ",
                "-" if authorization is None else remote_user(authorization),
                " [",
                self.time_local(time.time()),
                '] "',
                scope["method"],
                " ",
                escape(target),
                _PROTOCOLS.get(scope.get("http_version", "1.1"), " HTTP/1.1"),
                '" ',
                str(status),
                " ",
                str(sent),
                ' "',
                "-" if referer is None else escape(referer),
                '" "',
                "-" if agent is None else escape(agent),
                '" kong_request_id: "',
                request_id,
                '"\n',
            )
        )


def reopen_all() -> None:
    """Reopen every access log this process has open (nginx's SIGUSR1)."""
    for access_log in list(_OPEN):
        access_log.reopen()


def reopen_on_signal(loop: asyncio.AbstractEventLoop, sig: int = signal.SIGUSR1) -> bool:
    """Reopen this process's access logs when it gets ``sig`` (on ``loop``, which must run in
    the main thread); False where the loop cannot take signal handlers."""
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(sig, reopen_all)
        return True
    return False
