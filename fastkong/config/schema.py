"""The normalized config: one flat, typed list per Kong entity, every reference an id.

Field names, defaults and bounds are Kong's (``kong:kong/db/schema/entities/*.lua``, the
credential ``daos.lua``). Checks that msgspec cannot express ride along in
``Meta(extra=...)`` and are applied by :mod:`fastkong.config.validate`:

- ``kong_check``: a function from :mod:`fastkong.config.checks` (value -> message or None);
- ``kong_set``: a Kong ``set`` (duplicates dropped, "expected a set");
- ``kong_required``: Kong's ``required = true`` on a field with a default: the default fills a
  missing value, but an explicit ``null`` is "required field missing" (Kong validates the
  document before it fills defaults, and only a missing value is filled).

These Structs describe the *output* of the loader. The loader validates the user's document
against them field by field (collecting every error), fills ids and foreign keys, and only then
builds them with ``msgspec.convert``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType, field

from fastkong.config import checks as C


def _check(fn: C.Check, **kw: Any) -> Meta:
    return Meta(extra={"kong_check": fn}, **kw)


_SET: Final = Meta(extra={"kong_set": True})
_REQUIRED: Final = Meta(extra={"kong_required": True})
#: Kong's ``referenceable = true``: the field may hold a ``{vault://...}`` reference instead of
#: its value (see :mod:`fastkong.config.vault`).
REFERENCEABLE: Final = Meta(extra={"kong_referenceable": True})

UUID = Annotated[str, _check(C.check_uuid)]
Name = Annotated[str, _check(C.check_utf8_name)]
Tag = Annotated[str, _check(C.check_tag)]
Tags = Annotated[list[Tag], _SET]
Protocol = Literal["grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"]
Port = Annotated[int, Meta(ge=0, le=65535)]
Timeout = Annotated[int, Meta(ge=1, le=2**31 - 2)]
Host = Annotated[str, _check(C.check_host)]
#: Kong's ``typedefs.url``: a URL with a scheme and a host.
Url = Annotated[str, _check(C.check_url)]
Path = Annotated[str, _check(C.check_path)]
HeaderName = Annotated[str, _check(C.check_header_name)]
WildcardHost = Annotated[str, _check(C.check_wildcard_host)]
Seconds = Annotated[float, Meta(ge=0, le=65535)]
OneByte = Annotated[int, Meta(ge=0, le=255)]
HttpStatuses = list[Annotated[int, Meta(ge=100, le=999)]]
HashOn = Literal["none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"]
SimpleParam = str  # Kong's `simple_param`: a non-empty string (the default for every string)


class Base(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):
    """Strict, immutable, acyclic (so ``gc=False`` is safe and keeps big configs cheap)."""


# Kong's auto timestamps (``typedefs.auto_timestamp_s``; targets' are ``_ms``, a number). A
# declarative config may carry them (``kong config db_export`` writes them); they are kept as
# given and never filled in, so a config stays a pure function of its text.
TimestampS = int
TimestampMs = float


# -- services and routes ---------------------------------------------------------------------
class Service(Base, kw_only=True, frozen=True):
    id: UUID
    name: Name | None = None
    retries: Annotated[int, Meta(ge=0, le=32767)] = 5
    protocol: Annotated[Protocol, _REQUIRED] = "http"
    host: Host
    port: Annotated[Port, _REQUIRED] = 80
    path: Path | None = None
    connect_timeout: Timeout = 60000
    write_timeout: Timeout = 60000
    read_timeout: Timeout = 60000
    tags: Tags | None = None
    client_certificate: str | None = None
    tls_verify: bool | None = None
    tls_verify_depth: Annotated[int, Meta(ge=0, le=64)] | None = None
    ca_certificates: list[UUID] | None = None
    enabled: Annotated[bool, _REQUIRED] = True
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class CIDRPort(Base, kw_only=True, frozen=True):
    """A route's ``sources``/``destinations`` entry."""

    ip: Annotated[str, _check(C.check_ip_or_cidr)] | None = None
    port: Port | None = None


