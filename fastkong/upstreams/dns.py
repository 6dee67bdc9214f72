"""Name lookups for service hosts and upstream targets, cached the way Kong's DNS client caches.

A name's answer is kept *fresh* for ``dns_valid_ttl`` seconds, then *stale* for ``dns_stale_ttl``
more. A request that finds a stale answer is served from it at once while one lookup refreshes
it in the background, so an expiring answer never makes requests wait, and a resolver that is
down keeps the last good addresses in use (for an hour by Kong's default) instead of turning
every new upstream connection into a 503. Failures are cached too: "no such name" (or an empty
answer) for ``dns_not_found_ttl`` seconds, any other error for ``dns_error_ttl``, so a missing
name costs one lookup per period instead of one per request. Concurrent misses for one name
share one lookup (Kong's default; ``dns_no_sync = on`` gives each its own).

Only the record TTL differs from Kong: the system resolver (``getaddrinfo``) does not expose it,
so ``dns_valid_ttl`` (Kong's override of the TTL) always applies, 30 seconds when not set.

A "no such name" answer while refreshing a stale one ends the stale answer: the name is gone,
and the addresses it had may now be someone else's. Any other refresh error keeps it, and the
next refresh is tried ``dns_error_ttl`` seconds later.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastkong.upstreams.balancers import is_ip

log = logging.getLogger("fastkong.upstreams")

_NO_SUCH_NAME = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})


@dataclass(frozen=True)
class DnsSettings:
    """Kong's ``dns_*`` settings (kong.conf), with Kong's defaults."""

    #: How long an answer is used before it is looked up again (Kong: the record's TTL, or
    #: ``dns_valid_ttl``; the system resolver gives no TTL, see the module docstring).
    valid_ttl: float = 30.0
    stale_ttl: float = 3600.0
    not_found_ttl: float = 30.0
    error_ttl: float = 1.0
    no_sync: bool = False
    cache_size: int = 10000


#: Kong's names (after ``KONG_``) of the settings read, and their types.
_SETTINGS = {
    "DNS_VALID_TTL": "valid_ttl",
    "DNS_STALE_TTL": "stale_ttl",
    "DNS_NOT_FOUND_TTL": "not_found_ttl",
    "DNS_ERROR_TTL": "error_ttl",
    "DNS_NO_SYNC": "no_sync",
    "DNS_CACHE_SIZE": "cache_size",
}
DNS_SETTING_NAMES = frozenset(_SETTINGS)


def dns_settings(environ: Mapping[str, str]) -> DnsSettings:
    """Kong's ``dns_*`` settings from ``KONG_*`` environment names; ValueError naming a bad one."""
    values: dict[str, Any] = {}
    for env_name, field in _SETTINGS.items():
        raw = (environ.get(f"KONG_{env_name}") or "").strip()
        if not raw:
            continue
        name = env_name.lower()
        if field == "no_sync":
            if raw not in ("on", "off"):
                raise ValueError(f"{name}: expected 'on' or 'off', got {raw!r}")
            values[field] = raw == "on"
        elif field == "cache_size":
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"{name}: expected a whole number >= 1, got {raw!r}")
            values[field] = int(raw)
        else:
            try:
                seconds = float(raw)
            except ValueError:
                seconds = -1.0
            if not seconds >= 0:  # also refuses nan
                raise ValueError(f"{name}: expected a number of seconds >= 0, got {raw!r}")
            values[field] = seconds
    return DnsSettings(**values)


def kong_addresses(infos: list[tuple[Any, ...]]) -> list[str]:
    """The addresses Kong's DNS client would use from a ``getaddrinfo`` answer.

    Kong's default ``dns_order`` (``LAST,SRV,A,CNAME``) never asks for AAAA records, so a
    name with both families gives its IPv4 addresses only (a dual-stack name must not weigh
    twice). An IPv6-only name, which Kong cannot resolve, keeps its IPv6 addresses here.
    """
    v4 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET]
    found = v4 or [str(i[4][0]) for i in infos]
    return list(dict.fromkeys(found))


def no_such_name(exc: OSError) -> bool:
    """Whether a lookup failure says the name does not exist (or has no address), as opposed
    to a resolver that could not answer."""
    if isinstance(exc, socket.gaierror):
        return exc.errno in _NO_SUCH_NAME
    return not isinstance(exc, ConnectionError | TimeoutError)  # an empty answer


class _Entry:
    """One name's cached answer: addresses (fresh until ``fresh_until``, usable until
    ``usable_until``), or the failure a lookup ended with (until ``fresh_until``)."""

    __slots__ = ("addresses", "error", "fresh_until", "usable_until")

    def __init__(
        self,
        addresses: list[str] | None,
        error: OSError | None,
        fresh_until: float,
        usable_until: float,
    ) -> None:
        self.addresses = addresses
        self.error = error
        self.fresh_until = fresh_until
        self.usable_until = usable_until

    def __repr__(self) -> str:
        what = self.addresses if self.addresses is not None else repr(self.error)
        return f"<_Entry {what} fresh_until={self.fresh_until:.1f}>"


