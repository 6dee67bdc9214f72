from __future__ import annotations

from collections import Counter

from fastkong.proxy.balancer import Peer, RoundRobin
from fastkong.proxy.trust import TrustedIps


def test_trusted_ips_addresses_and_cidrs() -> None:
    trusted = TrustedIps.parse("10.0.0.0/8, 192.168.1.5, ::1")
    assert "10.1.2.3" in trusted
    assert "192.168.1.5" in trusted
    assert "192.168.1.6" not in trusted
    assert "::1" in trusted
    assert "not-an-ip" not in trusted
    assert "10.9.9.9" in trusted  # cached path answers the same
    assert "10.0.0.0/8" in repr(trusted)


def test_no_trusted_ips_trusts_nobody() -> None:
    assert "127.0.0.1" not in TrustedIps()


def test_smooth_weighted_round_robin_is_exact_and_interleaved() -> None:
    a, b, c = Peer("a", 1, 5), Peer("b", 1, 1), Peer("c", 1, 1)
    rr = RoundRobin([a, b, c])
    picks = [rr.pick() for _ in range(7)]
    assert Counter(p.host for p in picks if p) == {"a": 5, "b": 1, "c": 1}
    # nginx's smooth variant never sends a whole burst to the heavy peer
    assert [p.host for p in picks if p] == ["a", "a", "b", "a", "c", "a", "a"]


def test_weight_zero_disables_and_exclude_skips() -> None:
    a, b = Peer("a", 1, 0), Peer("b", 1, 10)
    rr = RoundRobin([a, b])
    assert all(rr.pick() is b for _ in range(5))
    assert rr.pick((b,)) is None
    assert repr(rr) == "<RoundRobin peers=1 total_weight=10>"
