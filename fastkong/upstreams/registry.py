"""One worker's link between its config snapshots' balancers and the node's health table.

:meth:`Registry.adopt` is called with each new runtime snapshot (``Gateway.swap``). It gives
every peer the per-worker :class:`~fastkong.upstreams.balancers.PeerState` of its key (so
in-flight counts, EWMAs and cached states carry over from the previous snapshot), finds the
peer's slot in the shared :class:`~fastkong.upstreams.health.HealthTable` and reads its state,
then refreshes the balancers. A background task (:meth:`Registry.run`) polls the table's
generation word every :data:`~fastkong.upstreams.health.POLL_INTERVAL` and re-reads states when
it moved, and re-resolves hostname targets whose DNS answer expired (a changed address set
rebuilds that balancer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from fastkong.upstreams import health as H
from fastkong.upstreams.balancers import Balancer, Peer, PeerState
from fastkong.upstreams.dns import Resolver, no_such_name

if TYPE_CHECKING:
    from fastkong.runtime import ServicePlan


class Snapshot(Protocol):
    """What :meth:`Registry.adopt` reads of a config snapshot (the HTTP workers' runtime, the
    stream process's snapshot): its services, whose balancers it binds."""

    @property
    def services(self) -> Mapping[str, ServicePlan]: ...


log = logging.getLogger("fastkong.upstreams")

FULL_REREAD = 5.0  # seconds between two unconditional re-reads (a safety net)
DNS_CHECK = 1.0
#: How long a new config waits for its target names to resolve before it is served.
PREFETCH_TIMEOUT = 1.0


class Registry:
    """Per-worker upstream state (see the module docstring)."""

    def __init__(
        self, table: H.HealthTable | None = None, resolver: Resolver | None = None
    ) -> None:
        self.table = table if table is not None else H.HealthTable(None)
        self.resolver = resolver if resolver is not None else Resolver()
        self.states: dict[int, PeerState] = {}
        self.balancers: list[Balancer] = []
        self.generation = -1
        self.full_at = 0.0
        self.dns_at = 0.0
        self.task: asyncio.Task[None] | None = None
        #: The first DNS resolution, started with the loop (held: the loop keeps weak references).
        self.first_resolve: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"<Registry balancers={len(self.balancers)} peers={len(self.states)} "
            f"table={self.table!r}>"
        )

    # -- snapshots ---------------------------------------------------------------------------
    async def prefetch(self, runtime: Snapshot, timeout: float = PREFETCH_TIMEOUT) -> None:
        """Look up the target names of ``runtime`` this worker has no answer for, before it is
        adopted: Kong resolves a balancer's targets when it creates it, so the first request
        already picks among real addresses. Bounded by ``timeout``; a name still unresolved
        then gets a stand-in peer (:meth:`adopt`)."""
        names = {
            t.name
            for service in runtime.services.values()
            if service.balancer is not None
            for t in service.balancer.targets
            if not t.is_ip and self.resolver.usable(t.name) is None
        }
        if not names:
            return
        lookups = asyncio.gather(
            *(self.resolver.resolve(name) for name in names), return_exceptions=True
        )
        try:
            await asyncio.wait_for(lookups, timeout)
        except TimeoutError:
            log.warning("DNS: %d target names not resolved in %.1fs", len(names), timeout)

    def adopt(self, runtime: Snapshot) -> None:
        """Bind the balancers of ``runtime`` (a new snapshot) to this worker's state."""
        balancers: dict[int, Balancer] = {}
        for service in runtime.services.values():
            b = service.balancer
            if b is not None:
                balancers[id(b)] = b
        states: dict[int, PeerState] = {}
        for b in balancers.values():
            b.registry = self
            for t in b.targets:
                if not t.is_ip:
                    cached = self.resolver.usable(t.name)
                    if cached:
                        t.set_addresses(cached, b.upstream_id)
                    else:
                        # A name this worker has not resolved: look it up at the next tick
                        # (0.1 s), not the next DNS round; meanwhile its stand-in peer
                        # resolves it when connecting.
                        self.dns_at = 0.0
            for peer in b.all_peers():
                self._bind(peer, states)
            b.rebuild()
        self.states = states
        self.balancers = list(balancers.values())
        self._check_capacity()

    def _check_capacity(self) -> None:
        """Log, once per snapshot, the addresses the shared table had no room for."""
        unslotted = sum(1 for st in self.states.values() if st.slot < 0)
        if unslotted:
            log.error(
                "[healthchecks] the health table is full (%d slots, %d usable): %d addresses"
                " keep per-worker passive health only (no shared state, no active checks)",
                self.table.nslots,
                self.table.capacity,
                unslotted,
            )

    def _bind(self, peer: Peer, states: dict[int, PeerState]) -> None:
        st = peer.st
        old = states.get(st.fp) or self.states.get(st.fp)
        if old is not None:
            peer.st = st = old
        states[st.fp] = st
        if st.slot < 0 or self.table.fp_at(st.slot) != st.fp:
            st.slot = self.table.slot(st.fp, st.tfp)
        if st.slot >= 0:
            st.state = self.table.state(st.slot)

    # -- reports -----------------------------------------------------------------------------
    def report(self, balancer: Balancer, peer: Peer, counter: int, limit: int) -> None:
        st = peer.st
        if st.slot < 0 or self.table.fp_at(st.slot) != st.fp:
            st.slot = self.table.slot(st.fp, st.tfp)
        if st.slot >= 0:
            changed = self.table.report(st.slot, counter, limit, st.fp)
        else:  # no room in the shared table: this worker counts alone
            state, st.counters = H.transition(st.state, st.counters, counter, limit)
            changed = (st.state, state) if state != st.state else None
        if changed is None:
            return
        old, new = changed
        st.state = new
        if H.available(old) != H.available(new):
            log.warning(
                "[healthchecks] %s %s:%d (upstream %s) is now %s (passive)",
                peer.hostname,
                peer.host,
                peer.port,
                balancer.name,
                "healthy" if H.available(new) else "unhealthy",
            )
            balancer.refresh()
            self._refresh(b for b in self.balancers if b.upstream_id == balancer.upstream_id)

    # -- polling -----------------------------------------------------------------------------
    def poll(self, now: float | None = None) -> bool:
        """Re-read states if the table changed (or every few seconds); True if any changed."""
        now = time.monotonic() if now is None else now
        gen = self.table.generation()
        if gen == self.generation and now - self.full_at < FULL_REREAD:
            return False
        self.generation = gen
        self.full_at = now
        changed: set[str] = set()
        table = self.table
        for b in self.balancers:
            for peer in b.all_peers():
                st = peer.st
                if st.slot < 0 or table.fp_at(st.slot) != st.fp:
                    st.slot = table.slot(st.fp, st.tfp)
                    if st.slot < 0:
                        continue
                state = table.state(st.slot)
                if state != st.state:
                    if H.available(state) != H.available(st.state):
                        changed.add(b.upstream_id)
                    st.state = state
        self._refresh(b for b in self.balancers if b.upstream_id in changed)
        return bool(changed)

    def _refresh(self, balancers: Iterable[Balancer]) -> None:
        for b in balancers:
            b.refresh()

    async def resolve_targets(self) -> None:
        """Resolve hostname targets whose cached answer expired; rebuild what changed."""
        states = self.states
        for b in list(self.balancers):
            changed = False
            for t in b.targets:
                if t.is_ip or (t.resolved and self.resolver.cached(t.name) is not None):
                    continue
                try:
                    addresses = await self.resolver.resolve(t.name, stale_ok=False)
                except OSError as exc:
                    log.warning("cannot resolve target %s of %s: %s", t.target, b.name, exc)
                    # Kong's queryDns: a failed lookup leaves the target no address. A name
                    # never resolved loses its stand-in peer at once; one that resolved before
                    # keeps its addresses through a passing resolver error (Kong's DNS client
                    # serves stale records then) but not through "no such name".
                    if (not t.resolved or no_such_name(exc)) and t.clear_addresses():
                        changed = True
                    continue
                if t.set_addresses(addresses, b.upstream_id):
                    for peer in t.peers:
                        self._bind(peer, states)
                    changed = True
            if changed:
                b.rebuild()

    async def run(self) -> None:
        """The worker's background loop: health polling and DNS refresh."""
        while True:
            await asyncio.sleep(H.POLL_INTERVAL)
            try:
                self.poll()
                now = time.monotonic()
                if now - self.dns_at >= DNS_CHECK:
                    self.dns_at = now
                    await self.resolve_targets()
            except Exception:  # never let the loop die; the next tick retries
                log.exception("upstream state refresh failed")

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.task is None:
            self.task = loop.create_task(self.run())
            self.first_resolve = loop.create_task(self.resolve_targets())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


def open_table(path: str | None) -> H.HealthTable | None:
    """The node's table at ``path`` (``FASTKONG_HEALTH``), or None if absent or unusable."""
    if not path:
        return None
    try:
        return H.HealthTable(path)
    except (OSError, ValueError) as exc:
        log.error("cannot open the health table %s (%s); health is per worker", path, exc)
        return None
