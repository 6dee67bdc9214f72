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
    the config (``~`` prefix marks a regex).
    """

    key: int
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    headers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    snis: tuple[str, ...] = ()
    regex_priority: int = 0
