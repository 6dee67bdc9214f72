"""Kong's route schema spec, ported: ``spec/01-unit/01-db/01-schema/06-routes_spec.lua``.

Kong runs its main ``describe`` once per router flavor; the cases here run under
``traditional_compatible`` (fastkong's default) and ``traditional`` (the ``FLAVORS`` fixture),
where Kong expects the same outcome under both. The block Kong runs only for
``traditional_compatible`` (and ``expressions``) runs under ``traditional_compatible``; the
``it_trad_only`` case runs under ``traditional`` only. Each route is a top-level ``routes[]``
entry of a declarative config; the Lua ``service = { id = ... }`` becomes a reference to a
declared service (and, in ``test_service_as_a_foreign_key_record``, Kong's record form).

Left out:
- the ``expressions``-flavor blocks: ported in tests/unit/test_config_expressions.py.
- ``created_at``/``updated_at`` set by ``process_auto_fields(route, "insert")``: DB insert only.
- "gives access to foreign schemas": introspects the Lua schema object.
- "rejects invalid names", value ``string.char(105, 213, 205, 149)``: invalid UTF-8 cannot be
  written in YAML or JSON.
- "errors for not-normalized prefix path": loops ``ipairs`` over a map, so Kong runs no case
  (and its message is stale); the rule is covered by test_config_validation.test_route.
- the second, identical "errors if methods attribute is set on grpc/grpcs": ported once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from fastkong.config import Config, load_config
from fastkong.config.flavor import using_router_flavor
from tests.kong_schema_spec import (
    A_VALID_UUID,
    BAD_PERCENT_ENCODED,
    INVALID_HOSTNAMES,
    MISPLACED_WILDCARDS,
    PUNYCODE_HOSTS,
    VALID_HOSTNAMES,
    VALID_NAMES,
    config_errors,
    invalid_name,
)

ANOTHER_UUID = "64a8670b-900f-44e7-a900-6ec7ef5aa4d3"
S_UUID = "a4fbd24e-6a52-4937-bd78-2536713072d2"
SERVICES = [
    {"id": sid, "name": f"s{i}", "host": "example.test"}
    for i, sid in enumerate((A_VALID_UUID, ANOTHER_UUID, S_UUID))
]
STREAM = ("tcp", "tls", "udp")
L4_NEEDS = (
    "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"
)
GRPC_METHODS = "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"
GRPC_STRIP_PATH = "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"


@pytest.fixture(params=["traditional_compatible", "traditional"])
def flavor(request: pytest.FixtureRequest) -> Iterator[str]:
    with using_router_flavor(request.param):
        yield request.param


def text(*routes: dict[str, Any]) -> str:
    return json.dumps({"_format_version": "3.0", "services": SERVICES, "routes": list(routes)})


def load(*routes: dict[str, Any]) -> Config:
    return load_config(text(*routes)).config


def errors(*routes: dict[str, Any]) -> list[str]:
    return config_errors(text(*routes))


def at(field: str, *routes: dict[str, Any]) -> list[str]:
    """The errors at ``routes[0].<field>`` and below it (Kong's ``errs[field]``)."""
    here = f"routes[0].{field}"
    return [e for e in errors(*routes) if re.match(re.escape(here) + r"[.\[:]", e)]


def builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


# -- top-level cases ---------------------------------------------------------------------------
VALID_ROUTE = {
    "id": A_VALID_UUID,
    "name": "my_route",
    "protocols": ["http"],
    "methods": ["GET", "POST"],
    "hosts": ["example.com"],
    "headers": {"location": ["location-1"]},
    "paths": ["/ovo"],
    "regex_priority": 1,
    "strip_path": False,
    "preserve_host": True,
    "service": ANOTHER_UUID,
}


def test_validates_a_valid_route(flavor: str) -> None:
    route = load(VALID_ROUTE).routes[0]
    assert (route.id, route.service, route.strip_path) == (A_VALID_UUID, ANOTHER_UUID, False)
    assert (route.preserve_host, route.regex_priority) == (True, 1)


@pytest.mark.parametrize("service", [{"service": None}, {}], ids=["null", "missing"])
def test_it_does_not_fail_when_service_is_null_or_missing(
    flavor: str, service: dict[str, Any]
) -> None:
    assert load({**service, "paths": ["/"]}).routes[0].service is None


# Kong's declarative loader accepts a top-level foreign key as a name or id string, and
# (through its second validation pass with the full entity schemas, kong/db/schema/others/
# declarative_config.lua `flatten`) as the foreign-key record itself, validated as Kong's
# `foreign` type (kong/db/schema/init.lua `validate_field`, `validate_primary_key`).
def test_service_as_a_foreign_key_record(flavor: str) -> None:
    # "validates a valid route" with the spec's own `service = { id = another_uuid }`
    route = load({**VALID_ROUTE, "service": {"id": ANOTHER_UUID}}).routes[0]
    assert route.service == ANOTHER_UUID


@pytest.mark.parametrize(
    ("service_id", "message"),
    [
        # "validates the foreign key in entities"
        ("blergh", "routes[0].service.id: expected a valid UUID"),
        # "fails when service.id is null"
        (None, "routes[0].service.id: required field missing"),
    ],
)
def test_service_foreign_key_record_is_validated(
    flavor: str, service_id: str | None, message: str
) -> None:
    route = {"protocols": ["http"], "paths": ["/foo"], "service": {"id": service_id}}
    assert at("service", route) == [message]


# "fails when protocol is missing": covered by test_config_kong_schema (null protocols).
# "fails given an invalid method": covered by test_config_validation.test_route (methods: [get]).
# "invalid protocols produces error": covered by test_config_validation.test_route ([], [nope]).


@pytest.mark.parametrize(
    "route",
    [
        {"methods": ["GET"]},
        {"hosts": ["x.y"]},
        {"paths": ["/foo"]},
        {"headers": {"location": ["location-1"]}},
    ],
)
def test_missing_method_host_headers_path_and_service(flavor: str, route: dict[str, Any]) -> None:
    # the spec's first row (protocols only) is covered by test_config_validation.test_route
    load({"protocols": ["http"], "service": S_UUID, **route})


@pytest.mark.parametrize(
    "protocols",
    # ["http", "tcp"] is covered by test_config_validation.test_route
    [["http", "tls"], ["https", "tcp"], ["https", "tls"]],
)
def test_conflicting_protocols_produces_error(flavor: str, protocols: list[str]) -> None:
    assert errors({"protocols": protocols}) == [
        "routes[0].protocols: these sets are mutually exclusive: ('http', 'https'), "
        "('tcp', 'tls', 'udp')"
    ]


def test_invalid_https_redirect_status_code_produces_error(flavor: str) -> None:
    route = {"protocols": ["http"], "https_redirect_status_code": 404}
    assert at("https_redirect_status_code", route) == [
        "routes[0].https_redirect_status_code: expected one of: 426, 301, 302, 307, 308"
    ]


def test_produces_defaults(flavor: str) -> None:
    route = load({"protocols": ["http"], "service": S_UUID, "paths": ["/foo"]}).routes[0]
    assert len(route.id) == 36
    assert (route.name, route.methods, route.hosts, route.headers) == (None, None, None, None)
    assert (route.protocols, route.paths, route.regex_priority) == (["http"], ["/foo"], 0)
    assert (route.strip_path, route.preserve_host, route.https_redirect_status_code) == (
        True,
        False,
        426,
    )


# -- paths -------------------------------------------------------------------------------------
def test_paths_must_be_a_string(flavor: str) -> None:
    route = {"paths": [False], "protocols": ["http"]}
    assert at("paths", route) == ["routes[0].paths[0]: expected a string"]


# "must be a non-empty string" and "must start with /": covered by test_config_validation.


def test_paths_must_not_have_empty_segments(flavor: str) -> None:
    route = {"paths": ["/foo//bar", "/foo/bar//", "//foo/bar"], "protocols": ["http"]}
    assert at("paths", route) == [
        f"routes[0].paths[{i}]: must not have empty segments" for i in range(3)
    ]


def test_paths_must_dry_run_values_that_are_considered_regexes(flavor: str) -> None:
    # Kong's message is OpenResty's ngx.re error for PCRE2 (the spec's expected text)
    assert at("paths", {"paths": ["~/users/(foo/profile"], "protocols": ["http"]}) == [
        "routes[0].paths[0]: invalid regex: '/users/(foo/profile' (PCRE returned: "
        'pcre2_compile() failed: missing closing parenthesis in "/users/(foo/profile")'
    ]


@pytest.mark.parametrize(
    ("path", "bad"),
    BAD_PERCENT_ENCODED,
)
def test_paths_rejects_badly_percent_encoded_values(flavor: str, path: str, bad: str) -> None:
    assert at("paths", {"paths": [path], "protocols": ["http"]}) == [
        f"routes[0].paths[0]: invalid url-encoded value: '{bad}'"
    ]


@pytest.mark.parametrize("path", ["/", "/abcd~user~2", "/ovo/"])
def test_paths_accepted(flavor: str, path: str) -> None:
    # "accepts an apex '/'", "accepts unreserved characters from RFC 3986",
    # "accepts trailing slash"
    route = {"protocols": ["http"], "service": A_VALID_UUID, "methods": [], "hosts": []}
    assert load({**route, "paths": [path]}).routes[0].paths == [path]


def test_paths_accepts_properly_percent_encoded_values_traditional_only() -> None:
    # `it_trad_only` in Kong ("TODO: bump atc-router to fix it"); the Lua bytes \xaa.. are
    # written here as the characters a YAML "\xaa" escape gives
    path = "/abcd\xaa\x10\xff\xaa\xff"
    with using_router_flavor("traditional"):
        route = load(
            {
                "protocols": ["http"],
                "service": A_VALID_UUID,
                "methods": [],
                "hosts": [],
                "paths": [path],
            }
        ).routes[0]
    assert route.paths == [path]


# -- hosts -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "message"),
    [
        (False, "expected a string"),
        ("", "length must be at least 1"),
        ("example.com:1000000", "invalid port number"),
        *[(host, f"invalid hostname: {host}") for host in INVALID_HOSTNAMES],
        *[
            (host, "invalid wildcard: must be placed at leftmost or rightmost label")
            for host in MISPLACED_WILDCARDS
        ],
        *[
            (host, "invalid wildcard: must have at most one wildcard")
            for host in ("*.example.*", "**.example.com", "*.example*.*")
        ],
    ],
)
def test_hosts_refused(flavor: str, host: Any, message: str) -> None:
    route = {"hosts": [host], "protocols": ["http"]}
    assert at("hosts", route) == [f"routes[0].hosts[0]: {message}"]