class Route(Base, kw_only=True, frozen=True):
    id: UUID
    name: Name | None = None
    protocols: Annotated[
        list[Protocol],
        Meta(
            min_length=1,
            extra={
                "kong_set": True,
                "kong_check": C.check_protocol_subsets,
                "kong_required": True,
            },
        ),
    ] = field(default_factory=lambda: ["http", "https"])
    https_redirect_status_code: Annotated[Literal[426, 301, 302, 307, 308], _REQUIRED] = 426
    strip_path: Annotated[bool, _REQUIRED] = True
    preserve_host: Annotated[bool, _REQUIRED] = False
    request_buffering: Annotated[bool, _REQUIRED] = True
    response_buffering: Annotated[bool, _REQUIRED] = True
    tags: Tags | None = None
    service: str | None = None
    snis: Annotated[list[WildcardHost], _SET] | None = None
    sources: Annotated[list[CIDRPort], _SET] | None = None
    destinations: Annotated[list[CIDRPort], _SET] | None = None
    methods: Annotated[list[Annotated[str, _check(C.check_method)]], _SET] | None = None
    hosts: list[Annotated[str, _check(C.check_route_host)]] | None = None
    paths: list[Annotated[str, _check(C.check_router_path)]] | None = None
    headers: dict[Annotated[str, _check(C.check_route_header_name)], list[str]] | None = None
    regex_priority: int = 0
    path_handling: Literal["v0", "v1"] = "v0"
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None
    # Only under router_flavor = expressions (fastkong.config.flavor): elsewhere the route
    # check reports them as unknown fields and they stay UNSET, left out of every encoding,
    # as Kong's schema has no such fields then.
    expression: str | None | UnsetType = UNSET
    priority: Annotated[int, Meta(ge=0, le=2**46 - 1, extra={"kong_required": True})] | (
        UnsetType
    ) = UNSET


# -- upstreams and targets -------------------------------------------------------------------
class ActiveHealthy(Base, kw_only=True, frozen=True):
    interval: Seconds = 0.0
    http_statuses: HttpStatuses = field(default_factory=lambda: [200, 302])
    successes: OneByte = 0


class ActiveUnhealthy(Base, kw_only=True, frozen=True):
    interval: Seconds = 0.0
    http_statuses: HttpStatuses = field(
        default_factory=lambda: [429, 404, 500, 501, 502, 503, 504, 505]
    )
    tcp_failures: OneByte = 0
    timeouts: OneByte = 0
    http_failures: OneByte = 0


class ActiveHealthcheck(Base, kw_only=True, frozen=True):
    type: Literal["tcp", "http", "https", "grpc", "grpcs"] = "http"
    timeout: Seconds = 1.0
    concurrency: Annotated[int, Meta(ge=1, le=2**31)] = 10
    http_path: Path = "/"
    https_sni: Annotated[str, _check(C.check_sni)] | None = None
    https_verify_certificate: Annotated[bool, _REQUIRED] = True
    headers: dict[HeaderName, list[str]] | None = None
    healthy: ActiveHealthy = field(default_factory=ActiveHealthy)
    unhealthy: ActiveUnhealthy = field(default_factory=ActiveUnhealthy)


class PassiveHealthy(Base, kw_only=True, frozen=True):
    http_statuses: HttpStatuses = field(
        default_factory=lambda: (
            [200, 201, 202, 203, 204, 205, 206, 207, 208, 226]
            + [300, 301, 302, 303, 304, 305, 306, 307, 308]
        )
    )
    successes: OneByte = 0


class PassiveUnhealthy(Base, kw_only=True, frozen=True):
    http_statuses: HttpStatuses = field(default_factory=lambda: [429, 500, 503])
    tcp_failures: OneByte = 0
    timeouts: OneByte = 0
    http_failures: OneByte = 0


class PassiveHealthcheck(Base, kw_only=True, frozen=True):
    type: Literal["tcp", "http", "https", "grpc", "grpcs"] = "http"
    healthy: PassiveHealthy = field(default_factory=PassiveHealthy)
    unhealthy: PassiveUnhealthy = field(default_factory=PassiveUnhealthy)


class Healthchecks(Base, kw_only=True, frozen=True):
    active: ActiveHealthcheck = field(default_factory=ActiveHealthcheck)
    passive: PassiveHealthcheck = field(default_factory=PassiveHealthcheck)
    threshold: Annotated[float, Meta(ge=0, le=100)] = 0.0


