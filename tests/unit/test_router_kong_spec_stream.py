"""Kong's router spec, ``#stream context`` (flavor ``traditional_compatible``), ported.

Source: ``spec/01-unit/08-router_spec.lua`` lines 4408-4885 (``[sources]``, ``[destinations]``,
``[snis]``, sni vs src/dst priorities, "check empty route fields") and the
``[#stream SNI-based routing does work using tls_passthrough]`` case (line 5166). These run
against Kong's stream router; here against :class:`fastkong.stream.router.StreamRouter`, fed a
config that went through fastkong's loader (ids as in the spec, one ``tcp`` service).

Kong's ``select(_, _, _, scheme, src_ip, src_port, dst_ip, dst_port, sni)`` leaves a field
absent from the atc context when it is nil (a predicate on an absent field is false); here an
absent address is ``""`` (no address) and an absent port ``0``. The spec passes the scheme
``"tcp"`` along with an SNI, where Kong's ``exec`` (``kong/router/atc.lua``) derives it as
``sni and "tls" or "tcp"``, as fastkong does: the winners of these cases are the same either way.

Left out:

* ``[snis]`` ``[sni]`` and ``[sni] is ignored for http request ... #6425`` (lines 4709, 4716):
  ``it_trad_only``, pending for ``traditional_compatible``.
* "check empty route fields" (line 4818) compares ``get_expression()`` strings, a Kong
  internal; ported as: the route loads with an empty (``[]``, ``null``, absent) field, and it
  routes as the expression the spec expects says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from fastkong.config import load_config
from fastkong.stream.router import StreamRouter

UseCase = Sequence[Mapping[str, Any]]

ID = "e8fb37f1-102d-461e-9c51-6608a6bb81{:02d}"


def rid(n: int) -> str:
    """The spec's route id ``e8fb37f1-...-81NN``."""
    return ID.format(n)


def stream_router(routes: Sequence[Mapping[str, Any]]) -> StreamRouter:
    """Kong's ``new_router(use_case)`` in the stream subsystem: ``routes`` are the use case's
    route tables; each gets a name and the one ``tcp`` service (Kong's router ignores it)."""
    config = {
        "_format_version": "3.0",
        "services": [{"name": "s", "protocol": "tcp", "host": "127.0.0.1", "port": 9}],
        "routes": [{"name": f"r{i}", "service": "s", **r} for i, r in enumerate(routes)],
    }
    return StreamRouter(load_config(json.dumps(config)).config.routes)


def select(
    router: StreamRouter,
    src_ip: str | None = None,
    src_port: int | None = None,
    dst_ip: str | None = None,
    dst_port: int | None = None,
    sni: str | None = None,
) -> str | None:
    """Kong's stream ``select(nil, nil, nil, "tcp", src_ip, src_port, dst_ip, dst_port, sni)``:
    the winning route's id, or None."""
    found = router.match(sni, src_ip or "", src_port or 0, dst_ip or "", dst_port or 0)
    return found.id if found is not None else None


# -- [sources] / [destinations] (lines 4412-4642) ----------------------------------------------

ENDPOINTS: list[list[dict[str, Any]]] = [
    [{"ip": "127.0.0.1"}, {"ip": "127.0.0.2"}],  # plain
    [{"port": 65001}, {"port": 65002}],
    [{"ip": "127.168.0.0/8"}],  # range
    [{"ip": "127.0.0.1", "port": 65001}],  # ip + port
    [{"ip": "127.0.0.2", "port": 65300}, {"ip": "127.168.0.0/16", "port": 65301}],
]

# (name, spec line of the [sources] it / of the [destinations] it, address, port,
#  expected route number or None)
ENDPOINT_CASES = [
    ("ip", (4482, 4592), "127.0.0.1", None, 1),
    ("port", (4492, 4604), "127.0.0.3", 65001, 2),
    ("ip_range_match", (4498, 4611), "127.168.0.1", None, 3),
    ("ip_and_port", (4504, 4618), "127.0.0.1", 65001, 4),
    ("ip_range_match_and_port", (4510, 4625), "127.168.10.1", 65301, 5),
    ("ip_no_match", (4516, 4632), "10.0.0.1", None, None),
    ("ip_no_match", (4516, 4632), "10.0.0.2", 65301, None),
]


