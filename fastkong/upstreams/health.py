"""Target health: Kong's state machine, and the node-wide table every process shares.

State machine (lua-resty-healthcheck's, which Kong uses)
========================================================
Each address has a state and four 8-bit counters: successes, HTTP failures, TCP failures,
timeouts. A report is *healthy* (counted in ``successes``) or *unhealthy* (counted in one of
the three failure counters); each has a limit from the upstream's ``healthchecks`` (a limit of
0 turns that report off). Rules:

* a report that agrees with a *fully* healthy / fully unhealthy state is not counted;
* a success clears the three failure counters, a failure clears the success counter;
* a counter reaching its limit moves the state to ``healthy`` / ``unhealthy``;
* otherwise a failure on a healthy target makes it ``mostly_healthy`` and a success on an
  unhealthy one ``mostly_unhealthy`` (both keep serving as before: mostly-healthy still takes
  traffic, mostly-unhealthy still does not);
* ``POST .../healthy`` or ``/unhealthy`` sets the state and clears every counter.

:func:`transition` is that function, pure; everything else here is storage.

Why one shared table, and this one
==================================
Granian workers are processes, and health is a per-node fact: the active prober runs once per
node (in the supervisor) and passive reports come from every worker's traffic, so they must
all count into the same counters and read the same states. The table is a small file in
``/dev/shm`` mapped by the supervisor and every worker (the design of the rate-limit counters,
``fastkong/_core/ratelimit.pyx``), but it needs no compiled kernel:

* **reads are lock-free and off the hot path.** A worker does not touch the table when it
  picks a peer: each peer's availability is a plain attribute, and the live-peer lists of the
  balancers are rebuilt only when a state changes. A per-worker task polls the table's
  *generation* word every :data:`POLL_INTERVAL` seconds (one 8-byte read) and re-reads the
  states only when it moved; a worker's own passive reports apply to it at once. So every
  worker sees a state change within ``POLL_INTERVAL`` (0.1 s), well inside any probe interval.
* **writes are rare and take a per-slot lock.** Only a counted report writes: a failure on a
  healthy target, a success on an unhealthy one, an active probe result. Fully-healthy peers
  answering 2xx (the common case) write nothing. A write takes an ``fcntl`` byte-range lock
  on its 32-byte slot (the kernel releases it if the process dies), so a worker and the prober
  never lose each other's counts; a state change also bumps the generation under the header's
  lock. A slot is inserted under a table-wide lock, so two processes never create one key twice.

Keys are the deterministic ids Kong gives entities (same YAML, same ids, on every node and
across reloads): a slot belongs to ``upstream id | target id | ip | port``. A config reload
that keeps a target keeps its slot, so its state and counters survive. The supervisor marks
the slots of targets that left the config dead (tombstones that probing skips and inserts may
reuse); a target that comes back starts healthy, as a new target does in Kong.

Capacity. Linear probing stops at the first never-used slot, so a table with none left would
make every miss (a lookup of an address that has no slot) walk all of it, under the lock, on the
proxy's path. Inserts therefore stop at :data:`MAX_LOAD` of the slots ever used (dead ones count:
they still lengthen probes, and inserts reuse them first); past that, :meth:`HealthTable.slot`
answers -1. The default table has :data:`DEFAULT_SLOTS` (32,768 slots, 1 MiB: 24,576
addresses per node). An address without a slot keeps working: it starts healthy, its worker counts
its passive reports in private counters (per worker, as before a table existed), the prober
skips it, and the registry logs an error naming how many addresses that leaves out. No other
address's slot is touched: every write checks, under the slot's lock, that the slot still holds
the writer's key (a sweep may have handed a dead slot to another address meanwhile).

Layout: a 64-byte header (magic, version, slot count, generation, slots used) then 32-byte
slots::

    fp u64 | target fp u64 | state u8 | dead u8 | successes u8 | http u8 | tcp u8 |
    timeouts u8 | pad u16 | changed_at f64

``fp`` is a 64-bit BLAKE2b digest of the key (0 marks a never-used slot); ``target fp`` is the
digest of ``upstream id | target id`` (what the supervisor's sweep checks). Lookups probe
linearly from ``fp mod slots`` and stop at the first never-used slot.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

__all__ = [
    "HEALTHY",
    "MOSTLY_HEALTHY",
    "MOSTLY_UNHEALTHY",
    "UNHEALTHY",
    "CTR_HTTP",
    "CTR_SUCCESS",
    "CTR_TCP",
    "CTR_TIMEOUT",
    "HealthPolicy",
    "HealthTable",
    "available",
    "key_fp",
    "target_fp",
    "transition",
]

# -- the state machine -----------------------------------------------------------------------
UNSET: Final = 0  # never reported: a new target is healthy
HEALTHY: Final = 1
UNHEALTHY: Final = 2
MOSTLY_HEALTHY: Final = 3
MOSTLY_UNHEALTHY: Final = 4
STATE_NAMES: Final = {
    UNSET: "healthy",
    HEALTHY: "healthy",
    UNHEALTHY: "unhealthy",
    MOSTLY_HEALTHY: "mostly_healthy",
    MOSTLY_UNHEALTHY: "mostly_unhealthy",
}

CTR_SUCCESS: Final = 0
CTR_HTTP: Final = 1
CTR_TCP: Final = 2
CTR_TIMEOUT: Final = 3

Counters = tuple[int, int, int, int]
ZERO: Final[Counters] = (0, 0, 0, 0)


def available(state: int) -> bool:
    """Whether a target in ``state`` takes traffic."""
    return state in (UNSET, HEALTHY, MOSTLY_HEALTHY)


def transition(state: int, counters: Counters, counter: int, limit: int) -> tuple[int, Counters]:
    """Apply one report to ``(state, counters)``; returns the new pair (see the module doc).

    ``counter`` is :data:`CTR_SUCCESS` for a healthy report, else the failure counter to bump;
    ``limit`` is that report's threshold (0: not counted).
    """
    if limit == 0:
        return state, counters
    healthy_report = counter == CTR_SUCCESS
    if state == UNSET:
        state = HEALTHY
    if (healthy_report and state == HEALTHY) or (not healthy_report and state == UNHEALTHY):
        return state, counters
    c = list(counters)
    c[counter] = min(c[counter] + 1, 255)
    if healthy_report:
        c[CTR_HTTP] = c[CTR_TCP] = c[CTR_TIMEOUT] = 0
    else:
        c[CTR_SUCCESS] = 0
    new = state
    if c[counter] >= limit:
        new = HEALTHY if healthy_report else UNHEALTHY
    elif state == HEALTHY and (c[CTR_HTTP] or c[CTR_TCP] or c[CTR_TIMEOUT]):
        new = MOSTLY_HEALTHY
    elif state == UNHEALTHY and c[CTR_SUCCESS]:
        new = MOSTLY_UNHEALTHY
    return new, (c[0], c[1], c[2], c[3])


# -- keys --------------------------------------------------------------------------------------
def _digest(text: str) -> int:
    fp = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return fp or 1


def key_fp(upstream_id: str, target_id: str, ip: str, port: int) -> tuple[int, int]:
    """``(address fp, target fp)`` of one address of a target."""
    return _digest(f"{upstream_id}|{target_id}|{ip}|{port}"), _digest(f"{upstream_id}|{target_id}")


def target_fp(upstream_id: str, target_id: str) -> int:
    """The fingerprint the supervisor's sweep keeps slots alive by."""
    return _digest(f"{upstream_id}|{target_id}")


