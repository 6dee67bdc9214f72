"""Kong's defaults per entity (reference/kong.md 1.2, ``kong:kong/db/schema/entities/*.lua``)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fastkong.config import Config, ConfigError, load_config

BASE = '_format_version: "3.0"\n'


def load(text: str) -> Config:
    return load_config(BASE + text).config


def builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def without_id(obj: Any) -> dict[str, Any]:
    data = builtins(obj)
    data.pop("id")
    return data


def test_service_defaults() -> None:
    config = load("services:\n- host: example.com\n")
    assert without_id(config.services[0]) == {
        "name": None,
        "retries": 5,
        "protocol": "http",
        "host": "example.com",
        "port": 80,
        "path": None,
        "connect_timeout": 60000,
        "write_timeout": 60000,
        "read_timeout": 60000,
        "tags": None,
        "client_certificate": None,
        "tls_verify": None,
        "tls_verify_depth": None,
        "ca_certificates": None,
        "enabled": True,
        "created_at": None,
        "updated_at": None,
    }


def test_route_defaults() -> None:
    config = load("routes:\n- paths: [/]\n")
    assert without_id(config.routes[0]) == {
        "name": None,
        "protocols": ["http", "https"],
        "https_redirect_status_code": 426,
        "strip_path": True,
        "preserve_host": False,
        "request_buffering": True,
        "response_buffering": True,
        "tags": None,
        "service": None,
        "snis": None,
        "sources": None,
        "destinations": None,
        "methods": None,
        "hosts": None,
        "paths": ["/"],
        "headers": None,
        "regex_priority": 0,
        "path_handling": "v0",
        "created_at": None,
        "updated_at": None,
    }


def test_grpc_route_strip_path_defaults_to_false() -> None:
    config = load("routes:\n- protocols: [grpc]\n  paths: [/svc]\n")
    assert config.routes[0].strip_path is False


ACTIVE_UNHEALTHY = [429, 404, 500, 501, 502, 503, 504, 505]
PASSIVE_HEALTHY = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226]
PASSIVE_HEALTHY += [300, 301, 302, 303, 304, 305, 306, 307, 308]

HEALTHCHECKS = {
    "active": {
        "type": "http",
        "timeout": 1.0,
        "concurrency": 10,
        "http_path": "/",
        "https_sni": None,
        "https_verify_certificate": True,
        "headers": None,
        "healthy": {"interval": 0.0, "http_statuses": [200, 302], "successes": 0},
        "unhealthy": {
            "interval": 0.0,
            "http_statuses": ACTIVE_UNHEALTHY,
            "tcp_failures": 0,
            "timeouts": 0,
            "http_failures": 0,
        },
    },
    "passive": {
        "type": "http",
        "healthy": {"http_statuses": PASSIVE_HEALTHY, "successes": 0},
        "unhealthy": {
            "http_statuses": [429, 500, 503],
            "tcp_failures": 0,
            "timeouts": 0,
            "http_failures": 0,
        },
    },
    "threshold": 0.0,
}


def test_upstream_defaults() -> None:
    config = load("upstreams:\n- name: orders.svc\n")
    assert without_id(config.upstreams[0]) == {
        "name": "orders.svc",
        "algorithm": "round-robin",
        "hash_on": "none",
        "hash_fallback": "none",
        "hash_on_header": None,
        "hash_fallback_header": None,
        "hash_on_cookie": None,
        "hash_on_cookie_path": "/",
        "hash_on_query_arg": None,
        "hash_fallback_query_arg": None,
        "hash_on_uri_capture": None,
        "hash_fallback_uri_capture": None,
        "slots": 10000,
        "healthchecks": HEALTHCHECKS,
        "tags": None,
        "host_header": None,
        "client_certificate": None,
        "use_srv_name": False,
        "created_at": None,
        "updated_at": None,
    }


def test_partial_healthchecks_are_merged_with_defaults() -> None:
    config = load(
        "upstreams:\n- name: u\n  healthchecks:\n    active:\n      healthy: {interval: 5}\n"
    )
    active = builtins(config.upstreams[0].healthchecks.active)
    assert active["healthy"] == {"interval": 5.0, "http_statuses": [200, 302], "successes": 0}
    assert active["unhealthy"]["http_statuses"] == ACTIVE_UNHEALTHY
    assert builtins(config.upstreams[0].healthchecks.passive) == HEALTHCHECKS["passive"]


def test_target_defaults_and_normalization() -> None:
    config = load(
        "upstreams:\n- name: u\n  targets:\n"
        "  - target: 10.0.0.1\n"
        "  - target: example.com:81\n"
        "  - target: '::1'\n"
        "  - target: '[::1]:9000'\n"
        "    weight: 0\n"
    )
    targets = [(t.target, t.weight) for t in config.targets]
    assert targets == [
        ("10.0.0.1:8000", 100),
        ("example.com:81", 100),
        ("[0000:0000:0000:0000:0000:0000:0000:0001]:8000", 100),
        ("[0000:0000:0000:0000:0000:0000:0000:0001]:9000", 0),
    ]
    assert {t.upstream for t in config.targets} == {config.upstreams[0].id}


def test_consumer_and_credential_defaults() -> None:
    config = load(
        "consumers:\n- username: alice\n"
        "  keyauth_credentials: [{key: k1}, {}]\n"
        "  basicauth_credentials: [{username: alice, password: s3cret}]\n"
        "  jwt_secrets: [{key: iss}, {}]\n"
        "  acls: [{group: gold}]\n"
    )
    alice = config.consumers[0]
    assert (alice.username, alice.custom_id, alice.tags) == ("alice", None, None)
    k1, generated = config.keyauth_credentials
    assert (k1.key, k1.ttl, k1.consumer) == ("k1", None, alice.id)
    assert len(generated.key) == 32 and generated.key != k1.key
    basic = config.basicauth_credentials[0]
    assert (basic.username, basic.password, basic.consumer) == ("alice", "s3cret", alice.id)
    jwt, jwt_generated = config.jwt_secrets
    assert (jwt.key, jwt.algorithm, jwt.rsa_public_key) == ("iss", "HS256", None)
    assert len(jwt.secret) == 32
    assert len(jwt_generated.key) == 32 and len(jwt_generated.secret) == 32
    assert (config.acls[0].group, config.acls[0].consumer) == ("gold", alice.id)


def test_auto_timestamps_are_accepted_and_kept_as_given() -> None:
    """``kong config db_export`` writes created_at/updated_at: such a file loads unchanged
    (seconds as integers; a target's are milliseconds, a number), and a wrong type is an
    error with its path."""
    config = load(
        "services:\n- name: s\n  host: h\n  created_at: 1700000000\n  updated_at: 1700000001\n"
        "  routes:\n  - {paths: [/], created_at: 1700000002, updated_at: 1700000003}\n"
        "upstreams:\n- name: u\n  created_at: 1700000004\n  targets:\n"
        "  - {target: 10.0.0.1, created_at: 1700000005123.456, updated_at: 1700000005124.0}\n"
        "consumers:\n- username: c\n  created_at: 1700000006\n"
        "  keyauth_credentials: [{key: k, created_at: 1700000007}]\n"
        "  basicauth_credentials: [{username: c, password: p, created_at: 1700000008}]\n"
        "  jwt_secrets: [{key: iss, created_at: 1700000009}]\n"
        "  acls: [{group: g, created_at: 1700000010}]\n"
        "plugins:\n- {name: cors, created_at: 1700000011, updated_at: 1700000012}\n"
    )
    assert (config.services[0].created_at, config.services[0].updated_at) == (
        1700000000,
        1700000001,
    )
    assert (config.routes[0].created_at, config.routes[0].updated_at) == (1700000002, 1700000003)
    assert config.upstreams[0].created_at == 1700000004
    assert config.upstreams[0].updated_at is None
    assert config.targets[0].created_at == 1700000005123.456
    assert config.consumers[0].created_at == 1700000006
    assert config.keyauth_credentials[0].created_at == 1700000007
    assert config.basicauth_credentials[0].created_at == 1700000008
    assert config.jwt_secrets[0].created_at == 1700000009
    assert config.acls[0].created_at == 1700000010
    assert (config.plugins[0].created_at, config.plugins[0].updated_at) == (
        1700000011,
        1700000012,
    )
    with pytest.raises(ConfigError) as info:
        load("services:\n- host: h\n  created_at: yesterday\n")
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "services[0].created_at: expected an integer"
    ]


def test_meta_defaults() -> None:
    config = load("")
    assert (config.format_version, config.transform) == ("3.0", True)
    assert load("_transform: false\n").transform is False


def test_null_takes_the_default_of_an_optional_field() -> None:
    config = load("services:\n- host: h\n  retries: null\n  read_timeout: ~\n")
    assert (config.services[0].retries, config.services[0].read_timeout) == (5, 60000)
