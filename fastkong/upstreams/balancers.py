"""The load-balancing algorithms of an upstream: decide in sync code, no I/O.

A :class:`Balancer` is built once per config snapshot from an upstream and its targets. It owns
the :class:`Peer` objects (one per address of each target; an IP target has one address, a
hostname target one per resolved IP, each with the target's whole weight, as Kong gives an A
record's addresses, and none while its name does not resolve) and answers ``pick(tried, key)``:
the next peer, or None when no peer is available (the proxy's 503 ``failure to get a peer from
the ring-balancer``). Everything a pick needs is precomputed:

* ``live`` is the list of peers that take traffic (weight > 0 and available), rebuilt by
  :meth:`Balancer.refresh` only when a health state or an address set changes;
* ``healthy`` is Kong's balancer health: the available share of the total weight must be
  *above* ``healthchecks.threshold`` percent (with the default 0, at least one peer).

Algorithms (Kong's names):

``round-robin``        nginx's smooth weighted round-robin: exact weights over every cycle, no
                       bursts to the heavy peer (Kong shuffles a wheel; same long-run shares).
``least-connections``  the available peer with the lowest ``(active + 1) / weight``, ties
                       broken by a rotating start so sequential traffic still spreads.
``consistent-hashing`` Kong's ketama wheel (:mod:`fastkong.upstreams.hashing`) on the value of
                       ``hash_on`` / ``hash_fallback``; a retry goes back to the key's peer
                       unless it became unavailable (Kong keeps the hash point).
``latency``            Kong's EWMA (10 s decay) of time-to-first-byte; the available peer not
                       tried yet with the lowest ``ewma / weight`` (Kong scores them all); a
                       new or recovered peer starts at the average of the available ones.

Per-worker, per-peer runtime numbers (in-flight count, EWMA, cached health state) live in a
:class:`PeerState` shared by every snapshot's peer with the same key (upstream id, target id,
ip, port), so a reload that keeps a target keeps them; the in-flight count of a request that
started on the old snapshot is released on the same object.
"""

from __future__ import annotations

import ipaddress
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, unquote_plus

from fastkong.upstreams import health as H
from fastkong.upstreams.hashing import Continuum

if TYPE_CHECKING:
    from fastkong.upstreams.registry import Registry

__all__ = [
    "Balancer",
    "ConsistentHashing",
    "LeastConnections",
    "Latency",
    "Peer",
    "PeerState",
    "RoundRobin",
    "TargetEntry",
    "build_balancer",
    "is_ip",
    "split_target",
]

DECAY_TIME = 10.0  # seconds, Kong's latency balancer


class PeerState:
    """Per-worker numbers of one address that outlive config snapshots."""

    __slots__ = ("fp", "tfp", "slot", "state", "counters", "active", "ewma", "ewma_at")

    def __init__(self, fp: int = 0, tfp: int = 0) -> None:
        self.fp = fp
        self.tfp = tfp
        self.slot = -1
        self.state = H.UNSET
        self.counters = H.ZERO  # only used by a balancer without a registry (no shared table)
        self.active = 0
        self.ewma = -1.0  # -1: never measured (slow start gives it the average)
        self.ewma_at = 0.0

    def __repr__(self) -> str:
        return (
            f"<PeerState {H.STATE_NAMES[self.state]} active={self.active} "
            f"ewma={self.ewma:.4f} slot={self.slot}>"
        )


