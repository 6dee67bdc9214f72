"""The algorithms as pure objects: distribution, least-connections, latency, health, threshold."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

import pytest

from fastkong.config import load_config
from fastkong.config.schema import Healthchecks
from fastkong.runtime import compile_runtime
from fastkong.upstreams import health as H
from fastkong.upstreams.balancers import (
    Latency,
    LeastConnections,
    Peer,
    RoundRobin,
    TargetEntry,
    build_balancer,
    split_target,
)
from fastkong.upstreams.dns import DnsSettings, Resolver
from fastkong.upstreams.registry import Registry
from tests.upstreams._configs import passive, targets, upstream


def test_weighted_round_robin_is_exact_over_10000_picks() -> None:
    u = upstream()
    b = build_balancer(u, targets(u, ("10.0.0.1:80", 10), ("10.0.0.2:80", 30), ("10.0.0.3:80", 60)))
    assert isinstance(b, RoundRobin)
    counts = Counter(p.host for _ in range(10000) if (p := b.pick()) is not None)
    assert counts == {"10.0.0.1": 1000, "10.0.0.2": 3000, "10.0.0.3": 6000}


def test_weight_zero_target_and_default_port() -> None:
    u = upstream()
    b = build_balancer(u, targets(u, ("10.0.0.1", 100), ("10.0.0.2:81", 0)))
    assert [(p.host, p.port) for p in b.peers] == [("10.0.0.1", 8000)]
    assert len(b.all_peers()) == 2
    assert split_target("[::1]:9000") == ("::1", 9000)
    assert split_target("example.com") == ("example.com", 8000)


def test_hostname_addresses_each_get_the_target_weight() -> None:
    # Kong's addAddress: an A record's entries carry no weight, so each takes the target's
    # (spec/01-unit/09-balancer/01-generic_spec.lua "adding a host": 25 + 25, total 50).
    t = TargetEntry("t1", "svc.test:80", 25, "u1")
    assert [p.host for p in t.peers] == ["svc.test"]  # unresolved: one stand-in peer
    assert t.set_addresses(["10.0.0.2", "10.0.0.1", "10.0.0.3"], "u1")
    assert [(p.host, p.weight, p.hostname) for p in t.peers] == [
        ("10.0.0.1", 25, "svc.test"),
        ("10.0.0.2", 25, "svc.test"),
        ("10.0.0.3", 25, "svc.test"),
    ]
    assert not t.set_addresses(["10.0.0.3", "10.0.0.1", "10.0.0.2"], "u1")  # unchanged
    assert t.peers[0].host_header == "svc.test"


def test_a_hostname_with_two_addresses_weighs_twice_its_target() -> None:
    u = upstream()
    b = build_balancer(u, targets(u, ("10.0.0.9:80", 100), ("svc.test:80", 100)))
    named = next(t for t in b.targets if t.name == "svc.test")
    named.set_addresses(["10.0.0.1", "10.0.0.2"], b.upstream_id)
    b.rebuild()
    assert b.total_weight == 300
    counts = Counter(p.host for _ in range(3000) if (p := b.pick()) is not None)
    assert counts == {"10.0.0.9": 1000, "10.0.0.1": 1000, "10.0.0.2": 1000}


def test_least_connections_prefers_the_idle_peer() -> None:
    u = upstream(algorithm="least-connections")
    b = build_balancer(u, targets(u, ("10.0.0.1:80", 100), ("10.0.0.2:80", 100)))
    assert isinstance(b, LeastConnections)
    busy = b.pick()
    assert busy is not None
    for _ in range(5):  # while `busy` has a request in flight, the idle peer gets the traffic
        p = b.pick()
        assert p is not None and p is not busy
        b.done(p, 0.01)
    b.done(busy, 0.01)
    spread = Counter(p.host for _ in range(10) if (p := b.pick()) is not None and not b.done(p, 0))
    assert set(spread.values()) == {5}  # idle ties are spread, not all sent to the first


def test_least_connections_weighs_active_by_weight() -> None:
    u = upstream(algorithm="least-connections")
    b = build_balancer(u, targets(u, ("10.0.0.1:80", 300), ("10.0.0.2:80", 100)))
    picks = Counter(p.host for _ in range(8) if (p := b.pick()) is not None)  # none released
    assert picks == {"10.0.0.1": 6, "10.0.0.2": 2}


def test_latency_prefers_the_fast_peer() -> None:
    u = upstream(algorithm="latency")
    b = build_balancer(u, targets(u, ("10.0.0.1:80", 100), ("10.0.0.2:80", 100)))
    assert isinstance(b, Latency)
    fast, slow = b.peers
    fast.st.active += 1
    b.done(fast, 0.001)
    slow.st.active += 1
    b.done(slow, 0.5)
    counts = Counter()
    for _ in range(200):
        p = b.pick()
        assert p is not None
        counts[p.host] += 1
        b.done(p, 0.001 if p is fast else 0.5)
    assert counts[fast.host] == 200  # two choices out of two: always the lower score


def test_latency_takes_the_lowest_score_among_all_peers() -> None:
    # Kong's latency.lua widens the pick set to every address not tried yet: with three peers
    # the fastest always wins (two random choices would hand the middle one about a third).
    u = upstream(algorithm="latency")
    b = build_balancer(
        u, targets(u, ("10.0.0.1:80", 100), ("10.0.0.2:80", 100), ("10.0.0.3:80", 100))
    )
    slow, fast, middle = b.peers
    now = time.monotonic()
    for peer, ewma in ((slow, 0.3), (fast, 0.01), (middle, 0.1)):
        peer.st.ewma, peer.st.ewma_at = ewma, now
    picks = Counter(p.host for _ in range(300) if (p := b.pick()) is not None)
    assert picks == {fast.host: 300}
    # a retry skips the tried peer and takes the best of the rest
    assert b.pick((fast,)) is middle
    assert b.pick((fast, middle)) is slow


def test_latency_slow_start_for_a_peer_back_from_unhealthy() -> None:
    # latency.lua afterHostUpdate (run on every health change): an unavailable address drops
    # its EWMA; when it is back, it starts at the average over the available addresses, the
    # unmeasured ones (itself included) counting 0, so it neither floods nor starves.
    u = upstream(algorithm="latency", healthchecks=passive(http=1))
    b = build_balancer(
        u, targets(u, ("10.0.0.1:80", 100), ("10.0.0.2:80", 100), ("10.0.0.3:80", 100))
    )
    a, c, back = b.peers
    assert [p.st.ewma for p in b.peers] == [0.0, 0.0, 0.0]  # all start at the average, 0
    now = time.monotonic()
    a.st.ewma, c.st.ewma = 0.6, 0.9
    a.st.ewma_at = c.st.ewma_at = now
    back.st.ewma = 0.05
    b.report_status(back, 500)
    assert back.st.state == H.UNHEALTHY and back.st.ewma == -1.0
    back.st.state = H.HEALTHY  # e.g. the admin API marks it healthy again
    b.refresh()
    assert back.st.ewma == pytest.approx((0.6 + 0.9 + 0.0) / 3)
    assert b.pick() is back  # 0.5 is below the others' scores


def test_passive_failures_take_a_peer_out_and_the_threshold_fails_the_balancer() -> None:
    u = upstream(healthchecks=passive(http=2, tcp=1))
    b = build_balancer(u, targets(u, ("10.0.0.1:80", 100), ("10.0.0.2:80", 100)))
    a, c = b.peers
    b.report_status(a, 500)
    assert a.st.state == H.MOSTLY_HEALTHY and len(b.live) == 2  # still serving
    b.report_status(a, 500)
    assert a.st.state == H.UNHEALTHY and b.live == [c]
    assert all(b.pick() is c for _ in range(4))
    b.report_failure(c, timeout=False)
    assert b.live == [] and not b.healthy and b.pick() is None
    assert "unhealthy" in repr(b)


def test_threshold_makes_the_whole_upstream_unhealthy() -> None:
    hc = Healthchecks(passive=passive(http=1).passive, threshold=60)
    u = upstream(healthchecks=hc)
    b = build_balancer(u, targets(u, ("10.0.0.1:80", 100), ("10.0.0.2:80", 100)))
    b.report_status(b.peers[0], 503)
    assert b.available_weight == 100 and not b.healthy
    assert b.pick() is None  # 50% available is not above 60%


def test_registry_keeps_state_for_unchanged_targets_across_snapshots() -> None:
    def config(weight_b: int) -> str:
        return f"""