class Resolver:
    """The worker's name cache (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        settings: DnsSettings = DnsSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.loop = loop
        self.settings = settings
        self.clock = clock
        self.cache: dict[str, _Entry] = {}
        #: The lookup under way per name, shared by every request that needs it.
        self.inflight: dict[str, asyncio.Task[list[str]]] = {}
        self.lookups = 0

    def __repr__(self) -> str:
        return (
            f"<Resolver names={len(self.cache)} inflight={len(self.inflight)} "
            f"valid_ttl={self.settings.valid_ttl} stale_ttl={self.settings.stale_ttl}>"
        )

    def cached(self, host: str) -> list[str] | None:
        """The fresh answer for ``host``, or None when it must be looked up again."""
        entry = self.cache.get(host)
        if entry is not None and entry.addresses is not None and entry.fresh_until > self.clock():
            return entry.addresses
        return None

    def usable(self, host: str) -> list[str] | None:
        """The answer for ``host`` if there is one to use, fresh or stale."""
        entry = self.cache.get(host)
        if entry is not None and entry.addresses is not None and entry.usable_until > self.clock():
            return entry.addresses
        return None

    async def resolve(self, host: str, *, stale_ok: bool = True) -> list[str]:
        """The addresses of ``host``; OSError when it has none.

        With ``stale_ok`` (the request path), a stale answer is returned at once and refreshed
        in the background. Without it (the targets' refresh), an answer that is not fresh is
        looked up, and a failure is raised even when a stale answer exists.
        """
        if is_ip(host):
            return [host]
        entry = self.cache.get(host)
        if entry is not None:
            now = self.clock()
            if entry.fresh_until > now:
                if entry.addresses is not None:
                    return entry.addresses
                assert entry.error is not None
                raise _copy(entry.error)  # a failure, cached for its TTL
            if stale_ok and entry.addresses is not None and entry.usable_until > now:
                if host not in self.inflight:
                    self._start(host).add_done_callback(_consume)
                return entry.addresses
        if self.settings.no_sync:
            return await self._lookup(host)
        task = self.inflight.get(host) or self._start(host)
        # One caller giving up (its client went away) must not cancel the others' lookup.
        return await asyncio.shield(task)

    def _start(self, host: str) -> asyncio.Task[list[str]]:
        task = asyncio.get_running_loop().create_task(self._lookup(host))
        self.inflight[host] = task
        task.add_done_callback(lambda _: self.inflight.pop(host, None))
        return task

    async def _lookup(self, host: str) -> list[str]:
        loop = self.loop or asyncio.get_running_loop()
        self.lookups += 1
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            addresses = kong_addresses(infos)
            if not addresses:
                raise OSError(f"{host}: no address")
        except OSError as exc:
            self._failed(host, exc)
            raise
        now = self.clock()
        s = self.settings
        fresh_until = now + s.valid_ttl
        self._store(host, _Entry(addresses, None, fresh_until, fresh_until + s.stale_ttl))
        return addresses

    def _failed(self, host: str, exc: OSError) -> None:
        now = self.clock()
        s = self.settings
        old = self.cache.get(host)
        if no_such_name(exc):
            self._store(host, _Entry(None, exc, now + s.not_found_ttl, now + s.not_found_ttl))
        elif old is not None and old.addresses is not None and old.usable_until > now:
            # The resolver could not answer: the stale answer stays, tried again after the
            # error TTL (not on every request).
            log.warning("DNS lookup of %s failed (%s); its last answer stays in use", host, exc)
            old.error = exc
            old.fresh_until = min(now + s.error_ttl, old.usable_until)
        else:
            self._store(host, _Entry(None, exc, now + s.error_ttl, now + s.error_ttl))

    def _store(self, host: str, entry: _Entry) -> None:
        cache = self.cache
        cache.pop(host, None)
        if len(cache) >= self.settings.cache_size:
            del cache[next(iter(cache))]  # the least recently stored
        cache[host] = entry


def _copy(exc: OSError) -> OSError:
    """A new exception like ``exc`` (a cached failure is raised to many callers)."""
    try:
        return type(exc)(*exc.args)
    except TypeError:
        return OSError(*exc.args)


def _consume(task: asyncio.Task[list[str]]) -> None:
    """A background refresh's outcome is in the cache; its exception needs no other reader."""
    if not task.cancelled():
        task.exception()


__all__ = [
    "DNS_SETTING_NAMES",
    "DnsSettings",
    "Resolver",
    "dns_settings",
    "kong_addresses",
    "no_such_name",
]
