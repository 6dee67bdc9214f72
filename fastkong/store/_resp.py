"""RESP, Redis's wire protocol: the reply parser, command packing and the error classes.

``hiredis`` parses and packs when it is installed (a C parser: the fast path); the pure-Python
``PyReader`` and ``py_pack`` have the same interface and stand in for it otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    import hiredis as hiredis  # re-exported for the client and its tests
except ImportError:  # pragma: no cover - the pure-Python parser below stands in
    hiredis = None  # type: ignore[assignment]


class RedisError(Exception):
    """Redis did not answer: connection refused or lost, timeout, protocol or server error."""


class RedisTimeout(RedisError):
    """No reply within ``redis.timeout``."""


class RedisUnavailable(RedisError):
    """Not asked: Redis failed recently and the client is in backoff."""


class ReplyError(RedisError):
    """An error reply from the server (``-ERR ...``, ``-NOSCRIPT ...``, ``-MOVED ...``)."""


# -- the wire ---------------------------------------------------------------------------------
class ProtocolError(RedisError):
    """Bytes that are not RESP."""


_INCOMPLETE: Any = object()


class PyReader:
    """``hiredis.Reader``'s interface in Python: ``feed(bytes)``, then ``gets()`` returns one
    reply, or False while it is incomplete; error replies come back as ``replyError`` instances."""

    def __init__(self, replyError: type[Exception] = ReplyError) -> None:  # noqa: N803
        self.buf = bytearray()
        self.pos = 0
        self.reply_error = replyError

    def feed(self, data: bytes) -> None:
        self.buf += data

    def gets(self) -> Any:
        value, pos = self._parse(self.pos)
        if value is _INCOMPLETE:
            return False
        self.pos = pos
        if pos > 65536 or pos == len(self.buf):
            del self.buf[:pos]
            self.pos = 0
        return value

    def _parse(self, pos: int) -> tuple[Any, int]:
        buf = self.buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return _INCOMPLETE, pos
        kind = buf[pos]
        line = bytes(buf[pos + 1 : end])
        pos = end + 2
        if kind == 0x2B:  # +
            return line, pos
        if kind == 0x2D:  # -
            return self.reply_error(line.decode("utf-8", "replace")), pos
        if kind == 0x3A:  # :
            return int(line), pos
        if kind == 0x24:  # $
            n = int(line)
            if n < 0:
                return None, pos
            if len(buf) < pos + n + 2:
                return _INCOMPLETE, pos
            return bytes(buf[pos : pos + n]), pos + n + 2
        if kind == 0x2A:  # *
            n = int(line)
            if n < 0:
                return None, pos
            items = []
            for _ in range(n):
                item, pos = self._parse(pos)
                if item is _INCOMPLETE:
                    return _INCOMPLETE, pos
                items.append(item)
            return items, pos
        raise ProtocolError(f"unexpected RESP type byte {kind!r}")


def py_pack(args: Sequence[Any]) -> bytes:
    """A command as a RESP array of bulk strings (``hiredis.pack_command``'s output)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


if hiredis is not None:
    Reader: Any = hiredis.Reader
    _PROTOCOL_ERRORS: tuple[type[Exception], ...] = (hiredis.ProtocolError, ProtocolError)

    def _pack(args: Sequence[Any]) -> bytes:
        return bytes(hiredis.pack_command(tuple(args)))

else:  # pragma: no cover
    Reader = PyReader
    _PROTOCOL_ERRORS = (ProtocolError,)
    _pack = py_pack