_format_version: "3.0"
services: [{{name: s, host: pool.test, routes: [{{name: r, paths: ["/"]}}]}}]
upstreams:
- name: pool.test
  algorithm: least-connections
  healthchecks: {{passive: {{unhealthy: {{http_failures: 1}}}}}}
  targets: [{{target: "10.0.0.1:80"}}, {{target: "10.0.0.2:80", weight: {weight_b}}}]
"""

    registry = Registry()
    rt1 = compile_runtime(load_config(config(100).encode()).config, "h1")
    registry.adopt(rt1)
    b1 = rt1.services[next(iter(rt1.services))].balancer
    assert b1 is not None
    a1 = b1.pick()
    assert a1 is not None
    other = next(p for p in b1.peers if p is not a1)
    b1.report_status(other, 500)
    assert other.st.state == H.UNHEALTHY
    rt2 = compile_runtime(load_config(config(50).encode()).config, "h2")
    registry.adopt(rt2)
    b2 = rt2.services[next(iter(rt2.services))].balancer
    assert b2 is not None
    # same ids: the unhealthy target stays out, the in-flight count carried over
    same = next(p for p in b2.peers if p.host == a1.host)
    gone = next(p for p in b2.peers if p.host == other.host)
    assert gone.st.state == H.UNHEALTHY and b2.live == [same]
    assert same.st is a1.st and a1.st.active == 1
    b1.done(a1, 0.01)  # a request of the old snapshot finishing releases the shared count
    assert same.st.active == 0


def test_peer_repr_and_compat_constructor() -> None:
    p = Peer("10.0.0.1", 80, 5)
    rr = RoundRobin([p])
    assert repr(rr) == "<RoundRobin peers=1 total_weight=5>"
    p.st.state = H.UNHEALTHY
    rr.refresh()
    assert repr(rr) == "<RoundRobin peers=1 total_weight=5 live=0 unhealthy>"
    assert repr(p) == "<Peer 10.0.0.1:80 weight=5 unhealthy>"


class FakeDns(Resolver):
    """The registry's resolver with answers set by the test (no lookup leaves the process)."""

    def __init__(self) -> None:
        super().__init__(settings=DnsSettings(valid_ttl=0.0))
        self.answers: dict[str, list[str] | int] = {}

    async def resolve(self, host: str, *, stale_ok: bool = True) -> list[str]:
        answer = self.answers[host]
        if isinstance(answer, int):
            raise socket.gaierror(answer, "lookup failed")
        return answer