def endpoint_router(field: str) -> StreamRouter:
    return stream_router(
        [
            {"id": rid(n), "protocols": ["tcp"], field: entries}
            for n, entries in enumerate(ENDPOINTS, 1)
        ]
    )


@pytest.mark.parametrize(("name", "line", "ip", "port", "expected"), ENDPOINT_CASES)
def test_sources(
    name: str, line: tuple[int, int], ip: str, port: int | None, expected: int | None
) -> None:
    """``[sources]`` ``[src_ip]``, ``[src_port]``, ... (spec lines 4482-4523)."""
    router = endpoint_router("sources")
    want = rid(expected) if expected is not None else None
    assert select(router, src_ip=ip, src_port=port) == want
    assert select(router, src_ip=ip, src_port=port) == want  # the spec asks twice


@pytest.mark.parametrize(("name", "line", "ip", "port", "expected"), ENDPOINT_CASES)
def test_destinations(
    name: str, line: tuple[int, int], ip: str, port: int | None, expected: int | None
) -> None:
    """``[destinations]`` ``[dst_ip]``, ``[dst_port]``, ... (spec lines 4592-4641)."""
    router = endpoint_router("destinations")
    want = rid(expected) if expected is not None else None
    assert select(router, dst_ip=ip, dst_port=port) == want
    assert select(router, dst_ip=ip, dst_port=port) == want


# -- priorities (lines 4732-4811) ---------------------------------------------------------------


def test_sni_has_higher_priority_than_src_or_dst() -> None:
    """``[sni] has higher priority than [src] or [dst]`` (spec line 4732)."""
    router = stream_router(
        [
            {"id": rid(1), "protocols": ["tls"], "snis": ["www.example.org"]},
            {"id": rid(2), "protocols": ["tls"], "sources": [{"ip": "127.0.0.1"}]},
            {"id": rid(3), "protocols": ["tls"], "destinations": [{"ip": "172.168.0.1"}]},
        ]
    )
    assert select(router, src_ip="127.0.0.1", sni="www.example.org") == rid(1)
    assert select(router, dst_ip="172.168.0.1", sni="www.example.org") == rid(1)


def test_src_and_dst_has_higher_priority_than_sni() -> None:
    """``[src] + [dst] has higher priority than [sni]`` (spec line 4777)."""
    router = stream_router(
        [
            {"id": rid(1), "protocols": ["tls"], "snis": ["www.example.org"]},
            {
                "id": rid(2),
                "protocols": ["tls"],
                "sources": [{"ip": "127.0.0.1"}],
                "destinations": [{"ip": "172.168.0.1"}],
            },
        ]
    )
    got = select(router, src_ip="127.0.0.1", dst_ip="172.168.0.1", sni="www.example.org")
    assert got == rid(2)


# -- check empty route fields (lines 4818-4882) -------------------------------------------------

ABSENT = object()
EMPTY_VALUES = pytest.mark.parametrize("empty", [[], None, ABSENT], ids=["[]", "null", "nil"])

BASE_ROUTE: dict[str, Any] = {
    "id": rid(1),
    "protocols": ["tls"],
    "snis": ["www.example.org"],
    "sources": [{"ip": "127.0.0.1"}],
}


def empty_field_router(empty: object, **fields: Any) -> StreamRouter:
    """The spec's route with ``fields`` set; a field given as ``empty`` becomes ``[]``,
    ``null`` or absent (Kong's ``{}``, ``ngx.null``, ``nil``)."""
    route = {**BASE_ROUTE, **fields}
    for key, value in list(route.items()):
        if value is ABSENT:
            del route[key]
    return stream_router([route])


