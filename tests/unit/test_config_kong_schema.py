"""Conformance with Kong's entity schemas: cases from Kong's schema specs and sources.

Each case names the Kong rule it follows (``kong:<file>``); the expected messages are Kong's.
"""

from __future__ import annotations

import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.schema import Config

BASE = '_format_version: "3.0"\n'


def load(text: str) -> Config:
    return load_config(BASE + text).config


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(BASE + text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


# -- null vs absent (kong:kong/db/schema/init.lua `Schema:validate`, `handle_missing_field`) --
# Kong validates the document before it fills defaults, and fills only *missing* values: an
# explicit null for a `required = true` field is "required field missing" even when the field
# has a default.
@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("services:\n- {host: h, protocol: null}\n", "services[0].protocol"),
        ("services:\n- {host: h, port: null}\n", "services[0].port"),
        ("services:\n- {host: h, enabled: null}\n", "services[0].enabled"),
        ("routes:\n- {paths: [/], protocols: null}\n", "routes[0].protocols"),
        ("routes:\n- {paths: [/], strip_path: null}\n", "routes[0].strip_path"),
        ("routes:\n- {paths: [/], preserve_host: null}\n", "routes[0].preserve_host"),
        ("routes:\n- {paths: [/], request_buffering: null}\n", "routes[0].request_buffering"),
        ("routes:\n- {paths: [/], response_buffering: null}\n", "routes[0].response_buffering"),
        (
            "routes:\n- {paths: [/], https_redirect_status_code: null}\n",
            "routes[0].https_redirect_status_code",
        ),
        ("routes:\n- {paths: [/], protocols: [grpc], strip_path: null}\n", "routes[0].strip_path"),
        ("plugins:\n- {name: cors, enabled: null}\n", "plugins[0].enabled"),
        ("plugins:\n- {name: cors, protocols: null}\n", "plugins[0].protocols"),
        (
            "upstreams:\n- {name: u, healthchecks: {active: {https_verify_certificate: null}}}\n",
            "upstreams[0].healthchecks.active.https_verify_certificate",
        ),
    ],
)
def test_null_for_a_required_field_with_a_default(text: str, path: str) -> None:
    assert errors(text) == [f"{path}: required field missing"]


def test_absent_required_fields_take_their_defaults() -> None:
    config = load(
        "services:\n- host: h\n  routes:\n  - {paths: [/]}\n  - {paths: [/g], protocols: [grpc]}\n"
        "plugins:\n- {name: cors}\n"
    )
    svc, (route, grpc) = config.services[0], config.routes
    assert (svc.protocol, svc.port, svc.enabled) == ("http", 80, True)
    assert (route.protocols, route.strip_path, route.https_redirect_status_code) == (
        ["http", "https"],
        True,
        426,
    )
    assert grpc.strip_path is False
    assert (config.plugins[0].enabled, config.plugins[0].protocols) == (
        True,
        ["grpc", "grpcs", "http", "https"],
    )


def test_null_for_an_optional_field_with_a_default_is_accepted() -> None:
    # Kong keeps the null; fastkong's runtime has no null for these, so it keeps the default.
    config = load(
        "services:\n- {host: h, retries: null, connect_timeout: null}\n"
        "routes:\n- {paths: [/], regex_priority: null, path_handling: null}\n"
        "upstreams:\n- {name: u, slots: null, algorithm: null, healthchecks: null}\n"
    )
    assert (config.services[0].retries, config.routes[0].regex_priority) == (5, 0)
    assert (config.upstreams[0].slots, config.upstreams[0].algorithm) == (10000, "round-robin")
