"""KIC's TCPIngress (``configuration.konghq.com/v1beta1``) -> Kong stream routes, as KIC 3
translates it (``kic:internal/dataplane/translator/translate_kong_l4.go``). TCPIngress is KIC's
older way to expose TCP and TLS services (Gateway API TCPRoute and TLSRoute replace it); many
clusters still carry them.

- A TCPIngress is ours as an Ingress is: its ``kubernetes.io/ingress.class`` annotation names
  our class, or it has none while our IngressClass is the cluster default.
- Each ``spec.rules[i]`` ``{port, host?, backend: {serviceName, servicePort}}`` becomes a route
  ``<ns>.<name>.<i>`` with protocols ``tcp`` and ``tls``, ``destinations`` the rule's port (the
  data plane's ``stream_listen`` must include it) and, with a ``host``, ``snis`` that host. On a
  plain stream listener it proxies TCP; on an ``ssl`` one it terminates TLS for that SNI.
- The backend Service port becomes a Kong service ``<ns>.<svc>.<port>`` with protocol ``tcp``
  over the upstream ``<svc>.<ns>.<port>.svc`` and its EndpointSlice targets, as for an Ingress.
- ``spec.tls`` (``hosts``, ``secretName``) gives certificates, as an Ingress's does.

A rule that is malformed is left out with a problem; the other rules still go through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from fastkong.k8s import naming
from fastkong.k8s import objects as o
from fastkong.k8s.ingress import Backend
from fastkong.k8s.objects import Obj, ObjectRef, Problem

KIND: Final = "TCPIngress"
PROTOCOLS: Final = ("tcp", "tls")


@dataclass(frozen=True, slots=True)
class TcpRule:
    """One usable rule: the Service port it names and the Kong route it becomes."""

    ingress: Obj
    backend: Backend
    route: dict[str, Any]

    @property
    def service_name(self) -> str:
        ns = o.namespace(self.ingress)
        return naming.service_name(ns, self.backend.service, self.backend.port)


def _port(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return value if ok else None


def rules(ingress: Obj, problems: list[Problem]) -> list[TcpRule]:
    """The TCPIngress's rules as routes (module docstring); malformed ones are reported."""
    ns, name, ref = o.namespace(ingress), o.name(ingress), ObjectRef.of(ingress)
    out = []
    found = o.spec(ingress).get("rules")
    for i, rule in enumerate(found if isinstance(found, list) else []):
        rule = rule if isinstance(rule, Mapping) else {}
        backend = rule.get("backend")
        backend = backend if isinstance(backend, Mapping) else {}
        port, service_port = _port(rule.get("port")), _port(backend.get("servicePort"))
        service, host = backend.get("serviceName"), rule.get("host")
        why = None
        if port is None:
            why = "port must be a number from 1 to 65535"
        elif not isinstance(service, str) or not service:
            why = "backend.serviceName is required"
        elif service_port is None:
            why = "backend.servicePort must be a number from 1 to 65535"
        elif host is not None and not isinstance(host, str):
            why = "host must be a string"
        if why is not None:
            problems.append(Problem(ref, f"rules[{i}]: {why}; left out"))
            continue
        route_name = f"{ns}.{name}.{i}"
        route: dict[str, Any] = {
            "id": naming.entity_id("routes", route_name),
            "name": route_name,
            "protocols": list(PROTOCOLS),
            "destinations": [{"port": port}],
        }
        if host:
            route["snis"] = [host]
        route["tags"] = o.tags(ingress)
        out.append(TcpRule(ingress, Backend(str(service), number=service_port), route))
    return out
