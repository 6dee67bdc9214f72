"""The edge's acme certificates: which one a handshake gets, and ordering the missing ones.

Kong's acme ``certificate`` handler, in the edge's SNI callback
(:class:`fastkong.stream.certs.CertificateSet`): when the client names an allowed domain and the
config would serve the node's default certificate, the certificate in the plugin's storage is
served instead. The callback cannot wait, so what it reads is a per-process cache:

- a hit is served (a stored certificate is kept an hour, as Kong's ``CACHE_TTL``; after that
  it is still served while a fresh read of the storage runs);
- a miss serves the default certificate and starts, in the background, a read of the storage,
  then, when nothing is stored, an order (:meth:`AcmeManager.update_certificate`: one per node
  or cluster at a time, through the storage's lock). A host found missing is asked again after
  5 s (Kong's negative TTL).

With the ``shm`` store (files of the node) a miss, or an expired entry, reads the file at once
instead (tens of microseconds), so a restarted gateway serves its stored certificates from the
first handshake, and a certificate another process ordered from the handshake after it is
stored; with ``redis`` the stored certificates are read into the cache when the config is
installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Any, Final

import msgspec

from fastkong.acme.manager import AcmeManager, CertKey
from fastkong.acme.storage import CERTKEY_KEY_PREFIX, FileStorage
from fastkong.plugins.bundled.acme import AcmeConfig, DomainMatcher, storage_for
from fastkong.proxy.upstream_tls import load_chain

log = logging.getLogger("fastkong.acme")

CACHE_TTL: Final = 3600.0
NEGATIVE_TTL: Final = 5.0


class AcmeCache:
    """One process's stored certificates by (config, host), and the reads and orders running."""

    __slots__ = ("entries", "running", "tasks")

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], tuple[float, CertKey | None]] = {}
        self.running: set[tuple[str, str]] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<AcmeCache entries={len(self.entries)} running={len(self.running)}>"

    def start(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class AcmeSource:
    """One snapshot's acme plugin as the edge uses it (see the module docstring)."""

    __slots__ = ("key", "allowed", "manager", "cache", "contexts")

    def __init__(self, config: Any, cache: AcmeCache, entities: Any = None) -> None:
        self.key = json.dumps(msgspec.to_builtins(config), sort_keys=True)
        self.allowed = DomainMatcher(config)
        self.manager = AcmeManager(config, storage_for(config), entities)
        self.cache = cache
        #: Server contexts made from stored certificates, by host and ALPN protocols.
        self.contexts: dict[tuple[str, Any], tuple[CertKey, ssl.SSLContext]] = {}

    def __repr__(self) -> str:
        return f"<AcmeSource {self.manager!r} {self.cache!r}>"

    def lookup(self, host: str) -> CertKey | None:
        """The stored certificate for ``host`` now (None: serve the default), starting a read
        or an order when the cache has nothing fresh. Runs on the event loop."""
        if not self.allowed(host):
            return None
        slot = (self.key, host)
        entry = self.cache.entries.get(slot)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        storage = self.manager.storage
        if isinstance(storage, FileStorage):
            # a local read costs less than a handshake: a certificate another process of the
            # node ordered (or renewed) is served from the next handshake on
            certkey = self._read_now(storage, host)
            if certkey is not None and entry is not None and certkey.same(entry[1]):
                certkey = entry[1]  # unchanged: its server context is kept
            if certkey is not None:
                self.cache.entries[slot] = (now + CACHE_TTL, certkey)
                return certkey
        if slot not in self.cache.running:
            self.cache.running.add(slot)
            self.cache.start(self._refresh(host))
        return entry[1] if entry is not None else None

    def _read_now(self, storage: FileStorage, host: str) -> CertKey | None:
        try:
            return CertKey.decode(storage.read(CERTKEY_KEY_PREFIX + host))
        except ValueError as exc:
            log.warning("acme: can't load cert and key from storage: %s", exc)
            return None

    async def _refresh(self, host: str) -> None:
        slot = (self.key, host)
        try:
            certkey = await self.manager.load_certkey(host)
            if certkey is not None:
                self.cache.entries[slot] = (time.monotonic() + CACHE_TTL, certkey)
                return
            self.cache.entries[slot] = (time.monotonic() + NEGATIVE_TTL, None)
            err = await self.manager.order(host)
            if err is not None:
                log.error("acme: failed to update certificate for host: %s err: %s", host, err)
                return
            certkey = await self.manager.load_certkey(host)
            if certkey is not None:
                self.cache.entries[slot] = (time.monotonic() + CACHE_TTL, certkey)
        except Exception as exc:  # noqa: BLE001 - the next handshake tries again
            log.warning("acme: certificate for %s: %s", host, exc)
        finally:
            self.cache.running.discard(slot)

    async def warm(self) -> None:
        """Read every stored certificate into the cache (after a config is installed)."""
        for host in await self.manager.renew_hosts():
            certkey = await self.manager.load_certkey(host)
            if certkey is not None:
                self.cache.entries[(self.key, host)] = (time.monotonic() + CACHE_TTL, certkey)

    def context(
        self, host: str, certkey: CertKey, template: ssl.SSLContext, alpn: Any
    ) -> ssl.SSLContext:
        """A server context serving ``host``'s ``certkey``, shaped as ``template`` (minimum
        version) with ``alpn``; made once per certificate (a renewal makes a new one)."""
        made = self.contexts.get((host, alpn))
        if made is not None and made[0] is certkey:
            return made[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = template.minimum_version
        load_chain(ctx, certkey.cert, certkey.key)
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        self.contexts[(host, alpn)] = (certkey, ctx)
        return ctx


def acme_source(config: Any, cache: AcmeCache) -> AcmeSource | None:
    """The enabled global acme plugin of a declarative config, if any."""
    for plugin in config.plugins:
        if plugin.name == "acme" and plugin.enabled:
            return AcmeSource(msgspec.convert(plugin.config, AcmeConfig), cache, config)
    return None


__all__ = ["AcmeCache", "AcmeSource", "acme_source"]