VALID_HOSTS = [
    *VALID_HOSTNAMES,
    "example.com:80",
    "example.com:8080",
    *PUNYCODE_HOSTS,
    # "accepts hosts with valid wildcard"
    "example.*",
    "*.example.org",
    "*.example.org:321",
]


@pytest.mark.parametrize("host", VALID_HOSTS)
def test_hosts_accepted(flavor: str, host: str) -> None:
    route = {"protocols": ["http"], "service": A_VALID_UUID, "methods": [], "paths": []}
    assert load({**route, "hosts": [host]}).routes[0].hosts == [host]


# -- headers -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # "key must be a string": Kong's map takes any table; a sequence has integer keys
        ([False], "routes[0].headers: expected a string"),
        # "cannot contain 'host' key" ("Host" is covered by test_config_validation.test_route)
        (
            {"host": ["example.com"]},
            "routes[0].headers: cannot contain 'host' header, which must be specified in the "
            "'hosts' attribute",
        ),
        (
            {"HoSt": ["example.com"]},
            "routes[0].headers: cannot contain 'host' header, which must be specified in the "
            "'hosts' attribute",
        ),
        # "value must be an array"
        ({"location": True}, "routes[0].headers: expected an array"),
        # "values must be a string", "values must be non-empty string": a value array's
        # errors keep their index (Kong: `err.headers[1]`)
        ({"location": [True]}, "routes[0].headers[0]: expected a string"),
        ({"location": [""]}, "routes[0].headers[0]: length must be at least 1"),
    ],
)
def test_headers_refused(flavor: str, headers: Any, expected: str) -> None:
    assert at("headers", {"headers": headers, "protocols": ["http"]}) == [expected]