def test_a_target_whose_name_does_not_resolve_gets_no_traffic() -> None:
    # targets.lua queryDns: a failed lookup leaves the target no address, so it weighs nothing;
    # the other target takes all the traffic, and an upstream left with no weight is unhealthy
    # (503 "failure to get a peer from the ring-balancer", not "name resolution failed").
    def config(*ts: str) -> str:
        listed = ", ".join(f'{{target: "{t}"}}' for t in ts)
        return f"""
_format_version: "3.0"
services: [{{name: s, host: pool.test, routes: [{{name: r, paths: ["/"]}}]}}]
upstreams: [{{name: pool.test, targets: [{listed}]}}]
"""

    dns = FakeDns()
    dns.answers["nowhere.test"] = socket.EAI_NONAME
    registry = Registry(resolver=dns)
    rt = compile_runtime(load_config(config("10.0.0.1:80", "nowhere.test:80").encode()).config, "1")
    registry.adopt(rt)
    asyncio.run(registry.resolve_targets())
    b = rt.services[next(iter(rt.services))].balancer
    assert b is not None and b.total_weight == 100
    assert {p.host for _ in range(10) if (p := b.pick()) is not None} == {"10.0.0.1"}

    alone = compile_runtime(load_config(config("nowhere.test:80").encode()).config, "2")
    registry.adopt(alone)
    asyncio.run(registry.resolve_targets())
    b = alone.services[next(iter(alone.services))].balancer
    assert b is not None and not b.healthy and b.pick() is None

    # a name that resolved keeps its addresses through a passing resolver error, not through
    # "no such name"
    dns.answers["nowhere.test"] = ["10.0.0.7"]
    asyncio.run(registry.resolve_targets())
    assert [p.host for p in b.peers] == ["10.0.0.7"] and b.healthy
    dns.answers["nowhere.test"] = socket.EAI_AGAIN
    asyncio.run(registry.resolve_targets())
    assert [p.host for p in b.peers] == ["10.0.0.7"]
    dns.answers["nowhere.test"] = socket.EAI_NONAME
    asyncio.run(registry.resolve_targets())
    assert b.peers == [] and b.pick() is None


class DualStackLoop:
    """A loop whose getaddrinfo answers like a name with A and AAAA records (or AAAA only)."""

    def __init__(self, v4: bool) -> None:
        self.v4 = v4

    async def getaddrinfo(self, host: str, port: object, type: int = 0) -> list[tuple]:
        answer = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))]
        if self.v4:
            answer.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", 0)))
        return answer


def test_a_dual_stack_name_resolves_to_its_ipv4_addresses() -> None:
    # Kong's default dns_order is LAST,SRV,A,CNAME: no AAAA query, so a name with both families
    # has only its A addresses (each weighing the whole target, it must not count twice).
    assert asyncio.run(Resolver(DualStackLoop(True)).resolve("dual.test")) == ["127.0.0.2"]
    # an IPv6-only name (no address at all in Kong) keeps its AAAA addresses here
    assert asyncio.run(Resolver(DualStackLoop(False)).resolve("v6.test")) == ["::1"]