# -- the shared table --------------------------------------------------------------------------
MAGIC: Final = b"FKHEALTH"
VERSION: Final = 2
HEADER_SIZE: Final = 64
SLOT_SIZE: Final = 32
DEFAULT_SLOTS: Final = 32768  # 1 MiB; 24576 addresses usable (MAX_LOAD)
#: Inserts stop when this share of the slots has ever been used (see "Capacity" above).
MAX_LOAD: Final = 0.75
_HEADER = struct.Struct("=8sII")  # magic version nslots
_GEN_AT: Final = 16
_USED_AT: Final = 24
_U64 = struct.Struct("=Q")
_SLOT_KEYS = struct.Struct("=QQ")
_SLOT_STATE = struct.Struct("=BBBBBBxxd")  # state dead succ http tcp timeout changed_at
_STATE_AT: Final = 16
#: How often a worker checks the generation word for changes made by other processes.
POLL_INTERVAL: Final = 0.1


class HealthTable:
    """The node's shared health slots (see the module docstring).

    ``HealthTable.create(path)`` makes (or reuses) the file; ``HealthTable(path)`` maps an
    existing one. A table is also usable without a file (``HealthTable(None)``), private to
    the process: the balancers' unit tests and a gateway run without a supervisor use that.
    """

    def __init__(self, path: Path | str | None, nslots: int = DEFAULT_SLOTS) -> None:
        self.path = Path(path) if path is not None else None
        self.fd = -1
        if self.path is None:
            self.nslots = nslots
            self.mm = mmap.mmap(-1, HEADER_SIZE + nslots * SLOT_SIZE)
            _HEADER.pack_into(self.mm, 0, MAGIC, VERSION, nslots)
        else:
            self.fd = os.open(self.path, os.O_RDWR)
            size = os.fstat(self.fd).st_size
            self.mm = mmap.mmap(self.fd, size)
            magic, version, self.nslots = _HEADER.unpack_from(self.mm, 0)
            if magic != MAGIC or version != VERSION:
                raise ValueError(f"{self.path}: not a fastkong health table")
            if size != HEADER_SIZE + self.nslots * SLOT_SIZE:
                raise ValueError(f"{self.path}: truncated health table")
        self.mask = self.nslots - 1
        self.capacity = int(self.nslots * MAX_LOAD)

    @classmethod
    def create(cls, path: Path | str, nslots: int = DEFAULT_SLOTS) -> HealthTable:
        """Create the table file at ``path`` (a file of another size or kind is replaced)."""
        if nslots < 16 or nslots & (nslots - 1):
            raise ValueError("nslots must be a power of two >= 16")
        path = Path(path)
        size = HEADER_SIZE + nslots * SLOT_SIZE
        try:
            return cls(path)
        except (OSError, ValueError):
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.truncate(size)
            f.seek(0)
            f.write(_HEADER.pack(MAGIC, VERSION, nslots))
        os.replace(tmp, path)
        return cls(path)

    def __repr__(self) -> str:
        used = dead = unhealthy = 0
        for slot in range(self.nslots):
            fp, _ = _SLOT_KEYS.unpack_from(self.mm, HEADER_SIZE + slot * SLOT_SIZE)
            if fp:
                state, is_dead = self.mm[_at(slot) + _STATE_AT], self.mm[_at(slot) + _STATE_AT + 1]
                used += 1
                dead += bool(is_dead)
                unhealthy += not is_dead and not available(state)
        where = self.path or "private"
        return (
            f"<HealthTable {where} slots={self.nslots} capacity={self.capacity} used={used} "
            f"dead={dead} unhealthy={unhealthy} gen={self.generation()}>"
        )

    def close(self) -> None:
        self.mm.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- locking (a no-op for a private table) -----------------------------------------------
    def _lock(self, start: int, length: int) -> None:
        if self.fd >= 0:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, length, start)

    def _unlock(self, start: int, length: int) -> None:
        if self.fd >= 0:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, length, start)

    # -- slots -------------------------------------------------------------------------------
    def generation(self) -> int:
        return int(_U64.unpack_from(self.mm, _GEN_AT)[0])

    def _bump(self) -> None:
        self._lock(_GEN_AT, 8)
        try:
            _U64.pack_into(self.mm, _GEN_AT, (self.generation() + 1) & 0xFFFFFFFFFFFFFFFF)
        finally:
            self._unlock(_GEN_AT, 8)

    def find(self, fp: int) -> int:
        """The live slot of ``fp``, or -1 (lock-free)."""
        mm = self.mm
        mask = self.mask
        slot = fp & mask
        for _ in range(self.nslots):
            at = HEADER_SIZE + slot * SLOT_SIZE
            found = _U64.unpack_from(mm, at)[0]
            if found == 0:
                return -1
            if found == fp and not mm[at + _STATE_AT + 1]:
                return slot
            slot = (slot + 1) & mask
        return -1

    def used(self) -> int:
        """How many slots were ever used (live or dead)."""
        return int(_U64.unpack_from(self.mm, _USED_AT)[0])

    def slot(self, fp: int, tfp: int) -> int:
        """The slot of ``fp``, inserted (healthy, zero counters) if absent; -1 when full."""
        found = self.find(fp)
        if found >= 0:
            return found
        self._lock(0, 8)
        try:
            mm = self.mm
            mask = self.mask
            slot = fp & mask
            reuse = -1
            for _ in range(self.nslots):
                at = HEADER_SIZE + slot * SLOT_SIZE
                found = _U64.unpack_from(mm, at)[0]
                dead = mm[at + _STATE_AT + 1]
                if found == 0:
                    break
                if found == fp and not dead:
                    return slot
                if dead and reuse < 0:
                    reuse = slot
                slot = (slot + 1) & mask
            else:
                slot = -1
            if reuse >= 0:
                target = reuse
            elif slot >= 0 and self.used() < self.capacity:
                target = slot
                _U64.pack_into(mm, _USED_AT, self.used() + 1)
            else:
                return -1  # full: see "Capacity" in the module docstring
            at = HEADER_SIZE + target * SLOT_SIZE
            self._lock(at, SLOT_SIZE)
            try:
                _SLOT_STATE.pack_into(mm, at + _STATE_AT, UNSET, 0, 0, 0, 0, 0, time.time())
                _SLOT_KEYS.pack_into(mm, at, fp, tfp)
            finally:
                self._unlock(at, SLOT_SIZE)
            return target
        finally:
            self._unlock(0, 8)

    def fp_at(self, slot: int) -> int:
        return int(_U64.unpack_from(self.mm, HEADER_SIZE + slot * SLOT_SIZE)[0])

    def state(self, slot: int) -> int:
        return self.mm[HEADER_SIZE + slot * SLOT_SIZE + _STATE_AT]

    def read(self, slot: int) -> tuple[int, Counters, float]:
        """``(state, counters, changed_at)`` of ``slot``."""
        state, _, s, h, t, o, changed = _SLOT_STATE.unpack_from(
            self.mm, HEADER_SIZE + slot * SLOT_SIZE + _STATE_AT
        )
        return state, (s, h, t, o), changed

    def report(
        self, slot: int, counter: int, limit: int, fp: int, since: float | None = None
    ) -> tuple[int, int] | None:
        """Count one report of ``fp`` in ``slot``; ``(old state, new state)`` when it changed.

        Nothing is counted when ``slot`` no longer holds ``fp`` (swept and reused meanwhile),
        nor, with ``since`` (a ``time.time()``), when the slot's availability changed after that
        moment: the result of a probe that began before an admin override (or any other flip)
        describes a state that no longer holds, and must not undo the override.
        """
        if limit == 0 or slot < 0:
            return None
        at = HEADER_SIZE + slot * SLOT_SIZE
        self._lock(at, SLOT_SIZE)
        try:
            state, dead, s, h, t, o, changed = _SLOT_STATE.unpack_from(self.mm, at + _STATE_AT)
            if dead or _U64.unpack_from(self.mm, at)[0] != fp:
                return None
            if since is not None and changed > since:
                return None
            new, c = transition(state, (s, h, t, o), counter, limit)
            if new == state and c == (s, h, t, o):
                return None
            if new != state and available(new) != available(state):
                changed = time.time()
            _SLOT_STATE.pack_into(self.mm, at + _STATE_AT, new, 0, *c, changed)
        finally:
            self._unlock(at, SLOT_SIZE)
        if available(new) != available(state):
            self._bump()
            return state, new
        if new != state:
            return state, new
        return None

    def set(self, slot: int, healthy: bool, fp: int | None = None) -> bool:
        """Force ``slot``'s state (clearing its counters); True when its availability changed.

        With ``fp``, nothing is written (False) when ``slot`` no longer holds that key.
        """
        if slot < 0:
            return False
        at = HEADER_SIZE + slot * SLOT_SIZE
        new = HEALTHY if healthy else UNHEALTHY
        self._lock(at, SLOT_SIZE)
        try:
            if fp is not None and _U64.unpack_from(self.mm, at)[0] != fp:
                return False
            state = self.mm[at + _STATE_AT]
            flipped = available(state) != healthy
            _SLOT_STATE.pack_into(self.mm, at + _STATE_AT, new, 0, 0, 0, 0, 0, time.time())
        finally:
            self._unlock(at, SLOT_SIZE)
        self._bump()
        return flipped

    def sweep(self, live_targets: Iterable[int]) -> int:
        """Mark dead every slot whose target fp is not in ``live_targets``; returns how many."""
        live = set(live_targets)
        killed = 0
        self._lock(0, 8)
        try:
            for slot in range(self.nslots):
                at = HEADER_SIZE + slot * SLOT_SIZE
                fp, tfp = _SLOT_KEYS.unpack_from(self.mm, at)
                if fp and not self.mm[at + _STATE_AT + 1] and tfp not in live:
                    self._lock(at, SLOT_SIZE)
                    self.mm[at + _STATE_AT + 1] = 1
                    self._unlock(at, SLOT_SIZE)
                    killed += 1
        finally:
            self._unlock(0, 8)
        if killed:
            self._bump()
        return killed


