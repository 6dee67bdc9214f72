"""Ingress (networking.k8s.io/v1) -> route groups: one Kong route per (ingress, host, backend).

This is KIC's ``ingressTranslationIndex`` (``kic:internal/dataplane/translator/subtranslator/
ingress.go``): the paths of every rule of one Ingress that share a host and a backend Service
port are combined into one route. Path types become Kong paths as KIC writes them, except that
the literal part of a regex path is escaped (``Exact /v1.0`` -> ``~/v1\\.0$``, where KIC's
``~/v1.0$`` would also match ``/v1x0``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastkong.k8s import naming
from fastkong.k8s import objects as o
from fastkong.k8s.annotations import DEFAULT_REGEX_PREFIX, REGEX_PREFIX
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem

IMPLICIT_PORT = "implicitPort"
_SLASHES = re.compile(r"/{2,}")
_REGEX_META = re.compile(r"([.^$*+?()\[\]{}|\\])")
_LEGACY_PLAIN = re.compile(r"[a-zA-Z0-9.\-_~/%]*")


def _escape(literal: str) -> str:
    """Escape regex metacharacters only (``re.escape`` also escapes ``-``, ``~``, ``#``...)."""
    return _REGEX_META.sub(r"\\\1", literal)


@dataclass(frozen=True, order=True, slots=True)
class Backend:
    """A Service port as an Ingress names it: by number, by name, or (neither) implicitly."""

    service: str
    number: int | None = None
    port_name: str | None = None

    @property
    def port(self) -> str:
        """KIC's ``PortDef.CanonicalString``."""
        if self.number is not None:
            return str(self.number)
        return self.port_name or IMPLICIT_PORT


@dataclass(slots=True)
class RouteGroup:
    ingress: Obj
    host: str
    backend: Backend
    paths: list[str] = field(default_factory=list)
    default_backend: bool = False

    @property
    def name(self) -> str:
        ns, ing = o.namespace(self.ingress), o.name(self.ingress)
        if self.default_backend:
            return naming.default_backend_route_name(ns, ing)
        return naming.route_name(ns, ing, self.backend.service, self.host, self.backend.port)


def is_default_class(index: Index, classes: Collection[str]) -> bool:
    """Whether one of our IngressClass objects is marked the cluster default."""
    return any(
        o.anns(ic).get(o.DEFAULT_CLASS_ANNOTATION) == "true"
        for ic in index.all("IngressClass")
        if o.name(ic) in classes
    )


def class_filter(index: Index, classes: Collection[str]) -> Callable[[Obj], bool]:
    """Whether an Ingress is ours: the legacy ``kubernetes.io/ingress.class`` annotation, when
    set, else ``spec.ingressClassName`` names one of ``classes`` (KIC's ``ListIngressesV1``
    reads the annotation first); a classless Ingress is ours when our class is the default."""
    default = is_default_class(index, classes)

    def ours(ingress: Obj) -> bool:
        cls = o.anns(ingress).get(o.INGRESS_CLASS_ANNOTATION) or o.spec(ingress).get(
            "ingressClassName"
        )
        return cls in classes if cls else default

    return ours


def annotation_class_filter(index: Index, classes: Collection[str]) -> Callable[[Obj], bool]:
    """Whether a KongConsumer, KongClusterPlugin or KongVault is ours: its
    ``kubernetes.io/ingress.class`` annotation names one of ``classes``, or is missing or empty
    while our IngressClass is the cluster default (KIC's ``ExactOrEmptyClassMatch``)."""
    default = is_default_class(index, classes)

    def ours(obj: Obj) -> bool:
        value = o.anns(obj).get(o.INGRESS_CLASS_ANNOTATION)
        return value in classes if value else default

    return ours


def kong_paths(path: str, path_type: str, regex_prefix: str, legacy: bool = False) -> list[str]:
    """An Ingress path as Kong route paths (KIC's ``PathsFromIngressPaths`` then
    ``MaybePrependRegexPrefix``). ``legacy``: IngressClassParameters'
    ``enableLegacyRegexDetection``, Kong 2's rule that a path with characters outside
    ``[-a-zA-Z0-9._~/%]`` is a regex."""
    path = _SLASHES.sub("/", path) or "/"
    if path_type == "Prefix":
        base = path.strip("/")
        out = ["/"] if not base else [f"/{base}/", f"~/{_escape(base)}$"]
    elif path_type == "Exact":
        out = [f"~/{_escape(path.lstrip('/'))}$"]
    else:
        out = [path]
    return [_regex_prefix(p, regex_prefix, legacy) for p in out]


def _regex_prefix(path: str, prefix: str, legacy: bool) -> str:
    if path.startswith(prefix):
        return path.replace(prefix, "~", 1)
    if legacy and not _LEGACY_PLAIN.fullmatch(path) and not path.startswith("~"):
        return "~" + path
    return path


def class_parameters(
    index: Index, classes: Collection[str], problems: list[Problem]
) -> Mapping[str, Any]:
    """The ``spec`` of the IngressClassParameters our IngressClass names in ``spec.parameters``
    (KIC's ``getIngressClassParametersOrDefault``); empty when there are none."""
    for ic in sorted(index.all("IngressClass"), key=o.name):
        params = o.spec(ic).get("parameters")
        if o.name(ic) not in classes or not isinstance(params, Mapping):
            continue
        ref = ObjectRef.of(ic)
        if params.get("apiGroup") != "configuration.konghq.com" or (
            params.get("kind") != "IngressClassParameters"
        ):
            problems.append(
                Problem(
                    ref,
                    "spec.parameters is not a configuration.konghq.com "
                    "IngressClassParameters; ignored",
                    "warning",
                )
            )
            continue
        if not params.get("namespace") or not params.get("scope"):
            problems.append(
                Problem(ref, "spec.parameters must name a namespaced object; ignored", "warning")
            )
            continue
        found = index.get("IngressClassParameters", str(params["namespace"]), str(params["name"]))
        if found is None:
            problems.append(
                Problem(
                    ref,
                    f"IngressClassParameters {params['namespace']}/{params['name']} not found",
                    "warning",
                )
            )
            continue
        return o.spec(found)
    return {}


def _backend(raw: Any) -> Backend | str:
    if not isinstance(raw, dict):
        return "backend is missing"
    service = raw.get("service")
    if not isinstance(service, dict):
        res = raw.get("resource")
        if isinstance(res, dict):
            group = f"{res['apiGroup']}/" if res.get("apiGroup") else ""
            return f"backend resource {group}{res.get('kind')} is not supported"
        return "backend has no service"
    if not service.get("name"):
        return "backend service has no name"
    port: dict[str, Any] = service["port"] if isinstance(service.get("port"), dict) else {}
    if port.get("number") is not None:
        try:
            return Backend(str(service["name"]), number=int(port["number"]))
        except (TypeError, ValueError):
            return f"backend port number {port['number']!r} is not a number"
    return Backend(str(service["name"]), port_name=str(port["name"]) if port.get("name") else None)


def route_groups(ingress: Obj, problems: list[Problem], legacy: bool = False) -> list[RouteGroup]:
    """The route groups of one Ingress's rules, in rule order."""
    ref = ObjectRef.of(ingress)
    prefix = o.anns(ingress).get(REGEX_PREFIX, DEFAULT_REGEX_PREFIX) or DEFAULT_REGEX_PREFIX
    groups: dict[tuple[str, Backend], RouteGroup] = {}
    rules = o.spec(ingress).get("rules") or []
    for r, rule in enumerate(rules if isinstance(rules, list) else []):
        http = rule.get("http") if isinstance(rule, dict) else None
        paths = http.get("paths") if isinstance(http, dict) else None
        if not isinstance(paths, list):
            continue
        host = str(rule.get("host") or "")
        for p, item in enumerate(paths):
            item = item if isinstance(item, dict) else {}
            backend = _backend(item.get("backend"))
            if isinstance(backend, str):
                problems.append(Problem(ref, f"rules[{r}].http.paths[{p}]: {backend}; left out"))
                continue
            path_type = str(item.get("pathType") or "ImplementationSpecific")
            group = groups.setdefault((host, backend), RouteGroup(ingress, host, backend))
            for kp in kong_paths(str(item.get("path") or ""), path_type, prefix, legacy):
                if kp not in group.paths:
                    group.paths.append(kp)
    return list(groups.values())


def default_backend_group(ingresses: list[Obj], problems: list[Problem]) -> RouteGroup | None:
    """KIC: the oldest Ingress with a ``defaultBackend`` gets a catch-all route ``/``."""
    for ingress in ingresses:
        raw = o.spec(ingress).get("defaultBackend")
        if raw is None:
            continue
        backend = _backend(raw)
        if isinstance(backend, str):
            problems.append(Problem(ObjectRef.of(ingress), f"defaultBackend: {backend}"))
            continue
        return RouteGroup(ingress, "", backend, ["/"], default_backend=True)
    return None


def route_record(group: RouteGroup) -> dict[str, Any]:
    """The route before annotations, with KIC's defaults (which differ from Kong's)."""
    route: dict[str, Any] = {"id": naming.entity_id("routes", group.name), "name": group.name}
    if group.host:
        route["hosts"] = [group.host]
    route["paths"] = list(group.paths)
    route.update(
        protocols=["http", "https"],
        strip_path=False,
        preserve_host=True,
        regex_priority=0,
        request_buffering=True,
        response_buffering=True,
        tags=o.tags(group.ingress),
    )
    return route


def tls_hosts(ingresses: list[Obj]) -> dict[tuple[str, str], tuple[ObjectRef, list[str]]]:
    """``spec.tls``: TLS Secret ``(ns, name)`` -> (first Ingress naming it, its hosts). A host
    belongs to the first Secret (oldest Ingress first) that lists it, as in KIC."""
    out: dict[tuple[str, str], tuple[ObjectRef, list[str]]] = {}
    seen: set[str] = set()
    for ingress in ingresses:
        tls = o.spec(ingress).get("tls") or []
        for entry in tls if isinstance(tls, list) else []:
            if not isinstance(entry, dict) or not entry.get("secretName"):
                continue
            key = (o.namespace(ingress), str(entry["secretName"]))
            _, hosts = out.setdefault(key, (ObjectRef.of(ingress), []))
            for host in entry.get("hosts") or []:
                if host not in seen:
                    seen.add(str(host))
                    hosts.append(str(host))
    return out
