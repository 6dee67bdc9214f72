"""file-log: one JSON line per request appended to a file (``kong:kong/plugins/file-log``).

Priority 9. The line is Kong's basic serializer output (:mod:`._serializer`). The log phase
only appends the encoded line to the file's in-memory batch; the worker's single writer thread
appends each batch with one ``write`` on an ``O_APPEND`` descriptor, so a slow disk delays the
log, not the event loop, and lines of one worker stay in order. The descriptor is kept per path
and per worker, like Kong's per-worker ``file_descriptors`` table: with ``reopen: false`` a log
file that is moved or deleted keeps receiving lines on the old inode (as in Kong), with
``reopen: true`` the file is closed and opened again before each write (per batch here, per
request in Kong), which is what log rotation needs.

A file that cannot be opened is logged (``[file-log] failed to open the file: <reason>``) and
its lines are dropped, as in Kong. Lines waiting for the writer are bounded
(:data:`MAX_PENDING_BYTES` per file); beyond that new lines are dropped and counted.

``custom_fields_by_lua`` is refused at config load: fastkong runs no Lua.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from msgspec import Meta

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

log = logging.getLogger("fastkong.plugins.file-log")

ERR_FILENAME: Final = "not a valid filename"
MAX_PENDING_BYTES: Final = 64 * 1024 * 1024
#: How long the lines of a batch gather before the writer thread takes them: one hand-off per
#: batch, not per line, when lines come one per turn of the event loop (a stream session's
#: end, a slow request rate); a line reaches the file within this much of its log phase.
FLUSH_DELAY: Final = 0.005
_FILENAME: Final = re.compile(r"^[^\s*&%\\`][^*&%\\`]*[^\s*&%\\`]$")
_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_MODE: Final = 0o644


def check_filename(path: str) -> str | None:
    """Kong's ``match`` for ``path``: no ``*&%\\``` anywhere, no blank at either end."""
    return None if _FILENAME.match(path) else ERR_FILENAME


class FileLogConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    path: Annotated[str, Meta(extra={"kong_check": check_filename})]
    reopen: Annotated[bool, REQUIRED] = False
    custom_fields_by_lua: LuaCode | None = None


class FileSink:
    """The lines of one file in one worker, and the descriptor the writer thread uses."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.reopen = False
        self.busy = False
        self.scheduled = False
        self.written = 0
        self.dropped = 0
        self._warned_full = False
        #: Only the writer thread touches the descriptor.
        self.fd: int | None = None

    def __repr__(self) -> str:
        return (
            f"<FileSink {self.path} pending={len(self.pending)} written={self.written} "
            f"dropped={self.dropped} open={self.fd is not None}>"
        )

    def append(self, line: bytes, reopen: bool) -> None:
        if self.pending_bytes + len(line) > MAX_PENDING_BYTES:
            self.dropped += 1
            if not self._warned_full:
                log.warning("[file-log] %s: the writer is behind, dropping log lines", self.path)
                self._warned_full = True
            return
        self._warned_full = False
        self.pending.append(line)
        self.pending_bytes += len(line)
        self.reopen = self.reopen or reopen
        if not self.scheduled and not self.busy:
            self.scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def _take(self) -> tuple[bytes, bool]:
        data = b"".join(self.pending)
        reopen = self.reopen
        self.pending = []
        self.pending_bytes = 0
        self.reopen = False
        return data, reopen

    def _flush(self) -> None:
        self.scheduled = False
        if self.busy or not self.pending:
            return
        data, reopen = self._take()
        self.busy = True
        future = _executor().submit(self.write, data, reopen)
        loop = asyncio.get_running_loop()
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._done, f))

    def _done(self, future: Future[int]) -> None:
        self.busy = False
        self.written += future.result()
        if self.pending and not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def write(self, data: bytes, reopen: bool) -> int:
        """Append ``data`` (runs in the writer thread); the number of lines written."""
        if reopen and self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.fd is None:
            try:
                self.fd = os.open(self.path, _FLAGS, _MODE)
            except OSError as exc:
                log.error("[file-log] failed to open the file: %s", exc.strerror or exc)
                return 0
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            log.error("[file-log] failed to write to %s: %s", self.path, exc.strerror or exc)
            os.close(self.fd)
            self.fd = None
            return 0
        return data.count(b"\n")

    def close(self) -> None:
        """Write what is pending now and close the file (the worker's shutdown)."""
        if self.pending:
            data, reopen = self._take()
            self.write(data, reopen)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_SINKS: dict[str, FileSink] = {}
_EXECUTOR: list[ThreadPoolExecutor] = []


def _executor() -> ThreadPoolExecutor:
    if not _EXECUTOR:
        _EXECUTOR.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-log"))
    return _EXECUTOR[0]


def sink(path: str) -> FileSink:
    """The worker's sink for ``path`` (shared by every file-log instance writing there)."""
    found = _SINKS.get(path)
    if found is None:
        found = _SINKS[path] = FileSink(path)
    return found


def close_all() -> None:
    """Flush and close every file of this worker (call at worker shutdown)."""
    for executor in _EXECUTOR:
        executor.shutdown(wait=True)
    _EXECUTOR.clear()
    for found in _SINKS.values():
        found.busy = False
        found.close()


@register_plugin
class FileLog(LogPlugin):
    name = "file-log"
    priority = 9
    allowed_protocols = ALL_PROTOCOLS
    Config = FileLogConfig

    def __init__(self, config: FileLogConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.path = config.path
        self.reopen = config.reopen

    def __repr__(self) -> str:
        return f"<FileLog priority={self.priority} id={self.id} path={self.path}>"

    def log(self, ctx: RequestContext) -> None:
        self.write(serialize_json(ctx), ctx.status)

    def write(self, message: bytes, status: int = 200) -> None:
        """Log one serialized message (a request's, or a stream session's) of ``status``."""
        sink(self.path).append(message + b"\n", self.reopen)
