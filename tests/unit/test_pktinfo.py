"""The ancillary data of a wildcard udp listener (fastkong/stream/pktinfo.py): a datagram's
destination read from ``in_pktinfo``/``in6_pktinfo``, and the source of its replies."""

from __future__ import annotations

import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from fastkong.stream import pktinfo


def test_wildcards() -> None:
    assert pktinfo.is_wildcard("0.0.0.0") and pktinfo.is_wildcard("::")
    assert pktinfo.is_wildcard("[::]")
    for host in ("127.0.0.1", "::1", "10.0.0.1", "localhost", "*"):
        assert not pktinfo.is_wildcard(host), host


def test_the_destination_is_the_headers_address_not_the_local_one() -> None:
    # struct in_pktinfo: ifindex, spec_dst (the route's local address), addr (the header's).
    data = struct.pack("=I4s4s", 1, socket.inet_aton("10.0.0.9"), socket.inet_aton("127.0.0.2"))
    found = pktinfo.destination([(socket.IPPROTO_IP, pktinfo.IP_PKTINFO, data)])
    assert found is not None and pktinfo.text(found) == "127.0.0.2"
    v6 = socket.inet_pton(socket.AF_INET6, "fd00::5") + struct.pack("=I", 3)
    found = pktinfo.destination([(socket.IPPROTO_IPV6, pktinfo.IPV6_PKTINFO, v6)])
    assert found is not None and pktinfo.text(found) == "fd00::5"
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.3")
    assert pktinfo.text(mapped) == "127.0.0.3"
    assert pktinfo.destination([(socket.SOL_SOCKET, 1, b"x" * 12)]) is None
    assert pktinfo.destination([]) is None


@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16))
def test_a_reply_leaves_from_the_destination_it_answers(packed: bytes) -> None:
    ((level, kind, data),) = pktinfo.reply_from(packed)
    if len(packed) == 4:
        assert (level, kind) == (socket.IPPROTO_IP, pktinfo.IP_PKTINFO)
        assert struct.unpack("=I4s4s", data) == (0, packed, bytes(4))
    else:
        assert (level, kind) == (socket.IPPROTO_IPV6, pktinfo.IPV6_PKTINFO)
        assert data == packed + bytes(4)


def test_a_datagram_on_loopback_carries_its_destination() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        pktinfo.enable(server)
        server.settimeout(2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            client.sendto(b"hi", server.getsockname())
            data, sender, local = pktinfo.receive(server)
            assert (data, sender, local) == (b"hi", client.getsockname(), bytes([127, 0, 0, 1]))
            server.sendmsg([b"back"], pktinfo.reply_from(local), 0, sender)
            client.settimeout(2)
            assert client.recvfrom(100) == (b"back", server.getsockname())
