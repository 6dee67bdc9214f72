"""The active prober and the health report: run by the supervisor, once per node.

Kong runs its checkers in every nginx worker and elects one per upstream through a lock in the
shared dict; fastkong has a natural single place instead, the supervisor, which owns the config
and outlives every worker. :class:`ActiveChecker` keeps one task per upstream with active checks
(``healthchecks.active.healthy.interval`` or ``unhealthy.interval`` above 0, and a ``type``
other than ``tcp``, which Kong only probes for stream routes). Every
``healthy.interval`` it probes the addresses currently healthy (or mostly healthy), every
``unhealthy.interval`` those unhealthy (or mostly unhealthy), at most ``concurrency`` at a time,
the first round one interval after start (lua-resty-healthcheck's schedule). A probe:

* ``tcp``: connect within ``timeout``; success is a healthy report (only :meth:`probe` does
  this: the node's HTTP traffic never schedules tcp probes, as in Kong);
* ``http`` / ``https`` (``grpc``/``grpcs`` too, without TLS, as lua-resty-healthcheck 3.1 does):
  ``GET <http_path> HTTP/1.0`` with ``Host`` (the upstream's ``host_header``, else the
  target's name; also the SNI when ``https_sni`` is unset) and the configured ``headers``,
  read the status line within ``timeout``; a status in ``healthy.http_statuses`` is a success,
  one in ``unhealthy.http_statuses`` (or an unparseable line) an HTTP failure, else nothing;
* a connect, TLS or read error is a TCP failure, an expired ``timeout`` a timeout.

Results go into the node's :class:`~fastkong.upstreams.health.HealthTable`, which every worker
follows. A config reload restarts only the tasks of upstreams whose settings or targets
changed; states live in the table, keyed by target ids, so nothing is reset. The state of a
target that leaves the config is kept for 5 minutes (Kong's ``CLEAR_HEALTH_STATUS_DELAY``), so
one that comes back within them is as healthy or unhealthy as it left.

The same object answers ``GET /upstreams/{u}/health`` in Kong's shape and applies
``POST /upstreams/{u}/targets/{t}[/{address}]/healthy|unhealthy``: those work in DB-less mode
here (Kong 3.9 answers 500 there, issue #15001) and apply to this node, whose every worker sees
them within :data:`~fastkong.upstreams.health.POLL_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

import msgspec

from fastkong.proxy.upstream_tls import ContextCache, TlsProfile
from fastkong.upstreams import health as H
from fastkong.upstreams.balancers import is_ip, split_target
from fastkong.upstreams.dns import Resolver

log = logging.getLogger("fastkong.healthchecks")

CLEAR_DELAY = 300.0  # Kong's CLEAR_HEALTH_STATUS_DELAY


class UpstreamCheck:
    """One upstream as the prober sees it: its settings, targets and probe tasks."""

    def __init__(
        self, upstream: Any, targets: list[Any], client_cert: tuple[str, str] | None = None
    ) -> None:
        self.upstream = upstream
        self.targets = targets
        self.policy = H.HealthPolicy(upstream.healthchecks)
        #: https probes present the upstream's client_certificate, as Kong's healthchecker.
        self.tls = TlsProfile(
            self.policy.active.https_verify_certificate,
            (),
            *(client_cert or (None, None)),
        )
        self.identity = (
            msgspec.json.encode(upstream),
            tuple((t.id, t.target, t.weight) for t in targets),
            self.tls,
        )
        self.tasks: list[asyncio.Task[None]] = []
        self.overflow_logged = False

    def __repr__(self) -> str:
        return f"<UpstreamCheck {self.upstream.name} targets={len(self.targets)} {self.policy!r}>"


class ActiveChecker:
    """The node's active health checks and health report (see the module docstring)."""

    def __init__(self, table: H.HealthTable, resolver: Resolver | None = None) -> None:
        self.table = table
        self.checks: dict[str, UpstreamCheck] = {}
        self.by_name: dict[str, str] = {}
        #: Hostname targets' addresses, cached as the workers cache them (upstreams/dns.py).
        self.resolver = resolver if resolver is not None else Resolver()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.probes = 0
        self.present: set[int] = set()
        self.absent: dict[int, float] = {}  # target fp -> when it left the config
        self.clear_delay = CLEAR_DELAY
        self.forget_timer: asyncio.TimerHandle | None = None
        self.contexts = ContextCache()

    def __repr__(self) -> str:
        running = sum(len(c.tasks) for c in self.checks.values())
        return f"<ActiveChecker upstreams={len(self.checks)} tasks={running} probes={self.probes}>"

    # -- config --------------------------------------------------------------------------------
    def update(self, config: Any) -> None:
        """Take a new config (from any thread): restart what changed, drop dead targets."""
        loop = self.loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._apply, config)
        else:
            self._apply(config)

    def _apply(self, config: Any) -> None:
        certificates = {str(c.id): c for c in config.certificates}
        targets: dict[str, list[Any]] = {}
        for t in config.targets:
            targets.setdefault(t.upstream, []).append(t)
        fresh: dict[str, UpstreamCheck] = {}
        for u in config.upstreams:
            cert = certificates.get(str(u.client_certificate)) if u.client_certificate else None
            check = UpstreamCheck(
                u, targets.get(u.id, []), (cert.cert, cert.key) if cert is not None else None
            )
            old = self.checks.get(u.id)
            if old is not None and old.identity == check.identity:
                fresh[u.id] = old
                continue
            if old is not None:
                self._stop(old)
            fresh[u.id] = check
            if self.loop is not None:
                self._start(check)
        for uid, old in self.checks.items():
            if uid not in fresh:
                self._stop(old)
        self.checks = fresh
        self.by_name = {c.upstream.name: uid for uid, c in fresh.items()}
        present = {H.target_fp(t.upstream, t.id) for t in config.targets}
        now = time.monotonic()
        for tfp in self.present - present:
            self.absent.setdefault(tfp, now)
        for tfp in present:
            self.absent.pop(tfp, None)
        self.present = present
        self.forget()

    def forget(self, now: float | None = None) -> int:
        """Drop the health of targets absent from the config for :attr:`clear_delay` seconds.

        Kong stops a replaced balancer's checker with ``delayed_clear(300)``: a target that
        comes back within those 5 minutes finds its old health (an unhealthy one stays out).
        """
        now = time.monotonic() if now is None else now
        self.absent = {tfp: at for tfp, at in self.absent.items() if now - at < self.clear_delay}
        killed = self.table.sweep(self.present | self.absent.keys())
        if self.forget_timer is not None:
            self.forget_timer.cancel()
            self.forget_timer = None
        if self.absent and self.loop is not None:
            wait = min(self.absent.values()) + self.clear_delay - now
            self.forget_timer = self.loop.call_later(max(wait, 0.0) + 0.01, self.forget)
        return killed

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        for check in self.checks.values():
            self._start(check)
        self.forget()

    def stop(self) -> None:
        for check in self.checks.values():
            self._stop(check)
        if self.forget_timer is not None:
            self.forget_timer.cancel()
            self.forget_timer = None
        self.loop = None

    def _start(self, check: UpstreamCheck) -> None:
        assert self.loop is not None
        active = check.policy.active
        if active.type == "tcp":
            # Kong's create_healthchecker zeroes the active intervals of an http-subsystem
            # checker whose type is tcp (those probes belong to the stream subsystem, whose
            # health state HTTP proxying never reads): such an upstream gets no active probes.
            return
        if active.healthy.interval > 0:
            check.tasks.append(
                self.loop.create_task(self._every(check, active.healthy.interval, True))
            )
        if active.unhealthy.interval > 0:
            check.tasks.append(
                self.loop.create_task(self._every(check, active.unhealthy.interval, False))
            )

    def _stop(self, check: UpstreamCheck) -> None:
        for task in check.tasks:
            task.cancel()
        check.tasks.clear()

    # -- addresses -----------------------------------------------------------------------------
    def addresses(self, target: Any) -> list[str]:
        """The target's IPs as last resolved ([] for a hostname never resolved, or one that
        does not resolve). Never a lookup: the admin API's handlers call this on the
        supervisor's event loop, where a blocking lookup would stall the config watcher and the
        readiness probe; they :meth:`warm` the upstream first."""
        name, _ = split_target(target.target)
        if is_ip(name):
            return [name]
        return sorted(self.resolver.usable(name) or ())

    async def _addresses(self, target: Any) -> list[str]:
        name, _ = split_target(target.target)
        if is_ip(name):
            return [name]
        try:
            return sorted(await self.resolver.resolve(name))
        except OSError:
            return []

    async def warm(self, upstream: str) -> None:
        """Resolve, without blocking the loop, the hostname targets of ``upstream`` (its name
        or id) before a health report or write reads their addresses."""
        check = self.find_upstream(upstream)
        if check is not None:
            for target in check.targets:
                await self._addresses(target)

    async def warm_all(self) -> None:
        """:meth:`warm` every upstream (before ``/metrics`` reports the targets' health)."""
        for upstream_id in list(self.checks):
            await self.warm(upstream_id)

    def _slot(self, upstream_id: str, target_id: str, ip: str, port: int) -> int:
        fp, tfp = H.key_fp(upstream_id, target_id, ip, port)
        return self.table.slot(fp, tfp)

    # -- probing -------------------------------------------------------------------------------
    async def _every(self, check: UpstreamCheck, interval: float, healthy: bool) -> None:
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            if next_at < time.monotonic():
                next_at = time.monotonic() + interval  # a round ran late: don't burst
            try:
                await self.round(check, healthy)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("[healthchecks] probe round of %s failed", check.upstream.name)

    async def round(self, check: UpstreamCheck, healthy: bool) -> int:
        """Probe the addresses of ``check`` that are (mostly) healthy / unhealthy; how many."""
        work: list[tuple[Any, str, int, int]] = []
        uid = check.upstream.id
        unslotted = 0
        for t in check.targets:
            if t.weight == 0:
                continue
            _, port = split_target(t.target)
            for ip in await self._addresses(t):
                slot = self._slot(uid, t.id, ip, port)
                if slot < 0:
                    unslotted += 1
                    continue
                if H.available(self.table.state(slot)) == healthy:
                    work.append((t, ip, port, slot))
        if unslotted and not check.overflow_logged:
            check.overflow_logged = True
            log.error(
                "[healthchecks] the health table is full (%d slots): %d addresses of upstream %s"
                " are not actively checked",
                self.table.nslots,
                unslotted,
                check.upstream.name,
            )
        if not work:
            return 0
        gate = asyncio.Semaphore(check.policy.active.concurrency)

        async def one(item: tuple[Any, str, int, int]) -> None:
            async with gate:
                await self.probe(check, *item)

        await asyncio.gather(*(one(item) for item in work))
        return len(work)

    async def probe(self, check: UpstreamCheck, target: Any, ip: str, port: int, slot: int) -> None:
        """One active probe of ``ip:port``, its result counted in ``slot``."""
        active = check.policy.active
        timeout = float(active.timeout) or 1.0
        self.probes += 1
        started = time.time()
        name, _ = split_target(target.target)
        tls: ssl.SSLContext | None = None
        host = check.upstream.host_header or name
        # lua-resty-healthcheck 3.1 (Kong's) only handshakes for ``https``: a ``grpc``/``grpcs``
        # check is the same plain HTTP/1.0 GET. The SNI is ``https_sni``, else the Host it sends.
        if active.type == "https":
            tls = self.contexts.get(check.tls)
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    ip,
                    port,
                    ssl=tls,
                    server_hostname=(active.https_sni or _sni(host)) if tls is not None else None,
                ),
                timeout,
            )
            if active.type == "tcp":
                self._count(check, target, ip, port, slot, H.CTR_SUCCESS, started)
                return
            extra = "".join(f"{k}: {v}\r\n" for k, vs in (active.headers or {}).items() for v in vs)
            assert writer is not None
            writer.write(f"GET {active.http_path} HTTP/1.0\r\n{extra}Host: {host}\r\n\r\n".encode())
            line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            self._count(check, target, ip, port, slot, H.CTR_TIMEOUT, started)
            return
        except (OSError, ssl.SSLError):
            self._count(check, target, ip, port, slot, H.CTR_TCP, started)
            return
        finally:
            if writer is not None:
                writer.close()
        parts = line.split()
        status = 0
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            status = int(parts[1])
        if not line:
            self._count(check, target, ip, port, slot, H.CTR_TCP, started)
        elif status in active.healthy.http_statuses:
            self._count(check, target, ip, port, slot, H.CTR_SUCCESS, started)
        elif status in active.unhealthy.http_statuses or status == 0:
            self._count(check, target, ip, port, slot, H.CTR_HTTP, started)

    def _count(
        self,
        check: UpstreamCheck,
        target: Any,
        ip: str,
        port: int,
        slot: int,
        counter: int,
        started: float,
    ) -> None:
        active = check.policy.active
        limit = {
            H.CTR_SUCCESS: active.healthy.successes,
            H.CTR_HTTP: active.unhealthy.http_failures,
            H.CTR_TCP: active.unhealthy.tcp_failures,
            H.CTR_TIMEOUT: active.unhealthy.timeouts,
        }[counter]
        fp = H.key_fp(check.upstream.id, target.id, ip, port)[0]
        if self.table.fp_at(slot) != fp:
            slot = self._slot(check.upstream.id, target.id, ip, port)  # swept and reused
            if slot < 0:
                return
        changed = self.table.report(slot, counter, int(limit), fp, since=started)
        if changed is not None and H.available(changed[0]) != H.available(changed[1]):
            log.warning(
                "[healthchecks] %s %s:%d (upstream %s) is now %s (active)",
                target.target,
                ip,
                port,
                check.upstream.name,
                H.STATE_NAMES[changed[1]],
            )

    # -- the admin API -------------------------------------------------------------------------
    def find_upstream(self, key: str) -> UpstreamCheck | None:
        check = self.checks.get(key)
        if check is None and key in self.by_name:
            check = self.checks[self.by_name[key]]
        return check

    def set_health(
        self, upstream: str, target: str, address: str | None, healthy: bool
    ) -> tuple[int, dict[str, Any] | None]:
        """``POST .../healthy|unhealthy``: ``(status, body)`` in Kong's shape."""
        check = self.find_upstream(upstream)
        if check is None:
            return 404, {"message": "Not found"}
        found = next((t for t in check.targets if target in (t.id, t.target)), None)
        if found is None:
            return 404, {"message": "Not found"}
        name, port = split_target(found.target)
        if address is not None and is_ip(split_target(address)[0]):
            ip, aport = split_target(address)
            pairs = [(ip, aport if ":" in address else port)]
        elif address is not None:
            # A name, not an address (Kong's set_all_target_statuses_for_hostname): every
            # address it resolves to, at its port.
            host, aport = split_target(address)
            at = aport if ":" in address else port
            pairs = [(ip, at) for ip in self.addresses(found)] + [(host, at)]
        else:
            pairs = [(ip, port) for ip in self.addresses(found)]
            if not is_ip(name):
                pairs.append((name, port))  # workers that have not resolved it yet
        for ip, p in pairs:
            fp, tfp = H.key_fp(check.upstream.id, found.id, ip, p)
            self.table.set(self.table.slot(fp, tfp), healthy, fp)
        log.warning(
            "[healthchecks] %s of upstream %s set %s through the admin API",
            address or found.target,
            check.upstream.name,
            "healthy" if healthy else "unhealthy",
        )
        return 204, None

    def balancer_target_status(self, check: UpstreamCheck, target: Any) -> dict[str, Any]:
        """Kong's ``getTargetStatus``: each address with its ``healthy`` flag."""
        name, port = split_target(target.target)
        ips = self.addresses(target)
        w = target.weight  # each address of an A record weighs the whole target (Kong)
        addresses = []
        total = unavailable = 0
        for ip in ips:
            fp, _ = H.key_fp(check.upstream.id, target.id, ip, port)
            slot = self.table.find(fp)
            ok = H.available(self.table.state(slot) if slot >= 0 else H.UNSET)
            total += w
            unavailable += 0 if ok else w
            addresses.append({"ip": ip, "port": port, "weight": w, "healthy": ok})
        return {
            "host": name,
            "port": port,
            "dns": "AAAA" if ips and all(":" in ip for ip in ips) else "A",
            "nodeWeight": target.weight,
            "weight": {
                "total": total,
                "unavailable": unavailable,
                "available": total - unavailable,
            },
            "addresses": addresses,
        }

    def target_status(self, check: UpstreamCheck, target: Any) -> dict[str, Any]:
        """Kong's ``get_upstream_health`` entry: each address's ``health`` instead of the flag
        (``HEALTHCHECKS_OFF`` when the upstream uses no checks or the target weighs 0). An
        address of an upstream without checks that was marked down through the admin API (which
        Kong refuses there) shows ``UNHEALTHY``: it takes no traffic."""
        status = self.balancer_target_status(check, target)
        on = check.policy.using and target.weight > 0
        for address in status["addresses"]:
            ok = address.pop("healthy")
            if on:
                address["health"] = "HEALTHY" if ok else "UNHEALTHY"
            else:
                address["health"] = "HEALTHCHECKS_OFF" if ok or not target.weight else "UNHEALTHY"
        return status

    def upstream_health(self, upstream_id: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Kong's ``page_for_upstream_with_health``: each target row with ``health``/``data``."""
        check = self.checks.get(upstream_id)
        out = []
        for row in rows:
            row = dict(row)
            target = None
            if check is not None:
                target = next((t for t in check.targets if t.id == row.get("id")), None)
            if target is None:
                row["health"] = "DNS_ERROR"
                row["data"] = None
                out.append(row)
                continue
            data = self.target_status(check, target) if check is not None else None
            health = "DNS_ERROR"
            if data is not None and data["addresses"]:
                health = "HEALTHCHECKS_OFF"
                for address in data["addresses"]:
                    if address["health"] == "HEALTHY":
                        health = "HEALTHY"
                        break
                    if address["health"] == "UNHEALTHY":
                        health = "UNHEALTHY"
            row["health"] = health
            row["data"] = data
            out.append(row)
        return out

    def balancer_health(self, upstream_id: str) -> dict[str, Any] | None:
        """``GET /upstreams/{u}/health?balancer_health=1``: Kong's ``get_balancer_health``
        (``health`` is ``HEALTHCHECKS_OFF`` when no check is on; ``balancer_health`` and
        ``details`` are always there)."""
        check = self.checks.get(upstream_id)
        if check is None:
            return None
        hosts = [self.balancer_target_status(check, t) for t in check.targets]
        total = sum(h["weight"]["total"] for h in hosts)
        unavailable = sum(h["weight"]["unavailable"] for h in hosts)
        healthy = total > 0 and (total - unavailable) * 100.0 / total > check.policy.threshold
        balancer = "HEALTHY" if healthy else "UNHEALTHY"
        return {
            "health": balancer if check.policy.using else "HEALTHCHECKS_OFF",
            "balancer_health": balancer,
            "id": upstream_id,
            "details": {
                "healthy": healthy,
                "weight": {
                    "total": total,
                    "unavailable": unavailable,
                    "available": total - unavailable,
                },
                "hosts": hosts,
            },
        }


def _sni(host: str) -> str:
    """A ``host_header`` may carry a port (Kong's ``host_with_optional_port``); SNI cannot."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host
