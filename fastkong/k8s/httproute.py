"""HTTPRoute (``gateway.networking.k8s.io/v1``) -> Kong services, routes, upstreams and plugins,
as KIC 3 translates them for Kong's traditional(-compatible) router
(``kic:internal/dataplane/translator/subtranslator/httproute.go``, ``translate_httproute.go``).

**Services.** The rules of one HTTPRoute that name the same backends share one Kong service,
``httproute.<ns>.<name>.<first rule's index>`` (KIC's default). With ``combined`` (KIC's
``--combined-services-from-different-httproutes``, off by default in every KIC 3 release),
rules with the same backends in all HTTPRoutes of a namespace share one, named after the
backends: ``httproute.<ns>.svc.<ns>.<svc>.<port>.<weight>[_<next backend>...]`` (sorted;
``httproute.<ns>.svc._`` without backends). The service's host is an upstream of the same
name, its port the last usable backend's Service port, its tags the backend Service's when
there is one, else the HTTPRoute's (KIC's ``populateServices``, ``getUpstreams``). The
upstream's targets are the backends' ready EndpointSlice endpoints; a backend's
weight is split evenly over its endpoints that are not terminating (at least 1 each; a weight
of 0 keeps them all at 0), as KIC's ``getUpstreams`` does. Backends that cannot be used
(another namespace without a ReferenceGrant, no such Service or port, not a Service) are left
out; when none is left the service answers 500 through request-termination (KIC, for the
conformance tests). ``timeouts.backendRequest`` sets the service's three timeouts.

**Routes.** Within a service, rules with the same filters are grouped, and their matches with
the same method, headers and query parameters become one route named after the first:
``httproute.<ns>.<name>.<rule>.<match>``. Paths: ``Exact /a`` -> ``~/a$``; ``PathPrefix /a``
-> ``~/a$`` and ``/a/``; ``RegularExpression`` -> ``~`` + the expression. As for Ingress, the
literal part of a generated regex is escaped (KIC writes ``Exact /v1.0`` as ``~/v1.0$``, which
also matches ``/v1x0``). Headers: Exact -> the value, RegularExpression -> ``~*`` + value.
Route defaults: ``preserve_host`` true, ``strip_path`` false, the protocols of the accepting
listeners; hosts are the route's effective hostnames (:mod:`fastkong.k8s.gatewayapi`). The
HTTPRoute's ``konghq.com/*`` route annotations (``strip-path``, ``protocols``, ...) apply as on
an Ingress (KIC's ``Route.Override``).

**Filters.** Like KIC's, the plugins made from filters carry the HTTPRoute's tags and no ID.
RequestHeaderModifier / ResponseHeaderModifier -> request-/response-transformer
(``set`` -> ``replace`` + ``add``, ``add`` -> ``append``, ``remove`` -> ``remove``);
URLRewrite -> request-transformer (``replace.uri``; ``ReplacePrefixMatch`` rewrites the route's
paths into ``~/p$`` and ``~/p(/.*)`` and the URI from the capture; ``hostname`` -> the ``host``
header); RequestRedirect -> Kong 3.9's ``redirect`` plugin (what KIC uses with Kong >= 3.9);
ExtensionRef -> the KongPlugin of that name, like ``konghq.com/plugins`` on the HTTPRoute.

**What cannot be expressed** leaves the whole HTTPRoute out, with a problem (and status
Accepted False, UnsupportedValue): ``queryParams`` matches (KIC: only the expressions router
has them), unknown filter types, an ExtensionRef to anything but a KongPlugin, and (unlike
KIC, which writes a location Kong rejects) a RequestRedirect without a hostname when the route
has no single hostname to redirect to.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from fastkong.k8s import naming
from fastkong.k8s import objects as o
from fastkong.k8s.annotations import apply_route_annotations
from fastkong.k8s.gatewayapi import (
    ROUTE_KIND,
    GatewayView,
    ResolvedBackend,
    RouteView,
    rule_backends,
)
from fastkong.k8s.ingress import _escape
from fastkong.k8s.objects import Index, Obj, ObjectRef, Problem
from fastkong.k8s.upstreams import MAX_WEIGHT, targets

#: Kong caps names at 512 bytes; KIC trims longer service names (``maxKongServiceNameLength``).
MAX_SERVICE_NAME: Final = 511
HEADER_REGEX_PREFIX: Final = "~*"
NO_BACKEND_MESSAGE: Final = "no existing backendRef provided"
SUPPORTED_FILTERS: Final = frozenset(
    {
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
    }
)
_DURATION = re.compile(r"(\d+)(ms|h|m|s)")
_DURATIONS = re.compile(r"(?:\d+(?:ms|h|m|s))+")
_UNITS: Final = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}

#: ``(record, the object it came from) -> record``: the translator's origin bookkeeping.
Note = Callable[[dict[str, Any], ObjectRef], dict[str, Any]]
#: ``(name, host, port, root_path) -> service record`` with KIC's service defaults.
ServiceFactory = Callable[[str, str, int, bool], dict[str, Any]]


@dataclass(slots=True)
class Translated:
    """What the HTTPRoutes became."""

    services: list[dict[str, Any]] = field(default_factory=list)
    upstreams: list[dict[str, Any]] = field(default_factory=list)
    #: HTTPRoute (ns, name) -> its Kong routes, each with the KongPlugin names its
    #: ExtensionRef filters attach.
    routes: dict[tuple[str, str], list[tuple[dict[str, Any], list[str]]]] = field(
        default_factory=dict
    )
    #: Kong service name -> the Kubernetes Services behind it (distinct, in backendRef order),
    #: whose annotations and KongUpstreamPolicy the translator applies.
    backends: dict[str, list[Obj]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Rule:
    rv: RouteView
    number: int
    rule: Mapping[str, Any]

    @property
    def key(self) -> str:
        ns, name = self.rv.key
        return f"{ns}/{name}.{self.number}"


# -- validation --------------------------------------------------------------------------------


def route_errors(rv: RouteView) -> list[str]:
    """Why the HTTPRoute cannot be translated for the traditional router (empty: it can)."""
    out: list[str] = []
    for r, rule in enumerate(rv.spec.get("rules") or []):
        if not isinstance(rule, Mapping):
            out.append(f"rules[{r}] is not an object")
            continue
        for m, match in enumerate(rule.get("matches") or []):
            if isinstance(match, Mapping) and match.get("queryParams"):
                out.append(
                    f"rules[{r}].matches[{m}]: query param matches are not supported "
                    "by Kong's traditional router"
                )
            path = match.get("path") if isinstance(match, Mapping) else None
            if isinstance(path, Mapping) and path.get("type") not in (
                "Exact",
                "PathPrefix",
                "RegularExpression",
            ):
                out.append(f"rules[{r}].matches[{m}]: path type {path.get('type')!r}")
            for header in (match.get("headers") if isinstance(match, Mapping) else None) or []:
                if isinstance(header, Mapping) and header.get("type") not in (
                    "Exact",
                    "RegularExpression",
                ):
                    out.append(f"rules[{r}].matches[{m}]: header match type {header.get('type')!r}")
        for f, flt in enumerate(rule.get("filters") or []):
            if (why := _filter_error(rv, flt)) is not None:
                out.append(f"rules[{r}].filters[{f}]: {why}")
    return out


def _filter_error(rv: RouteView, flt: Any) -> str | None:
    if not isinstance(flt, Mapping) or flt.get("type") not in SUPPORTED_FILTERS:
        kind = flt.get("type") if isinstance(flt, Mapping) else flt
        return f"filter type {kind!r} is not supported"
    kind = flt["type"]
    if kind == "ExtensionRef":
        ref = flt.get("extensionRef")
        ref = ref if isinstance(ref, Mapping) else {}
        if ref.get("group") != "configuration.konghq.com" or ref.get("kind") != "KongPlugin":
            return f"plugin {ref.get('group')}/{ref.get('kind')} unsupported"
    if kind == "URLRewrite":
        rewrite = flt.get("urlRewrite")
        rewrite = rewrite if isinstance(rewrite, Mapping) else {}
        path = rewrite.get("path")
        if path is None and rewrite.get("hostname") is None:
            return "URLRewrite missing Path and Hostname"
        if isinstance(path, Mapping):
            if path.get("type") == "ReplaceFullPath" and path.get("replaceFullPath") is None:
                return "URLRewrite missing ReplaceFullPath"
            if path.get("type") not in ("ReplaceFullPath", "ReplacePrefixMatch"):
                return f"unsupported path type {path.get('type')} for URLRewrite"
    if kind == "RequestRedirect":
        redirect = flt.get("requestRedirect")
        redirect = redirect if isinstance(redirect, Mapping) else {}
        if not redirect.get("hostname") and _single_host(rv) is None:
            return (
                "RequestRedirect without a hostname needs the route to have exactly one "
                "hostname (the redirect plugin needs an absolute location)"
            )
    return None


def _single_host(rv: RouteView) -> str | None:
    hosts = rv.hostnames
    return hosts[0] if len(hosts) == 1 and not hosts[0].startswith("*") else None


# -- services ----------------------------------------------------------------------------------


def _backends_key(rule: _Rule) -> str:
    """KIC's ``getHTTPBackendRefsKey``: the backendRefs, in any order."""
    return ";".join(sorted(o.canonical(ref) for ref in rule.rule.get("backendRefs") or []))


