"""Kong's ``spec/01-unit/01-db/01-schema/05-services_spec.lua``, ported to declarative configs.

Each Kong ``Services:validate(entity)`` becomes a one-service document loaded with
``load_config``; the fields the spec leaves out are filled in so that only the checked error
remains (Kong's validate on a partial entity also reports the missing ``host``, which the spec
does not look at). Messages are Kong's (``kong:kong/db/schema/typedefs.lua``,
``kong:kong/db/schema/entities/services.lua``).

Left out:
- "null protocol produces error": covered by
  test_config_kong_schema::test_null_for_a_required_field_with_a_default.
- "null protocol produces error on update": ``validate_update`` is the Admin API's PATCH; a
  declarative config has no update.
- "invalid protocol produces error" and "missing host produces error": covered by
  test_config_validation::test_service (``protocol: nope``, ``- name: s``).
- "produces defaults" (``process_auto_fields`` on insert, uuid pattern of the id): covered by
  test_config_defaults::test_service_defaults.
- "rejects invalid names" with ``string.char(105, 213, 205, 149)``: invalid UTF-8 cannot arise
  from YAML/JSON text (Lua-only).
"""

from __future__ import annotations

from typing import Any

import pytest

from fastkong.config.schema import Service
from tests.kong_schema_spec import (
    A_VALID_UUID,
    BAD_PERCENT_ENCODED,
    CONDITIONAL,
    INVALID_HOSTNAMES,
    MISPLACED_WILDCARDS,
    PUNYCODE_HOSTS,
    VALID_HOSTNAMES,
    VALID_NAMES,
    OneEntity,
    invalid_name,
)

BETWEEN_TIMEOUT = "value should be between 1 and 2147483646"
SERVICE = OneEntity[Service]("services")
load, errors = SERVICE.load, SERVICE.errors


def http(**fields: Any) -> dict[str, Any]:
    """The spec's usual complete service around the fields under test."""
    return {"protocol": "http", "host": "example.com", "port": 80, "enabled": True, **fields}


# -- "validates a valid service" -------------------------------------------------------------
def test_validates_a_valid_service() -> None:
    svc = load(
        id=A_VALID_UUID,
        name="my_service",
        protocol="http",
        host="example.com",
        port=80,
        path="/foo",
        connect_timeout=50,
        write_timeout=100,
        read_timeout=100,
    )
    assert (svc.id, svc.name, svc.path) == (A_VALID_UUID, "my_service", "/foo")
    assert (svc.connect_timeout, svc.write_timeout, svc.read_timeout) == (50, 100, 100)


# -- "invalid retries produces error" (40000 is covered by test_config_validation) -------------
@pytest.mark.parametrize("retries", [-1, 10000000000])
def test_invalid_retries_produces_error(retries: int) -> None:
    assert errors(host="example.com", retries=retries) == [
        "services[0].retries: value should be between 0 and 32767"
    ]


# -- "timeout attributes" --------------------------------------------------------------------
def test_timeouts_should_not_be_zero() -> None:
    assert errors(
        host="example.com",
        port=80,
        protocol="https",
        connect_timeout=0,
        read_timeout=0,
        write_timeout=0,
    ) == [
        f"services[0].connect_timeout: {BETWEEN_TIMEOUT}",
        f"services[0].read_timeout: {BETWEEN_TIMEOUT}",
        f"services[0].write_timeout: {BETWEEN_TIMEOUT}",
    ]


def test_timeouts_should_be_greater_than_zero() -> None:
    svc = load(
        host="example.com",
        port=80,
        protocol="https",
        connect_timeout=1,
        read_timeout=10,
        write_timeout=100,
        enabled=True,
    )
    assert (svc.connect_timeout, svc.read_timeout, svc.write_timeout) == (1, 10, 100)


# -- "path attribute": refusals ("foo" and "/foo//bar" are covered by test_config_validation) --
def _rfc3986(path: str) -> str:
    return f"invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (False, "expected a string"),  # "must be a string"
        ("", "length must be at least 1"),  # "must be a non-empty string"
        ("/foo/bar//", "must not have empty segments"),
        ("//foo/bar", "must not have empty segments"),
        # "rejects regular expressions & other non-rfc 3986 chars"
        ("/users/|foo/profile", _rfc3986("/users/|foo/profile")),
        ("/users/(this|foo/profile)", _rfc3986("/users/(this|foo/profile)")),
        # "rejects badly percent-encoded values"
        *[(path, f"invalid url-encoded value: '{bad}'") for path, bad in BAD_PERCENT_ENCODED],
    ],
)
def test_path_refusals(path: Any, message: str) -> None:
    assert errors(host="example.com", path=path) == [f"services[0].path: {message}"]


@pytest.mark.parametrize(
    "path",
    [
        "/hello/path$with$!&'()*+,;=stuff",  # "accepts "sub-delims" characters from RFC 3986"
        "/",  # "accepts an apex '/'"
        "/abcd~user~2",  # "accepts unreserved characters from RFC 3986"
        "/abcd%aa%10%ff%AA%FF",  # "accepts properly percent-encoded values"
        "/ovo/",  # "accepts trailing slash"
    ],
)
def test_path_acceptance(path: str) -> None:
    assert load(**http(path=path)).path == path


# -- "host attribute" ("example.com:80" is covered by test_config_validation) ------------------
INVALID_HOSTS = INVALID_HOSTNAMES + MISPLACED_WILDCARDS


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (False, "expected a string"),  # "must be a string"
        ("", "length must be at least 1"),  # "must be a non-empty string"
        *[
            (host, f"invalid value: {host}") for host in INVALID_HOSTS
        ],  # "rejects invalid hostnames"
        ("example.com:1000000", "must not have a port"),  # "rejects values with an invalid port"
    ],
)
def test_host_refusals(host: Any, message: str) -> None:
    assert errors(host=host) == [f"services[0].host: {message}"]


@pytest.mark.parametrize("host", [*VALID_HOSTNAMES, "example.test.", *PUNYCODE_HOSTS])
def test_host_accepts_valid_hosts(host: str) -> None:
    assert load(**http(host=host)).host == host


# -- "name attribute" ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "message"),
    [
        (False, "expected a string"),  # "must be a string"
        ("", "length must be at least 1"),  # "must be a non-empty string"
        # "rejects invalid names" (Kong's spec matches "invalid"; these are Kong's messages)
        ("examp:le", invalid_name("examp:le")),
        ("examp;le", invalid_name("examp;le")),
        ("examp/le", invalid_name("examp/le")),
        ("examp le", invalid_name("examp le")),
    ],
)
def test_name_refusals(name: Any, message: str) -> None:
    assert errors(url="http://example.com", name=name) == [f"services[0].name: {message}"]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_name_accepts_valid_names(name: str) -> None:
    assert load(**http(name=name)).name == name


# -- "stream context" ----------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["tcp", "tls", "udp", "grpc", "grpcs"])
def test_protocol_accepts_non_http_protocols(protocol: str) -> None:
    svc = load(protocol=protocol, host="x.y", port=80, enabled=True)
    assert (svc.protocol, svc.path) == (protocol, None)


# tcp with a path is covered by test_config_validation::test_service
@pytest.mark.parametrize("protocol", ["tls", "udp", "grpc", "grpcs"])
def test_path_must_be_empty_for_non_http_protocols(protocol: str) -> None:
    assert errors(protocol=protocol, host="x.y", port=80, path="/", enabled=True) == [
        "services[0].path: value must be null",
        f"services[0]: {CONDITIONAL.format('protocol')}",
    ]