def _at(slot: int) -> int:
    return HEADER_SIZE + slot * SLOT_SIZE


# -- the upstream's health-check settings, compiled -------------------------------------------
class HealthPolicy:
    """An upstream's ``healthchecks`` as the balancers and the prober use them."""

    __slots__ = (
        "threshold",
        "using",
        "passive_on",
        "passive_healthy",
        "passive_unhealthy",
        "passive_successes",
        "passive_http",
        "passive_tcp",
        "passive_timeouts",
        "active_on",
        "active",
    )

    def __init__(self, healthchecks: object | None) -> None:
        hc: Any = healthchecks
        if hc is None:
            from fastkong.config.schema import Healthchecks  # noqa: PLC0415 (defaults only)

            hc = Healthchecks()
        passive = hc.passive
        active = hc.active
        self.threshold = float(hc.threshold)
        self.active = active
        self.passive_healthy = frozenset(passive.healthy.http_statuses)
        self.passive_unhealthy = frozenset(passive.unhealthy.http_statuses)
        self.passive_successes = int(passive.healthy.successes)
        self.passive_http = int(passive.unhealthy.http_failures)
        self.passive_tcp = int(passive.unhealthy.tcp_failures)
        self.passive_timeouts = int(passive.unhealthy.timeouts)
        self.active_on = active.healthy.interval > 0 or active.unhealthy.interval > 0
        # Kong's is_upstream_using_healthcheck: what makes /health report states at all.
        self.using = self.active_on or bool(
            self.passive_http or self.passive_tcp or self.passive_timeouts
        )
        self.passive_on = bool(
            self.passive_http or self.passive_tcp or self.passive_timeouts or self.passive_successes
        )

    def __repr__(self) -> str:
        return (
            f"<HealthPolicy active={self.active_on} passive={self.passive_on} "
            f"threshold={self.threshold}>"
        )

    def passive_status(self, status: int) -> tuple[int, int] | None:
        """``(counter, limit)`` a proxied response status counts in, or None."""
        if status in self.passive_healthy:
            return CTR_SUCCESS, self.passive_successes
        if status in self.passive_unhealthy or status == 0:
            return CTR_HTTP, self.passive_http
        return None
