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


# -- Kong's own schema spec (spec/01-unit/01-db/01-schema/06-routes_spec.lua), ported ----------

VALID_UNDER_EXPRESSIONS = [
    ("http", '(http.method == "GET")'),
    ("http", '!(http.method == "GET") && !(http.host == "example.com") && !(http.path ^= "/foo")'),
    ("grpc", 'http.method == "GET" && net.port == 8000'),  # (deprecated name, still taken)
    ("https", 'http.method == "GET" && net.src.ip == 1.2.3.4 && net.src.port == 80'),
    ("grpcs", 'http.method == "GET" && net.dst.ip == 1.2.3.4 && net.dst.port == 80'),
    ("grpcs", 'http.path.segments.0 == "foo"'),
    ("grpcs", 'http.path.segments.1 ^= "bar"'),
    ("grpcs", 'http.path.segments.20_30 ~ r#"x/y"#'),
    ("grpcs", "http.path.segments.len == 10"),
]
WRONG_SEGMENTS = [
    "http.path.segments.len0   == 10",
    "http.path.segments.len_a  == 10",
    'http.path.segments.len    == "10"',
    'http.path.segments.       == "foo"',
    'http.path.segments.abc    == "foo"',
    'http.path.segments.a_c    == "foo"',
    'http.path.segments.1_2_3  == "foo"',
    'http.path.segments.1_     == "foo"',
    'http.path.segments._1     == "foo"',
    'http.path.segments.2_1    == "foo"',
    'http.path.segments.1_1    == "foo"',
    'http.path.segments.01_2   == "foo"',
    'http.path.segments.001_2  == "foo"',
    'http.path.segments.1_03   == "foo"',
]


@pytest.mark.parametrize(("protocol", "expression"), VALID_UNDER_EXPRESSIONS)
def test_kong_spec_valid_expressions(protocol: str, expression: str) -> None:
    route = {"name": "r", "protocols": [protocol], "expression": expression, "priority": 100}
    if protocol.startswith("grpc"):
        route["strip_path"] = False
    with using_router_flavor("expressions"):
        loaded = load_config(config(route))
    assert loaded.config.routes[0].expression == expression


@pytest.mark.parametrize("expression", WRONG_SEGMENTS)
def test_kong_spec_wrong_segment_fields(expression: str) -> None:
    route = {"name": "r", "protocols": ["http"], "expression": expression, "priority": 100}
    with using_router_flavor("expressions"):
        found = errors(config(route))
    assert len(found) == 1
    assert found[0].startswith("services[0].routes[0]: Router Expression failed validation: ")


def test_kong_spec_priority_and_missing_fields() -> None:
    with using_router_flavor("expressions"):
        # Required, with a default: absent is 0, null is an error; above 2^46 - 1 too.
        assert errors(config({**EXPR, "priority": None})) == [
            "services[0].routes[0].priority: required field missing"
        ]
        assert (
            load_config(config({"name": "e", "expression": EXPR["expression"]}))
            .config.routes[0]
            .priority
            == 0
        )
        # "fails given an invalid expression"
        found = errors(config({**EXPR, "expression": '(http.method == "GET") &&'}))
        assert found[0].startswith("services[0].routes[0]: Router Expression failed validation")
