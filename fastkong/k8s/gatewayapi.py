"""Gateway API (``gateway.networking.k8s.io``): which GatewayClasses, Gateways and routes
(HTTPRoute; TCPRoute, TLSRoute and UDPRoute from the experimental channel) are ours, which
listeners accept which route, and which backends a route may use.

Pure, like the translator: an :class:`~fastkong.k8s.objects.Index` in, plain data out. Both the
translator (:mod:`fastkong.k8s.httproute`) and the status writer
(:mod:`fastkong.k8s.gateway_status`) read the same :class:`GatewayView`, so what a route's
status says is what the config does.

- A **GatewayClass** is ours when ``spec.controllerName`` is our controller name (a controller
  setting, ``fastkong.io/gateway-controller`` by default; KIC's is
  ``konghq.com/kic-gateway-controller``). A **Gateway** is ours when its class is.
- A **route** is ours when a ``parentRefs`` entry names one of our Gateways. That entry is
  *accepted* when some listener of the Gateway matches it: the ``sectionName`` and ``port`` it names
  (if any), a protocol for the route's kind (HTTPRoute: HTTP, or HTTPS with TLS mode Terminate;
  TCPRoute: TCP; UDPRoute: UDP; TLSRoute: TLS, Passthrough or Terminate), ``allowedRoutes``
  (``kinds``, and ``namespaces.from`` Same/All/Selector against the route's Namespace labels), and a
  hostname that intersects the route's (TCPRoutes and UDPRoutes have none). Otherwise its reason is
  the spec's (KIC's ``getSupportedGatewayForRoute``): NoMatchingParent, NotAllowedByListeners or
  NoMatchingListenerHostname.
- The route's **effective hostnames** are its hostnames intersected with the accepting
  listeners' (a route ``*.example.com`` under a listener ``foo.example.com`` serves
  ``foo.example.com``); with no route hostnames, the listeners' hostnames; none at all when a
  listener has no hostname (KIC's ``filterHostnames``). Unlike KIC, each route hostname keeps
  every intersection, not only the first listener's.
- A **backendRef** is a core ``Service`` with a port. One in another namespace needs a
  ``v1beta1`` ReferenceGrant there whose ``from`` names HTTPRoutes of the route's namespace
  and whose ``to`` names the Service (or all Services).
- An **HTTPS listener**'s (or a terminating TLS listener's) first ``certificateRefs`` Secret
  (another namespace: with a ReferenceGrant from Gateways) becomes a certificate whose SNI is
  the listener's hostname (``*`` without one), as in KIC.

Unlike KIC, a listener's acceptance is decided from the Gateway's spec, not from the status
we wrote for it (KIC reads ``status.listeners`` back), so one translation suffices.

The objects are read with the CRD defaults applied (:func:`route_spec`), as the API server
would have stored them: a manifest translated offline gives the same config as in a cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fastkong.k8s import objects as o
from fastkong.k8s.ingress import Backend
from fastkong.k8s.objects import Index, Obj
from fastkong.k8s.upstreams import find_port

GROUP: Final = "gateway.networking.k8s.io"
DEFAULT_CONTROLLER: Final = "fastkong.io/gateway-controller"
#: Listener protocols an HTTPRoute can attach to, as Kong route protocols.
HTTP_PROTOCOLS: Final[Mapping[str, str]] = {"HTTP": "http", "HTTPS": "https"}
ROUTE_KIND: Final = "HTTPRoute"
#: Listener protocol -> the route kind it takes (its ``supportedKinds``).
LISTENER_ROUTE_KINDS: Final[Mapping[str, str]] = {
    "HTTP": "HTTPRoute",
    "HTTPS": "HTTPRoute",
    "TCP": "TCPRoute",
    "TLS": "TLSRoute",
    "UDP": "UDPRoute",
}
#: The route kinds we translate, in the order they are read.
ROUTE_KINDS: Final = ("HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute")
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"

# Route parent reasons (gateway-api ``RouteConditionReason``).
ACCEPTED: Final = "Accepted"
NO_MATCHING_PARENT: Final = "NoMatchingParent"
NOT_ALLOWED: Final = "NotAllowedByListeners"
NO_MATCHING_HOSTNAME: Final = "NoMatchingListenerHostname"
UNSUPPORTED_VALUE: Final = "UnsupportedValue"
# ResolvedRefs reasons.
RESOLVED: Final = "ResolvedRefs"
REF_NOT_PERMITTED: Final = "RefNotPermitted"
INVALID_KIND: Final = "InvalidKind"
BACKEND_NOT_FOUND: Final = "BackendNotFound"


@dataclass(frozen=True, slots=True)
class ParentResult:
    """One ``parentRefs`` entry that names one of our Gateways, and whether it is accepted."""

    #: The entry as written (what ``status.parents[].parentRef`` repeats).
    ref: Mapping[str, Any]
    gateway: tuple[str, str]
    accepted: bool
    reason: str
    message: str = ""
    #: The names of the listeners that accept the route.
    listeners: tuple[str, ...] = ()


@dataclass(slots=True)
class RouteView:
    """One of our routes (with CRD defaults) and where it attaches."""

    route: Obj
    spec: Mapping[str, Any]
    parents: list[ParentResult]
    #: Effective hostnames; empty: any host.
    hostnames: list[str] = field(default_factory=list)
    #: Kong route protocols of the accepting listeners.
    protocols: list[str] = field(default_factory=list)
    #: Ports of the accepting listeners (a stream route's Kong ``destinations``).
    ports: list[int] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return any(p.accepted for p in self.parents)

    @property
    def kind(self) -> str:
        return str(self.route.get("kind") or ROUTE_KIND)

    @property
    def key(self) -> tuple[str, str]:
        return (o.namespace(self.route), o.name(self.route))


@dataclass(slots=True)
class GatewayView:
    """Our GatewayClasses, Gateways, and the routes that name them."""

    controller: str
    classes: dict[str, Obj] = field(default_factory=dict)
    gateways: dict[tuple[str, str], Obj] = field(default_factory=dict)
    routes: list[RouteView] = field(default_factory=list)

    def __repr__(self) -> str:
        accepted = sum(1 for r in self.routes if r.accepted)
        return (
            f"<GatewayView {self.controller} classes={len(self.classes)} "
            f"gateways={len(self.gateways)} routes={len(self.routes)} accepted={accepted}>"
        )

    def attached(self, gateway: tuple[str, str], listener: str) -> int:
        """How many accepted routes a listener has (``status.listeners[].attachedRoutes``)."""
        return sum(
            1
            for r in self.routes
            for p in r.parents
            if p.accepted and p.gateway == gateway and listener in p.listeners
        )


def view(index: Index, controller: str = DEFAULT_CONTROLLER) -> GatewayView:
    """Which Gateway API objects of ``index`` are ours, and where each route attaches."""
    out = GatewayView(controller)
    for gc in index.all("GatewayClass"):
        if o.spec(gc).get("controllerName") == controller:
            out.classes[o.name(gc)] = gc
    for gw in index.all("Gateway"):
        if o.spec(gw).get("gatewayClassName") in out.classes:
            out.gateways[(o.namespace(gw), o.name(gw))] = gw
    if not out.gateways:
        return out
    routes = [
        route
        for kind in ROUTE_KINDS
        for route in sorted(
            index.all(kind), key=lambda r: (o.created(r), o.namespace(r), o.name(r))
        )
    ]
    for route in routes:
        spec = route_spec(route)
        parents = [
            _parent(index, out, route, spec, ref)
            for ref in spec.get("parentRefs") or []
            if _names_our_gateway(out, route, ref)
        ]
        if parents:
            rv = RouteView(route, spec, parents)
            rv.hostnames = effective_hostnames(out, rv)
            rv.protocols = _protocols(out, rv)
            rv.ports = _ports(out, rv)
            out.routes.append(rv)
    return out


# -- CRD defaults ------------------------------------------------------------------------------


def route_spec(route: Obj) -> dict[str, Any]:
    """The route's spec with the defaults of its CRD filled in (what the API server stores)."""
    spec = copy.deepcopy(dict(o.spec(route)))
    for ref in spec.get("parentRefs") or []:
        if isinstance(ref, dict):
            ref.setdefault("group", GROUP)
            ref.setdefault("kind", "Gateway")
    if route.get("kind", ROUTE_KIND) != ROUTE_KIND:
        # TCPRoute, TLSRoute and UDPRoute rules have no matches or filters, and no default rule.
        for rule in spec.get("rules") or []:
            for ref in (rule.get("backendRefs") if isinstance(rule, dict) else None) or []:
                if isinstance(ref, dict):
                    ref.setdefault("group", "")
                    ref.setdefault("kind", "Service")
                    ref.setdefault("weight", 1)
        return spec
    rules = spec.get("rules")
    if not isinstance(rules, list):
        rules = spec["rules"] = [{}]
    for rule in rules:
        if not isinstance(rule, dict):
            continue
        matches = rule.get("matches")
        if not isinstance(matches, list) or not matches:
            matches = rule["matches"] = [{}]
        for match in matches:
            if not isinstance(match, dict):
                continue
            path = match.setdefault("path", {})
            if isinstance(path, dict):
                path.setdefault("type", "PathPrefix")
                path.setdefault("value", "/")
            for header in match.get("headers") or []:
                if isinstance(header, dict):
                    header.setdefault("type", "Exact")
            for param in match.get("queryParams") or []:
                if isinstance(param, dict):
                    param.setdefault("type", "Exact")
        for ref in rule.get("backendRefs") or []:
            if isinstance(ref, dict):
                ref.setdefault("group", "")
                ref.setdefault("kind", "Service")
                ref.setdefault("weight", 1)
        for f in rule.get("filters") or []:
            redirect = f.get("requestRedirect") if isinstance(f, dict) else None
            if isinstance(redirect, dict):
                redirect.setdefault("statusCode", 302)
    return spec


