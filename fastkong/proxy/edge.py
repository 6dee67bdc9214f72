"""What the edge knows about a connection it relays to a Granian listener (the edge table).

Granian terminates TLS with one certificate per listener and reads no PROXY protocol header.
So an ``ssl`` proxy listener (unless ``ssl_termination`` is ``granian``) and a
``proxy_protocol`` one are served by the *edge* (``fastkong/stream/edge.py``): it accepts on
the public address, reads the PROXY header, terminates TLS with the certificate Kong would pick
for the client's SNI, and relays the plain bytes to Granian on a loopback listener of that
proxy listener's own.

Granian then sees every such connection coming from ``127.0.0.1``, the edge's side of the relay.
What the request path needs to know instead (the client's address, that the client spoke TLS,
its SNI, a PROXY header's source) is written by the edge into a table in shared memory, one
entry per relay connection, indexed by the listener's slot and the relay connection's *local
port*: that port is the ``client`` port Granian puts in the ASGI scope, and the kernel lets no
two open relay connections to one listener share it. The edge writes an entry after the relay
connection is made and before its first byte is sent, so the request that reads it always finds
it; it clears the entry when the connection ends.

A connection to the loopback listener that did not come through the edge finds no entry (or an
entry the edge cleared) and is served as the plain loopback connection it is.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Final

#: family, flags, peer port, peer address, PROXY source family, its port, its address, SNI length
#: (then the SNI, and for TLS the protocol's and the cipher's names, each after its length)
_HEAD: Final = struct.Struct("<BBH16sBxH16sB")
_SNI_MAX: Final = 255
_VERSION_MAX: Final = 16
_CIPHER_MAX: Final = 64
ENTRY: Final = 384
PORTS: Final = 65536
_TLS: Final = 1

_FAMILIES: Final = {4: socket.AF_INET, 6: socket.AF_INET6}


def _pack_address(ip: str) -> tuple[int, bytes]:
    if ":" in ip:
        return 6, socket.inet_pton(socket.AF_INET6, ip)
    return 4, socket.inet_pton(socket.AF_INET, ip) + bytes(12)


def _unpack_address(family: int, raw: bytes) -> str:
    if family == 6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return socket.inet_ntop(socket.AF_INET, raw[:4])


class EdgeEntry:
    """One relayed connection as the edge saw it."""

    __slots__ = ("peer", "tls", "sni", "proxied", "tls_info")

    def __init__(
        self,
        peer: tuple[str, int],
        tls: bool,
        sni: str | None = None,
        proxied: tuple[str, int] | None = None,
        tls_info: tuple[str, str] | None = None,
    ) -> None:
        #: The address that connected to the public listener (a load balancer, if it sent a
        #: PROXY header), and the PROXY header's source (None: no header, or LOCAL/UNKNOWN).
        self.peer = peer
        self.tls = tls
        self.sni = sni
        self.proxied = proxied
        #: The TLS protocol and cipher the client negotiated (nginx's ``$ssl_protocol``,
        #: ``$ssl_cipher``: OpenSSL's names), for the log serializer's ``request.tls``.
        self.tls_info = tls_info

    def __repr__(self) -> str:
        via = f" proxied={self.proxied[0]}:{self.proxied[1]}" if self.proxied else ""
        tls = f" tls sni={self.sni!r}" if self.tls else ""
        return f"<EdgeEntry {self.peer[0]}:{self.peer[1]}{tls}{via}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EdgeEntry):
            return NotImplemented
        return (self.peer, self.tls, self.sni, self.proxied, self.tls_info) == (
            other.peer,
            other.tls,
            other.sni,
            other.proxied,
            other.tls_info,
        )

    def pack(self) -> bytes:
        family, peer = _pack_address(self.peer[0])
        proxied_family, proxied, proxied_port = 0, bytes(16), 0
        if self.proxied is not None:
            proxied_family, proxied = _pack_address(self.proxied[0])
            proxied_port = self.proxied[1]
        sni = (self.sni or "").encode("ascii", "replace")[:_SNI_MAX]
        head = _HEAD.pack(
            family,
            _TLS if self.tls else 0,
            self.peer[1],
            peer,
            proxied_family,
            proxied_port,
            proxied,
            len(sni),
        )
        version, cipher = self.tls_info or ("", "")
        v = version.encode("ascii", "replace")[:_VERSION_MAX]
        c = cipher.encode("ascii", "replace")[:_CIPHER_MAX]
        return head + sni + bytes((len(v),)) + v + bytes((len(c),)) + c

    @classmethod
    def unpack(cls, raw: bytes | memoryview) -> EdgeEntry | None:
        family, flags, port, peer, pfamily, pport, proxied, sni_len = _HEAD.unpack_from(raw)
        if family not in _FAMILIES:
            return None
        sni = None
        start = _HEAD.size
        if sni_len:
            sni = bytes(raw[start : start + sni_len]).decode("ascii")
        start += sni_len
        tls_info = None
        if flags & _TLS and (v_len := raw[start]):
            version = bytes(raw[start + 1 : start + 1 + v_len]).decode("ascii")
            start += 1 + v_len
            c_len = raw[start]
            tls_info = (version, bytes(raw[start + 1 : start + 1 + c_len]).decode("ascii"))
        return cls(
            (_unpack_address(family, peer), port),
            bool(flags & _TLS),
            sni,
            (_unpack_address(pfamily, proxied), pport) if pfamily in _FAMILIES else None,
            tls_info,
        )


class EdgeTable:
    """The shared table (see the module docstring): ``slots`` listeners of 65,536 entries.

    The file is sparse: only the pages of ports in use take memory.
    """

    __slots__ = ("path", "slots", "_map")

    def __init__(self, path: str | Path, slots: int, create: bool = False) -> None:
        self.path = Path(path)
        self.slots = slots
        size = slots * PORTS * ENTRY
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<EdgeTable {self.path} slots={self.slots}>"

    def _offset(self, slot: int, port: int) -> int:
        if not 0 <= slot < self.slots or not 0 <= port < PORTS:
            raise IndexError(f"edge table: no entry for slot {slot} port {port}")
        return (slot * PORTS + port) * ENTRY

    def record(self, slot: int, port: int, entry: EdgeEntry) -> bytes:
        """Write ``entry`` for the connection on local ``port``; returns its bytes, for
        :meth:`clear`."""
        offset = self._offset(slot, port)
        data = entry.pack()
        self._map[offset : offset + len(data)] = data
        return data

    def clear(self, slot: int, port: int, recorded: bytes | None = None) -> None:
        """Clear the entry of ``port``; with ``recorded`` (what :meth:`record` returned), only
        while it is still that one: once the connection's socket is closed, its port may carry
        another edge process's new connection, whose fresh entry must stay."""
        offset = self._offset(slot, port)
        if recorded is None or self._map[offset : offset + len(recorded)] == recorded:
            self._map[offset] = 0

    def lookup(self, slot: int, port: int) -> EdgeEntry | None:
        offset = self._offset(slot, port)
        if not self._map[offset]:
            return None
        return EdgeEntry.unpack(memoryview(self._map)[offset : offset + ENTRY])

    def close(self) -> None:
        self._map.close()


