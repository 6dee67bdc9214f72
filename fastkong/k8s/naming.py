"""KIC's entity names, so that configs, dashboards and ``flattened_errors`` read the same."""

from __future__ import annotations

import hashlib


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
