"""Kong's stream router: which ``tcp``/``tls``/``tls_passthrough`` route a connection takes.

Kong 3.x (``traditional_compatible``, ``kong/router/transform.lua``) turns each stream route into
an expression over the connection's source and destination address and its TLS server name:

* ``snis``: ``net.protocol != "tls" || tls.sni <op> name`` for each name (exact, ``*.x`` as
  "ends with ``.x``", ``x.*`` as "starts with ``x.``"; a trailing dot of a name is dropped).
  ``net.protocol`` is ``tls`` when the connection carries an SNI, else ``tcp``: a route with
  ``snis`` also takes connections that sent no server name.
* ``sources``/``destinations``: any entry of the list, an entry being its IP (or CIDR) and its
  port, each when given.

Routes are tried by Kong's stream priority (``stream_get_priority``): ``snis``, or both
``sources`` and ``destinations``, first; then, per list, an exact IP over a port over a CIDR;
equal priorities go to the larger route id, as atc-router's ``(priority, uuid)`` order. Kong's
expression also tests ``net.protocol``: a connection takes only the routes of its protocols, so
the ``udp`` routes have a router of their own (:mod:`.udp`), and routes of a disabled service
are left out, as Kong does.

Server names are compared in lower case (DNS names are case-insensitive; Kong compares them as
sent).
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Final

from fastkong.expressions import Facts, Node, Result, evaluate, parse, route_expression

STREAM_PROTOCOLS: Final = frozenset({"tcp", "tls", "tls_passthrough"})
UDP_PROTOCOLS: Final = frozenset({"udp"})

_SNI_BIT: Final = 1 << 61
#: Kong's EXPRESSION_ONLY_BIT (transform.lua): above every traditional stream priority.
EXPRESSION_BIT: Final = 0xFF << 56
_IP_BIT: Final = 1 << 3
_PORT_BIT: Final = 1 << 2
_CIDR_BIT: Final = 1 << 0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Endpoint:
    """One ``sources``/``destinations`` entry: an address or range, a port, or both."""

    __slots__ = ("network", "port")

    def __init__(self, ip: str | None, port: int | None) -> None:
        self.network: Network | None = (
            ipaddress.ip_network(ip, strict=False) if ip is not None else None
        )
        self.port = port

    def __repr__(self) -> str:
        return f"<Endpoint {self.network or '*'}:{self.port or '*'}>"

    def matches(self, address: Address | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is None:
            return True
        return address is not None and address in self.network


class StreamRoute:
    """A stream route as the router tests it (``route`` is the config entity)."""

    __slots__ = ("route", "id", "name", "protocols", "exact", "suffixes", "prefixes", "sources",
                 "destinations", "priority", "expression")  # fmt: skip

    def __init__(self, route: Any) -> None:
        self.route = route
        self.id: str = str(route.id)
        self.name: str | None = route.name
        self.protocols = frozenset(route.protocols)
        exact: set[str] = set()
        suffixes: list[str] = []
        prefixes: list[str] = []
        for name in route.snis or ():
            name = name.lower()
            if name.endswith("*") and not name.startswith("*"):
                prefixes.append(name[:-1])
                continue
            if len(name) > 1 and name.endswith("."):
                name = name[:-1]
            if name.startswith("*"):
                suffixes.append(name[1:])
            else:
                exact.add(name)
        self.exact = frozenset(exact)
        self.suffixes = tuple(suffixes)
        self.prefixes = tuple(prefixes)
        self.sources = tuple(Endpoint(e.ip, e.port) for e in route.sources or ())
        self.destinations = tuple(Endpoint(e.ip, e.port) for e in route.destinations or ())
        self.priority = stream_priority(
            bool(route.snis), route.sources or (), route.destinations or ()
        )
        #: An ``expression`` (router_flavor = expressions; the config layer admits one only
        #: then): tried before every route of the traditional fields, by its ``priority``.
        self.expression: Node | None = None
        text = getattr(route, "expression", None)
        if isinstance(text, str):
            protocols = list(route.protocols)
            self.expression = parse(route_expression(text, protocols), stream=True)
            self.priority = EXPRESSION_BIT | (route.priority or 0)

    def __repr__(self) -> str:
        return f"<StreamRoute {self.name or self.id} {sorted(self.protocols)} p={self.priority:#x}>"

    @property
    def has_snis(self) -> bool:
        return bool(self.exact or self.suffixes or self.prefixes)

    def matches(
        self, sni: str | None, src: Address | None, src_port: int, dst: Address | None,
        dst_port: int,
        scheme: str = "tcp",
    ) -> bool:  # fmt: skip
        if self.expression is not None:
            facts = Facts(
                "", "", "", scheme, sni, dst_port, src=(str(src), src_port), dst_ip=str(dst)
            )
            return evaluate(self.expression, facts, Result())
        if sni is not None and self.has_snis:
            if not (
                sni in self.exact
                or any(sni.endswith(s) for s in self.suffixes)
                or any(sni.startswith(p) for p in self.prefixes)
            ):
                return False
        if self.sources and not any(e.matches(src, src_port) for e in self.sources):
            return False
        return not self.destinations or any(e.matches(dst, dst_port) for e in self.destinations)


def stream_priority(snis: bool, sources: Sequence[Any], destinations: Sequence[Any]) -> int:
    """Kong's ``stream_get_priority`` (``kong/router/transform.lua``)."""
    weight = _SNI_BIT if snis or (sources and destinations) else 0
    return weight | (_ip_weight(sources) << 4) | _ip_weight(destinations)


def _ip_weight(entries: Sequence[Any]) -> int:
    weight = 0
    for entry in entries:
        if entry.ip is not None:
            weight |= _CIDR_BIT if "/" in entry.ip else _IP_BIT
        if entry.port is not None:
            weight |= _PORT_BIT
    return weight


class StreamRouter:
    """The stream routes of one config snapshot, in the order they are tried."""

    __slots__ = ("routes", "udp")

    def __init__(self, routes: Iterable[Any], protocols: frozenset[str] = STREAM_PROTOCOLS) -> None:
        """The ``routes`` that take one of ``protocols`` (the tcp/tls ones, or ``udp``)."""
        self.udp = protocols == UDP_PROTOCOLS
        found = [StreamRoute(r) for r in routes if protocols & set(r.protocols)]
        found.sort(key=lambda r: (r.priority, uuid.UUID(r.id).int), reverse=True)
        self.routes = tuple(found)

    def __repr__(self) -> str:
        return f"<StreamRouter routes={len(self.routes)}>"

    def __len__(self) -> int:
        return len(self.routes)

    def match(
        self, sni: str | None, src_ip: str, src_port: int, dst_ip: str, dst_port: int
    ) -> StreamRoute | None:
        """The route a connection takes, or None (Kong: "no Route found with those values")."""
        src = _address(src_ip)
        dst = _address(dst_ip)
        name = sni.lower() if sni is not None else None
        # Kong's stream scheme, what an expression's net.protocol reads (atc.lua, exec).
        scheme = "udp" if self.udp else ("tls" if sni else "tcp")
        for route in self.routes:
            if route.matches(name, src, src_port, dst, dst_port, scheme):
                return route
        return None


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener's IPv4 peer
    return address


__all__ = [
    "STREAM_PROTOCOLS",
    "UDP_PROTOCOLS",
    "Endpoint",
    "StreamRoute",
    "StreamRouter",
    "stream_priority",
]
