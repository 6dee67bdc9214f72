"""KIC's TCPIngress and UDPIngress (``configuration.konghq.com/v1beta1``) -> Kong stream
routes, as KIC 3 translates them (``kic:internal/dataplane/translator/translate_kong_l4.go``).
They are KIC's older way to expose TCP, TLS and UDP services (Gateway API TCPRoute, TLSRoute and
UDPRoute replace them); many clusters still carry them.

- A TCPIngress is ours as an Ingress is: its ``kubernetes.io/ingress.class`` annotation names
  our class, or it has none while our IngressClass is the cluster default.
- Each ``spec.rules[i]`` ``{port, host?, backend: {serviceName, servicePort}}`` becomes a route
  ``<ns>.<name>.<i>`` with protocols ``tcp`` and ``tls``, ``destinations`` the rule's port (the
  data plane's ``stream_listen`` must include it) and, with a ``host``, ``snis`` that host. On a
  plain stream listener it proxies TCP; on an ``ssl`` one it terminates TLS for that SNI.
- The backend Service port becomes a Kong service ``<ns>.<svc>.<port>`` with protocol ``tcp``
  over the upstream ``<svc>.<ns>.<port>.svc`` and its EndpointSlice targets, as for an Ingress.
- ``spec.tls`` (``hosts``, ``secretName``) gives certificates, as an Ingress's does.
- A UDPIngress rule ``{port, backend}`` (no ``host``, no ``tls``) becomes a route
  ``<ns>.<name>.<i>.udp`` with protocols ``udp`` and ``destinations`` the rule's port (a ``udp``
  entry of ``stream_listen``), and its backend the Kong service ``<ns>.<svc>.<port>.udp`` with
  protocol ``udp``: the suffixes keep a TCPIngress and a UDPIngress on one Service port apart.
  The Service port is the one of that number whose protocol is UDP, if the Service has one.

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
UDP_KIND: Final = "UDPIngress"
KINDS: Final = (KIND, UDP_KIND)
PROTOCOLS: Final = ("tcp", "tls")


@dataclass(frozen=True, slots=True)
class StreamRule:
    """One usable rule: the Service port it names and the Kong route it becomes."""

    ingress: Obj
    backend: Backend
    route: dict[str, Any]

    @property
    def protocol(self) -> str:
        """The Kong service protocol: ``udp`` for a UDPIngress, else ``tcp``."""
        return "udp" if self.ingress.get("kind") == UDP_KIND else "tcp"

    @property
    def service_name(self) -> str:
        ns = o.namespace(self.ingress)
        name = naming.service_name(ns, self.backend.service, self.backend.port)
        return name + ".udp" if self.protocol == "udp" else name


def _port(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
    return value if ok else None


def rules(ingress: Obj, problems: list[Problem]) -> list[StreamRule]:
    """The TCPIngress's or UDPIngress's rules as routes (module docstring); malformed ones are
    reported."""
    ns, name, ref = o.namespace(ingress), o.name(ingress), ObjectRef.of(ingress)
    udp = ingress.get("kind") == UDP_KIND
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
        elif host is not None and (udp or not isinstance(host, str)):
            why = "host is a TCPIngress field" if udp else "host must be a string"
        if why is not None:
            problems.append(Problem(ref, f"rules[{i}]: {why}; left out"))
            continue
        route_name = f"{ns}.{name}.{i}.udp" if udp else f"{ns}.{name}.{i}"
        route: dict[str, Any] = {
            "id": naming.entity_id("routes", route_name),
            "name": route_name,
            "protocols": ["udp"] if udp else list(PROTOCOLS),
            "destinations": [{"port": port}],
        }
        if host:
            route["snis"] = [host]
        route["tags"] = o.tags(ingress)
        out.append(StreamRule(ingress, Backend(str(service), number=service_port), route))
    return out