# -- parents and listeners ---------------------------------------------------------------------


def _gateway_key(route: Obj, ref: Mapping[str, Any]) -> tuple[str, str]:
    return (str(ref.get("namespace") or o.namespace(route)), str(ref.get("name") or ""))


def _names_our_gateway(v: GatewayView, route: Obj, ref: Any) -> bool:
    if not isinstance(ref, Mapping) or ref.get("group") != GROUP or ref.get("kind") != "Gateway":
        return False
    return _gateway_key(route, ref) in v.gateways


def listeners(gateway: Obj) -> list[Mapping[str, Any]]:
    return [x for x in o.spec(gateway).get("listeners") or [] if isinstance(x, Mapping)]


def listener_route_kind(listener: Mapping[str, Any]) -> str | None:
    """The route kind a listener takes, None for a protocol we do not serve (an HTTPS
    listener that passes TLS through: KIC's ``routeTypeMatchesListenerType``)."""
    kind = LISTENER_ROUTE_KINDS.get(str(listener.get("protocol")))
    if kind == ROUTE_KIND and tls_mode(listener) != "Terminate":
        return None
    return kind


def tls_mode(listener: Mapping[str, Any]) -> str:
    tls = listener.get("tls")
    return str(tls.get("mode") or "Terminate") if isinstance(tls, Mapping) else "Terminate"


