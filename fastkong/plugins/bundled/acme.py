"""acme: certificates from an ACME CA, Let's Encrypt by default (``kong:kong/plugins/acme``).

Priority 1705 (before the auth plugins, so that a challenge is never asked for credentials); a
global plugin only. Kong's fields, defaults and entity checks. Three parts, in three places:

- **Serving a handshake** (the edge, :mod:`fastkong.acme.certs`): a client that names an
  allowed domain (``domains``, ``*.`` entries matching by suffix; or any, with
  ``allow_any_domain``) and for which the config has no certificate of its own gets the one in
  the plugin's storage. Without one yet, it gets the default certificate while the certificate
  is ordered in the background (once per node or cluster: a lock in the storage, a backoff of
  ``fail_backoff_minutes`` after a failure).
- **The HTTP-01 challenge** (this module's access hook, on ``http`` requests only, as Kong):
  ``GET /.well-known/acme-challenge/<token>`` on a route, for an allowed host, is answered with
  the key authorization from the storage (``x`` is the sanity check's token: ``404 Not found``).
  Unlike Kong, a challenge request no route matches is answered too (Kong's docs have users
  add a route for the path; here that route is not needed, and one that exists still works).
- **Renewal and the Admin API** (the supervisor, :mod:`fastkong.acme.admin`): every day, the
  certificates due within ``renew_threshold_days`` are ordered again; ``POST /acme``, ``PATCH
  /acme``, ``GET /acme/certificates[/<host>]`` as Kong's.

Storage (:mod:`fastkong.acme.storage`): ``shm`` (a directory of the node's prefix, which, unlike
Kong's shared memory, survives a restart) and ``redis`` (lua-resty-acme's layout, shared with
Kong nodes). ``kong`` is refused as in Kong's DB-less mode; ``consul`` and ``vault`` are not
implemented (a config error). ``account_key`` names a ``keys`` entity of the config (``key_id``
its ``kid``, ``key_set`` its set's name) whose private key the account takes when it is first
made; without it an RSA 4096 key is made, as in Kong.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from fastkong.acme.storage import (
    CHALLENGE_SUFFIX,
    RESERVED_WORDS,
    AcmeStorage,
    FileStorage,
    RedisStorage,
    node_directory,
)
from fastkong.config import checks as C
from fastkong.config import errors as E
from fastkong.config.schema import REFERENCEABLE, Host, Port, Url
from fastkong.plugins.base import REQUIRED, Exit, Plugin, kong_error
from fastkong.plugins.bundled._redis_schema import RedisConfig, redis_options
from fastkong.plugins.registry import register_plugin

if TYPE_CHECKING:
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import Runtime

LETS_ENCRYPT: Final = "https://acme-v02.api.letsencrypt.org/directory"
#: Kong's tos check fires for these two values exactly (its ``one_of``; not the default URI).
_TOS_URIS: Final = (
    "https://acme-v02.api.letsencrypt.org",
    "https://acme-staging-v02.api.letsencrypt.org",
)
TOS_MESSAGE: Final = "terms of service must be accepted, see https://letsencrypt.org/repository/"
CHALLENGE_PATH: Final = re.compile(r"^/\.well-known/acme-challenge/(.+)")
_EMAIL: Final = re.compile(r"@")
_IPV4: Final = re.compile(r"^\d+\.\d+\.\d+\.\d+$")

Number = Annotated[float, Meta()]
#: Kong's ``typedefs.hosts`` element, as a route's ``hosts`` (one wildcard, leftmost or rightmost).
RouteHost = Annotated[str, Meta(extra={"kong_check": C.check_route_host})]


class ShmStorage(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    shm_name: str = "kong"


class KongStorage(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    pass


class RedisExtraOptions(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    namespace: Annotated[str, Meta(min_length=0)] = ""
    scan_count: Number = 10


class AcmeRedisConfig(RedisConfig, kw_only=True, frozen=True, forbid_unknown_fields=True):
    extra_options: RedisExtraOptions = msgspec.field(default_factory=RedisExtraOptions)
    # Kong's deprecated shorthands (removal in Kong 4.0), folded in by ``effective_redis``
    auth: Annotated[str, Meta(min_length=0)] | None = None
    ssl_server_name: str | None = None
    namespace: Annotated[str, Meta(min_length=0)] | None = None
    scan_count: int | None = None


class ConsulStorage(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    https: bool = False
    host: Host | None = None
    port: Port | None = None
    kv_path: str | None = None
    timeout: Number | None = None
    token: Annotated[str, REFERENCEABLE] | None = None


class VaultStorage(ConsulStorage, kw_only=True, frozen=True, forbid_unknown_fields=True):
    tls_verify: bool = True
    tls_server_name: str | None = None
    auth_method: Literal["token", "kubernetes"] = "token"
    auth_path: str | None = None
    auth_role: str | None = None
    jwt_path: str | None = None


class StorageConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    shm: ShmStorage = msgspec.field(default_factory=ShmStorage)
    kong: KongStorage = msgspec.field(default_factory=KongStorage)
    redis: AcmeRedisConfig = msgspec.field(default_factory=AcmeRedisConfig)
    consul: ConsulStorage = msgspec.field(default_factory=ConsulStorage)
    vault: VaultStorage = msgspec.field(default_factory=VaultStorage)


class AccountKey(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    key_id: str
    key_set: str | None = None


class AcmeConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    account_email: Annotated[str, REFERENCEABLE]
    account_key: AccountKey | None = None
    api_uri: Url = LETS_ENCRYPT
    tos_accepted: bool = False
    eab_kid: Annotated[str, REFERENCEABLE] | None = None
    eab_hmac_key: Annotated[str, REFERENCEABLE] | None = None
    cert_type: Literal["rsa", "ecc"] = "rsa"
    rsa_key_size: Literal[2048, 3072, 4096] = 4096
    renew_threshold_days: Number = 14
    domains: list[RouteHost] | None = None
    allow_any_domain: bool = False
    fail_backoff_minutes: Number = 5
    storage: Annotated[Literal["kong", "shm", "redis", "consul", "vault"], REQUIRED] = "shm"
    storage_config: StorageConfig = msgspec.field(default_factory=StorageConfig)
    preferred_chain: str | None = None
    enable_ipv4_common_name: bool = True


def effective_redis(redis: AcmeRedisConfig) -> tuple[AcmeRedisConfig, str, float]:
    """The record with Kong's shorthands folded in, its namespace and its scan count."""
    changes: dict[str, Any] = {}
    if redis.auth is not None and redis.password is None:
        changes["password"] = redis.auth
    if redis.ssl_server_name is not None and redis.server_name is None:
        changes["server_name"] = redis.ssl_server_name
    namespace = redis.extra_options.namespace
    if redis.namespace is not None:
        namespace = redis.namespace
    scan_count = redis.extra_options.scan_count
    if redis.scan_count is not None:
        scan_count = redis.scan_count
    folded = msgspec.structs.replace(redis, **changes) if changes else redis
    return folded, namespace, scan_count


