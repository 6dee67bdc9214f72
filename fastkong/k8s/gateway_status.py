"""Gateway API status: what our GatewayClasses, Gateways and routes report, written by the
leader through the ``status`` subresource, only when it changed.

:func:`desired` is pure: from the same :class:`~fastkong.k8s.gatewayapi.GatewayView` the
translator used, it computes

- **GatewayClass**: ``Accepted`` True.
- **Gateway**: ``Accepted`` True; ``Programmed`` True when the proxy Service has an address
  (``status.addresses``, as Ingress status takes it: load-balancer IPs/hostnames, else external IPs,
  else the cluster IP), else False AddressNotAssigned; one ``listeners[]`` entry per listener with
  ``supportedKinds`` (HTTPRoute for HTTP/HTTPS, TCPRoute for TCP, TLSRoute for TLS, UDPRoute for
  UDP, nothing else: Accepted False UnsupportedProtocol), ``attachedRoutes`` and its conditions (a
  terminating listener whose certificate Secret is missing or not granted: ResolvedRefs False
  InvalidCertificateRef or RefNotPermitted, Programmed False).
- **BackendTLSPolicy**: ``status.ancestors`` (:mod:`fastkong.k8s.backend_tls`).
- **HTTPRoute, TCPRoute, TLSRoute, UDPRoute**: one ``status.parents[]`` entry per ``parentRefs``
  entry naming one of our Gateways, with our ``controllerName``: ``Accepted`` (Accepted,
  NoMatchingParent, NotAllowedByListeners, NoMatchingListenerHostname, or UnsupportedValue when the
  route cannot be translated) and ``ResolvedRefs`` (ResolvedRefs, or the first failing backendRef's
  RefNotPermitted / BackendNotFound / InvalidKind). Entries of other controllers are kept; ours for
  parents that are gone are removed.

Every condition carries the object's ``metadata.generation`` as ``observedGeneration``; a
condition keeps its ``lastTransitionTime`` while its status stays the same.

:class:`StatusUpdater` compares the desired status with the one in the store (times
aside) and PUTs the object's ``status`` (with its ``resourceVersion``, so a concurrent writer
makes ours fail with 409 and the next sync retries from the newer object).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.aio.client import ApiClient, CustomObjectsApi
from kubernetes.aio.client.exceptions import ApiException

from fastkong.k8s import backend_tls, l4route
from fastkong.k8s import gatewayapi as gw
from fastkong.k8s import objects as o
from fastkong.k8s.gatewayapi import GatewayView, RouteView
from fastkong.k8s.httproute import route_errors
from fastkong.k8s.objects import Index, Obj

log = logging.getLogger("fastkong.k8s.gateway_status")

#: (kind, namespace, name) -> the whole desired ``status``.
Key = tuple[str, str, str]
PLURALS: Final = {
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "HTTPRoute": "httproutes",
    "TCPRoute": "tcproutes",
    "TLSRoute": "tlsroutes",
    "UDPRoute": "udproutes",
    backend_tls.KIND: "backendtlspolicies",
    # Kong's CRDs (their Programmed condition, fastkong/k8s/programmed.py)
    "KongPlugin": "kongplugins",
    "KongClusterPlugin": "kongclusterplugins",
    "KongConsumer": "kongconsumers",
    "KongVault": "kongvaults",
    "KongUpstreamPolicy": "kongupstreampolicies",
}
CLUSTER_SCOPED: Final = frozenset({"GatewayClass", "KongClusterPlugin", "KongVault"})


def condition(
    kind: str, ok: bool, reason: str, generation: int, message: str = ""
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def generation(obj: Obj) -> int:
    value = o.meta(obj).get("generation")
    return value if isinstance(value, int) else 1


def addresses(found: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Proxy addresses (``{"ip": ...}`` / ``{"hostname": ...}``) as Gateway ``addresses``."""
    out = []
    for entry in found:
        if entry.get("ip"):
            out.append({"type": "IPAddress", "value": entry["ip"]})
        elif entry.get("hostname"):
            out.append({"type": "Hostname", "value": entry["hostname"]})
    return out


