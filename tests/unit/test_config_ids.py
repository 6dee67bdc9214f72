"""Deterministic ids: Kong's ``generate_ids`` (UUIDv5 in per-entity namespaces)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.ids import NAMESPACE, generate
from fastkong.plugins.registry import PluginSpec, register, unregister


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    pass


@pytest.fixture(autouse=True)
def noop_plugin() -> Iterator[None]:
    register(PluginSpec(name="noop", priority=1, config_type=Empty))
    yield
    unregister("noop")


def kong_uuid(entity: str, key: str) -> str:
    return str(uuid.uuid5(uuid.uuid5(NAMESPACE, entity), key))


# Ids that appear in Kong's own specs for entities given without an id elsewhere in the same
# specs (kong:spec/01-unit/01-db/01-schema/11-declarative_config/05-error-flattening_spec.lua
# and kong:spec/02-integration/04-admin_api/15-off_spec.lua).
KONG_IDS = [
    ("services", "httproute.default.httproute-testing.0", "4e3cb785-a8d0-5866-aa05-117f7c64f24d"),
    ("routes", "httproute.default.httproute-testing.0.0", "073fc413-1c03-50b4-8f44-43367c13daba"),
    ("consumers", "test-consumer-1", "a73dc9a7-93df-584d-97c0-7f41a1bbce3d"),
    ("services", "my-service", "0855b320-0dd2-547d-891d-601e9b38647f"),
    ("routes", "my-route", "481a9539-f49c-51b6-b2e2-fe99ee68866c"),
    ("consumers", "my-user", "4b1b701d-de2b-5588-9aa2-3b97061d9f52"),
]


@pytest.mark.parametrize(("entity", "key", "expected"), KONG_IDS)
def test_generate_matches_kong(entity: str, key: str, expected: str) -> None:
    assert generate(entity, key) == expected


def test_named_entities_get_kong_ids() -> None:
    config = load_config(
        """
_format_version: "3.0"
services:
- name: httproute.default.httproute-testing.0
  host: httproute.default.httproute-testing.0
  routes:
  - name: httproute.default.httproute-testing.0.0
    paths: [/httproute-testing/]
consumers:
- username: test-consumer-1
"""
    ).config
    assert config.services[0].id == "4e3cb785-a8d0-5866-aa05-117f7c64f24d"
    assert config.routes[0].id == "073fc413-1c03-50b4-8f44-43367c13daba"
    assert config.consumers[0].id == "a73dc9a7-93df-584d-97c0-7f41a1bbce3d"


def test_target_ids_mix_in_the_upstream_id() -> None:
    # Kong's spec: the same target under two upstreams gets two ids; these are its values.
    config = load_config(
        """
_format_version: "3.0"
upstreams:
- name: httproute.default.httproute-testing.0
  id: e9792964-6797-482c-bfdf-08220a4f6832
  targets: [{target: "10.244.0.11:80", weight: 1}, {target: "10.244.0.12:80", weight: 1}]
- name: httproute.default.httproute-testing.1
  id: f9792964-6797-482c-bfdf-08220a4f6839
  targets: [{target: "10.244.0.12:80", weight: 1}]
"""
    ).config
    assert [t.id for t in config.targets] == [
        "715f9482-4236-5fe5-9ae5-e75c1a498940",
        "89a2966d-773c-580a-b063-6ab4dfd24701",
        "48322e4a-b3b0-591b-8ed6-fd95a6d75019",
    ]


def test_duplicate_target_is_a_primary_key_violation() -> None:
    doc = """
_format_version: "3.0"
upstreams:
- name: u0
- name: httproute.default.httproute-testing.1
  id: f9792964-6797-482c-bfdf-08220a4f6839
  targets:
  - {target: "10.244.0.12:80", weight: 1, tags: [target-1]}
  - {target: "10.244.0.12:80", weight: 1, tags: [target-2]}
