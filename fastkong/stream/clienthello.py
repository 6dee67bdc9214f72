"""Read the server name out of a TLS ClientHello without terminating TLS (nginx's ssl_preread).

Kong's ssl stream listeners first *peek* at the client's opening bytes: the ClientHello's
``server_name`` extension decides the route, and the route decides whether the connection is
terminated here (``tls``) or passed on byte for byte (``tls_passthrough``). This module is the
plain decision code for that peek: give it the bytes received so far, it says whether it needs
more and, once it has the whole ClientHello, what SNI (if any) it carries.

Only what nginx's ``ssl_preread`` reads is read: the handshake may span several TLS records
(each up to 16 KiB); the ClientHello is walked field by field, and anything that is not a
well-formed ClientHello is "not TLS" (no SNI), never an exception.
"""

from __future__ import annotations

from typing import Final, NamedTuple

RECORD_HANDSHAKE: Final = 0x16
HANDSHAKE_CLIENT_HELLO: Final = 0x01
EXT_SERVER_NAME: Final = 0x0000
NAME_TYPE_HOST: Final = 0x00
#: The most a ClientHello may take here (nginx reads at most 16 KiB of preread data; post-quantum
#: key shares make ClientHellos of a few KiB common, so this leaves room).
MAX_HELLO: Final = 64 * 1024


class Peek(NamedTuple):
    """What the bytes so far say: ``done`` once no more bytes would change the answer."""

    done: bool
    tls: bool = False
    sni: str | None = None


NEED_MORE: Final = Peek(False)
NOT_TLS: Final = Peek(True)


def peek_client_hello(data: bytes) -> Peek:
    """The verdict on ``data``, the first bytes a client sent (see the module docstring)."""
    if not data:
        return NEED_MORE
    if data[0] != RECORD_HANDSHAKE:
        return NOT_TLS
    # Reassemble the handshake messages from consecutive handshake records.
    handshake = bytearray()
    offset = 0
    while True:
        if len(data) < offset + 5:
            return NEED_MORE
        if data[offset] != RECORD_HANDSHAKE or data[offset + 1] != 0x03:
            return NOT_TLS
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if length == 0:
            return NOT_TLS
        end = offset + 5 + length
        if len(data) < end:
            if end > MAX_HELLO:
                return NOT_TLS
            return NEED_MORE
        handshake += data[offset + 5 : end]
        offset = end
        if len(handshake) >= 4:
            if handshake[0] != HANDSHAKE_CLIENT_HELLO:
                return NOT_TLS
            body_len = int.from_bytes(handshake[1:4], "big")
            if 4 + body_len > MAX_HELLO:
                return NOT_TLS
            if len(handshake) >= 4 + body_len:
                return _hello(bytes(handshake[4 : 4 + body_len]))


def _hello(body: bytes) -> Peek:
    """The verdict on a whole ClientHello body (after the 4-byte handshake header)."""
    try:
        pos = 2 + 32  # legacy_version, random
        pos += 1 + body[pos]  # legacy_session_id
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher_suites
        pos += 1 + body[pos]  # legacy_compression_methods
    except IndexError:
        return NOT_TLS
    if pos > len(body):
        return NOT_TLS
    if pos == len(body):
        return Peek(True, True)  # no extensions: TLS without SNI
    if pos + 2 > len(body):
        return NOT_TLS
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    if end > len(body):
        return NOT_TLS
    pos += 2
    while pos + 4 <= end:
        kind = int.from_bytes(body[pos : pos + 2], "big")
        size = int.from_bytes(body[pos + 2 : pos + 4], "big")
        pos += 4
        if pos + size > end:
            return NOT_TLS
        if kind == EXT_SERVER_NAME:
            return _server_name(body[pos : pos + size])
        pos += size
    return Peek(True, True)


def _server_name(ext: bytes) -> Peek:
    """The host name of a ``server_name`` extension (RFC 6066 3), or not TLS when malformed."""
    if len(ext) < 2:
        return NOT_TLS
    end = 2 + int.from_bytes(ext[0:2], "big")
    if end > len(ext):
        return NOT_TLS
    pos = 2
    while pos + 3 <= end:
        kind = ext[pos]
        size = int.from_bytes(ext[pos + 1 : pos + 3], "big")
        pos += 3
        if pos + size > end:
            return NOT_TLS
        if kind == NAME_TYPE_HOST:
            try:
                name = ext[pos : pos + size].decode("ascii")
            except UnicodeDecodeError:
                return NOT_TLS
            return Peek(True, True, name or None)
        pos += size
    return Peek(True, True)


__all__ = ["MAX_HELLO", "NEED_MORE", "NOT_TLS", "Peek", "peek_client_hello"]
