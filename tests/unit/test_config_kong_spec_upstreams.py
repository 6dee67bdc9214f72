"""Kong's upstream and target schema specs, ported to declarative configs.

Ported: ``spec/01-unit/01-db/01-schema/09-upstreams_spec.lua`` (its "healthchecks attribute"
tables included) and ``spec/01-unit/01-db/01-schema/08-targets_spec.lua``. Each
``Upstreams:validate(entity)`` becomes a one-upstream document loaded with ``load_config``
(``name`` filled in where the spec leaves it out, as Kong's validate would also report it
missing); targets are nested in an upstream. Expected messages and paths are Kong's
(``kong:kong/db/schema/entities/upstreams.lua``, ``targets.lua``, ``typedefs.lua``, and the
``conditional``/``distinct`` entity checkers of ``kong:kong/db/schema/init.lua``, which both
have ``run_with_invalid_fields = true``). Rows already in other test modules are left out with
a comment.

Left out:
- "produces defaults" (``process_auto_fields`` on insert, the healthchecks defaults): covered by
  test_config_defaults::test_upstream_defaults.
- "name attribute": ``{}``, an IP and ``name:80`` are covered by
  test_config_validation::test_upstream (required, ``10.0.0.1``, ``a.com:80``).
- "hash_on = 'header' makes hash_on_header required" and hash_on = hash_fallback = "ip":
  covered by test_config_validation::test_upstream.
- targets' ``upstream = { id = uuid() }``: a foreign key the DB would resolve; here targets are
  nested in their upstream.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastkong.config import load_config
from fastkong.config.schema import Upstream
from tests.kong_schema_spec import A_VALID_UUID, CONDITIONAL, INVALID_HOSTNAMES, OneEntity

BAD_NAME = "\\\\bad\\\\////name////"  # Lua's "\\\\bad\\\\////name////"
UPSTREAM = OneEntity[Upstream]("upstreams")
doc, load, errors = UPSTREAM.doc, UPSTREAM.load, UPSTREAM.errors


# -- "validates a valid load upstream" ---------------------------------------------------------
def test_validates_a_valid_load_upstream() -> None:
    u = load(
        id=A_VALID_UUID,
        name="my_service",
        hash_on="header",
        hash_on_header="X-Balance",
        hash_fallback="cookie",
        hash_on_cookie="a_cookie",
    )
    assert (u.id, u.algorithm, u.hash_on, u.hash_fallback) == (
        A_VALID_UUID,
        "consistent-hashing",
        "header",
        "cookie",
    )
    assert (u.hash_on_header, u.hash_on_cookie) == ("X-Balance", "a_cookie")


# -- "invalid name produces error" / "name attribute" ----------------------------------------
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1234", "Invalid name ('1234'); must be a valid hostname"),
        ("fafa fafa", "Invalid name ('fafa fafa'); must be a valid hostname"),
        ("123.123.123.123", "Invalid name ('123.123.123.123'); no ip addresses allowed"),
        (BAD_NAME, f"Invalid name ('{BAD_NAME}'); must be a valid hostname"),
        ("myserver:8000", "Invalid name ('myserver:8000'); no port allowed"),
    ],
)
def test_invalid_name_produces_error(name: str, message: str) -> None:
    assert errors(name=name) == [f"upstreams[0].name: {message}"]


def test_name_accepts_valid_names() -> None:
    assert load(name="valid.host.name").name == "valid.host.name"


# -- "invalid hash_on_cookie produces error" (with hash_on: cookie: test_config_validation) ---
def test_invalid_hash_on_cookie_produces_error() -> None:
    assert errors(name="x", hash_on_cookie="a cookie") == [
        "upstreams[0].hash_on_cookie: contains one or more invalid characters. ASCII control "
        'characters (0-31;127), space, tab and the characters ()<>@,;:\\"/?={}[] are not '
        "allowed."
    ]


# -- hash_on / hash_fallback entity checks ---------------------------------------------------
HASH_FALLBACK_CONSUMER = "none, ip, header, cookie, path, query_arg, uri_capture"
HASH_FALLBACK_PATH = "none, consumer, header, cookie, query_arg, ip, uri_capture"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # "hash_fallback = 'header' makes hash_fallback_header required"
        (
            {"hash_fallback": "header"},
            [
                "upstreams[0].hash_fallback: expected one of: none",
                "upstreams[0].hash_fallback_header: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_fallback')}",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        # "hash_on = 'cookie' makes hash_on_cookie required"
        (
            {"hash_on": "cookie"},
            [
                "upstreams[0].hash_on_cookie: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        # "hash_on = 'cookie' makes hash_on_cookie required" (the hash_fallback one)
        (
            {"hash_fallback": "cookie"},
            [
                "upstreams[0].hash_fallback: expected one of: none",
                "upstreams[0].hash_on_cookie: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_fallback')}",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        # "hash_on = 'none' requires that hash_fallback is also none"
        (
            {"hash_on": "none", "hash_fallback": "header"},
            [
                "upstreams[0].hash_fallback: expected one of: none",
                "upstreams[0].hash_fallback_header: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_fallback')}",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        # "hash_on = 'cookie' requires that hash_fallback is also none": three conditionals fail
        # (fallback header, cookie name, fallback none); Kong's "@entity" list keeps each one.
        (
            {"hash_on": "cookie", "hash_fallback": "header"},
            [
                "upstreams[0].hash_fallback: expected one of: none",
                "upstreams[0].hash_fallback_header: required field missing",
                "upstreams[0].hash_on_cookie: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_fallback')}",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        # "hash_on must be different from hash_fallback" (ip/ip: test_config_validation)
        (
            {"hash_on": "consumer", "hash_fallback": "consumer"},
            [
                f"upstreams[0].hash_fallback: expected one of: {HASH_FALLBACK_CONSUMER}",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        (
            {"hash_on": "path", "hash_fallback": "path"},
            [
                f"upstreams[0].hash_fallback: expected one of: {HASH_FALLBACK_PATH}",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        # "hash_on = 'query_arg' makes hash_on_query_arg required"
        (
            {"hash_on": "query_arg"},
            [
                "upstreams[0].hash_on_query_arg: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        # "hash_fallback = 'query_arg' makes hash_fallback_query_arg required"
        (
            {"hash_on": "ip", "hash_fallback": "query_arg"},
            [
                "upstreams[0].hash_fallback_query_arg: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_fallback')}",
            ],
        ),
        # "hash_on and hash_fallback must be different query args"
        (
            {
                "hash_on": "query_arg",
                "hash_on_query_arg": "same",
                "hash_fallback": "query_arg",
                "hash_fallback_query_arg": "same",
            },
            [
                "upstreams[0]: values of these fields must be distinct: 'hash_on_query_arg', "
                "'hash_fallback_query_arg'"
            ],
        ),
        # "hash_on and hash_fallback must be different uri captures"
        (
            {
                "hash_on": "uri_capture",
                "hash_on_uri_capture": "same",
                "hash_fallback": "uri_capture",
                "hash_fallback_uri_capture": "same",
            },
            [
                "upstreams[0]: values of these fields must be distinct: 'hash_on_uri_capture', "
                "'hash_fallback_uri_capture'"
            ],
        ),
    ],
)
def test_hash_entity_checks(fields: dict[str, Any], expected: list[str]) -> None:
    assert errors(name="x", **fields) == expected


# "hash_on_query_arg and hash_fallback_query_arg must not be empty strings" and the uri_capture
# twin. Kong's conditional runs on invalid fields too (`run_with_invalid_fields = true`): its
# `then_match` inherits the field's `len_min = 1`, so "" also fails the conditional.
@pytest.mark.parametrize(
    ("fields", "field", "if_field"),
    [
        ({"hash_on": "query_arg", "hash_on_query_arg": ""}, "hash_on_query_arg", "hash_on"),
        (
            {
                "hash_on": "query_arg",
                "hash_on_query_arg": "ok",
                "hash_fallback": "query_arg",
                "hash_fallback_query_arg": "",
            },
            "hash_fallback_query_arg",
            "hash_fallback",
        ),
        ({"hash_on": "uri_capture", "hash_on_uri_capture": ""}, "hash_on_uri_capture", "hash_on"),
        (
            {
                "hash_on": "uri_capture",
                "hash_on_uri_capture": "ok",
                "hash_fallback": "uri_capture",
                "hash_fallback_uri_capture": "",
            },
            "hash_fallback_uri_capture",
            "hash_fallback",
        ),
    ],
)
def test_hash_params_must_not_be_empty_strings(
    fields: dict[str, Any], field: str, if_field: str
) -> None:
    assert errors(name="test", **fields) == [
        f"upstreams[0].{field}: length must be at least 1",
        f"upstreams[0]: {CONDITIONAL.format(if_field)}",
    ]


# -- "produces set use_srv_name flag" --------------------------------------------------------
def test_produces_set_use_srv_name_flag() -> None:
    u = load(name="www.example.com", use_srv_name=True)
    assert (u.name, u.use_srv_name) == ("www.example.com", True)


# -- "upstream attribute" (host_header) ------------------------------------------------------
@pytest.mark.parametrize("host_header", ["http://ahostname.test", "ahostname-", "a hostname"])
def test_host_header_requires_a_valid_hostname(host_header: str) -> None:
    assert errors(name="host.test", host_header=host_header) == [
        f"upstreams[0].host_header: invalid hostname: {host_header}"
    ]


@pytest.mark.parametrize("host_header", ["ahostname", "a.hostname.test"])
def test_host_header_accepts_valid_hostnames(host_header: str) -> None:
    assert load(name="host.test", host_header=host_header).host_header == host_header


# -- "healthchecks attribute": "rejects invalid configurations" --------------------------------
SECONDS = "value should be between 0 and 65535"
POS_INTEGER = "value should be between 1 and 2147483648"
ZERO_INTEGER = "value should be between 0 and 255"
STATUS_CODE = "value should be between 100 and 999"
INTEGER = "expected an integer"
BOOLEAN = "expected a boolean"
NUMBER = "expected a number"
ARRAY = "expected an array"
STRING = "expected a string"
MAP = "expected a map"
LEN_MIN = "length must be at least 1"
THRESHOLD = "value should be between 0 and 100"


def _statuses(kind: str, state: str) -> list[tuple[dict[str, Any], str, str]]:
    """The five http_statuses rows Kong repeats for each of active/passive healthy/unhealthy."""
    at = f"{kind}.{state}.http_statuses"
    return [
        ({kind: {state: {"http_statuses": 404}}}, at, ARRAY),
        ({kind: {state: {"http_statuses": ["ovo"]}}}, f"{at}[0]", INTEGER),
        ({kind: {state: {"http_statuses": [-1]}}}, f"{at}[0]", STATUS_CODE),
        ({kind: {state: {"http_statuses": [99]}}}, f"{at}[0]", STATUS_CODE),
        ({kind: {state: {"http_statuses": [1000]}}}, f"{at}[0]", STATUS_CODE),
    ]


def _counter(kind: str, state: str, name: str) -> list[tuple[dict[str, Any], str, str]]:
    """Kong's rows for a one-byte counter: 0.5, -1 and 256."""
    at = f"{kind}.{state}.{name}"
    return [
        ({kind: {state: {name: 0.5}}}, at, INTEGER),
        ({kind: {state: {name: -1}}}, at, ZERO_INTEGER),
        ({kind: {state: {name: 256}}}, at, ZERO_INTEGER),
    ]


