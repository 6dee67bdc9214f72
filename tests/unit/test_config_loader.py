"""load_config: formats, hash, the bundled configs, dump_state/load_state."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.config import (
    EMPTY_CONFIG_HASH,
    Config,
    ConfigError,
    LoadedConfig,
    dump_state,
    load_config,
    load_state,
)
from fastkong.config.checks import compile_path_regex

ROOT = Path(__file__).resolve().parents[2]
KONG_YML = ROOT / "configs" / "kong.yml"
INVALID_YML = ROOT / "configs" / "examples" / "invalid.yml"

DOC = {
    "_format_version": "3.0",
    "services": [{"name": "s", "url": "http://a.internal:81/x", "routes": [{"paths": ["/s"]}]}],
}


def test_json_and_yaml_give_the_same_config() -> None:
    as_json = json.dumps(DOC)
    from_json = load_config(as_json)
    from_yaml = load_config(
        '_format_version: "3.0"\nservices:\n- name: s\n  url: http://a.internal:81/x\n'
        "  routes:\n  - paths: [/s]\n"
    )
    assert from_json.config == from_yaml.config
    assert load_config(as_json, content_type="application/json").config == from_json.config
    assert load_config(as_json, content_type="application/yaml").config == from_json.config


def test_declared_json_must_be_json() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("_format_version: '3.0'\n", content_type="application/json; charset=utf-8")
    assert info.value.errors[0].message.startswith("failed parsing declarative configuration: ")


def test_hash_is_md5_of_the_raw_input() -> None:
    text = "# comment\n" + json.dumps(DOC)
    loaded = load_config(text)
    assert loaded.hash == hashlib.md5(text.encode()).hexdigest()
    assert load_config(text.encode()).hash == loaded.hash
    assert load_config(text + "\n").hash != loaded.hash


@pytest.mark.parametrize(
    "text",
    ['_format_version: "3.0"\n', '_format_version: "3.0"\nservices: []\nroutes: ~\n'],
)
def test_empty_config_hash_is_zeros(text: str) -> None:
    loaded = load_config(text)
    assert loaded.hash == EMPTY_CONFIG_HASH == "0" * 32
    assert loaded.config.is_empty()


def test_state_round_trip() -> None:
    loaded = load_config(KONG_YML.read_bytes())
    state = dump_state(loaded.config)
    assert isinstance(state, bytes)
    restored = load_state(state)
    assert isinstance(restored, Config)
    assert restored == loaded.config


def test_repr_shows_state() -> None:
    loaded = load_config(json.dumps(DOC))
    assert isinstance(loaded, LoadedConfig)
    assert repr(loaded.config) == "<Config 3.0 services=1 routes=1>"
    assert repr(loaded) == f"<LoadedConfig {loaded.hash} <Config 3.0 services=1 routes=1>>"


def test_bundled_kong_yml() -> None:
    config = load_config(KONG_YML.read_bytes()).config
    services = {s.name: s for s in config.services}
    routes = {r.name: r for r in config.routes}
    echo = services["echo"]
    assert (echo.protocol, echo.host, echo.port) == ("http", "127.0.0.1", 9001)
    assert routes["echo-prefix"].paths == ["/echo"] and routes["echo-prefix"].strip_path
    regex = routes["orders-by-id"].paths
    assert regex is not None and regex[0].startswith("~")
    match = compile_path_regex(regex[0][1:]).match("/v2/orders/42")
    assert match is not None and match.group("order_id") == "42"
    assert routes["orders-by-id"].strip_path is False
    assert routes["api-host"].hosts == ["api.example.com"]
    assert routes["api-host"].strip_path is False
    assert all(r.service in {s.id for s in config.services} for r in config.routes)
    upstream = config.upstreams[0]
    assert upstream.name == services["balanced"].host
    assert sorted(t.target for t in config.targets) == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert {t.upstream for t in config.targets} == {upstream.id}
    assert config.plugins == []


def test_invalid_example_reports_three_path_qualified_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(INVALID_YML.read_bytes())
    assert str(info.value).splitlines() == [
        "services[0].port: value should be between 0 and 65535",
        "services[0].routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)",
        "routes[0].service: invalid reference 'service: billing' (no such entry in 'services')",
    ]
    # The file's header comment lists the same three lines.
    header = INVALID_YML.read_text().split("_format_version")[0]
    listed = [m.group(1) for m in re.finditer(r"^#   (.+)$", header, re.M)]
    assert listed == str(info.value).splitlines()


# -- adversarial: any JSON-like value anywhere is an error with a path, never a crash ------------
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
ENTITY_KEYS = {
    "services": ["name", "host", "url", "port", "path", "protocol", "routes", "plugins", "tags"],
    "routes": ["name", "paths", "hosts", "methods", "headers", "protocols", "service", "snis"],
    "upstreams": ["name", "algorithm", "hash_on", "healthchecks", "targets", "slots"],
    "consumers": ["username", "custom_id", "keyauth_credentials", "acls", "plugins"],
    "plugins": ["name", "config", "route", "service", "consumer", "protocols"],
    "certificates": ["cert", "key", "snis"],
}


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(ENTITY_KEYS)).flatmap(
        lambda plural: st.tuples(
            st.just(plural),
            st.dictionaries(st.sampled_from(ENTITY_KEYS[plural]), JSONISH, max_size=4),
        )
    )
)
def test_garbage_is_reported_not_raised(entry: tuple[str, dict[str, object]]) -> None:
    plural, entity = entry
    doc = {"_format_version": "3.0", plural: [entity, entity]}
    try:
        loaded = load_config(json.dumps(doc))
    except ConfigError as exc:
        assert exc.errors and all(e.message for e in exc.errors)
        exc.fields()
        exc.flattened()
    else:
        assert load_state(dump_state(loaded.config)) == loaded.config
