"""Ordering, storing and renewing certificates: Kong's ``kong/plugins/acme/client.lua``.

What lives in the storage, under Kong's keys and in Kong's JSON shapes (so a Kong node and a
fastkong node on one Redis share them):

- ``kong_acme:account:<api_uri>:<base64(email)>``: ``{"key": <account key PEM>}``, made on first
  use (RSA 4096, as Kong);
- ``kong_acme:cert_key:<host>``: ``{"cert": <PEM chain>, "key": <PEM key>}`` (DB-less storage);
- ``kong_acme:renew_config:<host>``: ``{"host", "expire_at"}``, what the daily renewal walks;
- ``kong_acme:update_lock:<host>`` (30 s) and ``kong_acme:fail_backoff:<host>``
  (``fail_backoff_minutes``): one order per host at a time, none soon after a failure;
- ``<token>#http-01``: a pending challenge's key authorization (one hour).

As Kong in DB-less mode, a successful order does not release its lock (it runs out in 30 s):
other nodes may still hold the default certificate in their negative cache for that long, and
the lock keeps them from ordering the same certificate again meanwhile.

Key generation (RSA 4096 takes a good fraction of a second) runs in a thread, so the event loop
of the process that orders (the edge, or the supervisor) keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import time
from typing import Any, Final

from cryptography import x509

from fastkong.acme.protocol import AcmeClient, AcmeError, new_private_key
from fastkong.acme.storage import (
    CERTKEY_KEY_PREFIX,
    CHALLENGE_SUFFIX,
    RENEW_KEY_PREFIX,
    RENEW_LAST_RUN_KEY,
    AcmeStorage,
)
from fastkong.config.keys import find_key, private_key_pem
from fastkong.proxy.upstream_tls import PLAIN_VERIFY, TlsProfile

log = logging.getLogger("fastkong.acme")

LOCK_TIMEOUT: Final = 30.0
CHALLENGE_TTL: Final = 3600.0
DAY: Final = 86400
#: Kong assumes a fresh certificate lives 90 days (Let's Encrypt's lifetime).
ASSUMED_LIFETIME_DAYS: Final = 90


def account_name(api_uri: str, email: str) -> str:
    return f"kong_acme:account:{api_uri}:{base64.b64encode(email.encode()).decode()}"


def directory_url(api_uri: str) -> str:
    """Kong's backward compatibility: a URI not ending in ``/directory`` gets it appended."""
    if api_uri.endswith("/directory"):
        return api_uri
    return api_uri + ("directory" if api_uri.endswith("/") else "/directory")


class StoredChallenges:
    """The challenge responder of an order: key authorizations in the storage, where every
    gateway process (and node, with Redis) serving the challenge path finds them."""

    __slots__ = ("storage",)

    def __init__(self, storage: AcmeStorage) -> None:
        self.storage = storage

    def __repr__(self) -> str:
        return f"<StoredChallenges {self.storage!r}>"

    async def publish(self, token: str, key_authorization: str) -> None:
        await self.storage.set(token + CHALLENGE_SUFFIX, key_authorization, CHALLENGE_TTL)

    async def withdraw(self, token: str) -> None:
        await self.storage.delete(token + CHALLENGE_SUFFIX)


class CertKey:
    """A stored certificate chain and key (PEM), with the leaf's expiry."""

    __slots__ = ("cert", "key", "not_after")

    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        leaf = x509.load_pem_x509_certificate(cert.encode())
        self.not_after = leaf.not_valid_after_utc.timestamp()

    def __repr__(self) -> str:
        expires = datetime.datetime.fromtimestamp(self.not_after, datetime.UTC)
        return f"<CertKey expires={expires:%Y-%m-%d %H:%M:%S}Z>"

    def same(self, other: CertKey | None) -> bool:
        return other is not None and (self.cert, self.key) == (other.cert, other.key)

    @classmethod
    def decode(cls, raw: str | None) -> CertKey | None:
        if raw is None:
            return None
        data = json.loads(raw)
        if not isinstance(data, dict) or not data.get("cert") or not data.get("key"):
            raise ValueError("key or cert missing in the stored record")
        return cls(data["cert"], data["key"])


