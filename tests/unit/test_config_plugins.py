"""Plugin entries: registry lookup, config checked against the plugin's Struct, scopes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import msgspec
import pytest
from msgspec import Meta

from fastkong.config import ConfigError, load_config
from fastkong.config.ids import generate
from fastkong.plugins.registry import PluginSpec, register, unregister

BASE = '_format_version: "3.0"\n'
PERIODS = "'config.second', 'config.minute'"


class Redis(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str | None = None
    port: Annotated[int, Meta(ge=0, le=65535)] = 6379


class RateConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    second: Annotated[float, Meta(gt=0)] | None = None
    minute: Annotated[float, Meta(gt=0)] | None = None
    policy: Literal["local", "cluster", "redis"] = "local"
    fault_tolerant: bool = True
    redis: Redis = msgspec.field(default_factory=Redis)
    header_name: Annotated[str, Meta(pattern="^[A-Za-z-]+$")] | None = None


def check_rate(config: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if config.second is None and config.minute is None:
        out.append(("", f"at least one of these fields must be non-empty: {PERIODS}"))
    if config.policy == "redis" and config.redis.host is None:
        out.append(("redis.host", "required field missing"))
    return out


class CorsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    origins: list[str] | None = None


@pytest.fixture(autouse=True)
def plugins() -> Iterator[None]:
    register(PluginSpec(name="rate", priority=910, config_type=RateConfig, check=check_rate))
    register(
        PluginSpec(
            name="cors-test",
            priority=2000,
            config_type=CorsConfig,
            no_consumer=True,
            protocols=("http", "https"),
        )
    )
    yield
    unregister("rate")
    unregister("cors-test")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(BASE + text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_config_gets_the_plugin_defaults() -> None:
    plugin = load_config(BASE + "plugins: [{name: rate, config: {minute: 10}}]\n").config.plugins[0]
    assert plugin.config == {
        "second": None,
        "minute": 10,
        "policy": "local",
        "fault_tolerant": True,
        "redis": {"host": None, "port": 6379},
        "header_name": None,
    }
    assert (plugin.enabled, plugin.protocols, plugin.instance_name) == (
        True,
        ["grpc", "grpcs", "http", "https"],
        None,
    )
    assert (plugin.route, plugin.service, plugin.consumer) == (None, None, None)


def test_protocols_default_to_the_plugins_own() -> None:
    plugin = load_config(BASE + "plugins: [{name: cors-test}]\n").config.plugins[0]
    assert plugin.protocols == ["http", "https"]
    assert plugin.config == {"origins": None}


def test_unknown_and_missing_plugin_names() -> None:
    assert errors(
        "plugins:\n- {name: rate, config: {second: 1}}\n- {name: cors-test}\n- config: {}\n"
        "- {name: foo, config: {anything: 1}}\n- {name: 7}\n"
    ) == [
        "plugins[2].name: required field missing",
        "plugins[3].name: plugin 'foo' not enabled; add it to the 'plugins' configuration property",
        "plugins[4].name: expected a string",
    ]


def test_kongs_plugins_fastkong_lacks_are_named_as_such() -> None:
    """Kong's "add it to the 'plugins' configuration property" would send a Kong user after a
    setting that cannot help: a bundled Kong plugin fastkong lacks says so instead."""
    assert errors("plugins:\n- {name: oauth2}\n- {name: post-function}\n") == [
        "plugins[0].name: plugin 'oauth2' is one of Kong's bundled plugins that fastkong does "
        "not implement",
        "plugins[1].name: plugin 'post-function' runs Lua code, which fastkong does not run",
    ]


def test_config_is_checked_field_by_field() -> None:
    assert errors(
        "plugins:\n"
        "- name: rate\n"
        "  config: {minute: 0, second: x, policy: nope, foo: 1, redis: {port: 70000}, "
        "header_name: 'a b'}\n"
        "- {name: rate, route: r1, config: [1]}\n"
        "- {name: rate, route: r2, protocols: [http, tcp], enabled: 1, config: {second: 1}}\n"
        "- {name: cors-test, protocols: [grpc]}\n"
        "routes: [{name: r1, paths: [/1]}, {name: r2, paths: [/2]}]\n"
    ) == [
        "plugins[0].config.minute: value must be greater than 0",
        "plugins[0].config.second: expected a number",
        "plugins[0].config.policy: expected one of: local, cluster, redis",
        "plugins[0].config.foo: unknown field",
        "plugins[0].config.redis.port: value should be between 0 and 65535",
        "plugins[0].config.header_name: invalid value: a b",
        "plugins[1].config: expected a record",
        "plugins[2].protocols[1]: expected one of: grpc, grpcs, http, https",
        "plugins[2].enabled: expected a boolean",
        "plugins[3].protocols[0]: expected one of: http, https",
    ]


def test_plugin_check_results() -> None:
    assert errors(
        "plugins:\n- {name: rate}\n- {name: rate, route: r, config: {second: 1, policy: redis}}\n"
        "routes: [{name: r, paths: [/]}]\n"
    ) == [
        f"plugins[0]: at least one of these fields must be non-empty: {PERIODS}",
        "plugins[1].config.redis.host: required field missing",
    ]


def test_no_consumer_scope() -> None:
    assert errors(
        "plugins: [{name: cors-test, consumer: bob}]\n"
        "consumers:\n- username: alice\n  plugins: [{name: cors-test}]\n- username: bob\n"
    ) == [
        "plugins[0].consumer: value must be null",
        "consumers[0].plugins[0]: plugin 'cors-test' cannot be configured on a consumer",
    ]


def test_one_plugin_per_scope() -> None:
    svc = generate("services", "svc")
    same_key = generate("plugins", "plugins:*:rate::svc:")
    assert errors(
        "services:\n- name: svc\n  host: svc.internal\n"
        "plugins:\n"
        "- {name: rate, service: svc, config: {second: 1}}\n"
        "- {name: rate, service: svc, config: {second: 2}}\n"
        f"- {{name: rate, service: {svc}, config: {{second: 3}}}}\n"
        "- {name: rate, instance_name: a, config: {second: 1}, consumer: c}\n"
        "- {name: rate, instance_name: a, config: {second: 1}}\n"
        "consumers: [{username: c}]\n"
    ) == [
        f"plugins[1]: uniqueness violation: 'plugins' entity with primary key set to '{same_key}' "
        "already declared",
        "plugins[2]: uniqueness violation: 'plugins' entity with cache_key set to "
        f"'plugins:rate::{svc}:' already declared",
        "plugins[4]: uniqueness violation: 'plugins' entity with instance_name set to 'a' "
        "already declared",
    ]


def test_same_plugin_on_different_scopes_is_fine() -> None:
    config = load_config(
        BASE + "services:\n- name: svc\n  host: h\n  plugins: [{name: rate, config: {second: 1}}]\n"
        "  routes:\n  - name: r\n    paths: [/]\n    plugins: [{name: rate, config: {second: 2}}]\n"
        "consumers:\n- username: c\n  plugins: [{name: rate, config: {second: 3}}]\n"
        "plugins: [{name: rate, config: {second: 4}, enabled: false}]\n"
    ).config
    assert [p.config["second"] for p in config.plugins] == [1.0, 2.0, 3.0, 4.0]
    assert [p.enabled for p in config.plugins] == [True, True, True, False]
    assert len({p.id for p in config.plugins}) == 4


def test_flattened_plugin_errors() -> None:
    doc = (
        BASE + "services:\n- name: s\n  url: http://localhost:1234\n  tags: [service-01]\n"
        "  plugins:\n"
        "  - {name: i-dont-exist, config: {}, tags: [service_plugin-01]}\n"
        "  - name: rate\n    config: {deeply: {nested: true}, second: 1}\n"
        "    tags: [service_plugin-02]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(doc)
    svc_id = generate("services", "s")
    assert info.value.flattened() == [
        {
            "entity_type": "plugin",
            "entity_id": generate("plugins", "plugins:*:i-dont-exist::" + svc_id + ":"),
            "entity_name": "i-dont-exist",
            "entity_tags": ["service_plugin-01"],
            "entity": {
                "name": "i-dont-exist",
                "config": {},
                "tags": ["service_plugin-01"],
                "service": {"id": svc_id},
            },
            "errors": [
                {
                    "type": "field",
                    "field": "name",
                    "message": "plugin 'i-dont-exist' not enabled; add it to the 'plugins' "
                    "configuration property",
                }
            ],
        },
        {
            "entity_type": "plugin",
            "entity_id": generate("plugins", "plugins:*:rate::" + svc_id + ":"),
            "entity_name": "rate",
            "entity_tags": ["service_plugin-02"],
            "entity": {
                "name": "rate",
                "config": {"deeply": {"nested": True}, "second": 1},
                "tags": ["service_plugin-02"],
                "service": {"id": svc_id},
            },
            "errors": [{"type": "field", "field": "config.deeply", "message": "unknown field"}],
        },
    ]