# -- methods -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "message"),
    [
        (False, "expected a string"),
        ("", "length must be at least 1"),
        ("HELLO WORLD", "invalid value: HELLO WORLD"),
        (" GET", "invalid value:  GET"),
        # "rejects non-uppercased values": covered by test_config_validation.test_route
    ],
)
def test_methods_refused(flavor: str, method: Any, message: str) -> None:
    route = {"methods": [method], "protocols": ["http"]}
    assert at("methods", route) == [f"routes[0].methods[0]: {message}"]


@pytest.mark.parametrize("method", ["GET", "POST", "CUSTOM"])
def test_methods_accepted(flavor: str, method: str) -> None:
    route = {"protocols": ["http"], "service": A_VALID_UUID, "paths": [], "hosts": []}
    assert load({**route, "methods": [method]}).routes[0].methods == [method]


# -- name --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "message"),
    [
        (False, "expected a string"),
        ("", "length must be at least 1"),
        *[(name, invalid_name(name)) for name in ("examp:le", "examp;le", "examp/le", "examp le")],
    ],
)
def test_name_refused(flavor: str, name: Any, message: str) -> None:
    route = {"name": name, "protocols": ["http"]}
    assert at("name", route) == [f"routes[0].name: {message}"]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_name_accepted(flavor: str, name: str) -> None:
    route = {"protocols": ["http"], "paths": ["/"], "name": name, "service": A_VALID_UUID}
    assert load(route).routes[0].name == name