class Upstream(Base, kw_only=True, frozen=True):
    id: UUID
    name: Annotated[str, _check(C.check_upstream_name)]
    algorithm: Literal["consistent-hashing", "least-connections", "round-robin", "latency"] = (
        "round-robin"
    )
    hash_on: HashOn = "none"
    hash_fallback: HashOn = "none"
    hash_on_header: HeaderName | None = None
    hash_fallback_header: HeaderName | None = None
    hash_on_cookie: Annotated[str, _check(C.check_cookie_name)] | None = None
    hash_on_cookie_path: Path = "/"
    hash_on_query_arg: SimpleParam | None = None
    hash_fallback_query_arg: SimpleParam | None = None
    hash_on_uri_capture: SimpleParam | None = None
    hash_fallback_uri_capture: SimpleParam | None = None
    slots: Annotated[int, Meta(ge=10, le=2**16)] = 10000
    healthchecks: Healthchecks = field(default_factory=Healthchecks)
    tags: Tags | None = None
    host_header: Annotated[str, _check(C.check_host_with_optional_port)] | None = None
    client_certificate: str | None = None
    use_srv_name: bool = False
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class Target(Base, kw_only=True, frozen=True):
    id: UUID
    upstream: str
    #: ``host:port`` (default port 8000; IPv6 expanded, in brackets).
    target: Annotated[str, _check(C.check_target)]
    weight: Annotated[int, Meta(ge=0, le=65535)] = 100
    tags: Tags | None = None
    created_at: TimestampMs | None = None
    updated_at: TimestampMs | None = None


# -- consumers, plugins, credentials ---------------------------------------------------------
class Consumer(Base, kw_only=True, frozen=True):
    id: UUID
    username: str | None = None
    custom_id: str | None = None
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class Plugin(Base, kw_only=True, frozen=True):
    id: UUID
    name: str
    instance_name: Name | None = None
    route: str | None = None
    service: str | None = None
    consumer: str | None = None
    #: The plugin's validated config with its defaults (``msgspec.to_builtins`` of its Struct).
    config: dict[str, Any] = {}
    protocols: Annotated[list[str], Meta(extra={"kong_set": True, "kong_required": True})] = field(
        default_factory=lambda: ["grpc", "grpcs", "http", "https"]
    )
    enabled: Annotated[bool, _REQUIRED] = True
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class KeyauthCredential(Base, kw_only=True, frozen=True):
    id: UUID
    consumer: str
    key: str
    #: The Unix time (s) the credential expires at, as Kong's DB-less reader takes it. Kong
    #: never validates it (``unvalidated_fields``): no bounds here either.
    ttl: int | None = None
    tags: Tags | None = None
    created_at: TimestampS | None = None


class BasicauthCredential(Base, kw_only=True, frozen=True):
    id: UUID
    consumer: str
    username: str
    #: As given in the config; the basic-auth plugin hashes it (Kong's ``_transform``).
    password: str
    tags: Tags | None = None
    created_at: TimestampS | None = None


class HmacauthCredential(Base, kw_only=True, frozen=True):
    id: UUID
    consumer: str
    username: str
    #: Kong generates one when the config gives none (``auto = true``).
    secret: str
    tags: Tags | None = None
    created_at: TimestampS | None = None


JwtAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
    "PS256", "PS384", "PS512", "EdDSA",
]  # fmt: skip


class JwtSecret(Base, kw_only=True, frozen=True):
    id: UUID
    consumer: str
    key: str
    secret: str
    rsa_public_key: str | None = None
    algorithm: JwtAlgorithm = "HS256"
    tags: Tags | None = None
    created_at: TimestampS | None = None


class Acl(Base, kw_only=True, frozen=True):
    id: UUID
    consumer: str
    group: str
    tags: Tags | None = None
    created_at: TimestampS | None = None