class Peer:
    """One address of a target: where to connect and what to put in the Host header."""

    __slots__ = (
        "host",
        "port",
        "weight",
        "target_id",
        "current",
        "host_header",
        "hostname",
        "upstream_id",
        "st",
    )

    def __init__(
        self,
        host: str,
        port: int,
        weight: int,
        target_id: str = "",
        *,
        hostname: str | None = None,
        upstream_id: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.weight = weight
        self.target_id = target_id
        self.current = 0
        # The Host header names the target (Kong sends the target's hostname, not its IP).
        name = hostname or host
        self.hostname = name
        self.host_header = name if ":" not in name else f"[{name}]"
        self.upstream_id = upstream_id
        fp, tfp = H.key_fp(upstream_id, target_id, host, port)
        self.st = PeerState(fp, tfp)

    def __repr__(self) -> str:
        state = "" if H.available(self.st.state) else " unhealthy"
        return f"<Peer {self.host}:{self.port} weight={self.weight}{state}>"

    @property
    def available(self) -> bool:
        return H.available(self.st.state)


class TargetEntry:
    """A target of the upstream and its current addresses."""

    __slots__ = ("id", "target", "name", "port", "weight", "is_ip", "peers", "resolved", "dns")

    def __init__(self, target_id: str, target: str, weight: int, upstream_id: str) -> None:
        self.id = target_id
        self.target = target
        self.name, self.port = split_target(target)
        self.weight = weight
        self.is_ip = is_ip(self.name)
        self.resolved = self.is_ip
        self.dns = ("AAAA" if ":" in self.name else "A") if self.is_ip else "A"
        # Until a hostname is resolved, one peer stands for it (connecting resolves it).
        self.peers = [Peer(self.name, self.port, weight, target_id, upstream_id=upstream_id)]

    def __repr__(self) -> str:
        return f"<Target {self.target} weight={self.weight} addresses={len(self.peers)}>"

    def set_addresses(self, addresses: Sequence[str], upstream_id: str) -> bool:
        """Give each of ``addresses`` the target's weight; False when nothing changed.

        Kong adds an A/AAAA record's addresses with the target's own weight each (only SRV
        records carry weights), so a hostname resolving to 3 IPs weighs 3 times its target.
        """
        ordered = sorted(dict.fromkeys(addresses))
        if self.resolved and [p.host for p in self.peers] == ordered:
            return False
        if not ordered:
            return False
        self.peers = [
            Peer(ip, self.port, self.weight, self.id, hostname=self.name, upstream_id=upstream_id)
            for ip in ordered
        ]
        self.resolved = True
        self.dns = "AAAA" if all(":" in ip for ip in ordered) else "A"
        return True

    def clear_addresses(self) -> bool:
        """The name does not resolve: no addresses, so no weight (Kong drops them all, and an
        upstream left with no weight answers 503 "failure to get a peer")."""
        if self.resolved and not self.peers:
            return False
        self.peers = []
        self.resolved = True
        return True


class Balancer:
    """The algorithm-independent part: peers, health, threshold, reports."""

    algorithm: ClassVar[str] = ""
    #: True when the proxy must call :meth:`done` after each try (in-flight count, latency).
    tracks: ClassVar[bool] = False
    #: True when :meth:`pick` needs the request's hash value.
    hashed: ClassVar[bool] = False

    def __init__(
        self,
        peers: Iterable[Peer] = (),
        *,
        upstream: Any | None = None,
        targets: Sequence[Any] = (),
    ) -> None:
        self.upstream = upstream
        self.upstream_id: str = upstream.id if upstream is not None else ""
        self.name: str = upstream.name if upstream is not None else ""
        self.policy = H.HealthPolicy(upstream.healthchecks if upstream is not None else None)
        self.passive = self.policy.passive_on
        self.registry: Registry | None = None
        self.targets = [TargetEntry(t.id, t.target, t.weight, self.upstream_id) for t in targets]
        self._loose = [p for p in peers]  # peers given directly (tests, old callers)
        self.peers: list[Peer] = []
        self.live: list[Peer] = []
        self.healthy = True
        self.total_weight = 0
        self.available_weight = 0
        self.rebuild()

    def __repr__(self) -> str:
        live = "" if len(self.live) == len(self.peers) else f" live={len(self.live)}"
        health = "" if self.healthy else " unhealthy"
        return (
            f"<{type(self).__name__} peers={len(self.peers)} total_weight={self.total_weight}"
            f"{live}{health}>"
        )

    # -- structure -----------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Recompute ``peers`` from the targets' addresses, then :meth:`refresh`."""
        peers = list(self._loose)
        for t in self.targets:
            peers.extend(t.peers)
        self.peers = [p for p in peers if p.weight > 0]
        self.total_weight = sum(p.weight for p in self.peers)
        self.structure_changed()
        self.refresh()

    def structure_changed(self) -> None:
        """Hook: the address set changed (the hashing wheel is rebuilt here)."""

    def refresh(self) -> None:
        """Recompute the live list and the balancer's health from the peers' states."""
        live = [p for p in self.peers if H.available(p.st.state)]
        self.available_weight = sum(p.weight for p in live)
        total = self.total_weight
        if total == 0:
            self.healthy = False
        else:
            self.healthy = self.available_weight * 100.0 / total > self.policy.threshold
        # An unhealthy balancer (below the threshold) has no live peer: pick() needs no check.
        self.live = live if self.healthy else []

    def all_peers(self) -> list[Peer]:
        """Every address, weight 0 included (the health report lists them)."""
        out = list(self._loose)
        for t in self.targets:
            out.extend(t.peers)
        return out

    # -- picking -------------------------------------------------------------------------------
    def pick(self, exclude: tuple[Peer, ...] = (), key: str | None = None) -> Peer | None:
        raise NotImplementedError

    def next_peer(self, tried: tuple[Peer, ...], key: str | None = None) -> Peer | None:
        """The peer of a request's next try: one it has not tried in this round; once every
        live peer failed, a new round starts (Kong's least-connections clears its failed list
        then), as nginx goes round the peers again; None when none is live."""
        if not tried:  # the first try: the common case
            return self.pick((), key)
        peer = self.pick(self.this_round(tried), key)
        if peer is None:
            peer = self.pick((), key)
        return peer

    def this_round(self, tried: tuple[Peer, ...]) -> tuple[Peer, ...]:
        """The tries since the last one that completed a round of every live peer."""
        live = len(self.live)
        current: list[Peer] = []
        for peer in tried:
            if peer not in current:
                current.append(peer)
                if len(current) >= live:
                    current.clear()
        return tuple(current)

    def done(self, peer: Peer, elapsed: float | None) -> None:
        """A try on ``peer`` ended (``elapsed``: seconds to the response head, None on error)."""
        peer.st.active -= 1

    def hash_value(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        client_ip: str,
        path: str,
        query: bytes,
        ctx: Any | None,
        captures: Any | None,
    ) -> tuple[str, str | None]:
        """The request's hash value and a cookie to set (only ``hashed`` balancers use it)."""
        return "", None

    def cookie_header(self, value: str) -> bytes:
        """The ``Set-Cookie`` value Kong sends when ``hash_on: cookie`` found no cookie."""
        u = self.upstream
        name = u.hash_on_cookie if u is not None else "session"
        path = u.hash_on_cookie_path if u is not None else "/"
        return f"{name}={value}; Path={path}; Same-Site=Lax; HttpOnly".encode("latin-1")

    # -- passive health ------------------------------------------------------------------------
    def report_status(self, peer: Peer, status: int) -> None:
        found = self.policy.passive_status(status)
        if found is not None:
            self.report(peer, found[0], found[1])

    def report_failure(self, peer: Peer, timeout: bool) -> None:
        if timeout:
            self.report(peer, H.CTR_TIMEOUT, self.policy.passive_timeouts)
        else:
            self.report(peer, H.CTR_TCP, self.policy.passive_tcp)

    def report(self, peer: Peer, counter: int, limit: int) -> None:
        if limit == 0:
            return
        st = peer.st
        state = st.state
        # Kong counts nothing that agrees with a fully healthy / unhealthy state; checking the
        # cached state first keeps a healthy peer's 2xx answers free of any locking.
        if counter == H.CTR_SUCCESS:
            if state == H.HEALTHY or state == H.UNSET:
                return
        elif state == H.UNHEALTHY:
            return
        if self.registry is not None:
            self.registry.report(self, peer, counter, limit)
            return
        new, st.counters = H.transition(state, st.counters, counter, limit)
        if new != state:
            st.state = new
            self.refresh()


class RoundRobin(Balancer):
    """Smooth weighted round-robin (nginx); weight 0 disables a peer."""

    algorithm = "round-robin"

    def pick(self, exclude: tuple[Peer, ...] = (), key: str | None = None) -> Peer | None:
        best: Peer | None = None
        total = 0
        for peer in self.live:
            if exclude and peer in exclude:
                continue
            peer.current += peer.weight
            total += peer.weight
            if best is None or peer.current > best.current:
                best = peer
        if best is not None:
            best.current -= total
        return best


class LeastConnections(Balancer):
    """The available peer with the fewest in-flight requests per unit of weight."""

    algorithm = "least-connections"
    tracks = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.turn = 0
        super().__init__(*args, **kwargs)

    def pick(self, exclude: tuple[Peer, ...] = (), key: str | None = None) -> Peer | None:
        live = self.live
        n = len(live)
        if n == 0:
            return None
        self.turn = start = (self.turn + 1) % n
        best: Peer | None = None
        score = math.inf
        for i in range(n):
            peer = live[(start + i) % n]
            if exclude and peer in exclude:
                continue
            s = (peer.st.active + 1) / peer.weight
            if s < score:
                best, score = peer, s
        if best is not None:
            best.st.active += 1
        return best


class Latency(Balancer):
    """Kong's ``latency``: EWMA of response time, the lowest score among untried peers."""

    algorithm = "latency"
    tracks = True

    def refresh(self) -> None:
        super().refresh()
        # Kong's afterHostUpdate, run on every address or health change: an unavailable
        # address forgets its EWMA; an available one without any (new, or back from unhealthy)
        # starts at the average over the available addresses, counting the unmeasured as 0.
        available = []
        for p in self.peers:
            if H.available(p.st.state):
                available.append(p)
            else:
                p.st.ewma = -1.0
        if not available:
            return
        average = sum(max(p.st.ewma, 0.0) for p in available) / len(available)
        now = time.monotonic()
        for p in available:
            if p.st.ewma < 0:
                p.st.ewma, p.st.ewma_at = average, now

    def score(self, peer: Peer, now: float) -> float:
        st = peer.st
        if st.ewma <= 0:
            return 0.0
        decay = math.exp(-max(now - st.ewma_at, 0.0) / DECAY_TIME)
        return st.ewma * decay / peer.weight

    def pick(self, exclude: tuple[Peer, ...] = (), key: str | None = None) -> Peer | None:
        # Kong's getPeer widens its pick set to every address not tried yet and takes the
        # lowest score (the first one on a tie): the fastest peer, not two random ones.
        best: Peer | None = None
        low = math.inf
        now = time.monotonic()
        for peer in self.live:
            if exclude and peer in exclude:
                continue
            s = self.score(peer, now)
            if best is None or s < low:
                best, low = peer, s
        if best is not None:
            best.st.active += 1
        return best

    def next_peer(self, tried: tuple[Peer, ...], key: str | None = None) -> Peer | None:
        # Kong's latency balancer keeps every failed address out: once all failed, the request
        # gets no peer ("all endpoints have been retried"), Kong's 503.
        return self.pick(tried, key)

    def done(self, peer: Peer, elapsed: float | None) -> None:
        st = peer.st
        st.active -= 1
        if elapsed is None:
            return
        now = time.monotonic()
        if st.ewma < 0:
            st.ewma = 0.0
        weight = math.exp(-max(now - st.ewma_at, 0.0) / DECAY_TIME)
        st.ewma = st.ewma * weight + elapsed * (1.0 - weight)
        st.ewma_at = now


class ConsistentHashing(Balancer):
    """Kong's ketama wheel on the request's hash value (``hash_on``, then ``hash_fallback``)."""

    algorithm = "consistent-hashing"
    hashed = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.wheel: Continuum | None = None
        self.order: list[Peer] = []
        super().__init__(*args, **kwargs)
        u = self.upstream
        self.hash_on: str = u.hash_on if u is not None else "none"
        self.hash_fallback: str = u.hash_fallback if u is not None else "none"
        self.cookie_name: str | None = u.hash_on_cookie if u is not None else None
        self.cookie_path: str = u.hash_on_cookie_path if u is not None else "/"
        # Kong reads ``ngx.var["http_" .. replace_dashes_lower(name)]``: nginx's variable
        # matches the header with dashes, so "X_User" names the request header "x-user".
        self.headers: dict[str, bytes] = {
            suffix: (getattr(u, f"hash_{suffix}_header", None) or "")
            .lower()
            .replace("_", "-")
            .encode()
            for suffix in ("on", "fallback")
        }

    def structure_changed(self) -> None:
        # Kong's order: targets by name then port, each target's addresses by "ip:port".
        targets = sorted(self.targets, key=lambda t: (t.name, t.port))
        order: list[Peer] = []
        for t in targets:
            order.extend(sorted(t.peers, key=lambda p: f"{p.host}:{p.port}"))
        order.extend(self._loose)
        order = [p for p in order if p.weight > 0]
        self.order = order
        count = len(targets) or len(order)
        slots = self.upstream.slots if self.upstream is not None else 10000
        self.wheel = Continuum([(p.host, p.port, p.weight) for p in order], count, slots)

    def pick(self, exclude: tuple[Peer, ...] = (), key: str | None = None) -> Peer | None:
        # ``exclude`` is ignored on purpose: Kong's retry starts again from the request's own
        # point on the wheel, so it goes back to the same peer unless that peer has become
        # unavailable meanwhile (a passive check counted the failure). A key stays on its peer.
        if not self.healthy or self.wheel is None:
            return None
        wheel = self.wheel
        slot = wheel.slot_of(key or "")
        owner = wheel.nearest[slot]
        if owner < 0:
            return None
        peer = self.order[wheel.owners[owner]]
        if H.available(peer.st.state):
            return peer
        for index in wheel.walk(owner):
            peer = self.order[index]
            if H.available(peer.st.state):
                return peer
        return None

    def hash_value(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        client_ip: str,
        path: str,
        query: bytes,
        ctx: Any | None,
        captures: Any | None,
    ) -> tuple[str, str | None]:
        """Kong's ``get_value_to_hash``: ``(value, cookie to set or None)``."""
        u = self.upstream
        mode = self.hash_on
        suffix = "on"
        for _ in range(2):
            value: str | None = None
            if mode == "consumer":
                consumer = getattr(ctx, "consumer", None) if ctx is not None else None
                credential = getattr(ctx, "credential", None) if ctx is not None else None
                value = getattr(consumer, "id", None) or getattr(credential, "id", None)
            elif mode == "ip":
                value = client_ip
            elif mode == "header":
                name = self.headers[suffix]
                found = [v.decode("latin-1") for k, v in headers if k == name]
                value = ", ".join(found) if found else None
            elif mode == "cookie":
                value = _cookie(headers, self.cookie_name or "")
                if value is None:
                    value = str(uuid.uuid4())
                    return value, value
            elif mode == "path":
                value = nginx_uri(path)
            elif mode == "query_arg":
                value = _query_arg(query, getattr(u, f"hash_{suffix}_query_arg"))
            elif mode == "uri_capture" and captures:
                # The group is looked up by its name as written: Kong's router keys numbered
                # groups by integer and the upstream field is a string, so "1" never matches
                # there either (Kong falls back); only named groups hash.
                value = captures.get(getattr(u, f"hash_{suffix}_uri_capture"))
            if value is not None:  # Lua truthiness: an empty header or "?arg=" still counts
                return value, None
            mode = self.hash_fallback
            suffix = "fallback"
            if mode == "none":
                break
        return "", None


_ALGORITHMS: dict[str, type[Balancer]] = {
    "round-robin": RoundRobin,
    "least-connections": LeastConnections,
    "consistent-hashing": ConsistentHashing,
    "latency": Latency,
}


def build_balancer(upstream: Any, targets: Sequence[Any]) -> Balancer:
    """The balancer of ``upstream`` (a config ``Upstream``) over its config ``targets``."""
    cls = _ALGORITHMS.get(upstream.algorithm, RoundRobin)
    return cls(upstream=upstream, targets=targets)


def _cookie(headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    prefix = name.encode() + b"="
    for k, v in headers:
        if k == b"cookie":
            for part in v.split(b";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix) :].decode("latin-1")
    return None


def _query_arg(query: bytes, name: str) -> str | None:
    """Kong's normalisation: several values sorted and joined by commas; a bare flag is true."""
    found: list[str] = []
    for part in query.decode("latin-1").split("&"):
        if not part:
            continue
        k, eq, v = part.partition("=")
        if unquote_plus(k) == name:
            found.append(unquote_plus(v) if eq else "true")
    if not found:
        return None
    return ",".join(sorted(found)) if len(found) > 1 else found[0]


def nginx_uri(path: str) -> str:
    """nginx's ``$uri`` (what Kong hashes on ``path``) of the router's normalized path: every
    escape decoded (the router keeps reserved ones, ``%2F``, encoded), then ``.``/``..``
    segments and repeated slashes resolved again over the decoded text."""
    if "%" not in path:
        return path
    decoded = unquote(path, encoding="latin-1")
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    out = "/" + "/".join(segments)
    if segments and decoded.endswith(("/", "/.", "/..")):
        out += "/"
    return out


def split_target(target: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` -> (host, port); Kong's default target port is 8000."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 8000
    host, sep, port = target.rpartition(":")
    if not sep or ":" in host:
        return target, 8000
    return host, int(port)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
