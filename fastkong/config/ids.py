"""Deterministic entity ids: Kong's ``generate_ids`` (UUIDv5), so every node agrees.

Kong (``kong:kong/db/schema/others/declarative_config.lua``) gives an entity without an ``id``
the UUIDv5 of a key string, in a per-entity namespace::

    id = uuid5(uuid5(NAMESPACE, "<entity plural>"), key)

The key is, in this order of preference:

1. the entity's ``cache_key`` (targets, plugins, credentials, acls):
   ``"<plural>:*:<v1>:<v2>..."`` (``*`` is the workspace). A value is taken verbatim as written
   in the document (a top-level reference stays the name or id the user wrote); a missing
   foreign key to the parent a nested entity sits in is the parent's id; another missing
   optional value is ``""``. A cache key that names a generated field (``key`` of key-auth and
   jwt credentials) or misses a required value gives no key.
2. the unique ``endpoint_key`` value (a service, route or upstream name, a consumer username,
   an SNI name).

Where Kong has no key it draws a random id; fastkong instead derives one from the entity's
place in the document (``"fastkong:" + path``) so that the same document always yields the same
ids (documented deviation: only entities Kong would give a random id are affected).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Any, Final

from fastkong.config.errors import format_path
from fastkong.config.meta import EntityMeta, Loc

#: Kong's namespace for declarative entity ids.
NAMESPACE: Final = uuid.UUID("fd02801f-0957-4a15-a55a-c8d9606f30b5")

_ABSENT: Final = object()


@functools.cache
def _namespace(entity: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, entity)


def generate(entity: str, key: str) -> str:
    """The id Kong generates for an entity of type ``entity`` (plural) with key ``key``."""
    return str(uuid.uuid5(_namespace(entity), key))


def cache_key(
    meta: EntityMeta,
    item: Mapping[str, Any],
    parent_fk: str | None = None,
    parent_id: str | None = None,
) -> str | None:
    """Kong's ``build_cache_key``: the id seed from ``meta.cache_key``, or None.

    ``parent_fk`` names the foreign key filled from the parent a nested entity sits in, and
    ``parent_id`` is that parent's id.
    """
    parts = [meta.plural, "*"]
    for k in meta.cache_key:
        if k in meta.auto:
            return None
        value = item.get(k, _ABSENT)
        if isinstance(value, str):
            parts.append(value)
        elif value is _ABSENT:
            if k == parent_fk:
                if parent_id is None:
                    return None
                parts.append(parent_id)
            elif k in meta.required:
                return None
            else:
                parts.append("")
        # Kong skips any other value (an explicit null, a table) without a placeholder.
    return ":".join(parts)


def id_key(
    meta: EntityMeta,
    item: Mapping[str, Any],
    parent_fk: str | None = None,
    parent_id: str | None = None,
) -> str | None:
    """The key Kong derives the id of ``item`` from (see the module docstring), or None."""
    if meta.cache_key:
        return cache_key(meta, item, parent_fk, parent_id)
    if meta.endpoint_key and meta.endpoint_unique:
        value = item.get(meta.endpoint_key)
        if isinstance(value, str):
            return value
    return None


def entity_id(
    meta: EntityMeta,
    item: Mapping[str, Any],
    loc: Loc,
    parent_fk: str | None = None,
    parent_id: str | None = None,
) -> str:
    """The deterministic id of ``item`` (which has no ``id``), found at ``loc``."""
    key = id_key(meta, item, parent_fk, parent_id)
    return generate(meta.plural, key if key is not None else "fastkong:" + format_path(loc))
