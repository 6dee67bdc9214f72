"""The router's input: one :class:`RouteSpec` per configured route.

Plain data shared by the compiled router and its twin. The runtime compiler builds these from
the validated config; nothing here depends on msgspec or the config tree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What the router needs of one route.

    Values are already normalized by the caller: hosts lower-cased (may start with ``*.``, end
    with ``.*``, or carry ``:port``), methods upper-cased, header names lower-cased, paths as in
    the config (``~`` prefix marks a regex). ``id`` is the route's UUID: Kong breaks priority
    ties by it (the larger wins); routes without one tie in config order (the earlier wins).
    """

    key: int
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    snis: tuple[str, ...] = ()
    regex_priority: int = 0
    id: str | None = None
