"""Per-pick cost of the balancers: ``python bench/micro_balancer.py [peers...]``.

Compares the health-aware round-robin with the minimal smooth round-robin it replaced (kept
below as the baseline), interleaving runs and reporting min and median of 15, then the other
algorithms. Methodology: one process, ``timeit``; on a busy machine trust the minimums.
"""

from __future__ import annotations

import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastkong.upstreams.balancers import build_balancer  # noqa: E402
from fastkong.upstreams.hashing import xxh32  # noqa: E402
from tests.upstreams._configs import passive, targets, upstream  # noqa: E402


class _Peer:
    __slots__ = ("weight", "current")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.current = 0


class _Baseline:
    """The round-robin before upstreams (no health, no threshold)."""

    def __init__(self, peers: list[_Peer]) -> None:
        self.peers = peers

    def pick(self, exclude: tuple[_Peer, ...] = ()) -> _Peer | None:
        best = None
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


def ns(fn: object, n: int) -> list[float]:
    return [timeit.timeit(fn, number=n) / n * 1e9 for _ in range(1)]  # type: ignore[arg-type]


def others(specs: list[tuple[str, int]], n: int) -> None:
    up = upstream(healthchecks=passive(http=3))
    pb = build_balancer(up, targets(up, *specs))
    lc_u = upstream(algorithm="least-connections")
    lc = build_balancer(lc_u, targets(lc_u, *specs))
    lat_u = upstream(algorithm="latency")
    lat = build_balancer(lat_u, targets(lat_u, *specs))
    ch_u = upstream(hash_on="header", hash_on_header="x-user")
    ch = build_balancer(ch_u, targets(ch_u, *specs))

    def passive_pick() -> None:
        p = pb.pick()
        assert p is not None
        pb.report_status(p, 200)

    def lc_pick() -> None:
        p = lc.pick()
        assert p is not None
        lc.done(p, 0.001)

    def lat_pick() -> None:
        p = lat.pick()
        assert p is not None
        lat.done(p, 0.001)

    for label, fn in (
        ("round-robin + passive report(200)", passive_pick),
        ("least-connections pick + done", lc_pick),
        ("latency pick + done", lat_pick),
        ("consistent-hashing, seen key", lambda: ch.pick((), "user-42")),
    ):
        print(f"   {label:36s} min {min(ns(fn, n) + ns(fn, n) + ns(fn, n)):5.0f} ns")


def main(sizes: list[int]) -> None:
    n = 200_000
    for k in sizes:
        specs = [(f"10.0.0.{i}:80", 100) for i in range(k)]
        base = _Baseline([_Peer(100) for _ in range(k)])
        u = upstream()
        rr = build_balancer(u, targets(u, *specs))
        olds: list[float] = []
        news: list[float] = []
        for _ in range(15):
            olds += ns(base.pick, n)
            news += ns(rr.pick, n)
        print(
            f"{k} peers  round-robin before: min {min(olds):4.0f} median "
            f"{statistics.median(olds):4.0f} ns | now: min {min(news):4.0f} median "
            f"{statistics.median(news):4.0f} ns"
        )
        others(specs, n)
    key = b"user-1234567"
    best = min(timeit.repeat(lambda: xxh32(key), number=50_000, repeat=5)) / 50_000 * 1e9
    print(f"xxh32 of a new 12-byte key: {best:.0f} ns")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [2, 4, 8])
