"""Kong's ``trusted_ips``: peers whose ``X-Forwarded-*`` and ``X-Real-IP`` headers are kept.

Addresses and CIDR blocks, IPv4 and IPv6; ``0.0.0.0/0,::/0`` trusts everyone. Lookups are
cached per client address, since a gateway sees the same few peers (load balancers) again and
again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_CACHE_LIMIT = 4096


class TrustedIps:
    """A set of trusted addresses and networks with a per-address answer cache."""

    __slots__ = ("networks", "cache", "empty")

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks = tuple(
            ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()
        )
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