def group_rules(routes: list[RouteView], combined: bool = False) -> dict[str, list[_Rule]]:
    """Kong service name -> the rules it serves (KIC's
    ``groupRulesFromHTTPRoutesByKongServiceName``)."""
    groups: dict[str, list[_Rule]] = {}
    for rv in routes:
        by_backends: dict[str, list[_Rule]] = {}
        for number, rule in enumerate(rv.spec.get("rules") or []):
            meta = _Rule(rv, number, rule)
            if combined:
                groups.setdefault(combined_service_name(meta), []).append(meta)
            else:
                by_backends.setdefault(_backends_key(meta), []).append(meta)
        ns, name = rv.key
        for rules in by_backends.values():
            groups[f"httproute.{ns}.{name}.{rules[0].number}"] = rules
    return groups


def combined_service_name(rule: _Rule) -> str:
    """KIC's ``getKongServiceNameByBackendRefs``: the namespace and sorted backends."""
    ns = rule.rv.key[0]
    names = []
    for ref in rule.rule.get("backendRefs") or []:
        if not isinstance(ref, Mapping):
            continue
        name = f"{ref.get('namespace') or ns}.{ref.get('name')}"
        if ref.get("port") is not None:
            name += f".{ref['port']}"
        if ref.get("weight") is not None:
            name += f".{ref['weight']}"
        names.append(name)
    if not names:
        return f"httproute.{ns}.svc._"
    names.sort()
    full = f"httproute.{ns}.svc.{'_'.join(names)}"
    if len(full) > MAX_SERVICE_NAME:
        digest = hashlib.sha256(full.encode()).hexdigest()
        return f"httproute.{ns}.svc.{names[0]}_combined.{digest}"
    return full


