"""Peer selection, as the proxy sees it: re-exports of :mod:`fastkong.upstreams`.

The algorithms, the health state and the DNS cache live in ``fastkong/upstreams/``; this
module keeps the names the proxy (and older callers) import.
"""

from __future__ import annotations

from fastkong.upstreams.balancers import (
    Balancer,
    ConsistentHashing,
    Latency,
    LeastConnections,
    Peer,
    RoundRobin,
    is_ip,
)
from fastkong.upstreams.dns import Resolver

__all__ = [
    "Balancer",
    "ConsistentHashing",
    "LeastConnections",
    "Latency",
    "Peer",
    "Resolver",
    "RoundRobin",
    "is_ip",
]