"""
    with pytest.raises(ConfigError) as info:
        load_config(doc)
    dupe = "48322e4a-b3b0-591b-8ed6-fd95a6d75019"
    message = (
        f"uniqueness violation: 'targets' entity with primary key set to '{dupe}' already declared"
    )
    assert info.value.fields() == {"upstreams": [None, {"targets": [None, message]}]}
    assert info.value.flattened() == [
        {
            "entity_type": "target",
            "entity_id": dupe,
            "entity_tags": ["target-2"],
            "entity": {
                "target": "10.244.0.12:80",
                "weight": 1,
                "tags": ["target-2"],
                "upstream": {"id": "f9792964-6797-482c-bfdf-08220a4f6839"},
            },
            "errors": [{"type": "entity", "message": message}],
        }
    ]


def test_plugin_ids_follow_the_cache_key() -> None:
    config = load_config(
        """
_format_version: "3.0"
services:
- name: svc
  host: svc.internal
  plugins: [{name: noop}]
  routes:
  - name: r
    paths: [/]
    plugins: [{name: noop}]
- name: svc2
  host: svc2.internal
plugins:
- name: noop
- name: noop
  service: svc2
"""
    ).config
    svc, route = config.services[0], config.routes[0]
    nested_service, nested_route, global_, by_name = config.plugins
    assert nested_service.id == kong_uuid("plugins", f"plugins:*:noop::{svc.id}:")
    assert nested_route.id == kong_uuid("plugins", f"plugins:*:noop:{route.id}::")
    assert global_.id == kong_uuid("plugins", "plugins:*:noop:::")
    # A top-level reference enters the key as written (the name), as in Kong.
    assert by_name.id == kong_uuid("plugins", "plugins:*:noop::svc2:")
    assert by_name.service == config.services[1].id


def test_basicauth_and_acl_ids() -> None:
    config = load_config(
        """
_format_version: "3.0"
consumers:
- username: alice
  basicauth_credentials: [{username: alice-basic, password: pw}]
  acls: [{group: gold}]
"""
    ).config
    alice = config.consumers[0]
    assert config.basicauth_credentials[0].id == kong_uuid(
        "basicauth_credentials", "basicauth_credentials:*:alice-basic"
    )
    assert config.acls[0].id == kong_uuid("acls", f"acls:*:{alice.id}:gold")


def test_same_input_same_ids() -> None:
    doc = """
_format_version: "3.0"
services:
- host: a.internal
  routes: [{paths: [/a]}, {paths: [/b]}]
- host: b.internal
consumers:
- username: alice
  keyauth_credentials: [{key: k}]
certificates: []
"""
    first, second = load_config(doc).config, load_config(doc).config
    ids = [[e.id for e in getattr(first, name)] for name in ("services", "routes")]
    assert ids == [[e.id for e in getattr(second, name)] for name in ("services", "routes")]
    assert first.keyauth_credentials[0].id == second.keyauth_credentials[0].id
    # Where Kong would draw a random id (no name, a generated cache-key field), the id comes from
    # the entity's place in the document.
    assert first.services[0].id == kong_uuid("services", "fastkong:services[0]")
    assert first.keyauth_credentials[0].id == kong_uuid(
        "keyauth_credentials", "fastkong:consumers[0].keyauth_credentials[0]"
    )
    assert len({s.id for s in first.services}) == 2
    # A nested entity of an unnamed parent still mixes in the parent's (derived) id.
    assert first.routes[0].id != first.routes[1].id


def test_explicit_ids_are_kept_and_checked() -> None:
    explicit = "0175E0E8-3DE9-56B4-96F1-B12DCB4B6691"
    config = load_config(
        f'_format_version: "3.0"\nservices:\n- id: {explicit}\n  name: s\n  host: h\n'
    ).config
    assert config.services[0].id == explicit
    with pytest.raises(ConfigError) as info:
        load_config(
            '_format_version: "3.0"\nservices:\n- {id: not-a-uuid, host: h}\n- {id: 7, host: h}\n'
        )
    assert (
        str(info.value)
        == "services[0].id: expected a valid UUID\nservices[1].id: expected a string"
    )


def test_child_of_parent_with_explicit_id_uses_it() -> None:
    parent = "cb019421-62c2-47a8-b714-d7567b114037"
    config = load_config(
        f'_format_version: "3.0"\nupstreams:\n- id: {parent}\n  name: u\n'
        "  targets: [{target: 10.0.0.1}]\n"
    ).config
    assert config.targets[0].id == kong_uuid("targets", f"targets:*:{parent}:10.0.0.1")
