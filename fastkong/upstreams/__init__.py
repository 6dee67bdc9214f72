"""Upstreams: load-balancing algorithms, target health, the active prober.

``balancers``  the algorithms (pure ``pick`` / ``done`` / ``report``), built per snapshot
``hashing``    Kong's ketama wheel over xxHash32 (consistent-hashing)
``health``     Kong's health state machine and the node-wide shared health table
``registry``   one worker's binding of snapshots to shared state
``dns``        the name cache (Kong's dns_* settings: stale answers, cached failures)
``checker``    the supervisor's active prober (once per node) and the health report

This package may import ``fastkong.config``; the proxy imports it, never the reverse.
"""

from fastkong.upstreams.balancers import (
    Balancer,
    ConsistentHashing,
    Latency,
    LeastConnections,
    Peer,
    RoundRobin,
    build_balancer,
)
from fastkong.upstreams.dns import DnsSettings, Resolver
from fastkong.upstreams.health import HealthPolicy, HealthTable
from fastkong.upstreams.registry import Registry

__all__ = [
    "Balancer",
    "DnsSettings",
    "ConsistentHashing",
    "HealthPolicy",
    "HealthTable",
    "LeastConnections",
    "Latency",
    "Peer",
    "Registry",
    "Resolver",
    "RoundRobin",
    "build_balancer",
]