#: The scope key of a relayed request's SNI (None: the client sent none).
SNI_KEY: Final = "fastkong.sni"
#: The scope key of a relayed request's PROXY protocol source address, when it had one.
PROXIED_KEY: Final = "fastkong.proxy_protocol_addr"
#: The scope key of a relayed TLS request's ``(protocol, cipher)``.
TLS_INFO_KEY: Final = "fastkong.tls"


class EdgeView:
    """A Granian worker's view of the edge table: its listener's slot, and the public address
    that listener serves (nginx's ``$server_addr``/``$server_port`` for its requests)."""

    __slots__ = ("table", "slot", "server")

    def __init__(self, table: EdgeTable, slot: int, server: tuple[str, int]) -> None:
        self.table = table
        self.slot = slot
        self.server = server

    def __repr__(self) -> str:
        return f"<EdgeView slot={self.slot} server={self.server[0]}:{self.server[1]}>"

    @classmethod
    def from_setting(cls, value: str) -> EdgeView:
        """From ``FASTKONG_EDGE``: ``<table path>|<slots>|<slot>|<public host>|<public port>``."""
        path, slots, slot, host, port = value.split("|")
        return cls(EdgeTable(path, int(slots)), int(slot), (host, int(port)))

    def adopt(self, scope: MutableMapping[str, Any]) -> None:
        """Rewrite a relayed request's scope to what the client did: its address, ``https``
        (``wss``) when it spoke TLS, the public listener, its SNI and PROXY header source."""
        client = scope.get("client")
        if not client:
            return
        entry = self.table.lookup(self.slot, int(client[1]))
        if entry is None:
            return  # not relayed by the edge: a plain loopback connection
        scope["client"] = entry.peer
        scope["server"] = self.server
        if entry.tls:
            scope["scheme"] = "wss" if scope["type"] == "websocket" else "https"
        scope[SNI_KEY] = entry.sni
        if entry.tls_info is not None:
            scope[TLS_INFO_KEY] = entry.tls_info
        if entry.proxied is not None:
            scope[PROXIED_KEY] = entry.proxied


def edge_setting(table: Path, slots: int, slot: int, host: str, port: int) -> str:
    return f"{table}|{slots}|{slot}|{host}|{port}"


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a relayed listener's Granian (asked of the kernel,
    then released: a process that takes it before Granian does makes the start fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


__all__ = [
    "ENTRY",
    "PROXIED_KEY",
    "SNI_KEY",
    "EdgeEntry",
    "EdgeTable",
    "EdgeView",
    "edge_setting",
    "free_loopback_port",
]
