"""A datagram's own destination address on a wildcard ``udp`` listener (``IP_PKTINFO``).

A socket bound to ``0.0.0.0:53`` takes datagrams sent to any address of the node, and a reply
sent with a plain ``sendto`` leaves from whatever address the kernel's route picks. On a node
with several addresses that is often not the one the client wrote to, and a client whose socket
is connected to that address (most resolvers) drops the answer. nginx asks the kernel for each
datagram's destination (``IP_PKTINFO``, ``IPV6_RECVPKTINFO``) on wildcard listeners and sends the
replies of the session from it; so does fastkong. The destination also routes the session: a
route's ``destinations`` address entries match the address the client wrote to.

Plain functions over the socket module's ancillary data; the reading loop is
:class:`fastkong.stream.udp.UdpProxy`'s.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, Final

#: Linux's values (``IP_PKTINFO`` is not exported by the socket module of Python 3.11).
IP_PKTINFO: Final = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO: Final = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO: Final = getattr(socket, "IPV6_PKTINFO", 50)
#: Room for one ``in6_pktinfo`` (the larger of the two) in ``recvmsg``'s ancillary buffer.
ANCILLARY_SIZE: Final = socket.CMSG_SPACE(20)

Ancillary = list[tuple[int, int, bytes]]


def is_wildcard(host: str) -> bool:
    """Whether a listener bound to ``host`` takes datagrams for every address of the node."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def enable(sock: socket.socket) -> None:
    """Ask the kernel for each datagram's destination on ``sock``."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        # An IPv6 wildcard may also take IPv4 (mapped) datagrams: ask for theirs as well.
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        except OSError:
            pass
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def destination(ancillary: Ancillary) -> bytes | None:
    """The packed destination address (4 or 16 bytes) in ``recvmsg``'s ancillary data."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return data[8:12]  # struct in_pktinfo: ifindex, spec_dst, addr (the header's)
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= 16:
            return data[:16]  # struct in6_pktinfo: addr, ifindex
    return None


def text(packed: bytes) -> str:
    """``packed`` as the address text the router compares (IPv4-mapped IPv6 as IPv4)."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped or address)


def reply_from(packed: bytes) -> Ancillary:
    """``sendmsg``'s ancillary data that sends a datagram from the address ``packed`` (an IPv4
    one on an IPv6 socket too: the kernel sends a mapped client's reply as IPv4)."""
    if len(packed) == 16:
        return [(socket.IPPROTO_IPV6, IPV6_PKTINFO, packed + struct.pack("=I", 0))]
    return [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=I4s4s", 0, packed, bytes(4)))]


def receive(sock: socket.socket) -> tuple[bytes, Any, bytes | None]:
    """One datagram, its sender and its destination (None when the kernel gave none);
    ``BlockingIOError`` when there is none waiting."""
    data, ancillary, _flags, sender = sock.recvmsg(65535, ANCILLARY_SIZE)
    return data, sender, destination(ancillary)


__all__ = ["destination", "enable", "is_wildcard", "receive", "reply_from", "text"]