def backend_request_timeout(rule: Mapping[str, Any]) -> int | None:
    """``timeouts.backendRequest`` (a Gateway API duration: ``1h2m3s4ms``) in milliseconds."""
    timeouts = rule.get("timeouts")
    value = timeouts.get("backendRequest") if isinstance(timeouts, Mapping) else None
    if not isinstance(value, str) or not _DURATIONS.fullmatch(value):
        return None
    return sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(value))


def weighted_targets(index: Index, backends: list[ResolvedBackend]) -> list[dict[str, Any]]:
    """The upstream's targets: each backend's weight split over its serving endpoints."""
    merged: dict[str, dict[str, Any]] = {}
    for backend in backends:
        found = targets(index, backend.service, backend.port)
        serving = sum(1 for t in found if t["weight"] != 0)
        each = backend.weight
        if backend.weight != 0 and serving:
            each = max(1, backend.weight // serving)
        for target in found:
            if target["weight"] != 0:
                target["weight"] = each
            if target["target"] in merged:
                old = merged[target["target"]]
                old["weight"] = min(MAX_WEIGHT, old["weight"] + target["weight"])
            else:
                merged[target["target"]] = target
    return [merged[k] for k in sorted(merged)]


def translate(
    index: Index,
    gv: GatewayView,
    problems: list[Problem],
    note: Note,
    make_service: ServiceFactory,
    combined: bool = False,
) -> Translated:
    """Our accepted HTTPRoutes -> Kong entities (see the module docstring)."""
    out = Translated()
    usable: list[RouteView] = []
    for rv in gv.routes:
        if rv.kind != ROUTE_KIND or not rv.accepted:
            continue
        errors = route_errors(rv)
        for why in errors:
            problems.append(
                Problem(ObjectRef.of(rv.route), f"HTTPRoute can't be routed: {why}; left out")
            )
        if not errors:
            usable.append(rv)
    groups = group_rules(usable, combined)
    for name in sorted(groups):
        rules = sorted(groups[name], key=lambda r: r.key)
        _service(index, name, rules, out, problems, note, make_service)
    return out


def _service(
    index: Index,
    name: str,
    rules: list[_Rule],
    out: Translated,
    problems: list[Problem],
    note: Note,
    make_service: ServiceFactory,
) -> None:
    first = rules[0]
    ref = ObjectRef.of(first.rv.route)
    backends, failures = rule_backends(index, first.rv.route, first.rule)
    port = backends[-1].port.get("port", 80) if backends else 80
    record = note(make_service(name, name, port, False), ref)
    services = {b.key: b.service for b in backends}
    out.backends[name] = list(services.values())
    tags = o.tags(next(iter(services.values()))) if len(services) == 1 else o.tags(first.rv.route)
    record["tags"] = tags
    for meta in rules:
        if (ms := backend_request_timeout(meta.rule)) is not None:
            record.update(connect_timeout=ms, read_timeout=ms, write_timeout=ms)
    for meta in rules:
        for failure in rule_backends(index, meta.rv.route, meta.rule)[1]:
            problems.append(Problem(ObjectRef.of(meta.rv.route), f"{failure.message}; not used"))
    if failures and not backends:
        termination = {
            "name": "request-termination",
            "config": {"status_code": 500, "message": NO_BACKEND_MESSAGE},
            "tags": o.tags(first.rv.route),
        }
        record["plugins"].append(note(termination, ref))
    upstream = note({"name": name, "tags": list(tags)}, ref)
    found = weighted_targets(index, backends)
    for target in found:
        note(target, slice_ref(target) or ref)
    upstream["targets"] = found
    for route, extension, key in _routes(rules, note, problems):
        record["routes"].append(route)
        out.routes.setdefault(key, []).append((route, extension))
    out.services.append(record)
    out.upstreams.append(upstream)


def slice_ref(target: Mapping[str, Any]) -> ObjectRef | None:
    values = dict(t.split(":", 1) for t in target.get("tags") or [] if ":" in t)
    if "k8s-kind" not in values or "k8s-name" not in values:
        return None
    return ObjectRef(values["k8s-kind"], values.get("k8s-namespace", ""), values["k8s-name"])


# -- routes ------------------------------------------------------------------------------------


def _match_key(rv: RouteView, match: Mapping[str, Any]) -> str:
    """KIC's ``httpRouteMatchMeta.getKey``: route, method, headers (first of each name,
    case-insensitively, sorted), query parameters."""
    seen: dict[str, Any] = {}
    for header in match.get("headers") or []:
        if isinstance(header, Mapping):
            seen.setdefault(str(header.get("name", "")).lower(), header)
    headers = [{**seen[k], "name": k} for k in sorted(seen)]
    return o.canonical([rv.key, match.get("method"), headers, match.get("queryParams")])


#: A Kong route, the KongPlugins its ExtensionRefs name, and its HTTPRoute's (ns, name).
_Built = tuple[dict[str, Any], list[str], tuple[str, str]]


def _routes(rules: list[_Rule], note: Note, problems: list[Problem]) -> list[_Built]:
    by_filters: dict[str, list[_Rule]] = {}
    for meta in rules:
        filters = sorted(o.canonical(f) for f in meta.rule.get("filters") or [])
        by_filters.setdefault(";".join(filters), []).append(meta)
    built: list[_Built] = []
    for group in by_filters.values():
        matches: dict[str, list[tuple[_Rule, int, Mapping[str, Any]]]] = {}
        for meta in group:
            for m, match in enumerate(meta.rule.get("matches") or []):
                if isinstance(match, Mapping):
                    matches.setdefault(_match_key(meta.rv, match), []).append((meta, m, match))
        filters = list(group[0].rule.get("filters") or [])
        for items in matches.values():
            built.append(_route(items, filters, note, problems))
    return sorted(built, key=lambda b: b[0]["name"])


def match_paths(match: Mapping[str, Any]) -> list[str]:
    """One match's path as Kong paths (KIC's ``generateKongRoutePathFromHTTPRouteMatch``)."""
    path = match.get("path")
    if not isinstance(path, Mapping):
        return []
    kind, value = path.get("type"), str(path.get("value") or "/")
    if kind == "Exact":
        return [f"~{_escape(value)}$"]
    if kind == "RegularExpression":
        return [f"~{value}"]
    return [f"~{_escape(value)}$", value if value.endswith("/") else value + "/"]


def _route(
    items: list[tuple[_Rule, int, Mapping[str, Any]]],
    filters: list[Any],
    note: Note,
    problems: list[Problem],
) -> _Built:
    meta, first_match, match = items[0]
    rv = meta.rv
    ns, name = rv.key
    route_name = f"httproute.{ns}.{name}.{meta.number}.{first_match}"
    record: dict[str, Any] = {"id": naming.entity_id("routes", route_name), "name": route_name}
    if rv.hostnames:
        record["hosts"] = list(rv.hostnames)
    paths: list[str] = []
    methods: list[str] = []
    for _, _, m in items:
        paths += [p for p in match_paths(m) if p not in paths]
        if m.get("method") and str(m["method"]) not in methods:
            methods.append(str(m["method"]))
    record["paths"] = paths
    if methods:
        record["methods"] = methods
    if headers := _headers(match):
        record["headers"] = headers
    record.update(protocols=list(rv.protocols), strip_path=False, preserve_host=True)
    tags = o.tags(rv.route)
    for m_rule, _, _ in items:
        rule_name = m_rule.rule.get("name")
        if rule_name and f"k8s-named-route-rule:{rule_name}" not in tags:
            tags.append(f"k8s-named-route-rule:{rule_name}")
    record["tags"] = tags
    ref = ObjectRef.of(rv.route)
    note(record, ref)
    first_path = match.get("path")
    path = first_path.get("value") if isinstance(first_path, Mapping) else None
    plugins, extension, new_paths = filter_plugins(filters, str(path or "/"), rv)
    if new_paths is not None:
        record["paths"] = new_paths
    # KIC applies an HTTPRoute's konghq.com/* route annotations as it does an Ingress's.
    apply_route_annotations(record, o.anns(rv.route), ref, problems)
    record["plugins"] = [note({**p, "tags": o.tags(rv.route)}, ref) for p in plugins]
    return record, extension, rv.key


def _headers(match: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for header in match.get("headers") or []:
        if not isinstance(header, Mapping):
            continue
        name = str(header.get("name", ""))
        if name.lower() in seen:  # the spec: only the first of equivalent names counts
            continue
        seen.add(name.lower())
        value = str(header.get("value", ""))
        regex = header.get("type") == "RegularExpression"
        out[name] = [HEADER_REGEX_PREFIX + value if regex else value]
    return {k: out[k] for k in sorted(out)}


# -- filters -----------------------------------------------------------------------------------


def filter_plugins(
    filters: list[Any], path: str, rv: RouteView
) -> tuple[list[dict[str, Any]], list[str], list[str] | None]:
    """A rule's filters -> (plugins for its routes, KongPlugin names from ExtensionRefs, the
    route's paths when URLRewrite ReplacePrefixMatch replaces them)."""
    transformers: dict[str, dict[str, list[Any]]] = {}
    uris: dict[str, str] = {}
    plugins: list[dict[str, Any]] = []
    extension: list[str] = []
    new_paths: list[str] | None = None
    for flt in filters:
        kind = flt.get("type")
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            plugin = (
                "request-transformer"
                if kind == "RequestHeaderModifier"
                else ("response-transformer")
            )
            key = (
                "requestHeaderModifier"
                if kind == "RequestHeaderModifier"
                else ("responseHeaderModifier")
            )
            _header_modifier(transformers.setdefault(plugin, {}), flt.get(key) or {})
        elif kind == "URLRewrite":
            rewrite = flt.get("urlRewrite") or {}
            request = transformers.setdefault("request-transformer", {})
            if rewrite.get("hostname"):
                host = f"host:{rewrite['hostname']}"
                request.setdefault("replace", []).append(host)
                request.setdefault("add", []).append(host)
            rewrite_path = rewrite.get("path")
            if isinstance(rewrite_path, Mapping):
                if rewrite_path.get("type") == "ReplaceFullPath":
                    uris.setdefault("request-transformer", str(rewrite_path["replaceFullPath"]))
                else:
                    prefix = _normalize(path)
                    replacement = rewrite_path.get("replacePrefixMatch")
                    uris.setdefault("request-transformer", prefix_uri(replacement, prefix))
                    new_paths = prefix_paths(prefix)
        elif kind == "RequestRedirect":
            plugins.append(redirect_plugin(flt.get("requestRedirect") or {}, rv))
        elif kind == "ExtensionRef":
            extension.append(str((flt.get("extensionRef") or {}).get("name")))
    for plugin_name, sections in sorted(transformers.items()):
        config: dict[str, Any] = {}
        for section in ("replace", "add", "append", "remove"):
            values: dict[str, Any] = {}
            if sections.get(section):
                values["headers"] = sections[section]
            if section == "replace" and plugin_name in uris:
                values["uri"] = uris[plugin_name]
            if values:
                config[section] = values
        plugins.append({"name": plugin_name, "config": config})
    return plugins, extension, new_paths


def _header_modifier(into: dict[str, list[Any]], modifier: Mapping[str, Any]) -> None:
    sets = [f"{h.get('name')}:{h.get('value')}" for h in modifier.get("set") or []]
    if sets:
        into.setdefault("replace", []).extend(sets)
        into.setdefault("add", []).extend(sets)
    adds = [f"{h.get('name')}:{h.get('value')}" for h in modifier.get("add") or []]
    if adds:
        into.setdefault("append", []).extend(adds)
    removes = [str(name) for name in modifier.get("remove") or []]
    if removes:
        into.setdefault("remove", []).extend(removes)


def _normalize(path: str) -> str:
    return "/" if path in ("", "/") else path.rstrip("/")


def prefix_paths(prefix: str) -> list[str]:
    """KIC's ``generateKongRouteModifierForURLRewritePrefixMatch``: the prefix itself, and
    everything under it with the rest captured (with its slash, except under ``/``)."""
    if prefix == "/":
        return ["~/$", "~/(.*)"]
    return [f"~{_escape(prefix)}$", f"~{_escape(prefix)}(/.*)"]


def prefix_uri(replacement: Any, prefix: str) -> str:
    """KIC's ``generateRequestTransformerReplaceURIForURLRewritePrefixMatch``: the
    request-transformer ``replace.uri`` template that swaps the matched prefix."""
    if replacement is None:
        return "/"
    base = str(replacement).rstrip("/")
    root = prefix == "/"
    if base == "":
        if root:
            return '$(uri_captures[1] == nil and "/" or "/" .. uri_captures[1])'
        return '$(uri_captures[1] == nil and "/" or uri_captures[1])'
    if root:
        return base + '$(uri_captures[1] == nil and "" or "/" .. uri_captures[1])'
    return base + "$(uri_captures[1])"


def redirect_plugin(redirect: Mapping[str, Any], rv: RouteView) -> dict[str, Any]:
    """KIC's ``generateRequestRedirectUsingRedirectKongPlugin`` (Kong >= 3.9): an absolute
    location, keeping the request's path unless ``ReplaceFullPath`` gives one. Without a
    hostname the route's single hostname is used (see the module docstring)."""
    scheme = str(redirect.get("scheme") or "http")
    host = str(redirect.get("hostname") or _single_host(rv) or "")
    port = f":{redirect['port']}" if redirect.get("port") is not None else ""
    path, keep = "/", True
    modifier = redirect.get("path")
    if isinstance(modifier, Mapping) and modifier.get("type") == "ReplaceFullPath":
        if modifier.get("replaceFullPath") is not None:
            path, keep = str(modifier["replaceFullPath"]), False
    if not path.startswith("/"):
        path = "/" + path
    config = {
        "status_code": int(redirect.get("statusCode") or 302),
        "location": f"{scheme}://{host}{port}{path}",
        "keep_incoming_path": keep,
    }
    return {"name": "redirect", "config": config}