def listener_supports_routes(listener: Mapping[str, Any]) -> bool:
    return listener_route_kind(listener) is not None


def _parent(
    index: Index, v: GatewayView, route: Obj, spec: Mapping[str, Any], ref: Mapping[str, Any]
) -> ParentResult:
    key = _gateway_key(route, ref)
    gateway = v.gateways[key]
    candidates = listeners(gateway)
    section = ref.get("sectionName")
    if section:
        candidates = [x for x in candidates if x.get("name") == section]
        if not candidates:
            return ParentResult(ref, key, False, NO_MATCHING_PARENT, f"no listener {section!r}")
    if ref.get("port") is not None:
        candidates = [x for x in candidates if x.get("port") == ref.get("port")]
        if not candidates:
            return ParentResult(
                ref, key, False, NO_MATCHING_PARENT, f"no listener on port {ref['port']}"
            )
    kind = route.get("kind", ROUTE_KIND)
    candidates = [x for x in candidates if listener_route_kind(x) == kind]
    candidates = [x for x in candidates if allows(index, x, route, key[0])]
    if not candidates:
        protocols = " or ".join(p for p, k in LISTENER_ROUTE_KINDS.items() if k == kind)
        return ParentResult(
            ref, key, False, NOT_ALLOWED, f"no {protocols} listener allows this route"
        )
    hostnames = [str(h) for h in spec.get("hostnames") or []]
    candidates = [x for x in candidates if _listener_hostname_fits(x, hostnames)]
    if not candidates:
        return ParentResult(
            ref,
            key,
            False,
            NO_MATCHING_HOSTNAME,
            "no listener hostname intersects the route's hostnames",
        )
    names = tuple(str(x.get("name") or "") for x in candidates)
    return ParentResult(ref, key, True, ACCEPTED, "", names)


