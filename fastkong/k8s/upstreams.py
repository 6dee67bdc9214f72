"""Service ports and EndpointSlices -> upstream targets.

Ready endpoints (``conditions.ready`` true or unset) become targets at weight 100; with KIC's
drain support, terminating endpoints stay at weight 0 so that Kong finishes their connections
without sending new requests. Endpoints that are neither are left out. The same address listed
twice (two slices, or a slice listing it twice) is one endpoint, as in KIC's ``getEndpoints``;
only a ready and a terminating listing of one address are two, whose weights then add up
(KIC's ``updateTargetMap``: 100 + 0).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from fastkong.k8s import objects as o
from fastkong.k8s.annotations import SERVICE_UPSTREAM
from fastkong.k8s.ingress import Backend
from fastkong.k8s.objects import Index, Obj

DEFAULT_WEIGHT = 100
MAX_WEIGHT = 65535


def find_port(service: Obj, backend: Backend, udp: bool = False) -> Mapping[str, Any] | str:
    """The Service port an Ingress backend names (KIC's ``findPort``), or why there is none.
    ``udp``: a UDPIngress's backend, which takes the UDP port of its number first (a Service
    such as DNS has a TCP and a UDP port of one number)."""
    spec = o.spec(service)
    ports = [p for p in spec.get("ports") or [] if isinstance(p, Mapping)]
    external = spec.get("type") == "ExternalName"
    if backend.number is not None:
        if external:
            return {"port": backend.number, "targetPort": backend.number}
        if udp:
            ports.sort(key=lambda p: p.get("protocol") != "UDP")
        for port in ports:
            if port.get("port") == backend.number:
                return port
        return f"service has no port {backend.number}"
    if external:
        return "rules with an ExternalName service must specify numeric ports"
    if backend.port_name is not None:
        for port in ports:
            if port.get("name") == backend.port_name or port.get("targetPort") == backend.port_name:
                return port
        return f"service has no port named {backend.port_name!r}"
    if len(ports) != 1:
        return f"in implicit mode, service must have exactly 1 port, has {len(ports)}"
    return ports[0]


def targets(
    index: Index, service: Obj, port: Mapping[str, Any], service_upstream: bool = False
) -> list[dict[str, Any]]:
    """The upstream targets of one Service port, sorted by address. ``service_upstream``:
    IngressClassParameters' ``serviceUpstream``, the annotation's effect on every Service."""
    ns = o.namespace(service)
    if service_upstream or o.anns(service).get(SERVICE_UPSTREAM) == "true":
        return [_target(f"{o.name(service)}.{ns}.svc", port.get("port"), DEFAULT_WEIGHT, service)]
    spec = o.spec(service)
    if spec.get("type") == "ExternalName":
        host = str(spec.get("externalName") or "")
        return [_target(host, port.get("targetPort") or port.get("port"), DEFAULT_WEIGHT, service)]
    merged: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, bool]] = set()
    port_name = port.get("name") or ""
    slices = sorted(index.slices.get((ns, o.name(service)), []), key=o.name)
    for eps in slices:
        for ep_port in eps.get("ports") or []:
            if not isinstance(ep_port, Mapping) or (ep_port.get("name") or "") != port_name:
                continue
            if (ep_port.get("protocol") or "TCP") not in _protocols(spec):
                continue
            number = ep_port.get("port")
            if not isinstance(number, int) or number < 0:
                continue
            for endpoint in eps.get("endpoints") or []:
                weight = _weight(endpoint)
                addresses = endpoint.get("addresses") if isinstance(endpoint, Mapping) else None
                if weight is None or not addresses:
                    continue
                target = _target(str(addresses[0]), number, weight, eps)
                if (target["target"], weight == 0) in seen:
                    continue
                seen.add((target["target"], weight == 0))
                if target["target"] in merged:
                    old = merged[target["target"]]
                    old["weight"] = min(MAX_WEIGHT, old["weight"] + weight)
                else:
                    merged[target["target"]] = target
    return [merged[k] for k in sorted(merged)]


def _protocols(spec: Mapping[str, Any]) -> set[str]:
    """KIC's ``listProtocols``: TCP plus every protocol the Service's ports name."""
    out = {"TCP"}
    for port in spec.get("ports") or []:
        if isinstance(port, Mapping) and port.get("protocol"):
            out.add(str(port["protocol"]))
    return out


def _weight(endpoint: Any) -> int | None:
    if not isinstance(endpoint, Mapping):
        return None
    conditions = endpoint.get("conditions")
    conditions = conditions if isinstance(conditions, Mapping) else {}
    if conditions.get("terminating") is True:
        return 0
    if conditions.get("ready") is False:
        return None
    return DEFAULT_WEIGHT


def _target(address: str, port: Any, weight: int, source: Obj) -> dict[str, Any]:
    try:
        if ipaddress.ip_address(address).version == 6:
            address = f"[{address}]"
    except ValueError:
        pass
    return {"target": f"{address}:{port}", "weight": weight, "tags": o.tags(source)}