# -- stream context ----------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", STREAM)
def test_stream_protocol_accepted(flavor: str, protocol: str) -> None:
    route = {"protocols": [protocol], "sources": [{"ip": "127.0.0.1"}], "service": S_UUID}
    assert load(route).routes[0].protocols == [protocol]


@pytest.mark.parametrize("protocol", STREAM)
@pytest.mark.parametrize(("field", "value"), [("paths", ["/"]), ("methods", ["GET"])])
def test_stream_route_cannot_set_http_fields(
    flavor: str, protocol: str, field: str, value: list[str]
) -> None:
    route = {"protocols": [protocol], "sources": [{"ip": "127.0.0.1"}], field: value}
    assert errors({**route, "service": S_UUID}) == [
        f"routes[0].{field}: cannot set '{field}' when 'protocols' is 'tcp', 'tls', "
        "'tls_passthrough' or 'udp'"
    ]


SOURCES = pytest.mark.parametrize("field", ["sources", "destinations"])
SECOND = {"ip": "127.75.78.72", "port": 8000}


@SOURCES
@pytest.mark.parametrize(
    ("items", "first"),
    [
        ([SECOND], SECOND),  # "accepts valid IPs and ports"
        ([{"ip": "127.0.0.1"}, SECOND], {"ip": "127.0.0.1", "port": None}),  # (no port)
        ([{"port": 8000}, SECOND], {"ip": None, "port": 8000}),  # (no IP)
    ],
)
def test_sources_and_destinations_accepted(
    flavor: str, field: str, items: list[dict[str, Any]], first: dict[str, Any]
) -> None:
    for protocol in STREAM:
        route = load({"protocols": [protocol], field: items, "service": S_UUID}).routes[0]
        assert route.protocols == [protocol]
        assert builtins(getattr(route, field))[0] == first


@SOURCES
def test_sources_and_destinations_reject_invalid_port(flavor: str, field: str) -> None:
    for protocol in STREAM:
        items = [{"ip": "127.0.0.1"}, {"ip": "127.75.78.72", "port": 65536}]
        assert errors({"protocols": [protocol], field: items, "service": S_UUID}) == [
            f"routes[0].{field}[1].port: value should be between 0 and 65535"
        ]


