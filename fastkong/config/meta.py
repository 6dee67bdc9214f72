"""Entity metadata: Kong's entity names, keys and parent/child relations.

This is data read from Kong's schemas (``kong/db/schema/entities/*.lua`` and the credential
``daos.lua``), shared by the loader (nesting, ids, references, uniqueness) and by the error
formatter (which part of an error path is an entity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class EntityMeta:
    """What the declarative loader needs to know about one entity type."""

    plural: str
    singular: str
    #: Kong's ``endpoint_key``: the field a top-level reference may use instead of the id.
    endpoint_key: str | None = None
    #: Whether ``endpoint_key`` is unique (only then does it work as a reference and an id seed).
    endpoint_unique: bool = False
    #: Kong's ``cache_key``: the fields the deterministic id is derived from, when set.
    cache_key: tuple[str, ...] = ()
    #: Fields Kong generates (``auto = true``); a cache key naming one yields no deterministic id.
    auto: frozenset[str] = frozenset()
    #: Required fields of the cache key (a missing one yields no deterministic id).
    required: frozenset[str] = frozenset()
    #: Foreign-key field -> referenced entity (plural).
    foreign: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Unique fields besides the id and the endpoint key.
    unique: tuple[str, ...] = ()


def _fk(**kw: str) -> MappingProxyType[str, str]:
    return MappingProxyType(dict(kw))


#: Kong's entities in dependency order (parents before children).
ENTITIES: Final[MappingProxyType[str, EntityMeta]] = MappingProxyType(
    {
        m.plural: m
        for m in (
            EntityMeta(
                "vaults",
                "vault",
                endpoint_key="prefix",
                endpoint_unique=True,
                cache_key=("prefix",),
                required=frozenset({"prefix"}),
            ),
            EntityMeta("certificates", "certificate"),
            EntityMeta("ca_certificates", "ca_certificate", unique=("cert_digest",)),
            EntityMeta("key_sets", "key_set", endpoint_key="name", endpoint_unique=True),
            EntityMeta(
                "keys",
                "key",
                endpoint_key="name",
                endpoint_unique=True,
                cache_key=("kid", "set"),
                required=frozenset({"kid"}),
                foreign=_fk(set="key_sets"),
            ),
            EntityMeta(
                "snis",
                "sni",
                endpoint_key="name",
                endpoint_unique=True,
                foreign=_fk(certificate="certificates"),
            ),
            EntityMeta(
                "services",
                "service",
                endpoint_key="name",
                endpoint_unique=True,
                foreign=_fk(client_certificate="certificates"),
            ),
            EntityMeta(
                "routes",
                "route",
                endpoint_key="name",
                endpoint_unique=True,
                foreign=_fk(service="services"),
            ),
            EntityMeta(
                "consumers",
                "consumer",
                endpoint_key="username",
                endpoint_unique=True,
                unique=("custom_id",),
            ),
            EntityMeta(
                "plugins",
                "plugin",
                endpoint_key="instance_name",
                endpoint_unique=True,
                cache_key=("name", "route", "service", "consumer"),
                required=frozenset({"name"}),
                foreign=_fk(route="routes", service="services", consumer="consumers"),
            ),
            EntityMeta(
                "upstreams",
                "upstream",
                endpoint_key="name",
                endpoint_unique=True,
                foreign=_fk(client_certificate="certificates"),
            ),
            EntityMeta(
                "targets",
                "target",
                endpoint_key="target",
                cache_key=("upstream", "target"),
                required=frozenset({"upstream", "target"}),
                foreign=_fk(upstream="upstreams"),
            ),
            EntityMeta(
                "keyauth_credentials",
                "keyauth_credential",
                endpoint_key="key",
                endpoint_unique=True,
                cache_key=("key",),
                auto=frozenset({"key"}),
                foreign=_fk(consumer="consumers"),
            ),
            EntityMeta(
                "basicauth_credentials",
                "basicauth_credential",
                endpoint_key="username",
                endpoint_unique=True,
                cache_key=("username",),
                required=frozenset({"username"}),
                foreign=_fk(consumer="consumers"),
            ),
            EntityMeta(
                "hmacauth_credentials",
                "hmacauth_credential",
                endpoint_key="username",
                endpoint_unique=True,
                cache_key=("username",),
                required=frozenset({"username"}),
                auto=frozenset({"secret"}),
                foreign=_fk(consumer="consumers"),
            ),
            EntityMeta(
                "jwt_secrets",
                "jwt_secret",
                endpoint_key="key",
                endpoint_unique=True,
                cache_key=("key",),
                auto=frozenset({"key"}),
                foreign=_fk(consumer="consumers"),
            ),
            EntityMeta(
                "acls",
                "acl",
                cache_key=("consumer", "group"),
                required=frozenset({"consumer", "group"}),
                foreign=_fk(consumer="consumers"),
            ),
        )
    }
)

#: Parent entity -> the entity arrays it may nest, each with the child's foreign key to it.
CHILDREN: Final[MappingProxyType[str, tuple[tuple[str, str], ...]]] = MappingProxyType(
    {
        "certificates": (("snis", "certificate"),),
        "services": (("routes", "service"), ("plugins", "service")),
        "routes": (("plugins", "route"),),
        "consumers": (
            ("plugins", "consumer"),
            ("keyauth_credentials", "consumer"),
            ("basicauth_credentials", "consumer"),
            ("hmacauth_credentials", "consumer"),
            ("jwt_secrets", "consumer"),
            ("acls", "consumer"),
        ),
        "upstreams": (("targets", "upstream"),),
        "key_sets": (("keys", "set"),),
    }
)

#: Keys allowed at the top level besides the entity arrays.
META_KEYS: Final = ("_format_version", "_transform", "_comment", "_ignore")

#: Keys every entity record may carry besides its fields (``add_extra_attributes`` in Kong).
EXTRA_ENTITY_KEYS: Final = frozenset({"_comment", "_ignore"})

FORMAT_VERSIONS: Final = ("1.1", "2.1", "3.0")

Loc = tuple[str | int, ...]


def entity_prefixes(loc: Loc) -> list[tuple[int, str]]:
    """Where ``loc`` passes through entities: ``(end index of the entity loc, plural)`` pairs.

    ``("services", 0, "routes", 1, "paths", 0)`` -> ``[(2, "services"), (4, "routes")]``.
    """
    out: list[tuple[int, str]] = []
    if len(loc) < 2 or loc[0] not in ENTITIES or not isinstance(loc[1], int):
        return out
    plural = str(loc[0])
    out.append((2, plural))
    i = 2
    while i + 1 < len(loc):
        key, idx = loc[i], loc[i + 1]
        children = dict(CHILDREN.get(plural, ()))
        if not isinstance(key, str) or key not in children or not isinstance(idx, int):
            break
        plural = key
        i += 2
        out.append((i, plural))
    return out