@EMPTY_VALUES
def test_empty_snis(empty: object) -> None:
    """``empty snis`` (spec line 4841): ``(net.src.ip == 127.0.0.1)``."""
    router = empty_field_router(empty, snis=empty)
    assert select(router, src_ip="127.0.0.1", sni="other.example.org") == rid(1)
    assert select(router, src_ip="127.0.0.1") == rid(1)
    assert select(router, src_ip="127.0.0.2", sni="www.example.org") is None


@EMPTY_VALUES
def test_empty_snis_and_src_cidr(empty: object) -> None:
    """``empty snis and src cidr`` (spec line 4848): ``(net.src.ip in 127.0.0.0/8)``."""
    router = empty_field_router(empty, snis=empty, sources=[{"ip": "127.168.0.1/8"}])
    assert select(router, src_ip="127.9.9.9", sni="other.example.org") == rid(1)
    assert select(router, src_ip="127.0.0.1") == rid(1)
    assert select(router, src_ip="10.0.0.1", sni="www.example.org") is None


@EMPTY_VALUES
def test_empty_snis_and_dst_cidr(empty: object) -> None:
    """``empty snis and dst cidr`` (spec line 4856):
    ``(net.src.ip == 127.0.0.1) && (net.dst.ip in 192.168.0.0/16)``."""
    router = empty_field_router(empty, snis=empty, destinations=[{"ip": "192.168.0.1/16"}])
    assert select(router, "127.0.0.1", dst_ip="192.168.5.5", sni="other.example.org") == rid(1)
    assert select(router, "127.0.0.1", dst_ip="10.0.0.1") is None
    assert select(router, "127.0.0.2", dst_ip="192.168.5.5") is None


@EMPTY_VALUES
def test_empty_sources(empty: object) -> None:
    """``empty sources`` (spec line 4865): ``(net.protocol != "tls" ||
    (tls.sni == "www.example.org")) && (net.dst.ip in 192.168.0.0/16)``."""
    router = empty_field_router(empty, sources=empty, destinations=[{"ip": "192.168.0.1/16"}])
    assert select(router, "10.0.0.1", dst_ip="192.168.1.1", sni="www.example.org") == rid(1)
    assert select(router, "10.0.0.1", dst_ip="192.168.1.1") == rid(1)  # no SNI: tcp
    assert select(router, "10.0.0.1", dst_ip="192.168.1.1", sni="other.example.org") is None
    assert select(router, "10.0.0.1", dst_ip="10.0.0.1", sni="www.example.org") is None


@EMPTY_VALUES
def test_empty_destinations(empty: object) -> None:
    """``empty destinations`` (spec line 4874): ``(net.protocol != "tls" ||
    (tls.sni == "www.example.org")) && (net.src.ip == 127.0.0.1)``."""
    router = empty_field_router(empty, destinations=empty)
    assert select(router, "127.0.0.1", dst_ip="192.168.1.1", sni="www.example.org") == rid(1)
    assert select(router, "127.0.0.1") == rid(1)  # no SNI: tcp
    assert select(router, "127.0.0.1", sni="other.example.org") is None
    assert select(router, "127.0.0.2", sni="www.example.org") is None


# -- tls_passthrough (line 5166) ----------------------------------------------------------------


def test_sni_based_routing_does_work_using_tls_passthrough() -> None:
    """``[#stream SNI-based routing does work using tls_passthrough]`` (spec line 5166):
    ``exec()`` with ``ssl_preread_server_name`` as the SNI."""
    router = stream_router(
        [
            {
                "id": rid(n),
                "protocols": ["tls_passthrough"],
                "snis": [name],
                "preserve_host": True,
            }
            for n, name in ((1, "www.example.com"), (2, "www.example.org"))
        ]
    )
    assert select(router, sni="www.example.com") == rid(1)
    assert select(router, sni="www.example.org") == rid(2)