def _threshold(kind: str) -> list[tuple[dict[str, Any], str, str]]:
    base: dict[str, Any] = {kind: {"unhealthy": {"timeouts": 1}}}
    return [
        ({**base, "threshold": -1}, "threshold", THRESHOLD),
        ({**base, "threshold": 101}, "threshold", THRESHOLD),
        ({**base, "threshold": "50"}, "threshold", NUMBER),
        ({**base, "threshold": True}, "threshold", NUMBER),
    ]


def _sni(value: str, message: str) -> tuple[dict[str, Any], str, str]:
    return ({"active": {"https_sni": value}}, "active.https_sni", message)


# Kong's table (spec lines 399-489) plus the single-field "invalid healthchecks.*" cases (lines
# 72-112; http_path "potato", headers {114514}, http_statuses "potato"). Kong's spec matches its
# message anywhere in the first leaf error; here the path and the whole message are checked.
INVALID_HEALTHCHECKS: list[tuple[dict[str, Any], str, str]] = [
    # active.timeout = -1: test_config_validation; active.concurrency = 0 / -1:
    # test_config_validation / test_config_errors
    ({"active": {"timeout": 1e42}}, "active.timeout", SECONDS),
    ({"active": {"concurrency": 0.5}}, "active.concurrency", INTEGER),
    ({"active": {"concurrency": -10}}, "active.concurrency", POS_INTEGER),
    ({"active": {"http_path": ""}}, "active.http_path", LEN_MIN),
    ({"active": {"http_path": "ovo"}}, "active.http_path", "should start with: /"),
    ({"active": {"http_path": "potato"}}, "active.http_path", "should start with: /"),
    _sni("127.0.0.1", "must not be an IP"),
    _sni("127.0.0.1:8080", "must not be an IP"),
    *[_sni(host, f"invalid value: {host}") for host in INVALID_HOSTNAMES],
    _sni("example.com:1234", "must not have a port"),
    ({"active": {"https_verify_certificate": "ovo"}}, "active.https_verify_certificate", BOOLEAN),
    # a map's keys are checked first: a list's key 1 is not a header name string
    ({"active": {"headers": 0}}, "active.headers", MAP),
    ({"active": {"headers": [0]}}, "active.headers", STRING),
    ({"active": {"headers": [""]}}, "active.headers", STRING),
    ({"active": {"headers": [114514]}}, "active.headers", STRING),
    ({"active": {"headers": {"x-header": 123}}}, "active.headers", ARRAY),
    ({"active": {"healthy": {"interval": -1}}}, "active.healthy.interval", SECONDS),
    ({"active": {"healthy": {"interval": 1e42}}}, "active.healthy.interval", SECONDS),
    ({"active": {"healthy": {"http_statuses": "potato"}}}, "active.healthy.http_statuses", ARRAY),
    *_statuses("active", "healthy"),  # 99 is also in test_config_validation's combined row
    (
        {"active": {"healthy": {"http_statuses": [111.314]}}},
        "active.healthy.http_statuses[0]",
        INTEGER,
    ),
    *_counter("active", "healthy", "successes"),
    *_threshold("active"),  # 101 is also in test_config_validation's combined row
    ({"active": {"unhealthy": {"interval": -1}}}, "active.unhealthy.interval", SECONDS),
    ({"active": {"unhealthy": {"interval": 1e42}}}, "active.unhealthy.interval", SECONDS),
    *_statuses("active", "unhealthy"),
    *_counter("active", "unhealthy", "tcp_failures"),
    *_counter("active", "unhealthy", "timeouts"),
    *_counter("active", "unhealthy", "http_failures"),
    *_statuses("passive", "healthy"),
    *_counter("passive", "healthy", "successes"),
    *_statuses("passive", "unhealthy"),
    *_counter("passive", "unhealthy", "tcp_failures"),
    *_counter("passive", "unhealthy", "timeouts"),
    *_counter("passive", "unhealthy", "http_failures"),
    *_threshold("passive"),
]