INVALID_IPS = ["127.", ":::1", "-1", "localhost", "foo", "f", "example.org"]
INVALID_CIDRS = [
    "1/0",
    "2130706433/2",
    "4294967295/3",
    "-1/0",
    "4294967296/2",
    "0.0.0.0/a",
    "::/a",
    "0.0.0.0/-1",
    "::/-1",
    "0.0.0.0/33",
    "::/129",
]


@SOURCES
@pytest.mark.parametrize("ip", INVALID_IPS + INVALID_CIDRS)
def test_sources_and_destinations_reject_invalid_ip(flavor: str, field: str, ip: str) -> None:
    for protocol in STREAM:
        route = {"protocols": [protocol], field: [{"ip": ip}, SECOND], "service": S_UUID}
        assert at(field, route) == [f"routes[0].{field}[0].ip: invalid ip or cidr range: '{ip}'"]


@SOURCES
@pytest.mark.parametrize("ip", ["0.0.0.0/0", "::/0", "0.0.0.0/1", "::/1", "0.0.0.0/32", "::/128"])
def test_sources_and_destinations_accept_valid_cidr(flavor: str, field: str, ip: str) -> None:
    for protocol in STREAM:
        load({"protocols": [protocol], field: [{"ip": ip}, SECOND], "service": S_UUID})


@pytest.mark.parametrize("protocol", ["tls", "https", "grpcs"])
@pytest.mark.parametrize("sni", ["example.org", "www.example.org"])
def test_snis_accepted(flavor: str, protocol: str, sni: str) -> None:
    assert load({"protocols": [protocol], "snis": [sni], "service": S_UUID}).routes[0].snis == [sni]


@pytest.mark.parametrize(
    ("sni", "message"),
    [("127.0.0.1", "must not be an IP"), ("example.org:80", "must not have a port")],
)
def test_snis_reject_invalid_values(flavor: str, sni: str, message: str) -> None:
    route = {"protocols": ["tcp", "tls"], "snis": [sni], "service": S_UUID}
    assert at("snis", route) == [f"routes[0].snis[0]: {message}"]


def test_snis_rejected_without_a_tls_protocol(flavor: str) -> None:
    route = {"protocols": ["tcp", "udp"], "snis": ["example.org"], "service": S_UUID}
    assert sorted(errors(route)) == [
        "routes[0].snis: length must be 0",
        "routes[0]: 'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or "
        "'tls_passthrough'",
    ]


# "errors if no L4 matching attribute set": tcp is covered by test_config_validation.test_route
@pytest.mark.parametrize("protocol", ["tls", "udp"])
def test_errors_if_no_l4_matching_attribute_set(flavor: str, protocol: str) -> None:
    assert errors({"protocols": [protocol], "service": S_UUID}) == [f"routes[0]: {L4_NEEDS}"]


# "errors if no L7 matching attribute set": http, grpc and grpcs are covered by
# test_config_validation.test_route; https there by the default protocols, here given.
def test_errors_if_no_l7_matching_attribute_set_https(flavor: str) -> None:
    assert errors({"protocols": ["https"], "service": S_UUID}) == [
        "routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when "
        "'protocols' is 'https'"
    ]


@pytest.mark.parametrize("protocol", ["grpc", "grpcs"])
def test_errors_if_methods_attribute_is_set_on_grpc(flavor: str, protocol: str) -> None:
    route = {"methods": "GET", "paths": ["/foo"], "protocols": [protocol], "service": S_UUID}
    assert errors(route) == [f"routes[0].methods: {GRPC_METHODS}"]


@pytest.mark.parametrize("protocol", ["grpc", "grpcs"])
def test_errors_if_strip_path_is_set_on_grpc(flavor: str, protocol: str) -> None:
    route = {"hosts": ["foo.grpc.test"], "protocols": [protocol], "strip_path": True}
    assert errors({**route, "service": S_UUID}) == [f"routes[0].strip_path: {GRPC_STRIP_PATH}"]


def test_errors_if_tls_and_tls_passthrough_set_on_a_same_route(flavor: str) -> None:
    route = {"snis": ["foo.grpc.test"], "protocols": ["tls", "tls_passthrough"], "service": S_UUID}
    assert errors(route) == [
        "routes[0].protocols: these sets are mutually exclusive: ('tcp', 'tls', 'udp'), "
        "('tls_passthrough')"
    ]


