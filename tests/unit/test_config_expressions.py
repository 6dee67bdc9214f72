"""Routes' ``expression`` and ``priority`` fields: only under ``router_flavor = expressions``,
with Kong's rules (kong/db/schema/entities/routes.lua and routes_subschemas.lua)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.flavor import using_router_flavor


def config(*routes: dict[str, Any]) -> str:
    return json.dumps(
        {
            "_format_version": "3.0",
            "services": [{"name": "s", "url": "http://127.0.0.1:9", "routes": list(routes)}],
        }
    )


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


EXPR = {"name": "e", "expression": 'http.path ^= "/api"', "priority": 10}


def test_the_fields_are_unknown_under_the_other_flavors() -> None:
    for flavor in ("traditional_compatible", "traditional"):
        with using_router_flavor(flavor):
            assert errors(config(EXPR)) == [
                "services[0].routes[0].expression: unknown field",
                "services[0].routes[0].priority: unknown field",
                "services[0].routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths', "
                "'snis' when 'protocols' is 'https'",
            ]
            loaded = load_config(config({"name": "p", "paths": ["/"]}))
            encoded = msgspec.json.decode(msgspec.json.encode(loaded.config.routes[0]))
            assert "expression" not in encoded and "priority" not in encoded  # Kong's shape


def test_expression_routes_load_under_the_expressions_flavor() -> None:
    with using_router_flavor("expressions"):
        loaded = load_config(config(EXPR, {"name": "p", "paths": ["/p"]}))
    by_name = {r.name: r for r in loaded.config.routes}
    assert (by_name["e"].expression, by_name["e"].priority) == ('http.path ^= "/api"', 10)
    # Kong's defaults under that flavor: shown as null and 0.
    encoded = msgspec.json.decode(msgspec.json.encode(by_name["p"]))
    assert (encoded["expression"], encoded["priority"]) == (None, 0)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            {**EXPR, "paths": ["/x"]},
            "cannot set 'expression' with 'methods', 'hosts', 'paths', 'headers', 'snis', "
            "'sources' or 'destinations' simultaneously",
        ),
        (
            {**EXPR, "regex_priority": 3},
            "cannot set 'regex_priority' with 'expression' simultaneously",
        ),
        (
            {"name": "p", "paths": ["/x"], "priority": 2},
            "cannot set 'priority' with 'methods', 'hosts', 'paths', 'headers', 'snis', "
            "'sources' or 'destinations' simultaneously",
        ),
        ({**EXPR, "expression": 'http.path = "/"'}, "unexpected character at position 11"),
        ({**EXPR, "expression": "http.path == 1"}, "Type mismatch between the LHS and RHS"),
        ({**EXPR, "expression": 'http.nope == "x"'}, "Unknown LHS field"),
    ],
)
def test_kongs_route_rules(route: dict[str, Any], message: str) -> None:
    with using_router_flavor("expressions"):
        found = errors(config(route))
    assert any(
        e.startswith("services[0].routes[0]: Router Expression failed validation: ")
        and message in e
        for e in found
    ), found


def test_field_errors() -> None:
    with using_router_flavor("expressions"):
        assert errors(config({**EXPR, "priority": 2**46})) == [
            "services[0].routes[0].priority: value should be between 0 and 70368744177663"
        ]
        assert errors(config({"name": "nothing"})) == [
            "services[0].routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths', "
            "'snis', 'expression' when 'protocols' is 'https'"
        ]
        # A stream route's expression has only the stream schema's fields.
        stream = {"name": "t", "protocols": ["tcp"], "expression": 'http.path == "/"'}
        assert errors(config(stream)) == [
            "services[0].routes[0]: Router Expression failed validation: Unknown LHS field"
        ]


def test_stream_expression_routes() -> None:
    """tcp, tls and udp routes by expression, before the traditional ones, with Kong's stream
    ``net.protocol`` (udp; tls when the client sent an SNI; else tcp)."""
    from fastkong.stream.router import UDP_PROTOCOLS, StreamRouter  # noqa: PLC0415

    routes = [
        {"name": "pg", "protocols": ["tcp"], "expression": "net.dst.port == 5432", "priority": 1},
        {
            "name": "internal",
            "protocols": ["tcp", "tls"],
            "expression": 'net.src.ip in 10.0.0.0/8 && tls.sni =^ ".internal"',
            "priority": 2,
        },
        {"name": "dns", "protocols": ["udp"], "expression": "net.dst.port == 53"},
        {"name": "classic", "protocols": ["tcp"], "destinations": [{"port": 5432}]},
    ]
    with using_router_flavor("expressions"):
        loaded = load_config(config(*routes))
    tcp = StreamRouter(loaded.config.routes)
    udp = StreamRouter(loaded.config.routes, UDP_PROTOCOLS)

    def name(router: StreamRouter, sni: str | None, src: str, port: int) -> str | None:
        found = router.match(sni, src, 40000, "127.0.0.1", port)
        return found.name if found is not None else None

    assert name(tcp, None, "192.0.2.1", 5432) == "pg"  # ahead of the traditional route
    assert name(tcp, "db.internal", "10.1.1.1", 5432) == "internal"  # higher priority
    assert name(tcp, "db.internal", "192.0.2.1", 9999) is None
    assert name(udp, None, "192.0.2.1", 53) == "dns"
    assert name(udp, None, "192.0.2.1", 5432) is None
