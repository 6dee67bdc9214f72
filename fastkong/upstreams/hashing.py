"""Consistent hashing: Kong's ketama continuum over xxHash32.

Kong (``kong/runloop/balancer/consistent_hashing.lua``) builds a wheel of ``points`` slots
(the upstream's ``slots`` when it is between 1000 and 2**32, else 1000). Every address gets
``floor(weight / total_weight * targets * 160)`` entries (at least one when its weight is not
0): entry ``i`` of address ``ip:port`` is the slot ``xxh32("<ip>::<port> <i>") % points`` (the
double colon is Kong's), and an entry that lands on a taken slot is moved to one more name
(``i + 1``, ...). Targets are added sorted by name then port, and each target's addresses by
``ip:port``, so the same targets always give the same wheel whatever their order in the config.

A request's hash value ``v`` starts at slot ``xxh32(v) % points`` and walks the wheel downwards
(wrapping) to the first slot owned by an available address. Using the same hash, names and
order as Kong means a fleet that mixes Kong and fastkong nodes, or a migration from one to the
other, keeps each key on the same peer.

Adding a target to ``N`` moves about ``1/(N+1)`` of the keys (the new target's entries take
over their slots); removing one moves only the keys it owned. The per-request cost is one hash
(memoized for recently seen values) and one list index; the wheel is built once per config.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

__all__ = ["Continuum", "SERVER_POINTS", "continuum_size", "xxh32"]

SERVER_POINTS = 160
MIN_POINTS = 1000
DEFAULT_POINTS = 1000
MAX_POINTS = 2**32

_M32 = 0xFFFFFFFF
_P1 = 2654435761
_P2 = 2246822519
_P3 = 3266489917
_P4 = 668265263
_P5 = 374761393


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def _round(v: int, data: bytes, i: int) -> int:
    return (_rotl((v + int.from_bytes(data[i : i + 4], "little") * _P2) & _M32, 13) * _P1) & _M32


def xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 of ``data`` (the reference algorithm; little-endian lanes)."""
    n = len(data)
    i = 0
    if n >= 16:
        v1 = (seed + _P1 + _P2) & _M32
        v2 = (seed + _P2) & _M32
        v3 = seed & _M32
        v4 = (seed - _P1) & _M32
        limit = n - 16
        while i <= limit:
            v1 = _round(v1, data, i)
            v2 = _round(v2, data, i + 4)
            v3 = _round(v3, data, i + 8)
            v4 = _round(v4, data, i + 12)
            i += 16
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M32
    else:
        h = (seed + _P5) & _M32
    h = (h + n) & _M32
    while i + 4 <= n:
        h = (h + int.from_bytes(data[i : i + 4], "little") * _P3) & _M32
        h = (_rotl(h, 17) * _P4) & _M32
        i += 4
    while i < n:
        h = (h + data[i] * _P5) & _M32
        h = (_rotl(h, 11) * _P1) & _M32
        i += 1
    h ^= h >> 15
    h = (h * _P2) & _M32
    h ^= h >> 13
    h = (h * _P3) & _M32
    h ^= h >> 16
    return h


@functools.lru_cache(maxsize=8192)
def _hash_value(value: str) -> int:
    return xxh32(value.encode("utf-8", "surrogateescape"))


def continuum_size(slots: int) -> int:
    """The number of wheel points Kong uses for an upstream's ``slots``."""
    return slots if MIN_POINTS <= slots <= MAX_POINTS else DEFAULT_POINTS


class Continuum:
    """The wheel: ``owner_at(value)`` is the index of the address owning ``value``'s slot.

    ``addresses`` are ``(ip, port, weight)`` tuples in Kong's order (see the module docstring);
    the owner indexes refer to that sequence. ``targets`` is the number of targets (Kong
    scales by targets, not addresses).
    """

    __slots__ = ("points", "owners", "nearest", "collisions", "entries")

    def __init__(self, addresses: Sequence[tuple[str, int, int]], targets: int, slots: int) -> None:
        self.points = points = continuum_size(slots)
        owners = [-1] * points
        total = sum(w for _, _, w in addresses)
        self.collisions = 0
        self.entries = [0] * len(addresses)
        if total > 0:
            for index, (ip, port, weight) in enumerate(addresses):
                entries = int(weight / total * targets * SERVER_POINTS)
                if weight > 0 and entries == 0:
                    entries = 1
                i = 1
                while i <= entries:
                    slot = xxh32(f"{ip}::{port} {i}".encode()) % points
                    if owners[slot] == -1:
                        owners[slot] = index
                        self.entries[index] += 1
                    else:
                        entries += 1  # Kong: move the collision to the next name
                        self.collisions += 1
                    i += 1
                    if i > points:
                        break
        self.owners = owners
        # nearest[s]: the first owned slot at or below s (walking down, wrapping), so the
        # common lookup is one index; -1 only when the wheel is empty.
        nearest = [-1] * points
        last = -1
        for s in range(points):
            if owners[s] != -1:
                last = s
        for s in range(points):
            if owners[s] != -1:
                last = s
            nearest[s] = last
        self.nearest = nearest

    def __repr__(self) -> str:
        used = sum(1 for o in self.owners if o != -1)
        return f"<Continuum points={self.points} used={used} collisions={self.collisions}>"

    def slot_of(self, value: str) -> int:
        return _hash_value(value) % self.points

    def walk(self, slot: int) -> list[int]:
        """Owner indexes in wheel order from ``slot`` downwards (each owner once)."""
        seen: list[int] = []
        points = self.points
        owners = self.owners
        for step in range(points):
            owner = owners[(slot - step) % points]
            if owner != -1 and owner not in seen:
                seen.append(owner)
        return seen
