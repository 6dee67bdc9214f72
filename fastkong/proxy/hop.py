"""The rare-path request header rules of Kong's access phase (``kong/runloop/handler.lua``).

Kept out of the per-request loop in :mod:`fastkong.proxy.app`: these run only when the client
sent a ``Connection`` or ``TE`` header, or speaks another HTTP version than 1.1.
"""

from __future__ import annotations

from fastkong._core import _h1_py

#: A Connection header (request or response) of just one of these names no other header:
#: nothing more to drop.
PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade"})


#: The X-Forwarded-* family Kong keeps only from trusted peers (``trusted_ips``).
TRUSTED_FORWARDED = _h1_py.TRUSTED_FORWARDED


def _tokens(value: bytes) -> list[bytes]:
    return [token for token in (part.strip() for part in value.split(b",")) if token]


def request_signals(lines: list[bytes], signals: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Apply the client's ``Connection`` and ``TE`` headers (the first of each) to ``lines``.

    As Kong: the headers a ``Connection`` header names are not forwarded, and ``TE: trailers``
    goes upstream only when the client's ``TE`` lists ``trailers``.
    """
    connection: bytes | None = None
    te: bytes | None = None
    for name, value in signals:
        if name == b"te":
            if te is None:
                te = value
        elif connection is None:
            connection = value
    if connection is not None and connection not in PLAIN_CONNECTION:
        drop = {token.lower() for token in _tokens(connection)}
        drop.discard(b"upgrade")
        if drop:
            lines = [line for line in lines if line.partition(b":")[0].lower() not in drop]
    if te is not None and b"trailers" in _tokens(te):
        lines.append(b"te: trailers\r\n")
    return lines


def inbound_via(http_version: str, server: bytes) -> bytes:
    """The Via token for a request that is not HTTP/1.1: Kong writes the version as LuaJIT
    prints ``ngx.req.http_version()`` (2.0 as "2", 1.0 as "1")."""
    version = http_version.removesuffix(".0") or "1"
    return version.encode("latin-1") + b" " + server


def join_cookies(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An HTTP/2 or 3 request's Cookie fields as one, joined by ``"; "`` where the first was
    (RFC 9113 8.2.3, as nginx's HTTP/2 module does): browsers send each cookie in a field of
    its own, which an HTTP/1.1 upstream, and a plugin reading ``Cookie``, would see as several
    headers (the first only, or joined by commas)."""
    cookies = [value for name, value in headers if name == b"cookie"]
    if len(cookies) < 2:
        return headers
    joined = b"; ".join(cookies)
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name != b"cookie":
            out.append((name, value))
        elif joined:
            out.append((name, joined))
            joined = b""
    return out