# -- TLS ----------------------------------------------------------------------------------------
class Certificate(Base, kw_only=True, frozen=True):
    id: UUID
    cert: Annotated[str, _check(C.check_certificate), REFERENCEABLE]
    key: Annotated[str, _check(C.check_key), REFERENCEABLE]
    cert_alt: Annotated[str, _check(C.check_certificate), REFERENCEABLE] | None = None
    key_alt: Annotated[str, _check(C.check_key), REFERENCEABLE] | None = None
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class Sni(Base, kw_only=True, frozen=True):
    id: UUID
    name: WildcardHost
    certificate: str
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class CACertificate(Base, kw_only=True, frozen=True):
    id: UUID
    cert: Annotated[str, _check(C.check_certificate)]
    #: SHA-256 of the certificate (DER), hex; computed when not given.
    cert_digest: str | None = None
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class KeySet(Base, kw_only=True, frozen=True):
    """A named group of keys (``kong/db/schema/entities/key_sets.lua``)."""

    id: UUID
    name: str | None = None
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class PemKeys(Base, kw_only=True, frozen=True):
    """Kong's ``typedefs.pem``: a PEM private and/or public key."""

    private_key: Annotated[str, REFERENCEABLE] | None = None
    public_key: Annotated[str, REFERENCEABLE] | None = None


class Key(Base, kw_only=True, frozen=True):
    """A key as a JWK (JSON text) or PEM (``kong/db/schema/entities/keys.lua``), for plugins
    that name one (acme's ``account_key``)."""

    id: UUID
    set: str | None = None
    name: str | None = None
    kid: str
    jwk: Annotated[str, REFERENCEABLE] | None = None
    pem: PemKeys | None = None
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


class EnvVaultConfig(Base, kw_only=True, frozen=True):
    """The ``env`` vault's config (``kong/vaults/env/schema.lua``)."""

    prefix: Annotated[str, _check(C.check_env_vault_prefix)] | None = None


class Vault(Base, kw_only=True, frozen=True):
    """A named vault (``kong/db/schema/entities/vaults.lua``): references may use its
    ``prefix`` as their host, ``{vault://<prefix>/<name>}``, with its ``config``."""

    id: UUID
    prefix: Annotated[str, _check(C.check_vault_prefix)]
    name: str
    description: str | None = None
    #: The vault's own config, checked against its schema (only ``env`` is installed).
    config: dict[str, Any] = {}
    tags: Tags | None = None
    created_at: TimestampS | None = None
    updated_at: TimestampS | None = None


# -- the whole config ------------------------------------------------------------------------
class Config(Base, kw_only=True, frozen=True):
    """A validated, normalized declarative config: flat entity lists, references as ids."""

    format_version: str
    #: Kong's ``_transform``: false means credential secrets are already hashed.
    transform: bool = True
    services: list[Service] = []
    routes: list[Route] = []
    upstreams: list[Upstream] = []
    targets: list[Target] = []
    consumers: list[Consumer] = []
    plugins: list[Plugin] = []
    keyauth_credentials: list[KeyauthCredential] = []
    basicauth_credentials: list[BasicauthCredential] = []
    hmacauth_credentials: list[HmacauthCredential] = []
    jwt_secrets: list[JwtSecret] = []
    acls: list[Acl] = []
    certificates: list[Certificate] = []
    snis: list[Sni] = []
    ca_certificates: list[CACertificate] = []
    vaults: list[Vault] = []
    key_sets: list[KeySet] = []
    keys: list[Key] = []

    def __repr__(self) -> str:
        parts = [f"<Config {self.format_version}"]
        parts += [f"{n}={len(getattr(self, n))}" for n in ENTITY_STRUCTS if getattr(self, n)]
        return " ".join(parts) + ">"

    def is_empty(self) -> bool:
        """No entities at all (Kong then reports the all-zero configuration hash)."""
        return not any(getattr(self, name) for name in ENTITY_STRUCTS)


#: Entity array name -> its Struct, in Kong's dependency order.
ENTITY_STRUCTS: Final[dict[str, type[Base]]] = {
    "vaults": Vault,
    "certificates": Certificate,
    "ca_certificates": CACertificate,
    "key_sets": KeySet,
    "keys": Key,
    "snis": Sni,
    "services": Service,
    "routes": Route,
    "consumers": Consumer,
    "plugins": Plugin,
    "upstreams": Upstream,
    "targets": Target,
    "keyauth_credentials": KeyauthCredential,
    "basicauth_credentials": BasicauthCredential,
    "hmacauth_credentials": HmacauthCredential,
    "jwt_secrets": JwtSecret,
    "acls": Acl,
}


class LoadedConfig(msgspec.Struct, frozen=True):
    """A loaded config and Kong's configuration hash (md5 of the raw input)."""

    config: Config
    hash: str

    def __repr__(self) -> str:
        return f"<LoadedConfig {self.hash} {self.config!r}>"
