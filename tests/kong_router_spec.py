"""A harness for porting Kong's router spec (``spec/01-unit/08-router_spec.lua``) case by case.

Kong's spec builds a router straight from ``use_case`` tables (``{service=..., route=...}``) and
asks it ``select(method, uri, host, scheme, src_ip, src_port, dst_ip, dst_port, sni, headers)``
or ``exec()`` under a mocked nginx. Here the same tables become a declarative config that goes
through everything a request meets in fastkong: the config loader (defaults, validation), the
runtime's compiled router, and :func:`fastkong.proxy.routing.decide` (path normalization, the
Host header's port, SNI, the upstream path). What the spec compares comes back the same way:
the winning route's id, ``uri_captures``, ``upstream_uri``, ``prefix`` (what strip_path strips),
``upstream_host`` (``preserve_host``) and the service's host and port.

Kong's spec tables are raw router input, not schema-validated entities, so an absent
``strip_path`` or ``preserve_host`` means false there (the schema's defaults are true and false);
the harness writes ``strip_path: false`` unless the case gives it. A case's ``service`` dict is
one service however many routes share it (by identity); services get generated names and, when
the case gives none, the host ``example.invalid`` (Kong's router never looks at it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastkong.config import load_config
from fastkong.config.flavor import using_router_flavor
from fastkong.proxy.routing import Decision, decide
from fastkong.runtime import Runtime, compile_runtime

SERVICE_DEFAULT_HOST = "example.invalid"

UseCase = Sequence[Mapping[str, Any]]
Headers = Mapping[str, str | Sequence[str]]


def config_of(use_case: UseCase) -> dict[str, Any]:
    """The declarative config (``_format_version`` 3.0) holding ``use_case``'s routes."""
    services: list[dict[str, Any]] = []
    ids: dict[int, str] = {}
    routes: list[dict[str, Any]] = []
    for i, case in enumerate(use_case):
        route = dict(case["route"])
        route.setdefault("strip_path", False)
        route.setdefault("preserve_host", False)
        route.setdefault("name", f"r{i}")
        service = case.get("service")
        if service is not None:
            if id(service) not in ids:
                entity = {k: v for k, v in service.items() if k != "name"}
                entity["name"] = f"s{len(services)}"
                entity.setdefault("host", SERVICE_DEFAULT_HOST)
                services.append(entity)
                ids[id(service)] = entity["name"]
            route["service"] = ids[id(service)]
        routes.append(route)
    return {"_format_version": "3.0", "services": services, "routes": routes}


class Match:
    """What Kong's ``exec()`` returns that the spec compares (``match_t``)."""

    def __init__(self, decision: Decision, host_header: str) -> None:
        plan = decision.plan
        self.route_id: str = plan.id
        self.route_name: str | None = plan.name
        captures = decision.match.captures
        #: Kong's ``matches.uri_captures``: ``{0: whole, 1: ..., "name": ...}``, or None.
        self.uri_captures: dict[int | str, str] | None = (
            dict(captures) if captures is not None else None
        )
        #: the request path after normalization (Kong's ``matches.uri`` is the route's path).
        self.path: str = decision.path
        #: the configured path that matched (None for a route without paths).
        self.matched_path: str | None = decision.match.path
        #: what strip_path strips (Kong's ``match_t.prefix``), None when it strips nothing.
        self.prefix: str | None = (
            decision.path[: decision.match.matched_len] if plan.strip_path else None
        )
        self.upstream_uri: str | None = decision.upstream_path
        #: the Host header sent upstream when ``preserve_host`` is set, else None (as Kong).
        self.upstream_host: str | None = host_header if plan.preserve_host else None
        service = plan.service
        self.service_host: str | None = service.host if service is not None else None
        self.service_port: int | None = service.port if service is not None else None
        self.service_scheme: str | None = service.scheme if service is not None else None

    def __repr__(self) -> str:
        return (
            f"<Match route={self.route_id} upstream_uri={self.upstream_uri!r} "
            f"prefix={self.prefix!r} captures={self.uri_captures!r}>"
        )


class SpecRouter:
    """A router built from one of Kong's ``use_case`` tables."""

    def __init__(self, use_case: UseCase, flavor: str = "traditional_compatible") -> None:
        self.use_case = use_case
        self.config = config_of(use_case)
        with using_router_flavor(flavor):
            loaded = load_config(json.dumps(self.config))
        self.runtime: Runtime = compile_runtime(loaded.config, loaded.hash, router_flavor=flavor)

    def exec(
        self,
        method: str = "GET",
        uri: str = "/",
        host: str | None = None,
        *,
        scheme: str = "http",
        headers: Headers | None = None,
        sni: str | None = None,
        port: int | None = None,
    ) -> Match | None:
        """Route one request; ``uri`` is the request target as sent (a query is cut off, as
        Kong's exec does before matching). ``host`` is the Host header; ``port`` the
        listener's (default 80 or 443 by ``scheme``); ``sni`` the TLS server name (None:
        the client sent none)."""
        path = uri.partition("?")[0]
        wanted = self.runtime.router.header_names
        lowered: dict[str, list[str]] = {}
        for name, value in (headers or {}).items():
            if name.lower() == "host" and host is None:
                host = value if isinstance(value, str) else value[0]
            if name.lower() in wanted:
                values = [value] if isinstance(value, str) else list(value)
                lowered.setdefault(name.lower(), []).extend(v.lower() for v in values)
        host_header = host or ""
        decision = decide(
            self.runtime,
            method,
            host_header,
            port if port is not None else (443 if scheme == "https" else 80),
            path,
            scheme,
            lowered or None,
            sni,
        )
        if not isinstance(decision, Decision):
            return None
        return Match(decision, host_header)

    def select(self, *args: Any, **kwargs: Any) -> str | None:
        """The id of the route Kong's ``select()`` would return, or None (:meth:`exec`'s
        arguments)."""
        found = self.exec(*args, **kwargs)
        return found.route_id if found is not None else None