@pytest.mark.parametrize(("healthchecks", "at", "message"), INVALID_HEALTHCHECKS)
def test_healthchecks_rejects_invalid_configurations(
    healthchecks: dict[str, Any], at: str, message: str
) -> None:
    assert errors(name="x", healthchecks=healthchecks) == [
        f"upstreams[0].healthchecks.{at}: {message}"
    ]


# -- "healthchecks attribute": "accepts inputs with the correct values" ------------------------
VALID_HEALTHCHECKS: list[dict[str, Any]] = [
    {"active": {"timeout": 0.5}},
    {"active": {"timeout": 1}},
    {"active": {"concurrency": 2}},
    {"active": {"http_path": "/"}},
    {"active": {"http_path": "/test"}},
    {"active": {"https_sni": "example.com"}},
    {"active": {"https_sni": "example.test."}},
    {"active": {"https_verify_certificate": False}},
    {"active": {"healthy": {"interval": 0}}},
    {"active": {"healthy": {"http_statuses": [200, 300]}}},
    {"active": {"healthy": {"successes": 2}}},
    {"active": {"healthy": {"successes": 255}}},
    {"active": {"unhealthy": {"interval": 0}}},
    {"active": {"unhealthy": {"http_statuses": [404]}}},
    {"active": {"unhealthy": {"tcp_failures": 3}}},
    {"active": {"unhealthy": {"tcp_failures": 255}}},
    {"active": {"unhealthy": {"timeouts": 9}}},
    {"active": {"unhealthy": {"timeouts": 255}}},
    {"active": {"unhealthy": {"http_failures": 2}}},
    {"active": {"unhealthy": {"http_failures": 2}}, "threshold": 0},
    {"active": {"unhealthy": {"http_failures": 2}}, "threshold": 50.50},
    {"active": {"unhealthy": {"http_failures": 2}}, "threshold": 100},
    {"passive": {"healthy": {"http_statuses": [200, 201]}}},
    {"passive": {"healthy": {"successes": 2}}},
    {"passive": {"healthy": {"successes": 255}}},
    {"passive": {"unhealthy": {"http_statuses": [400, 500]}}},
    {"passive": {"unhealthy": {"tcp_failures": 8}}},
    {"passive": {"unhealthy": {"tcp_failures": 255}}},
    {"passive": {"unhealthy": {"timeouts": 1}}},
    {"passive": {"unhealthy": {"timeouts": 255}}},
    {"passive": {"unhealthy": {"http_failures": 2}}},
    {"passive": {"unhealthy": {"http_failures": 255}}},
    {"passive": {"unhealthy": {"http_failures": 2}}, "threshold": 0},
    {"passive": {"unhealthy": {"http_failures": 2}}, "threshold": 50.50},
    {"passive": {"unhealthy": {"http_failures": 2}}, "threshold": 100},
]


def _leaves(
    tree: dict[str, Any], prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _leaves(value, (*prefix, key))
        else:
            out.append(((*prefix, key), value))
    return out


@pytest.mark.parametrize("healthchecks", VALID_HEALTHCHECKS)
def test_healthchecks_accepts_inputs_with_the_correct_values(healthchecks: dict[str, Any]) -> None:
    loaded = load(name="x", healthchecks=healthchecks).healthchecks
    for path, value in _leaves(healthchecks):
        node: Any = loaded
        for key in path:
            node = getattr(node, key)
        assert node == value


# -- 08-targets_spec.lua "targets.target validates" ------------------------------------------
@pytest.mark.parametrize("target", ["valid.name", "valid.name:8080", "12.34.56.78", "1.2.3.4:123"])
def test_target_validates(target: str) -> None:
    config = load_config(doc(name="u", targets=[{"target": target}])).config
    assert len(config.targets) == 1
    assert config.targets[0].upstream == config.upstreams[0].id


def test_target_rejects_an_invalid_target() -> None:
    assert errors(name="u", targets=[{"target": BAD_NAME}]) == [
        f"upstreams[0].targets[0].target: Invalid target ('{BAD_NAME}'); "
        "not a valid hostname or ip address"
    ]