def _namespace_problem(namespace: str) -> str | None:
    for word in RESERVED_WORDS:
        if namespace and namespace.startswith(word):
            return f"namespace can't be prefixed with reserved word: {word}"
    return None


class DomainMatcher:
    """Kong's ``build_domain_matcher`` and ``check_domains``: exact names, and ``*.``-prefixed
    entries as suffixes (``*.example.com`` takes ``a.example.com`` and ``a.b.example.com``)."""

    __slots__ = ("plain", "suffixes", "any", "ipv4")

    def __init__(self, config: AcmeConfig) -> None:
        names = config.domains or []
        self.plain = frozenset(d for d in names if not d.startswith("*"))
        self.suffixes = tuple(d[1:] for d in names if d.startswith("*"))
        self.any = config.allow_any_domain
        self.ipv4 = config.enable_ipv4_common_name

    def __repr__(self) -> str:
        return f"<DomainMatcher plain={len(self.plain)} suffixes={self.suffixes} any={self.any}>"

    def listed(self, host: str) -> bool:
        """In ``domains`` (what the Admin API's sanity check asks)."""
        return host in self.plain or (bool(self.suffixes) and host.endswith(self.suffixes))

    def __call__(self, host: str) -> bool:
        if not self.ipv4 and _IPV4.match(host):
            return False
        return self.any or self.listed(host)


