"""Kong's ``trusted_ips``, ``real_ip_header`` and ``real_ip_recursive``: which peers' forwarding
headers are believed, and which address is the client's.

``trusted_ips``: addresses and CIDR blocks, IPv4 and IPv6; ``0.0.0.0/0,::/0`` trusts everyone.
Lookups are cached per client address, since a gateway sees the same few peers (load
balancers) again and again.

The client address (nginx's ``$remote_addr``, Kong's ``kong.client.get_forwarded_ip()``; what
``X-Real-IP`` carries upstream, what ip-restriction, rate-limiting by ip and ``hash_on: ip``
use) is the peer's, unless the peer is trusted and sends ``real_ip_header`` (X-Real-IP by
default): then it is what nginx's realip module takes from that header. The module reads the
header's comma-separated list from the right: without ``real_ip_recursive``, the last address;
with it, the rightmost address that is not trusted (each trusted hop is skipped), or the
leftmost when all are. An entry that is not an address (an optional port allowed) ends the walk
where it is. For X-Forwarded-For every such header counts, the last one first; for other
headers, the first one. ``kong.client.get_ip()`` stays the peer's address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from fastkong.kong_conf import on_off

_CACHE_LIMIT = 4096


class TrustedIps:
    """A set of trusted addresses and networks with a per-address answer cache."""

    __slots__ = ("networks", "cache", "empty")

    def __init__(self, entries: Iterable[str] = ()) -> None:
        networks = []
        for entry in (e.strip() for e in entries):
            if entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(
                        f"trusted_ips: {entry!r} is not an IP address or CIDR block"
                    ) from None
        self.networks = tuple(networks)
        self.cache: dict[str, bool] = {}
        self.empty = not self.networks

    def __repr__(self) -> str:
        return f"<TrustedIps {', '.join(map(str, self.networks)) or 'none'}>"

    def __contains__(self, address: object) -> bool:
        if self.empty or not isinstance(address, str):
            return False
        hit = self.cache.get(address)
        if hit is not None:
            return hit
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            result = False
        else:
            result = any(ip in net for net in self.networks if net.version == ip.version)
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        self.cache[address] = result
        return result

    @classmethod
    def parse(cls, value: str) -> TrustedIps:
        return cls(value.split(","))


_SEPARATORS = b" ,"


def _address(token: bytes) -> str | None:
    """nginx's ngx_parse_addr_port: an IPv4/IPv6 address, maybe with a port; None otherwise."""
    text = token.decode("latin-1")
    host = text
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        host = text[1:end]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _from_list(addr: str, value: bytes, trusted: TrustedIps, recursive: bool) -> tuple[int, str]:
    """One header's list, walked as nginx's ngx_http_get_forwarded_addr_internal walks it.

    Returns (outcome, address): 1 an address was taken and the walk ran to its end, 0 it
    stopped at an untrusted hop or a non-address after taking one, -1 nothing was taken.
    """
    end = len(value)
    taken = False
    while True:
        if addr not in trusted:
            return (0 if taken else -1), addr
        p = end - 1
        while p > 0 and value[p] in _SEPARATORS:
            p -= 1
            end -= 1
        while p > 0:
            if value[p] in _SEPARATORS:
                p += 1
                break
            p -= 1
        found = _address(value[max(p, 0) : end])
        if found is None:
            return (0 if taken else -1), addr
        addr = found
        taken = True
        if not (recursive and p > 0):
            return 1, addr
        end = p - 1


def forwarded_address(values: list[bytes], peer: str, trusted: TrustedIps, recursive: bool) -> str:
    """The client address nginx's realip module takes from ``values`` (the header values in
    the order received) for a connection from ``peer``."""
    addr = peer
    for value in reversed(values):
        outcome, addr = _from_list(addr, value, trusted, recursive)
        if not recursive or outcome != 1:
            break  # the walk only goes on to an earlier header when this one was all trusted
    return addr


class RealIp:
    """``real_ip_header`` and ``real_ip_recursive`` (see the module docstring)."""

    __slots__ = ("header", "recursive", "every", "proxy_protocol")

    def __init__(self, header: str = "X-Real-IP", recursive: bool = False) -> None:
        name = header.strip().lower()
        #: ``proxy_protocol``: the address is the PROXY protocol header's source, on the
        #: listeners that read one (the edge's, proxy/edge.py), as nginx's realip module takes it.
        self.proxy_protocol = name == "proxy_protocol"
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"real_ip_header: {header!r} is not a header name")
        self.header = name.encode()
        self.recursive = recursive
        #: X-Forwarded-For: every header of the name counts (nginx joins them).
        self.every = self.header == b"x-forwarded-for"

    def __repr__(self) -> str:
        return f"<RealIp header={self.header.decode()} recursive={self.recursive}>"

    @classmethod
    def parse(cls, header: str, recursive: str) -> RealIp:
        """From Kong's settings' text; ``recursive`` is ``on`` or ``off``."""
        return cls(header, on_off(recursive, "real_ip_recursive"))

    def remote_addr(
        self,
        headers: list[tuple[bytes, bytes]],
        peer: str,
        trusted: TrustedIps,
        proxied: tuple[str, int] | None = None,
    ) -> str:
        """The client address for a request from ``peer`` (a trusted one: the caller checks);
        ``proxied`` is the source of the connection's PROXY protocol header, if it had one."""
        if self.proxy_protocol:
            return proxied[0] if proxied is not None else peer
        name = self.header
        if self.every:
            values = [value for key, value in headers if key == name]
        else:
            values = []
            for key, value in headers:
                if key == name:
                    values.append(value)
                    break
        return forwarded_address(values, peer, trusted, self.recursive) if values else peer


DEFAULT_REAL_IP = RealIp()
