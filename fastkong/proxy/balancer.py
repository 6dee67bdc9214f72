"""Peer selection for a service whose host names an upstream, and a TTL cache for DNS.

This is the minimal balancer of the data-plane core: smooth weighted round-robin (nginx's
algorithm: deterministic, no bursts to one peer) over the upstream's targets, skipping the peers
a retry already tried. The full set of algorithms and health checks builds on the same
``Peer`` objects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable


class Peer:
    """One target: where to connect and what to put in the Host header."""

    __slots__ = ("host", "port", "weight", "target_id", "current", "host_header")

    def __init__(self, host: str, port: int, weight: int, target_id: str = "") -> None:
        self.host = host
        self.port = port
        self.weight = weight
        self.target_id = target_id
        self.current = 0
        self.host_header = host if ":" not in host else f"[{host}]"

    def __repr__(self) -> str:
        return f"<Peer {self.host}:{self.port} weight={self.weight}>"


class RoundRobin:
    """Smooth weighted round-robin; weight 0 disables a peer."""

    __slots__ = ("peers", "total")

    def __init__(self, peers: Iterable[Peer]) -> None:
        self.peers = [p for p in peers if p.weight > 0]
        self.total = sum(p.weight for p in self.peers)

    def __repr__(self) -> str:
        return f"<RoundRobin peers={len(self.peers)} total_weight={self.total}>"

    def pick(self, exclude: tuple[Peer, ...] = ()) -> Peer | None:
        best: Peer | None = None
        total = 0
        for peer in self.peers:
            if exclude and peer in exclude:
                continue
            peer.current += peer.weight
            total += peer.weight
            if best is None or peer.current > best.current:
                best = peer
        if best is not None:
            best.current -= total
        return best


class Resolver:
    """Caches name lookups for ``ttl`` seconds (asyncio exposes no record TTLs)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ttl: float = 30.0) -> None:
        self.loop = loop
        self.ttl = ttl
        self.cache: dict[str, tuple[float, list[str]]] = {}

    def __repr__(self) -> str:
        return f"<Resolver names={len(self.cache)} ttl={self.ttl}>"

    async def resolve(self, host: str) -> list[str]:
        if is_ip(host):
            return [host]
        hit = self.cache.get(host)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        infos = await self.loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise OSError(f"{host}: no address")
        self.cache[host] = (now + self.ttl, addresses)
        return addresses


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