def allows(index: Index, listener: Mapping[str, Any], route: Obj, gateway_ns: str) -> bool:
    """The listener's ``allowedRoutes``: ``kinds`` (default: the kind of its protocol) and
    ``namespaces.from`` (default Same)."""
    allowed = listener.get("allowedRoutes")
    allowed = allowed if isinstance(allowed, Mapping) else {}
    kinds = [k for k in allowed.get("kinds") or [] if isinstance(k, Mapping)]
    kind = route.get("kind", ROUTE_KIND)
    if kinds and not any(k.get("kind") == kind and k.get("group", GROUP) == GROUP for k in kinds):
        return False
    namespaces = allowed.get("namespaces")
    namespaces = namespaces if isinstance(namespaces, Mapping) else {}
    origin = namespaces.get("from") or "Same"
    if origin == "All":
        return True
    if origin == "Same":
        return o.namespace(route) == gateway_ns
    if origin == "Selector":
        selector = namespaces.get("selector")
        return isinstance(selector, Mapping) and selects(
            selector, namespace_labels(index, o.namespace(route))
        )
    return False


def namespace_labels(index: Index, namespace: str) -> Mapping[str, str]:
    """A Namespace's labels; every Namespace carries ``kubernetes.io/metadata.name``."""
    ns = index.get("Namespace", "", namespace)
    return {**(o.labels(ns) if ns is not None else {}), NAMESPACE_NAME_LABEL: namespace}


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` (``matchLabels`` and ``matchExpressions``)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(str(k)) != str(v):
            return False
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, Mapping):
            return False
        key, op = str(expr.get("key")), expr.get("operator")
        values = [str(x) for x in expr.get("values") or []]
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


# -- hostnames ---------------------------------------------------------------------------------


def covers(mask: str, host: str) -> bool:
    """``mask`` matches ``host``: equal, or ``*.example.com`` matching any name of one or more
    labels under ``example.com`` (never ``example.com`` itself)."""
    if mask.startswith("*."):
        return host.endswith(mask[1:]) and len(host) > len(mask) - 1
    return mask == host


def intersection(listener: str, route: str) -> str | None:
    """The hostnames both match, as one name: the more specific of the two."""
    if covers(listener, route):
        return route
    if covers(route, listener):
        return listener
    return None


def _listener_hostname_fits(listener: Mapping[str, Any], hostnames: list[str]) -> bool:
    mask = listener.get("hostname")
    if not hostnames or not mask:
        return True
    return any(intersection(str(mask), h) is not None for h in hostnames)


def _accepting(v: GatewayView, rv: RouteView) -> list[Mapping[str, Any]]:
    out = []
    for parent in rv.parents:
        if parent.accepted:
            out += [
                x
                for x in listeners(v.gateways[parent.gateway])
                if x.get("name") in parent.listeners
            ]
    return out


def effective_hostnames(v: GatewayView, rv: RouteView) -> list[str]:
    """The hosts the route serves through its accepting listeners (module docstring)."""
    accepting = _accepting(v, rv)
    masks = [str(x["hostname"]) if x.get("hostname") else "" for x in accepting]
    route_hosts = [str(h) for h in rv.spec.get("hostnames") or []]
    out: list[str] = []
    if not route_hosts:
        if "" in masks:
            return []
        candidates = masks
    else:
        candidates = []
        for host in route_hosts:
            for mask in masks:
                candidates.append(host if not mask else intersection(mask, host) or "")
    for host in candidates:
        if host and host not in out:
            out.append(host)
    return out


def _protocols(v: GatewayView, rv: RouteView) -> list[str]:
    if rv.kind == "TCPRoute":
        return ["tcp"]
    if rv.kind == "UDPRoute":
        return ["udp"]
    if rv.kind == "TLSRoute":
        # One route cannot both terminate and pass through: Passthrough wins, as in KIC.
        modes = {tls_mode(x) for x in _accepting(v, rv)}
        return ["tls_passthrough"] if "Passthrough" in modes or not modes else ["tls"]
    found = {HTTP_PROTOCOLS[str(x.get("protocol"))] for x in _accepting(v, rv)}
    return sorted(found) or ["http", "https"]


def _ports(v: GatewayView, rv: RouteView) -> list[int]:
    return sorted({p for x in _accepting(v, rv) if isinstance(p := x.get("port"), int)})


# -- backends ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedBackend:
    """A backendRef that names an existing Service port the route may use."""

    service: Obj
    port: Mapping[str, Any]
    weight: int

    @property
    def key(self) -> tuple[str, str]:
        return (o.namespace(self.service), o.name(self.service))


@dataclass(frozen=True, slots=True)
class RefFailure:
    """A backendRef that cannot be used: ResolvedRefs False with ``reason``."""

    reason: str
    message: str


def backend_ref_namespace(route: Obj, ref: Mapping[str, Any]) -> str:
    return str(ref.get("namespace") or o.namespace(route))


def resolve_backend(
    index: Index, route: Obj, ref: Mapping[str, Any]
) -> ResolvedBackend | RefFailure:
    """One backendRef (with CRD defaults) -> the Service port it names, or why not."""
    group, kind, name = ref.get("group") or "", ref.get("kind") or "Service", ref.get("name")
    ns = backend_ref_namespace(route, ref)
    where = f"{ns}/{name}"
    if group != "" or kind != "Service":
        what = f"{group}/{kind}" if group else str(kind)
        return RefFailure(INVALID_KIND, f"backendRef {where}: kind {what} is not supported")
    if ns != o.namespace(route) and not granted(index, route, ns, str(name)):
        return RefFailure(
            REF_NOT_PERMITTED,
            f"backendRef {where}: no ReferenceGrant in {ns} allows {route.get('kind')}s from "
            f"{o.namespace(route)} to use it",
        )
    service = index.get("Service", ns, str(name))
    if service is None:
        return RefFailure(BACKEND_NOT_FOUND, f"backendRef {where}: Service not found")
    number = ref.get("port")
    if not isinstance(number, int):
        return RefFailure(BACKEND_NOT_FOUND, f"backendRef {where}: a Service needs a port")
    port = find_port(service, Backend(str(name), number=number), route.get("kind") == "UDPRoute")
    if isinstance(port, str):
        return RefFailure(BACKEND_NOT_FOUND, f"backendRef {where}: {port}")
    weight = ref.get("weight", 1)
    return ResolvedBackend(service, port, weight if isinstance(weight, int) else 1)


def granted(index: Index, source: Obj, namespace: str, name: str, to_kind: str = "Service") -> bool:
    """A ReferenceGrant in ``namespace`` lets objects of ``source``'s kind (an HTTPRoute, a
    Gateway) in its namespace use the core ``to_kind`` ``name`` (KIC's
    ``isHTTPReferenceGranted``)."""
    for grant in index.all("ReferenceGrant"):
        if o.namespace(grant) != namespace:
            continue
        spec = o.spec(grant)
        if not any(_grant_from(f, source) for f in spec.get("from") or []):
            continue
        for to in spec.get("to") or []:
            if not isinstance(to, Mapping):
                continue
            if (to.get("group") or "") == "" and to.get("kind") == to_kind:
                if not to.get("name") or to.get("name") == name:
                    return True
    return False


def _grant_from(entry: Any, source: Obj) -> bool:
    return (
        isinstance(entry, Mapping)
        and entry.get("group") == GROUP
        and entry.get("kind") == source.get("kind")
        and entry.get("namespace") == o.namespace(source)
    )


# -- listener certificates ---------------------------------------------------------------------


def listener_certificate(
    index: Index, gateway: Obj, listener: Mapping[str, Any]
) -> Obj | RefFailure | None:
    """The TLS Secret an HTTPS (or terminating TLS) listener terminates with (its first
    ``certificateRefs`` entry, as KIC reads it), why it cannot be used, or None when the
    listener has none."""
    tls = listener.get("tls")
    refs = tls.get("certificateRefs") if isinstance(tls, Mapping) else None
    if listener.get("protocol") not in ("HTTPS", "TLS") or tls_mode(listener) != "Terminate":
        return None
    if not isinstance(refs, list) or not refs:
        return None
    ref = refs[0] if isinstance(refs[0], Mapping) else {}
    ns, name = str(ref.get("namespace") or o.namespace(gateway)), str(ref.get("name") or "")
    where = f"{ns}/{name}"
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
        return RefFailure("InvalidCertificateRef", f"certificateRef {where}: not a Secret")
    if ns != o.namespace(gateway) and not granted(index, gateway, ns, name, "Secret"):
        return RefFailure(
            REF_NOT_PERMITTED,
            f"certificateRef {where}: no ReferenceGrant in {ns} allows Gateways from "
            f"{o.namespace(gateway)} to use it",
        )
    secret = index.get("Secret", ns, name)
    if secret is None:
        return RefFailure("InvalidCertificateRef", f"certificateRef {where}: Secret not found")
    return secret


def listener_tls_hosts(index: Index, v: GatewayView) -> list[tuple[Obj, Obj, str]]:
    """(Gateway, TLS Secret, SNI) for every terminating listener of our Gateways with a usable
    certificate; the SNI is the listener's hostname, ``*`` without one (KIC's
    ``getGatewayCerts``)."""
    out = []
    for _, gateway in sorted(v.gateways.items()):
        for listener in listeners(gateway):
            found = listener_certificate(index, gateway, listener)
            if found is None or isinstance(found, RefFailure):
                continue
            out.append((gateway, found, str(listener.get("hostname") or "*")))
    return out


def rule_backends(
    index: Index, route: Obj, rule: Mapping[str, Any]
) -> tuple[list[ResolvedBackend], list[RefFailure]]:
    ok: list[ResolvedBackend] = []
    failed: list[RefFailure] = []
    for ref in rule.get("backendRefs") or []:
        if not isinstance(ref, Mapping):
            continue
        found = resolve_backend(index, route, ref)
        (ok if isinstance(found, ResolvedBackend) else failed).append(found)  # type: ignore[arg-type]
    return ok, failed


def route_ref_failures(index: Index, rv: RouteView) -> list[RefFailure]:
    """Every unusable backendRef of the route, in rule order (for ResolvedRefs)."""
    out: list[RefFailure] = []
    for rule in rv.spec.get("rules") or []:
        if isinstance(rule, Mapping):
            out += rule_backends(index, rv.route, rule)[1]
    return out


def sorted_routes(routes: Iterable[RouteView]) -> list[RouteView]:
    return sorted(routes, key=lambda r: r.key)