def test_errors_if_snis_is_not_set_on_tls_passthrough(flavor: str) -> None:
    route = {"sources": [{"ip": "127.0.0.1"}], "protocols": ["tls_passthrough"], "service": S_UUID}
    assert errors(route) == ["routes[0]: must set snis when 'protocols' is 'tls_passthrough'"]


# -- Kong's describe for traditional_compatible (and expressions) only ----------------------
# "validates a valid http route" is test_validates_a_valid_route above.
@pytest.fixture
def compatible() -> Iterator[None]:
    with using_router_flavor("traditional_compatible"):
        yield


def test_compatible_validates_a_valid_stream_route(compatible: None) -> None:
    route = {
        "id": A_VALID_UUID,
        "name": "my_route",
        "protocols": ["tcp"],
        "sources": [{"ip": "1.2.3.4", "port": 80}],
        "service": ANOTHER_UUID,
    }
    assert builtins(load(route).routes[0].sources) == [{"ip": "1.2.3.4", "port": 80}]


@pytest.mark.parametrize(
    ("route", "field_path", "start"),
    [
        # "fails when path is invalid"
        (
            {"protocols": ["http"], "paths": ["~/[abc/*/user$"]},
            "routes[0].paths[0]",
            "invalid regex:",
        ),
        # "fails when ip address is invalid"
        (
            {"protocols": ["tcp"], "sources": [{"ip": "x.x.x.x", "port": 80}]},
            "routes[0].sources[0].ip",
            "invalid ip or cidr range:",
        ),
    ],
)
def test_compatible_field_errors_are_not_entity_errors(
    compatible: None, route: dict[str, Any], field_path: str, start: str
) -> None:
    found = errors({"id": A_VALID_UUID, "name": "my_route", **route, "service": ANOTHER_UUID})
    assert any(e.startswith(f"{field_path}: {start}") for e in found), found
    assert not any(e.startswith("routes[0]: ") for e in found), found  # no "@entity" error


def test_compatible_wont_fail_when_rust_regex_update_to_1_8(compatible: None) -> None:
    load({"protocols": ["http"], "paths": ["~/\\/*/user$"], "service": ANOTHER_UUID})


@pytest.mark.parametrize(
    "sni", ["*.example.org", "*.foo.bar.test", "example.*", "foo.bar.*"]
)  # "accepts leftmost wildcard", "accepts rightmost wildcard"
def test_compatible_snis_accept_wildcards(compatible: None, sni: str) -> None:
    load({"protocols": ["https"], "snis": [sni], "service": S_UUID})


@pytest.mark.parametrize("sni", ["foo.*.test", "foo*.test"])
def test_compatible_snis_reject_invalid_wildcard(compatible: None, sni: str) -> None:
    assert errors({"protocols": ["https"], "snis": [sni], "service": S_UUID}) == [
        "routes[0].snis[0]: wildcard must be leftmost or rightmost character"
    ]


def test_compatible_expression_and_priority_are_unknown_fields(compatible: None) -> None:
    # "validates a route with only expression field" (traditional_compatible)
    route = {
        "id": A_VALID_UUID,
        "name": "my_route",
        "protocols": ["http"],
        "hosts": ["example.com"],
        "expression": '(http.method == "GET")',
        "priority": 100,
        "service": ANOTHER_UUID,
    }
    assert sorted(errors(route)) == [
        "routes[0].expression: unknown field",
        "routes[0].priority: unknown field",
    ]


@pytest.mark.parametrize("sni", ["*.example.org", "example.*"])
def test_traditional_snis_refuse_wildcards(sni: str) -> None:
    # Not a spec case: kong/db/schema/entities/routes.lua types `snis` elements as
    # `typedefs.sni` under the traditional flavor (its router matches SNIs exactly) and as
    # `typedefs.wildcard_host` under the others.
    with using_router_flavor("traditional"):
        assert errors({"protocols": ["https"], "snis": [sni], "service": S_UUID}) == [
            f"routes[0].snis[0]: invalid value: {sni}"
        ]