def desired(
    index: Index, view: GatewayView, proxy: Iterable[Mapping[str, str]] = ()
) -> dict[Key, dict[str, Any]]:
    """The status every Gateway API object we speak for should have (module docstring)."""
    out: dict[Key, dict[str, Any]] = {}
    for name, gc in view.classes.items():
        cond = condition("Accepted", True, "Accepted", generation(gc))
        out[("GatewayClass", "", name)] = {**o_status(gc), "conditions": [cond]}
    found = addresses(proxy)
    for key, gateway in view.gateways.items():
        out[("Gateway", *key)] = _gateway(index, view, key, gateway, found)
    by_key = {(rv.kind, *rv.key): rv for rv in view.routes}
    for route in (r for kind in gw.ROUTE_KINDS for r in index.all(kind)):
        key = (o.namespace(route), o.name(route))
        rv = by_key.get((str(route.get("kind")), *key))
        mine = _route_parents(index, view, rv) if rv is not None else []
        kept = [
            p
            for p in (o_status(route).get("parents") or [])
            if isinstance(p, Mapping) and p.get("controllerName") != view.controller
        ]
        current = [
            p
            for p in (o_status(route).get("parents") or [])
            if isinstance(p, Mapping) and p.get("controllerName") == view.controller
        ]
        if rv is None and not current:
            continue  # never ours: leave it alone
        out[(str(route.get("kind")), *key)] = {**o_status(route), "parents": kept + mine}
    _policies(index, view, out)
    return out


def _policies(index: Index, view: GatewayView, out: dict[Key, dict[str, Any]]) -> None:
    """BackendTLSPolicies' ``status.ancestors`` (backend_tls.py)."""
    policies = index.all(backend_tls.KIND)
    if not policies:
        return
    # Service (ns, name) -> our Gateways whose accepted HTTPRoutes have it as a backend.
    carriers: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for rv in view.routes:
        if rv.kind != gw.ROUTE_KIND:
            continue
        gateways = [p.gateway for p in rv.parents if p.accepted]
        for rule in rv.spec.get("rules") or []:
            for ref in (rule.get("backendRefs") if isinstance(rule, Mapping) else None) or []:
                if not isinstance(ref, Mapping) or ref.get("kind", "Service") != "Service":
                    continue
                service = (str(ref.get("namespace") or rv.key[0]), str(ref.get("name")))
                found = carriers.setdefault(service, [])
                found += [g for g in gateways if g not in found]
    by_service = backend_tls.targeted(index)
    for policy in policies:
        mine = backend_tls.ancestors(
            index, policy, by_service, lambda s: carriers.get(s, []), view.controller, condition
        )
        entries = [a for a in o_status(policy).get("ancestors") or [] if isinstance(a, Mapping)]
        kept = [a for a in entries if a.get("controllerName") != view.controller]
        if not mine and len(kept) == len(entries):
            continue  # never ours: leave it alone
        key = (backend_tls.KIND, o.namespace(policy), o.name(policy))
        out[key] = {**o_status(policy), "ancestors": kept + mine}


def o_status(obj: Obj) -> dict[str, Any]:
    status = obj.get("status")
    return dict(status) if isinstance(status, Mapping) else {}


def _gateway(
    index: Index,
    view: GatewayView,
    key: tuple[str, str],
    gateway: Obj,
    found: list[dict[str, str]],
) -> dict[str, Any]:
    gen = generation(gateway)
    conditions = [condition("Accepted", True, "Accepted", gen)]
    if found:
        conditions.append(condition("Programmed", True, "Programmed", gen))
    else:
        conditions.append(
            condition(
                "Programmed", False, "AddressNotAssigned", gen, "the proxy has no address yet"
            )
        )
    entries = []
    for listener in gw.listeners(gateway):
        name = str(listener.get("name") or "")
        kind = gw.listener_route_kind(listener)
        ok = kind is not None
        if ok:
            accepted = condition("Accepted", True, "Accepted", gen)
            programmed = condition("Programmed", True, "Programmed", gen)
        else:
            why = f"protocol {listener.get('protocol')} is not supported"
            accepted = condition("Accepted", False, "UnsupportedProtocol", gen, why)
            programmed = condition("Programmed", False, "Invalid", gen, why)
        resolved = condition("ResolvedRefs", True, "ResolvedRefs", gen)
        cert = gw.listener_certificate(index, gateway, listener)
        if isinstance(cert, gw.RefFailure):
            resolved = condition("ResolvedRefs", False, cert.reason, gen, cert.message)
            programmed = condition("Programmed", False, "Invalid", gen, cert.message)
        entries.append(
            {
                "name": name,
                "supportedKinds": [{"group": gw.GROUP, "kind": kind}] if kind else [],
                "attachedRoutes": view.attached(key, name),
                "conditions": [
                    accepted,
                    condition("Conflicted", False, "NoConflicts", gen),
                    programmed,
                    resolved,
                ],
            }
        )
    return {
        **o_status(gateway),
        "addresses": found,
        "conditions": conditions,
        "listeners": entries,
    }