def storage_for(config: AcmeConfig, state_dir: Any = None) -> AcmeStorage:
    """The store ``config`` names (``shm`` or ``redis``; the others do not load)."""
    if config.storage == "redis":
        redis, namespace, scan_count = effective_redis(config.storage_config.redis)
        return RedisStorage(redis_options(redis), namespace, int(scan_count))
    return FileStorage(node_directory(config.storage_config.shm.shm_name, state_dir))


@register_plugin
class Acme(Plugin):
    name = "acme"
    priority = 1705
    Config = AcmeConfig
    no_consumer = True
    no_service = True
    no_route = True

    def __init__(self, config: AcmeConfig, runtime: Runtime, entity: Any) -> None:
        super().__init__(config, runtime, entity)
        self.allowed = DomainMatcher(config)
        self.storage = storage_for(config)

    def __repr__(self) -> str:
        return f"<Acme {self.config.api_uri} storage={self.storage!r}>"

    @classmethod
    def check(cls, config: Any) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not _EMAIL.search(config.account_email):
            out.append(("account_email", E.MATCH.format(config.account_email)))
        if config.api_uri in _TOS_URIS and not config.tos_accepted:
            # Kong's conditional: the field's `eq` message, then_err on the plugin entity
            out.append(("tos_accepted", "value must be true"))
            out.append(("", TOS_MESSAGE))
        if config.storage == "kong":
            out.append(("", '"kong" storage can\'t be used with dbless mode'))
        elif config.storage in ("consul", "vault"):
            out.append(
                (
                    "storage",
                    f"'{config.storage}' storage is not implemented by fastkong "
                    "(use 'shm' or 'redis')",
                )
            )
        redis = config.storage_config.redis
        _, namespace, _ = effective_redis(redis)
        problem = _namespace_problem(namespace)
        if problem is not None:
            field = "namespace" if redis.namespace is not None else "extra_options.namespace"
            out.append((f"storage_config.redis.{field}", problem))
        if config.storage == "redis" and redis.host is None:
            out.append(("storage_config.redis.host", E.REQUIRED))
            out.append(("", E.CONDITIONAL.format("config.storage")))
        return out

    async def access(self, ctx: RequestContext) -> Exit | None:
        return await self.answer(ctx.host, ctx.path, ctx.scheme)

    async def answer(self, host: str, path: str, scheme: str) -> Exit | None:
        """The answer to an http-01 challenge request, or None when it is not one for us (the
        access hook, and the proxy for a challenge request no route matched)."""
        # http-01 challenges come over plain HTTP only (Kong checks the client's protocol).
        if scheme != "http" or not self.allowed(host):
            return None
        found = CHALLENGE_PATH.match(path)
        if found is None:
            return None
        token = found.group(1)
        if token == "x":  # the Admin API's sanity check
            return Exit(404, b"Not found\n")
        try:
            value = await self.storage.get(token + CHALLENGE_SUFFIX)
        except Exception:  # noqa: BLE001 - a storage failure is a 500, as Kong's ngx.exit(500)
            return kong_error(500, "An unexpected error occurred")
        if value is None:
            return kong_error(404, "Not found")
        return Exit(200, value.encode() + b"\n", content_type="text/plain")
