"""KIC's entity names, so that configs, dashboards and ``flattened_errors`` read the same."""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

#: go-kong's UUIDv5 namespace for Kong entities; each entity type's namespace is derived from it
#: and the type's plural name (``services``, ``routes``, ``consumers``, ``plugins``).
_KONG_ENTITIES: Final = uuid.UUID("fd02801f-0957-4a15-a55a-c8d9606f30b5")


def service_name(namespace: str, service: str, port: str) -> str:
    """Kong service for a Kubernetes Service port: ``<ns>.<svc>.<port>``."""
    return f"{namespace}.{service}.{port}"


def upstream_name(namespace: str, service: str, port: str) -> str:
    """Kong service host and upstream name: ``<svc>.<ns>.<port>.svc``."""
    return f"{service}.{namespace}.{port}.svc"


def route_name(namespace: str, ingress: str, service: str, host: str, port: str) -> str:
    """Route for one (ingress, host, backend): ``<ns>.<ingress>.<svc>.<host>.<port>``, with the
    host's ``*`` written ``_`` (Kong forbids ``*`` in names)."""
    return f"{namespace}.{ingress}.{service}.{host.replace('*', '_')}.{port}"


def default_backend_route_name(namespace: str, ingress: str) -> str:
    return f"{namespace}.{ingress}"


def instance_name(base: str, scope: str, used: set[str]) -> str:
    """KIC's per-attachment ``instance_name``: ``<name>-<first 9 hex of sha256(scope)>``, the full
    hash on a collision. ``scope`` is what KIC hashes (``kic:internal/dataplane/kongstate/
    kongstate.go`` ``buildPlugins``): ``_service-<name>``, ``_route-<name>``, then
    ``_consumer-<username or custom_id>``, concatenated, e.g. ``_route-<r>_consumer-<c>``."""
    digest = hashlib.sha256(scope.encode()).hexdigest()
    out = f"{base}-{digest[:9]}"
    if out in used:
        out = f"{base}-{digest}"
    used.add(out)
    return out


def entity_id(plural: str, key: str) -> str:
    """KIC's deterministic entity ID (its FillIDs feature, on by default in KIC 3; go-kong's
    ``FillID``): UUIDv5 of ``key`` in the type's namespace. ``key`` is the service or route
    name, the consumer's username, or for a plugin ``<name>[:service/<s>][:route/<r>]
    [:consumer/<c>]``."""
    return str(uuid.uuid5(uuid.uuid5(_KONG_ENTITIES, plural), key))


def plugin_id(name: str, scope: dict[str, str]) -> str:
    """The ID of plugin ``name`` scoped to ``scope`` (``service``, ``route``, ``consumer``: the
    entity's name, the consumer's username or custom_id)."""
    key = name + "".join(
        f":{field}/{scope[field]}" for field in ("service", "route", "consumer") if field in scope
    )
    return entity_id("plugins", key)
