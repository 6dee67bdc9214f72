"""KongIngress (``configuration.konghq.com/v1``): the ``upstream`` section of the one a Service
names in ``konghq.com/override``.

KIC 3.x still reads it, deprecated in favour of KongUpstreamPolicy
(``kic:internal/dataplane/kongstate/upstream.go``, ``overrideByKongIngress``): the section's
fields, in Kong's own snake_case, are copied onto the upstream made for the Service, before
the Service's annotations and its KongUpstreamPolicy, which win where they set the same field.
Its ``proxy`` and ``route`` sections have had no effect since KIC 3.0, and a KongIngress is
not applied to the upstreams of Gateway API routes. Manifests written for KIC 2 keep their
load balancing and health checks instead of losing them silently; each use is reported as
deprecated, with the migration KIC names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastkong.k8s import objects as o
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem

ANNOTATION: Final = "konghq.com/override"

#: The ``upstream`` fields KIC copies, and nothing else.
UPSTREAM_FIELDS: Final = (
    "host_header",
    "algorithm",
    "slots",
    "healthchecks",
    "hash_on",
    "hash_fallback",
    "hash_on_header",
    "hash_fallback_header",
    "hash_on_cookie",
    "hash_on_cookie_path",
    "hash_on_query_arg",
    "hash_fallback_query_arg",
    "hash_on_uri_capture",
    "hash_fallback_uri_capture",
)
DEPRECATED: Final = (
    "KongIngress is deprecated: move its upstream section to a KongUpstreamPolicy named in "
    "konghq.com/upstream-policy"
)


def upstream_fields(kong_ingress: Obj) -> dict[str, Any]:
    """The Kong upstream fields a KongIngress sets."""
    section = kong_ingress.get("upstream")
    if not isinstance(section, Mapping):
        return {}
    return {k: section[k] for k in UPSTREAM_FIELDS if section.get(k) is not None}


def apply(
    upstream: dict[str, Any],
    service: Obj,
    index: Index,
    problems: list[Problem],
    *,
    gateway_api: bool = False,
) -> None:
    """Copy the ``upstream`` section of the KongIngress ``service`` names onto ``upstream``."""
    name = o.anns(service).get(ANNOTATION)
    if name is None:
        return
    ref = ObjectRef.of(service)
    where = f"annotation {ANNOTATION}={name!r}"
    if gateway_api:
        problems.append(
            Problem(
                ref,
                f"{where} ignored: a KongIngress does not apply to Gateway API routes",
                "warning",
            )
        )
        return
    ns = o.namespace(service)
    found = index.get("KongIngress", ns, name)
    if found is None:
        problems.append(
            Problem(ref, f"{where}: KongIngress {ns}/{name} not found; not applied", "warning")
        )
        return
    upstream.update(upstream_fields(found))
    problems.append(Problem(ref, f"{where}: {DEPRECATED}", "warning"))
    dropped = [s for s in ("proxy", "route") if found.get(s)]
    if dropped:
        problems.append(
            Problem(
                ObjectRef.of(found),
                f"section{'s' if len(dropped) > 1 else ''} {' and '.join(dropped)} ignored: "
                "removed in KIC 3.0 (use the Service's and the Ingress's annotations)",
                "warning",
            )
        )
