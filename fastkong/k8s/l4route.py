"""TCPRoute, TLSRoute and UDPRoute (``gateway.networking.k8s.io/v1alpha2``) -> Kong stream
services, routes and upstreams, as KIC 3 translates them (``kic:internal/dataplane/translator/
translate_tcproute.go``, ``translate_tlsroute.go``, ``translate_udproute.go``,
``translate_routes_helpers.go``). The data
plane serves them on its ``stream_listen`` ports (:mod:`fastkong.stream`).

**Services.** One per rule, ``tcproute.<ns>.<name>.<rule>`` (``tlsroute.`` for a TLSRoute,
``udproute.`` for a UDPRoute), protocol ``tcp`` (``udp`` for a UDPRoute), whose host is an upstream
of the same name with the rule's backends as targets (each backend's weight split over its
endpoints, as for an HTTPRoute). Backends that cannot be used are left out with a problem; a rule
left with none keeps its route, and its connections are closed (Kong: no healthy target), rather
than falling through to another route.

**Routes.** One per rule, ``<service>.0``:

- TCPRoute: protocols ``tcp``, ``destinations`` the ports of the listeners that accept it (the
  data plane's ``stream_listen`` must include them).
- UDPRoute: the same with protocols ``udp`` (``udp`` entries of ``stream_listen``).
- TLSRoute: ``snis`` its effective hostnames (its own, narrowed by the listeners'); protocols
  ``tls_passthrough`` under a ``Passthrough`` listener, else ``tls`` (the data plane
  terminates, with the listener's certificate).

**Where fastkong differs from KIC**, on purpose:

- A TLSRoute also gets its listeners' ports as ``destinations``, so it is served only on the
  ports of the listeners it attached to (KIC's route takes any stream port).
- A TLSRoute without ``hostnames`` takes its listener's hostname (KIC refuses it).
- A TCPRoute's (or UDPRoute's) ``destinations`` are the ports of the listeners that *accept* it: a
  listener whose ``allowedRoutes`` turn the route away does not carry it (KIC takes every TCP
  listener the ``parentRefs`` entry names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastkong.k8s import naming
from fastkong.k8s import objects as o
from fastkong.k8s.gatewayapi import GatewayView, RouteView, rule_backends
from fastkong.k8s.httproute import Note, ServiceFactory, Translated, slice_ref, weighted_targets
from fastkong.k8s.objects import Index, ObjectRef, Problem

STREAM_KINDS: Final = ("TCPRoute", "TLSRoute", "UDPRoute")


def route_errors(rv: RouteView) -> list[str]:
    """Why the route cannot be translated (empty: it can)."""
    rules = rv.spec.get("rules")
    if not isinstance(rules, list) or not rules:
        return ["it has no rules"]
    out = []
    if rv.kind in ("TCPRoute", "UDPRoute"):
        for number, rule in enumerate(rules):
            if not isinstance(rule, Mapping) or not rule.get("backendRefs"):
                out.append(f"rules[{number}]: a {rv.kind} rule needs backendRefs")
    if rv.kind == "TLSRoute" and not rv.hostnames:
        out.append("no hostnames: a TLSRoute needs its own or its listener's")
    return out


def translate(
    index: Index,
    gv: GatewayView,
    kind: str,
    problems: list[Problem],
    note: Note,
    make_service: ServiceFactory,
) -> Translated:
    """Our accepted routes of ``kind`` (TCPRoute, TLSRoute or UDPRoute) -> Kong entities (see
    the module docstring)."""
    out = Translated()
    for rv in gv.routes:
        if rv.kind != kind or not rv.accepted:
            continue
        errors = route_errors(rv)
        for why in errors:
            problems.append(
                Problem(ObjectRef.of(rv.route), f"{rv.kind} can't be routed: {why}; left out")
            )
        if errors:
            continue
        for number, rule in enumerate(rv.spec["rules"]):
            _rule(index, rv, number, rule, out, problems, note, make_service)
    return out


def _rule(
    index: Index,
    rv: RouteView,
    number: int,
    rule: Mapping[str, Any],
    out: Translated,
    problems: list[Problem],
    note: Note,
    make_service: ServiceFactory,
) -> None:
    ns, name = rv.key
    service_name = f"{rv.kind.lower()}.{ns}.{name}.{number}"
    ref = ObjectRef.of(rv.route)
    backends, failures = rule_backends(index, rv.route, rule)
    for failure in failures:
        problems.append(Problem(ref, f"{failure.message}; not used"))
    port = backends[-1].port.get("port", 80) if backends else 80
    record = note(make_service(service_name, service_name, port, False), ref)
    record["protocol"] = "udp" if rv.kind == "UDPRoute" else "tcp"
    services = {b.key: b.service for b in backends}
    out.backends[service_name] = list(services.values())
    tags = o.tags(next(iter(services.values()))) if len(services) == 1 else o.tags(rv.route)
    record["tags"] = tags
    upstream = note({"name": service_name, "tags": list(tags)}, ref)
    found = weighted_targets(index, backends)
    for target in found:
        note(target, slice_ref(target) or ref)
    upstream["targets"] = found
    route_name = f"{service_name}.0"
    route: dict[str, Any] = {"id": naming.entity_id("routes", route_name), "name": route_name}
    route["protocols"] = list(rv.protocols)
    if rv.kind == "TLSRoute":
        route["snis"] = list(rv.hostnames)
    route["destinations"] = [{"port": p} for p in rv.ports]
    route_tags = o.tags(rv.route)
    if rule.get("name"):
        route_tags.append(f"k8s-named-route-rule:{rule['name']}")
    route["tags"] = route_tags
    record["routes"].append(note(route, ref))
    out.routes.setdefault(rv.key, []).append((route, []))
    out.services.append(record)
    out.upstreams.append(upstream)
