"""Kong's plugin schema specs (other than the auth plugins), ported: each
``v({config}, schema_def)`` becomes a plugin ``config`` in a declarative document
(:func:`tests.helpers.plugin_config`), Kong's ``err.config`` fields become
``plugins[0].config.<field>`` paths (0-based indexes) and its ``@entity`` lists the path of the
record they belong to, with ``FieldError.entity`` set.

- ``spec/03-plugins/24-response-rate-limiting/01-schema_spec.lua``: lines 9-20, 32-133 ported;
  23-31 (empty config, empty ``limits``) are covered by
  ``tests/plugins/test_response_ratelimiting.py::test_schema``.
- ``spec/03-plugins/29-acme/04-schema_spec.lua``: the table (lines 6-126) ported but for
  "rejects invalid email" (covered by ``test_acme_config.py::test_config_errors_name_their_path``)
  and "must accept ToS (accepted)" (covered by
  ``test_acme_config.py::test_kong_s_tos_check_fires_for_its_two_exact_uris_only``).
- ``spec/03-plugins/31-proxy-cache/01-schema_spec.lua``: lines 22-42, 64-151 ported; 5-20 (the
  minimal config, the ``content_type`` default) are covered by
  ``test_proxy_cache.py::test_defaults_are_kongs``, 44-62 (``response_code`` out of range, empty)
  by ``test_proxy_cache.py::test_config_errors_have_paths``.
- ``spec/03-plugins/36-request-transformer/01-schema_spec.lua``: lines 5-9, 15-34 ported; 10-14
  and 35-54 (bad ``http_method``, a value missing, a malformed template) are covered by
  ``test_request_transformer.py::test_config_defaults_and_validation``.
- ``spec/03-plugins/37-opentelemetry/02-schema_spec.lua``: lines 5-19 (a number as a map key:
  YAML can write one) and 37-47 ported; 21-35 (an empty value) is covered by
  ``test_opentelemetry.py::test_schema_resource_attributes_are_non_empty_strings``.

Nothing else left out: these specs need no database. (``helpers.redis_host``/``redis_port``/
``redis_ssl_sni`` are Kong's test defaults from spec/internal/constants.lua.)
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import plugin_config, plugin_config_errors

Problem = tuple[str, str, bool]
REDIS_HOST, REDIS_PORT, REDIS_SSL_SNI = "localhost", 6379, "test-redis.example.com"


def problems(name: str, config: dict[str, Any]) -> list[Problem]:
    """``(path, message, entity)`` of every error loading plugin ``name`` with ``config``."""
    with pytest.raises(ConfigError) as info:
        plugin_config(name, config)
    return [(e.path, e.message, e.entity) for e in info.value.errors]


# -- response-ratelimiting (24-response-rate-limiting/01-schema_spec.lua) -----------------------
RRL = "response-ratelimiting"
ALL_PERIODS = {"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6}


@pytest.mark.parametrize(
    "config",
    [
        {"limits": {"video": {"second": 1}}},  # line 9
        {"limits": {"video": ALL_PERIODS}},  # line 15
        {"limits": {"video": {"second": None, "minute": 1}}},  # line 38, issue #8314
        {  # line 65
            "limits": {"video": {"second": 10}},
            "policy": "redis",
            "redis": {
                "host": REDIS_HOST,
                "port": REDIS_PORT,
                "database": 0,
                "username": "test",
                "password": "testXXX",
                "ssl": True,
                "ssl_verify": False,
                "timeout": 1100,
                "server_name": REDIS_SSL_SNI,
            },
        },
        {  # line 89
            "limits": {"video": {"second": 10}},
            "policy": "redis",
            "redis_host": REDIS_HOST,
            "redis_port": REDIS_PORT,
            "redis_database": 0,
            "redis_username": "test",
            "redis_password": "testXXX",
            "redis_ssl": True,
            "redis_ssl_verify": False,
            "redis_timeout": 1100,
            "redis_server_name": REDIS_SSL_SNI,
        },
    ],
    ids=["proper", "proper bis", "null limit", "redis new structure", "redis legacy structure"],
)
def test_response_ratelimiting_accepts(config: dict[str, Any]) -> None:
    assert plugin_config(RRL, config) is not None


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"limits": {"video": {"seco": 1}}}, "limits.seco: unknown field"),  # line 32
        (
            {"limits": {"video": {"second": 2, "minute": 1}}},  # line 44
            "limits: the limit for minute(1.0) cannot be lower than the limit for second(2.0)",
        ),
        (
            {"limits": {"video": {**ALL_PERIODS, "month": 6, "year": 5}}},  # line 51
            "limits: the limit for year(5.0) cannot be lower than the limit for month(6.0)",
        ),
        ({"limits": {"second": 10}}, "limits: expected a record"),  # line 58
    ],
    ids=["invalid limit", "smaller unit", "smaller unit bis", "invalid unit type"],
)
def test_response_ratelimiting_errors(config: dict[str, Any], error: str) -> None:
    # Kong's map returns its value's error as its own (err.config.limits.seco, not .video.seco).
    assert plugin_config_errors(RRL, config) == [f"plugins[0].config.{error}"]


def test_response_ratelimiting_redis_required_fields() -> None:  # spec line 112
    redis = {
        "port": REDIS_PORT,
        "database": 0,
        "username": "test",
        "password": "testXXX",
        "ssl": True,
        "ssl_verify": False,
        "timeout": 1100,
        "server_name": REDIS_SSL_SNI,
    }
    config = {"limits": {"video": {"second": 10}}, "policy": "redis", "redis": redis}
    found = plugin_config_errors(RRL, config)
    assert "plugins[0].config.redis.host: required field missing" in found, found


# -- acme (29-acme/04-schema_spec.lua) -----------------------------------------------------------
EMAIL = "example@example.com"
TOS = "terms of service must be accepted, see https://letsencrypt.org/repository/"
#: Kong's error for an unaccepted ToS: the conditional's then_match (``eq = true``) fails on the
#: field, its ``then_err`` goes to the plugin's ``@entity`` (kong/db/schema/init.lua
#: ``conditional`` and ``run_entity_check``; the spec's ``assert.same`` at lines 35-42, 51-58).
TOS_ERRORS = {
    ("plugins[0]", TOS, True),
    ("plugins[0].config.tos_accepted", "value must be true", False),
}


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        ({"account_email": EMAIL, "api_uri": "https://api.acme.org"}, None),
        (
            {"account_email": EMAIL, "api_uri": "https://acme-staging-v02.api.letsencrypt.org"},
            TOS_ERRORS,
        ),
        ({"account_email": EMAIL, "api_uri": "https://acme-v02.api.letsencrypt.org"}, TOS_ERRORS),
        (
            {
                "account_email": EMAIL,
                "api_uri": "https://api.acme.org",
                "account_key": {"key_id": "123", "key_set": "my-key-set"},
            },
            None,
        ),
        (
            {
                "account_email": EMAIL,
                "api_uri": "https://api.acme.org",
                "account_key": {"key_id": "123"},
            },
            None,
        ),
        (
            {
                "account_email": EMAIL,
                "storage": "redis",
                "storage_config": {"redis": {"host": "localhost"}},
            },
            None,
        ),
        (
            {"account_email": EMAIL, "storage": "redis", "storage_config": {"redis": {}}},
            {
                (
                    "plugins[0]",
                    "failed conditional validation given value of field 'config.storage'",
                    True,
                ),
                ("plugins[0].config.storage_config.redis.host", "required field missing", False),
            },
        ),
    ],
    ids=[
        "accepts valid config",
        "must accept ToS for Let's Encrypt (unaccepted,staging)",
        "must accept ToS for Let's Encrypt (unaccepted)",
        "accepts valid account_key with key_set",
        "accepts valid account_key without key_set",
        "accepts valid redis config",
        "rejects invalid redis config",
    ],
)
def test_acme(config: dict[str, Any], errors: set[Problem] | None) -> None:
    if errors is None:
        assert plugin_config("acme", config) is not None
    else:  # the spec's assert.same on the whole error table: no more, no fewer, any order
        assert set(problems("acme", config)) == errors


# -- proxy-cache (31-proxy-cache/01-schema_spec.lua) ---------------------------------------------
@pytest.mark.parametrize(
    "config",
    [
        {
            "response_code": [200, 301],
            "request_method": ["GET"],
            "content_type": ["application/json"],
        },
        {"response_code": [123, 200]},
        {"vary_query_params": ["foo"]},
        {"vary_headers": ["foo"]},
        {"content_type": ["application/*", "*/text"]},
        {"content_type": ["*/*"]},
        {"content_type": ["application/json; charset=UTF-8"]},
    ],
    ids=[
        "custom values",  # line 22
        "array of numbers",  # line 34
        "vary_query_params",  # line 105
        "vary_headers",  # line 115
        "wildcard content_type",  # line 125
        "wildcard content_type */*",  # line 134
        "content_type with parameter",  # line 143
    ],
)
def test_proxy_cache_accepts(config: dict[str, Any]) -> None:
    loaded = msgspec.to_builtins(plugin_config("proxy-cache", {"strategy": "memory", **config}))
    assert {key: loaded[key] for key in config} == config


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        ({"response_code": ""}, ["response_code: expected an array"]),  # line 64
        (
            {"response_code": [True, "alo", 123]},  # line 74
            ["response_code[0]: expected an integer", "response_code[1]: expected an integer"],
        ),
        ({"response_code": [123.5]}, ["response_code[0]: expected an integer"]),  # line 85
        ({"cache_ttl": -1}, ["cache_ttl: value must be greater than 0"]),  # line 95
    ],
    ids=["response_code a string", "non-numeric values", "float value", "invalid ttl"],
)
def test_proxy_cache_errors(config: dict[str, Any], errors: list[str]) -> None:
    found = plugin_config_errors("proxy-cache", {"strategy": "memory", **config})
    assert found == [f"plugins[0].config.{error}" for error in errors]


# -- request-transformer (36-request-transformer/01-schema_spec.lua) -----------------------------
@pytest.mark.parametrize(
    "config",
    [
        {"http_method": "GET"},  # line 5
        {
            "add": {
                "querystring": [
                    "uri_param1:$(uri_captures.user1)",
                    "uri_param2:$(uri_captures.user2)",
                ]
            }
        },
        {"add": {"querystring": ["uri_param1:$(uri_captures.user1)", "uri_param2:value"]}},
    ],
    ids=["validates http_method", "regex pattern as value", "string as value"],  # lines 15, 25
)
def test_request_transformer_accepts(config: dict[str, Any]) -> None:
    loaded = msgspec.to_builtins(plugin_config("request-transformer", config))
    if "add" in config:
        assert loaded["add"] == {"body": [], "headers": [], **config["add"]}
    else:
        assert loaded["http_method"] == config["http_method"]


# -- opentelemetry (37-opentelemetry/02-schema_spec.lua) -----------------------------------------
def test_opentelemetry_rejects_invalid_attribute_keys() -> None:  # spec line 5
    # Kong's ``[123] = ""``: a number as a key, which YAML writes as it is (JSON cannot).
    with pytest.raises(ConfigError) as info:
        load_config(
            '_format_version: "3.0"\nplugins:\n- name: opentelemetry\n'
            '  config: {endpoint: "http://example.dev", resource_attributes: {123: ""}}\n'
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.resource_attributes: expected a string"
    ]


def test_opentelemetry_accepts_variable_values() -> None:  # spec line 37
    config = {"endpoint": "http://example.dev", "resource_attributes": {"foo": "$(headers.host)"}}
    loaded = msgspec.to_builtins(plugin_config("opentelemetry", config))
    assert loaded["resource_attributes"] == {"foo": "$(headers.host)"}
    assert loaded["traces_endpoint"] == "http://example.dev"