class AcmeManager:
    """One acme plugin config's operations on its storage (see the module docstring).

    ``config`` is the plugin's :class:`~fastkong.plugins.bundled.acme.AcmeConfig`."""

    __slots__ = ("config", "storage", "entities", "tls", "timeout")

    def __init__(
        self,
        config: Any,
        storage: AcmeStorage,
        entities: Any = None,
        tls: TlsProfile = PLAIN_VERIFY,
        timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.storage = storage
        #: The declarative config the plugin is part of: its ``keys`` for ``account_key``.
        self.entities = entities
        self.tls = tls
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<AcmeManager {self.config.api_uri} {self.storage!r}>"

    async def account_key(self) -> str:
        """The account's key from the storage; on first use, the config's ``account_key``
        (a ``keys`` entity) or a new RSA 4096 key, stored."""
        name = account_name(self.config.api_uri, self.config.account_email)
        raw = await self.storage.get(name)
        if raw is not None:
            stored = json.loads(raw).get("key")
            if not stored:
                raise ValueError("key not found in account")
            return str(stored)
        chosen = self.config.account_key
        if chosen is not None:
            made = private_key_pem(find_key(self.entities, chosen.key_id, chosen.key_set))
        else:
            made = await asyncio.to_thread(new_private_key, "rsa", 4096)
        # Two processes may race here: the first stored key wins for both.
        if not await self.storage.add(name, json.dumps({"key": made})):
            return await self.account_key()
        return made

    async def client(self) -> AcmeClient:
        """A client of the CA's directory: ``api_uri`` as given, else with ``/directory``
        appended (Kong appends it always: a CA whose directory URL ends otherwise, ZeroSSL's
        or pebble's, could not be used with Kong)."""
        key = await self.account_key()
        failure: AcmeError | None = None
        for url in dict.fromkeys((self.config.api_uri, directory_url(self.config.api_uri))):
            client = AcmeClient(
                url,
                key,
                email=self.config.account_email,
                eab_kid=self.config.eab_kid,
                eab_hmac_key=self.config.eab_hmac_key,
                preferred_chain=self.config.preferred_chain,
                timeout=self.timeout,
                tls=self.tls,
            )
            try:
                await client.directory()
            except AcmeError as exc:
                failure = exc
                continue
            return client
        assert failure is not None
        raise failure

    async def update_certificate(
        self, host: str, key: str | None = None
    ) -> tuple[bool, str | None]:
        """Order a certificate for ``host`` (renewing with ``key`` when given) and store it.

        Kong's ``(ok, err)``: ``(False, None)`` when another process or node holds the lock,
        ``(False, reason)`` during a backoff, ``(True, None)`` on success and ``(True, error)``
        when the order failed (a backoff starts)."""
        st = self.storage
        backoff_key = f"kong_acme:fail_backoff:{host}"
        try:
            backoff_until = await st.get(backoff_key)
        except Exception as exc:  # noqa: BLE001 - Kong only warns
            log.warning("failed to read backoff status for %s: %s", host, exc)
            backoff_until = None
        if backoff_until is not None and backoff_until.isdigit():
            wait = int(backoff_until) - int(time.time())
            return False, (
                f"please try again in {wait} seconds for host {host} because of previous "
                "failure; this is configurable with config.fail_backoff_minutes"
            )
        if not await st.add(f"kong_acme:update_lock:{host}", "placeholder", LOCK_TIMEOUT):
            log.info("update_certificate for %s is already running", host)
            return False, None
        try:
            client = await self.client()
            if key is None:
                key = await asyncio.to_thread(
                    new_private_key, self.config.cert_type, self.config.rsa_key_size
                )
            chain = await client.order_certificate(host, key, StoredChallenges(st))
            await st.set(CERTKEY_KEY_PREFIX + host, json.dumps({"key": key, "cert": chain}))
            return True, None
        except Exception as exc:  # noqa: BLE001 - any failure starts the backoff, as in Kong
            error = f"could not create certificate for host: {host} err: {exc}"
        wait_seconds = self.config.fail_backoff_minutes * 60
        try:
            await st.set(backoff_key, str(int(time.time() + wait_seconds)), wait_seconds)
        except Exception as exc:  # noqa: BLE001
            log.warning("failed to set fallback key for %s: %s", host, exc)
        try:
            await st.delete(f"kong_acme:update_lock:{host}")
        except Exception as exc:  # noqa: BLE001
            log.warning("failed to delete update_certificate lock for %s: %s", host, exc)
        return True, error

    async def store_renew_config(self, host: str) -> None:
        record = {"host": host, "expire_at": int(time.time()) + DAY * ASSUMED_LIFETIME_DAYS}
        await self.storage.set(RENEW_KEY_PREFIX + host, json.dumps(record))

    async def order(self, host: str) -> str | None:
        """Order ``host``'s certificate and note it for renewal; the error, or None."""
        ok, err = await self.update_certificate(host)
        if err is None and ok:
            await self.store_renew_config(host)
        return err

    async def load_certkey(self, host: str) -> CertKey | None:
        return CertKey.decode(await self.storage.get(CERTKEY_KEY_PREFIX + host))

    async def renew_hosts(self) -> list[str]:
        keys = await self.storage.list(RENEW_KEY_PREFIX)
        return [k[len(RENEW_KEY_PREFIX) :] for k in keys]

    async def renew(self) -> list[str]:
        """Kong's daily ``renew_certificate``: order again every stored certificate that
        expires within ``renew_threshold_days``; returns the hosts renewed."""
        st = self.storage
        renewed: list[str] = []
        try:
            keys = await st.list(RENEW_KEY_PREFIX)
            await st.set(RENEW_LAST_RUN_KEY, time.strftime("%Y-%m-%d %H:%M:%S"))
        except Exception as exc:  # noqa: BLE001
            log.error("acme: can't list renew hosts: %s", exc)
            return renewed
        threshold = DAY * self.config.renew_threshold_days
        for renew_key in keys:
            try:
                raw = await st.get(renew_key)
                if raw is None:
                    continue
                host = json.loads(raw)["host"]
                if json.loads(raw)["expire_at"] - threshold > time.time():
                    continue
                certkey = await self.load_certkey(host)
                if certkey is None:
                    log.warning("acme: deleting renewal config for host: %s", host)
                    await st.delete(renew_key)
                    continue
                if certkey.not_after - threshold > time.time():
                    log.info("acme: certificate for %s is not due for renewal", host)
                    continue
                log.info("acme: renew certificate for host %s", host)
                ok, err = await self.update_certificate(host, certkey.key)
                if err is not None:
                    log.error("acme: failed to renew certificate: %s", err)
                elif ok:
                    await self.store_renew_config(host)
                    renewed.append(host)
            except Exception as exc:  # noqa: BLE001 - one bad record does not stop the rest
                log.error("acme: renewing %s failed: %s", renew_key, exc)
        return renewed


__all__ = ["AcmeManager", "CertKey", "StoredChallenges", "account_name", "directory_url"]
