"""The routes that carry an ``expression`` (``router_flavor = expressions``), in Kong's order.

Kong's ATC router gives such a route the priority ``1 << 63 | route.priority`` (transform.lua,
``EXPRESSION_ONLY_BIT``): every expression route is tried before every route made of the
traditional fields, higher ``priority`` first; equal priorities go to the larger route id, as
atc-router's matcher map orders them. So they are a list tried in that order ahead of the
compiled router (which keeps the traditional routes of the same config, ranked as
``traditional_compatible`` ranks them). Each expression was parsed and type-checked once, when
the config was loaded and again here; a request pays one evaluation per route tried.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastkong._core._router_py import RouteMatch
from fastkong.expressions import REQUEST_FIELDS, Facts, Node, Result, evaluate, fields_of


class ExpressionRoute:
    """One route's expression, with the route's key in the runtime's plans."""

    __slots__ = ("key", "node", "priority", "id")

    def __init__(self, key: int, node: Node, priority: int, route_id: str) -> None:
        self.key = key
        self.node = node
        self.priority = priority
        self.id = route_id

    def __repr__(self) -> str:
        return f"<ExpressionRoute key={self.key} priority={self.priority}>"


class ExpressionRouter:
    """The expression routes of one snapshot, in matching order."""

    __slots__ = ("routes", "header_names", "needs_request")

    def __init__(self, routes: Sequence[ExpressionRoute]) -> None:
        self.routes = sorted(routes, key=lambda r: (r.priority, r.id), reverse=True)
        fields = set().union(*(fields_of(r.node) for r in routes)) if routes else set()
        #: The request headers some expression reads (lower case, ``-`` for ``_``).
        self.header_names = frozenset(
            f[13:].replace("_", "-") for f in fields if f.startswith("http.headers.")
        )
        #: True when some expression reads what the routing decision cache does not key on
        #: (headers, query arguments, the peer's or the listener's address).
        self.needs_request = any(f.startswith(REQUEST_FIELDS) for f in fields)

    def __repr__(self) -> str:
        return f"<ExpressionRouter routes={len(self.routes)} needs_request={self.needs_request}>"

    def match(self, facts: Facts) -> RouteMatch | None:
        """The first route whose expression holds, as the traditional router reports its
        matches: ``path`` the part of the request path an ``http.path`` test matched (what
        ``strip_path`` strips), ``captures`` the regex groups (Kong's ``uri_captures``)."""
        for route in self.routes:
            result = Result()
            if evaluate(route.node, facts, result):
                found = result.path
                return RouteMatch(
                    route.key, found, len(found) if found else 0, result.captures or None
                )
        return None


__all__ = ["ExpressionRoute", "ExpressionRouter"]
