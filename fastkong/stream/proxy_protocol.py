"""The PROXY protocol header a load balancer puts before a connection's own bytes.

A ``stream_listen`` entry with Kong's ``proxy_protocol`` flag expects every connection to open
with one, as nginx's ``listen ... proxy_protocol`` does: version 1 (one text line, at most 107
bytes, ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n``) or version 2 (a 16-byte binary head
with a 12-byte signature, then the addresses and optional TLVs; nginx reads at most 4096 bytes
in all). A connection that opens with anything else is refused (nginx: "broken header", the
session's status 400).

What the header says is only believed from a trusted peer: Kong's stream server sets
``set_real_ip_from`` to its ``trusted_ips``, so the client address (used for route ``sources``,
ip-restriction, ``hash_on: ip`` and the access log) becomes the header's source only when the
connecting peer is trusted; otherwise the header is read, and dropped. A ``LOCAL`` command (v2)
or an ``UNKNOWN`` / unsupported address family names no client: the peer's address stays.

:func:`parse_proxy_header` is a plain function of the bytes received so far: the header and its
length, ``None`` while more bytes are needed, or :class:`BrokenHeader`.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_MAX: Final = 4096
_V2_HEAD: Final = 16
_INET: Final = struct.Struct("!4s4sHH")
_INET6: Final = struct.Struct("!16s16sHH")


class BrokenHeader(ValueError):
    """The bytes cannot be (the start of) a PROXY protocol header."""


class ProxyHeader:
    """A whole header: how many bytes it took, and the client it names (None: none)."""

    __slots__ = ("length", "source", "destination", "version")

    def __init__(
        self,
        length: int,
        version: int,
        source: tuple[str, int] | None = None,
        destination: tuple[str, int] | None = None,
    ) -> None:
        self.length = length
        self.version = version
        self.source = source
        self.destination = destination

    def __repr__(self) -> str:
        return (
            f"<ProxyHeader v{self.version} {self.length} bytes source={self.source} "
            f"destination={self.destination}>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProxyHeader):
            return NotImplemented
        return (self.length, self.version, self.source, self.destination) == (
            other.length,
            other.version,
            other.source,
            other.destination,
        )

    __hash__ = None  # type: ignore[assignment]


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None if ``data`` is a proper beginning of one;
    :class:`BrokenHeader` if it cannot be one."""
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if not data:
        return None
    raise BrokenHeader("not a PROXY protocol header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V1_PREFIX[: len(data)]):
        raise BrokenHeader("not a PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX or b"\n" in data[:V1_MAX]:
            raise BrokenHeader("PROXY protocol v1 line too long or not ended by CRLF")
        return None
    line = data[len(V1_PREFIX) : end]
    length = end + 2
    parts = line.split(b" ")
    if parts[0] == b"UNKNOWN":
        return ProxyHeader(length, 1)  # the rest of the line is ignored, as nginx does
    if parts[0] not in (b"TCP4", b"TCP6") or len(parts) != 5:
        raise BrokenHeader(f"PROXY protocol v1: bad line {line[:60]!r}")
    version = 4 if parts[0] == b"TCP4" else 6
    src = _v1_address(parts[1], version)
    dst = _v1_address(parts[2], version)
    return ProxyHeader(length, 1, (src, _v1_port(parts[3])), (dst, _v1_port(parts[4])))


def _v1_address(token: bytes, version: int) -> str:
    try:
        address = ipaddress.ip_address(token.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BrokenHeader(f"PROXY protocol v1: bad address {token[:45]!r}") from None
    if address.version != version:
        raise BrokenHeader(f"PROXY protocol v1: {token[:45]!r} is not an IPv{version} address")
    return str(address)


def _v1_port(token: bytes) -> int:
    if not token.isdigit() or len(token) > 5 or int(token) > 65535:
        raise BrokenHeader(f"PROXY protocol v1: bad port {token[:8]!r}")
    return int(token)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V2_SIGNATURE[: len(data)]):
        raise BrokenHeader("not a PROXY protocol header")
    if len(data) < _V2_HEAD:
        return None
    version_command, family, size = data[12], data[13], int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2:
        raise BrokenHeader(f"PROXY protocol v2: unknown version {version_command >> 4}")
    command = version_command & 0x0F
    if command > 1:
        raise BrokenHeader(f"PROXY protocol v2: unknown command {command}")
    length = _V2_HEAD + size
    if length > V2_MAX:
        raise BrokenHeader(f"PROXY protocol v2: header of {length} bytes is too large")
    if len(data) < length:
        return None
    if command == 0:  # LOCAL: the balancer's own connection (a health check); no client named
        return ProxyHeader(length, 2)
    body = data[_V2_HEAD:length]
    kind = family >> 4
    if kind == 1:
        layout, make = _INET, ipaddress.IPv4Address
    elif kind == 2:
        layout, make = _INET6, ipaddress.IPv6Address  # type: ignore[assignment]
    else:  # UNSPEC or UNIX: nothing to take the client's address from
        return ProxyHeader(length, 2)
    if size < layout.size:
        raise BrokenHeader(f"PROXY protocol v2: {size} bytes cannot hold the addresses")
    src, dst, sport, dport = layout.unpack_from(body)
    return ProxyHeader(length, 2, (str(make(src)), sport), (str(make(dst)), dport))


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A version 1 header naming ``source`` and ``destination`` (for tests and tools)."""
    family = b"TCP6" if ":" in source[0] else b"TCP4"
    return b"PROXY %s %s %s %d %d\r\n" % (
        family,
        source[0].encode(),
        destination[0].encode(),
        source[1],
        destination[1],
    )


def encode_v2(
    source: tuple[str, int] | None, destination: tuple[str, int] | None, tlvs: bytes = b""
) -> bytes:
    """A version 2 header: PROXY naming ``source`` and ``destination``, or (None) LOCAL."""
    if source is None or destination is None:
        return V2_SIGNATURE + bytes((0x20, 0x00)) + len(tlvs).to_bytes(2, "big") + tlvs
    six = ":" in source[0]
    layout = _INET6 if six else _INET
    body = layout.pack(
        ipaddress.ip_address(source[0]).packed,
        ipaddress.ip_address(destination[0]).packed,
        source[1],
        destination[1],
    )
    body += tlvs
    family = 0x21 if six else 0x11
    return V2_SIGNATURE + bytes((0x21, family)) + len(body).to_bytes(2, "big") + body


__all__ = [
    "BrokenHeader",
    "ProxyHeader",
    "encode_v1",
    "encode_v2",
    "parse_proxy_header",
]
