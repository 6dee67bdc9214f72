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

import re
from collections.abc import Sequence

from fastkong._core._router_py import RouteMatch
from fastkong.expressions import (
    REQUEST_FIELDS,
    Facts,
    Logical,
    Node,
    Result,
    evaluate,
    fields_of,
)


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


def first_segment(node: Node) -> str | None:
    """The first path segment every request this expression matches must have, when a test
    ANDed at its top level fixes it (``http.path ^= "/users/..."``, ``http.path == "/users"``);
    else None."""
    if isinstance(node, Logical):
        if node.op != "&&":
            return None
        return next((s for item in node.items if (s := first_segment(item)) is not None), None)
    if node.field != "http.path" or node.lower or node.any:
        return None
    value = node.value
    if node.op == "~" and isinstance(value, re.Pattern):
        # A regex anchored with a literal first segment: "^/users/...", "^/users$".
        m = _ANCHORED_SEGMENT.match(value.pattern)
        if m is None or "|" in value.pattern or value.flags & re.IGNORECASE:
            return None  # (an alternative may start elsewhere: "^/a/|^/b/")
        return m.group(1)
    if node.op not in ("^=", "==") or not isinstance(value, str) or not value.startswith("/"):
        return None
    segment, slash, _ = value[1:].partition("/")
    # A prefix that ends inside the segment ("/user" also takes "/users") fixes none.
    return segment if slash or node.op == "==" else None


#: ``^/`` then a first segment of plain characters (no regex syntax), then ``/`` or ``$``.
_ANCHORED_SEGMENT = re.compile(r"\^/([A-Za-z0-9_~-]+)(?:/|\$)")


class ExpressionRouter:
    """The expression routes of one snapshot, in matching order.

    The order is a list to try one by one, so a request would test every route ahead of its
    own. Most expressions pin the path's first segment; the routes are therefore also kept per
    first segment, each list holding the routes of that segment and those pinning none, in the
    same order: a request tries only the routes that could match it (tested against trying
    them all in tests/unit/test_expression_router.py).
    """

    __slots__ = ("routes", "header_names", "needs_request", "_by_segment", "_unpinned")

    def __init__(self, routes: Sequence[ExpressionRoute]) -> None:
        self.routes = sorted(routes, key=lambda r: (r.priority, r.id), reverse=True)
        pinned = {id(r): first_segment(r.node) for r in self.routes}
        self._unpinned = tuple(r for r in self.routes if pinned[id(r)] is None)
        self._by_segment: dict[str, tuple[ExpressionRoute, ...]] = {}
        for segment in {s for s in pinned.values() if s is not None}:
            self._by_segment[segment] = tuple(
                r for r in self.routes if pinned[id(r)] in (segment, None)
            )
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
        segment = facts.path[1:].partition("/")[0]
        for route in self._by_segment.get(segment, self._unpinned):
            result = Result()
            if evaluate(route.node, facts, result):
                found = result.path
                return RouteMatch(
                    route.key, found, len(found) if found else 0, result.captures or None
                )
        return None


__all__ = ["ExpressionRoute", "ExpressionRouter"]
