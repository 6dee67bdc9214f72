"""Kong's schema specs of correlation-id, cors, request-termination, ip-restriction and
redirect, ported to declarative plugin configs.

Ported (each Kong ``v(config, schema_def)`` becomes :func:`tests.helpers.plugin_config` when
Kong accepts and :func:`tests.helpers.plugin_config_errors` when it refuses; Kong's
``err.config.<field>`` is ``plugins[0].config.<field>``, ``err.config`` itself
``plugins[0].config``, ``err["@entity"]`` the plugin's own path with ``.entity`` set; Lua's
``ngx.null`` is JSON ``null``):

- ``spec/03-plugins/11-correlation-id/02-schema_spec.lua`` lines 8-18;
- ``spec/03-plugins/13-cors/02-schema_spec.lua`` lines 4-58;
- ``spec/03-plugins/14-request-termination/01-schema_spec.lua`` lines 5-69;
- ``spec/03-plugins/17-ip-restriction/01-schema_spec.lua`` lines 5-108;
- ``spec/03-plugins/45-redirect/01-schema_spec.lua`` lines 15-99.

Left out (one line each):
- correlation-id lines 20-221 ("auto-complete generator if it is `null` in database", traditional
  and hybrid modes): needs Postgres rows written behind Kong's back and a control plane.
- cors "validates '*'", "what looks like a domain", "what looks like a regex" and "with invalid
  regex in origins": covered by test_cors::test_config_defaults_and_validation.
- cors "with invalid method": covered by test_cors::test_config_defaults_and_validation
  (``FAKE``, the same message).
- request-termination status_code "abcd", 99, 600, message with body and/or content_type,
  content_type without body, echo with body and content_type: covered by
  test_request_termination::test_config_defaults_and_validation.
- ip-restriction "allow should not accept invalid types" (``allow = 12``): covered by
  test_ip_restriction::test_config_defaults_and_validation.
- redirect "should accept a valid location", "status_code > 599", "location is required":
  covered by test_redirect::test_schema.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import plugin_config, plugin_config_errors

EXAMPLE = "https://example.com"


def cidr_errors(field: str, values: list[str]) -> list[str]:
    return [
        f"plugins[0].config.{field}[{i}]: invalid ip or cidr range: '{v}'"
        for i, v in enumerate(values)
    ]


# -- correlation-id ------------------------------------------------------------------------------
def test_correlation_id_generator_cannot_be_null() -> None:
    """11-correlation-id/02-schema_spec.lua:9"""
    assert plugin_config_errors("correlation-id", {"generator": None}) == [
        "plugins[0].config.generator: required field missing"
    ]


# -- cors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method", ["HEAD", "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"]
)
def test_cors_allows_method(method: str) -> None:
    """13-cors/02-schema_spec.lua:40"""
    assert plugin_config("cors", {"methods": [method]})["methods"] == [method]


# -- request-termination -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"status_code": 404}, id="status_code (6)"),
        pytest.param({"message": "Not found"}, id="message (9)"),
        pytest.param(
            {"content_type": "text/html", "body": "<body><h1>Not found</h1>"},
            id="content_type (12)",
        ),
        pytest.param({"body": "<body><h1>Not found</h1>"}, id="body (15)"),
        pytest.param({"echo": True, "trigger": "header_name"}, id="trigger (18)"),
    ],
)
def test_request_termination_accepts(config: dict[str, Any]) -> None:
    """14-request-termination/01-schema_spec.lua 6-20: the given fields come back as given."""
    loaded = plugin_config("request-termination", config)
    assert {k: loaded[k] for k in config} == config


def test_request_termination_status_code_cannot_be_null() -> None:
    """14-request-termination/01-schema_spec.lua:28"""
    assert plugin_config_errors("request-termination", {"status_code": None}) == [
        "plugins[0].config.status_code: required field missing"
    ]


# -- ip-restriction ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        pytest.param({"allow": ["127.0.0.1/32", "127.0.0.2/32"]}, id="allow (6)"),
        pytest.param(
            {"allow": ["127.0.0.1/32", "127.0.0.2/32"], "status": 403, "message": "Forbidden"},
            id="allow and status/message (9)",
        ),
        pytest.param({"allow": ["127.0.0.1/8"]}, id="cidr range (12)"),
        pytest.param({"deny": ["127.0.0.1/32", "127.0.0.2/32"]}, id="deny (15)"),
        pytest.param({"deny": ["127.0.0.2/32"], "allow": ["127.0.0.1/32"]}, id="both (18)"),
        pytest.param({"allow": ["::/0", "::/1", "::/128"]}, id="ipv6 cidr ranges (103)"),
    ],
)
def test_ip_restriction_accepts(config: dict[str, Any]) -> None:
    """17-ip-restriction/01-schema_spec.lua: the accepted configs; given as given."""
    loaded = plugin_config("ip-restriction", config)
    assert {k: loaded[k] for k in config} == config


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        pytest.param({"allow": ["hello"]}, cidr_errors("allow", ["hello"]), id="allow hello (36)"),
        pytest.param(
            {"allow": ["127.0.0.1/32", "127.0.0.2/32", "hello"]},
            ["plugins[0].config.allow[2]: invalid ip or cidr range: 'hello'"],
            id="allow third (43)",
        ),
        pytest.param(
            {"deny": 12}, ["plugins[0].config.deny: expected an array"], id="deny type (49)"
        ),
        pytest.param({"deny": ["hello"]}, cidr_errors("deny", ["hello"]), id="deny hello (54)"),
        pytest.param(
            {"deny": ["127.0.0.1/32", "127.0.0.2/32", "hello"]},
            ["plugins[0].config.deny[2]: invalid ip or cidr range: 'hello'"],
            id="deny third (61)",
        ),
        pytest.param(
            {"allow": ["0.0.0.0/a", "0.0.0.0/-1", "0.0.0.0/33"]},
            cidr_errors("allow", ["0.0.0.0/a", "0.0.0.0/-1", "0.0.0.0/33"]),
            id="ipv4 cidr ranges (77)",
        ),
        pytest.param(
            {"allow": ["::/a", "::/-1", "::/129", "::1/a", "::1/-1", "::1/129"]},
            cidr_errors("allow", ["::/a", "::/-1", "::/129", "::1/a", "::1/-1", "::1/129"]),
            id="ipv6 cidr ranges (88)",
        ),
    ],
)
def test_ip_restriction_rejects(config: dict[str, Any], errors: list[str]) -> None:
    """17-ip-restriction/01-schema_spec.lua 36-101: ``assert.same`` on ``err.config``."""
    assert plugin_config_errors("ip-restriction", config) == errors


def test_ip_restriction_rejects_both_empty_as_an_entity_error() -> None:
    """17-ip-restriction/01-schema_spec.lua:67: Kong's ``err["@entity"]`` (the path and message
    are also in test_ip_restriction; this adds the ``.entity`` flag)."""
    doc = {
        "_format_version": "3.0",
        "plugins": [{"name": "ip-restriction", "config": {"deny": [], "allow": []}}],
    }
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(doc))
    assert [(e.path, e.message, e.entity) for e in info.value.errors] == [
        (
            "plugins[0]",
            "at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
            True,
        )
    ]


# -- redirect ------------------------------------------------------------------------------------
def test_redirect_accepts_a_valid_status_code() -> None:
    """45-redirect/01-schema_spec.lua:16"""
    config = plugin_config("redirect", {"status_code": 404, "location": EXAMPLE})
    assert (config["status_code"], config["location"]) == (404, EXAMPLE)


@pytest.mark.parametrize(
    ("config", "error"),
    [
        pytest.param(
            {"status_code": "abcd", "location": EXAMPLE},
            "status_code: expected an integer",
            id="integers only (36)",
        ),
        pytest.param(
            {"status_code": None, "location": EXAMPLE},
            "status_code: required field missing",
            id="not nullable (45)",
        ),
        pytest.param(
            {"status_code": 99, "location": EXAMPLE},
            "status_code: value should be between 100 and 599",
            id="< 100 (54)",
        ),
        pytest.param(
            {"status_code": 301, "location": "definitely_not_a_url"},
            "location: missing host in url",
            id="location a url (80)",
        ),
        pytest.param(
            {"status_code": 301, "location": EXAMPLE, "keep_incoming_path": "invalid"},
            "keep_incoming_path: expected a boolean",
            id="keep_incoming_path a boolean (89)",
        ),
    ],
)
def test_redirect_rejects(config: dict[str, Any], error: str) -> None:
    """45-redirect/01-schema_spec.lua 36-97"""
    assert plugin_config_errors("redirect", config) == [f"plugins[0].config.{error}"]