def _route_parents(index: Index, view: GatewayView, rv: RouteView) -> list[dict[str, Any]]:
    gen = generation(rv.route)
    errors = route_errors(rv) if rv.kind == gw.ROUTE_KIND else l4route.route_errors(rv)
    failures = gw.route_ref_failures(index, rv)
    resolved = (
        condition("ResolvedRefs", True, "ResolvedRefs", gen)
        if not failures
        else condition("ResolvedRefs", False, failures[0].reason, gen, failures[0].message)
    )
    out = []
    for parent in rv.parents:
        if parent.accepted and errors:
            accepted = condition("Accepted", False, gw.UNSUPPORTED_VALUE, gen, errors[0])
        else:
            accepted = condition("Accepted", parent.accepted, parent.reason, gen, parent.message)
        out.append(
            {
                "parentRef": dict(parent.ref),
                "controllerName": view.controller,
                "conditions": [accepted, resolved],
            }
        )
    return out


# -- comparing and writing ---------------------------------------------------------------------


def _strip_times(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_times(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def same(current: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Equal but for ``lastTransitionTime``."""
    return bool(_strip_times(dict(current)) == _strip_times(dict(want)))


def with_times(current: Mapping[str, Any], want: dict[str, Any], now: str) -> dict[str, Any]:
    """``want`` with every condition's ``lastTransitionTime``: the current one when its status
    did not change, else ``now``."""
    out = copy.deepcopy(want)

    def walk(new: Any, old: Any) -> None:
        if isinstance(new, dict):
            if "type" in new and "status" in new and "reason" in new:
                prior = old if isinstance(old, Mapping) else {}
                keep = prior.get("status") == new["status"] and prior.get("lastTransitionTime")
                new["lastTransitionTime"] = keep or now
                return
            for k, v in new.items():
                walk(v, old.get(k) if isinstance(old, Mapping) else None)
        elif isinstance(new, list):
            olds = old if isinstance(old, list) else []
            for i, v in enumerate(new):
                walk(v, _counterpart(v, olds, i))

    walk(out, current)
    return out


def _counterpart(new: Any, olds: list[Any], i: int) -> Any:
    """The old list item that ``new`` replaces: same condition type, listener name or parent
    reference, else the same position."""
    if isinstance(new, Mapping):
        for field in ("type", "name", "parentRef", "ancestorRef"):
            if field in new:
                for old in olds:
                    if isinstance(old, Mapping) and old.get(field) == new[field]:
                        return old
                return None
    return olds[i] if i < len(olds) else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusUpdater:
    """Writes :func:`desired` status where it differs from what the store holds."""

    def __init__(self, api: ApiClient) -> None:
        self.custom = CustomObjectsApi(api)
        self.updates = 0
        self.conflicts = 0

    def __repr__(self) -> str:
        return f"<StatusUpdater updates={self.updates} conflicts={self.conflicts}>"

    async def update(
        self,
        objects: Mapping[Key, Obj],
        want: Mapping[Key, dict[str, Any]],
    ) -> int:
        """PUT the status of every object whose status differs; returns how many were written."""
        written = 0
        for key in sorted(want):
            obj = objects.get(key)
            if obj is None:
                continue
            current = o_status(obj)
            if same(current, want[key]):
                continue
            body = {**obj, "status": with_times(current, want[key], _now())}
            try:
                await self._put(key, obj, body)
            except ApiException as exc:
                if exc.status == 409:
                    self.conflicts += 1
                log.warning("%s %s/%s status: %s %s", *key, exc.status, exc.reason)
                continue
            written += 1
        self.updates += written
        return written

    async def _put(self, key: Key, obj: Obj, body: dict[str, Any]) -> None:
        kind, namespace, name = key
        group, version = o.group_version(obj)
        group, version = group or gw.GROUP, version or "v1"
        if kind in CLUSTER_SCOPED:
            await self.custom.replace_cluster_custom_object_status(
                group, version, PLURALS[kind], name, body
            )
        else:
            await self.custom.replace_namespaced_custom_object_status(
                group, version, namespace, PLURALS[kind], name, body
            )
