"""Kong's ``spec/01-unit/01-db/01-schema/11-declarative_config/03-flatten_spec.lua``, lines
1-1288 ("core entities": services, plugins, nested relationships), ported.

Each ``DeclarativeConfig:flatten(config)`` becomes ``load_config(text).config``; its entity lists
are compared field by field with the spec's expected tables after the spec's ``idempotent``
normalization: entities sorted by name/username/host, arrays of scalars sorted (Kong's
``helpers.deep_sort``), every valid UUID ``id`` shown as ``"UUID"``. A foreign key, which in
fastkong holds the referenced id string, is shown as Kong's ``{ id = "UUID" }``; where the spec's
placeholders hide which entity a reference names, the tests also check it points at the
enclosing (or named) one. Kong's flatten output has no key for an entity type with no entries:
empty lists are dropped.

Left out:
- ``created_at``/``updated_at``: Kong fills them with the time; fastkong keeps them as given
  (``None`` here), so they are dropped before comparing.
- "plugins in routes in services: accepts entities" runs past line 1150 (to 1288): ported whole.
  The rest of the file (from "upstream: identical targets", line 1290) is ported elsewhere.

Error shape: Kong's ``validate_references`` lists reference messages per entity, keyed by the
entity's endpoint key or id (``errs.plugins[<id>] = { msg, ... }``, which the spec's
``idempotent`` turns into ``[1]``); fastkong reports each one at the referencing field
(``plugins[0].service``), as test_config_kong_schema's port of "#7696" in this same file and
test_config_nesting::test_references_to_unknown_entities already do. The spec sorts the messages,
so they are compared sorted.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.schema import Config
from tests import kong_declarative_docs as docs

FOREIGN = ("service", "route", "consumer", "upstream")
REF: dict[str, str] = {"id": "UUID"}


# -- the spec's `idempotent` -----------------------------------------------------------------
def _sort_key(entity: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(entity.get(k) or "") for k in ("name", "username", "host", "scope"))


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normalize(v) for v in value]
        if all(isinstance(v, str | int | float) for v in items):
            return sorted(items)
        return items
    return value


def _is_uuid(value: Any) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def idempotent(config: Config) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for plural, items in msgspec.structs.asdict(config).items():
        if not isinstance(items, list) or not items:
            continue
        entities = []
        for item in items:
            entity = msgspec.to_builtins(item)
            entity.pop("created_at", None)
            entity.pop("updated_at", None)
            assert _is_uuid(entity["id"]), entity
            entity["id"] = "UUID"
            for fk in FOREIGN:
                if fk in entity and entity[fk] is not None:
                    assert _is_uuid(entity[fk]), entity
                    entity[fk] = REF
            entities.append(_normalize(entity))
        out[plural] = sorted(entities, key=_sort_key)
    return out


def flatten(text: str) -> Config:
    return load_config(text).config


def refs(config: Config, plural: str, fk: str, target: str) -> dict[str | None, str | None]:
    """Each entity's name -> the name of the entity its ``fk`` points at."""
    names = {e.id: getattr(e, "name", None) for e in getattr(config, target)}
    return {e.name: names.get(getattr(e, fk)) for e in getattr(config, plural)}


# -- Kong's expected entities, as the spec writes them ---------------------------------------
def service(**fields: Any) -> dict[str, Any]:
    return {
        "id": "UUID",
        "name": None,
        "protocol": "http",
        "host": None,
        "path": None,
        "port": 80,
        "connect_timeout": 60000,
        "read_timeout": 60000,
        "write_timeout": 60000,
        "retries": 5,
        "tags": None,
        "client_certificate": None,
        "tls_verify_depth": None,
        "tls_verify": None,
        "ca_certificates": None,
        "enabled": True,
        **fields,
    }


def route(**fields: Any) -> dict[str, Any]:
    return {
        "id": "UUID",
        "tags": None,
        "destinations": None,
        "hosts": None,
        "headers": None,
        "methods": None,
        "name": None,
        "paths": None,
        "preserve_host": False,
        "https_redirect_status_code": 426,
        "protocols": ["http", "https"],
        "regex_priority": 0,
        "service": None,
        "snis": None,
        "sources": None,
        "strip_path": True,
        "path_handling": "v0",
        "request_buffering": True,
        "response_buffering": True,
        **fields,
    }


# The plugins' configs as Kong's flatten spec expects them (see kong_declarative_docs)
HTTP_LOG, KEY_AUTH = docs.HTTP_LOG_CONFIG, docs.KEY_AUTH_CONFIG
BASIC_AUTH, TCP_LOG = docs.BASIC_AUTH_CONFIG, docs.TCP_LOG_CONFIG


def plugin(name: str, config: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "id": "UUID",
        "tags": None,
        "consumer": None,
        "service": None,
        "route": None,
        "name": name,
        "instance_name": None,
        "enabled": True,
        "protocols": ["grpc", "grpcs", "http", "https"],
        "config": config,
        **fields,
    }


# -- empty lists -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        # services: "accepts an empty list" (line 94)
        '_format_version: "1.1"\nservices:\n',
        # plugins: "accepts an empty list" (line 247)
        '_format_version: "1.1"\nplugins:\n',
    ],
)
def test_accepts_an_empty_list(text: str) -> None:
    assert idempotent(flatten(text)) == {}


# -- services: -------------------------------------------------------------------------------
def test_services_accepts_entities() -> None:
    # line 103
    config = flatten(docs.SERVICES_DISABLED_TAGGED)
    assert idempotent(config) == {
        "services": [
            service(name="bar", host="example.test", port=3000, tags=["hello", "world"]),
            service(name="foo", protocol="https", host="example.com", enabled=False),
        ]
    }


def test_accepts_field_names_with_the_same_name_as_entities() -> None:
    # line 169: "snis" is also an entity
    config = flatten(
        """
_format_version: "1.1"
routes:
- name: foo
  path_handling: v0
  protocols: ["tls"]
  snis:
  - "example.com"
"""
    )
    assert idempotent(config) == {
        "routes": [route(name="foo", protocols=["tls"], snis=["example.com"])]
    }


def test_allows_url_shorthand() -> None:
    # line 210
    config = flatten(docs.SERVICE_URL_SHORTHAND)
    assert idempotent(config) == {
        "services": [
            service(
                name="foo", protocol="https", host="example.com", port=8000, path="/hello/world"
            )
        ]
    }


# -- plugins: --------------------------------------------------------------------------------
def test_plugins_accepts_entities() -> None:
    # line 256
    config = flatten(docs.PLUGINS_ENTITIES)
    assert idempotent(config) == {
        "plugins": [plugin("http-log", HTTP_LOG), plugin("key-auth", KEY_AUTH)]
    }


def test_plugins_fails_with_missing_foreign_relationships() -> None:
    # line 336; not docs.PLUGINS_FOREIGN_AS_STRINGS: no key-auth, no entities named
    text = """
_format_version: "1.1"
plugins:
  - name: http-log
    service: svc1
    consumer: my-consumer
    config:
      http_endpoint: https://example.com
"""
    with pytest.raises(ConfigError) as info:
        load_config(text)
    found = sorted((e.message, e.path) for e in info.value.errors)
    assert found == [
        (
            "invalid reference 'consumer: my-consumer' (no such entry in 'consumers')",
            "plugins[0].consumer",
        ),
        (
            "invalid reference 'service: svc1' (no such entry in 'services')",
            "plugins[0].service",
        ),
    ]


def test_plugins_succeeds_with_present_foreign_relationships() -> None:
    # line 357
    config = flatten(
        """
_format_version: "1.1"
services:
  - name: svc1
    host: example.com
routes:
  - name: r1
    path_handling: v0
    paths: [/]
    service: svc1
consumers:
  - username: my-consumer
plugins:
  - name: key-auth
    route: r1
  - name: http-log
    service: svc1
    consumer: my-consumer
    config:
      http_endpoint: https://example.com
"""
    )
    assert idempotent(config) == {
        "consumers": [{"id": "UUID", "tags": None, "custom_id": None, "username": "my-consumer"}],
        "plugins": [
            plugin("http-log", HTTP_LOG, consumer=REF, service=REF),
            plugin("key-auth", KEY_AUTH, route=REF),
        ],
        "routes": [route(name="r1", paths=["/"], service=REF)],
        "services": [service(name="svc1", host="example.com")],
    }
    by_name = {p.name: p for p in config.plugins}
    assert by_name["http-log"].service == config.services[0].id
    assert by_name["http-log"].consumer == config.consumers[0].id
    assert by_name["key-auth"].route == config.routes[0].id
    assert config.routes[0].service == config.services[0].id


# -- nested relationships: -------------------------------------------------------------------
@pytest.mark.parametrize(
    "children",
    [
        # plugins in services: "accepts an empty list" (line 512)
        "  plugins: []\n",
        # routes in services: "accepts an empty list" (line 724)
        "  routes: []\n",
    ],
)
def test_nested_in_services_accepts_an_empty_list(children: str) -> None:
    text = docs.SERVICE_WITH_EMPTY_CHILDREN.format(children=children)
    assert idempotent(flatten(text)) == {"services": [service(name="foo", host="example.com")]}


def test_plugins_in_services_accepts_entities() -> None:
    # line 547
    config = flatten(docs.PLUGINS_IN_SERVICES)
    assert idempotent(config) == {
        "plugins": [
            plugin("basic-auth", BASIC_AUTH, service=REF),
            plugin("http-log", HTTP_LOG, service=REF),
            plugin("key-auth", KEY_AUTH, service=REF),
            plugin("tcp-log", TCP_LOG, service=REF),
        ],
        "services": [
            service(name="bar", host="example.test", port=3000),
            service(name="foo", host="example.com", protocol="https"),
        ],
    }
    assert refs(config, "plugins", "service", "services") == {
        "key-auth": "foo",
        "http-log": "foo",
        "basic-auth": "bar",
        "tcp-log": "bar",
    }


def test_routes_in_services_accepts_a_single_entity() -> None:
    # line 759; not docs.ROUTES_IN_SERVICES: one route, path_handling v0 (its expected default)
    config = flatten(
        """
_format_version: "1.1"
services:
- name: foo
  host: example.com
  protocol: https
  routes:
    - path_handling: v0
      paths:
      - /path
"""
    )
    assert idempotent(config) == {
        "routes": [route(paths=["/path"], service=REF)],
        "services": [service(name="foo", host="example.com", protocol="https")],
    }
    assert config.routes[0].service == config.services[0].id


def test_routes_in_services_accepts_multiple_entities() -> None:
    # line 821; not docs.ROUTES_IN_SERVICES: the routes' names and v0 are asserted
    config = flatten(
        """
_format_version: "1.1"
services:
- name: foo
  host: example.com
  protocol: https
  routes:
    - path_handling: v0
      paths:
      - /path
      name: r1
    - path_handling: v0
      hosts:
      - example.com
      name: r2
    - path_handling: v0
      methods: ["GET", "POST"]
      name: r3
- name: bar
  host: example.test
  port: 3000
  routes:
    - path_handling: v0
      paths:
      - /path
      hosts:
      - example.com
      methods: ["GET", "POST"]
      name: r4
"""
    )
    assert idempotent(config) == {
        "routes": [
            route(name="r1", paths=["/path"], service=REF),
            route(name="r2", hosts=["example.com"], service=REF),
            route(name="r3", methods=["GET", "POST"], service=REF),
            route(
                name="r4",
                paths=["/path"],
                hosts=["example.com"],
                methods=["GET", "POST"],
                service=REF,
            ),
        ],
        "services": [
            service(name="bar", host="example.test", port=3000),
            service(name="foo", host="example.com", protocol="https"),
        ],
    }
    assert refs(config, "routes", "service", "services") == {
        "r1": "foo",
        "r2": "foo",
        "r3": "foo",
        "r4": "bar",
    }


def test_plugins_in_routes_in_services_accepts_an_empty_list() -> None:
    # line 995
    config = flatten(docs.PLUGINS_IN_ROUTES_IN_SERVICES_EMPTY.format(path_handling="v0"))
    assert idempotent(config) == {
        "routes": [route(name="foo", methods=["GET"], service=REF)],
        "services": [service(name="foo", host="example.com", protocol="https")],
    }


def test_plugins_in_routes_in_services_accepts_entities() -> None:
    # line 1062 (to 1288)
    config = flatten(docs.PLUGINS_IN_ROUTES_IN_SERVICES.format(path_handling="v0"))
    assert idempotent(config) == {
        "plugins": [
            plugin("basic-auth", BASIC_AUTH, route=REF),
            plugin("http-log", HTTP_LOG, route=REF),
            plugin("key-auth", KEY_AUTH, route=REF),
            plugin("tcp-log", TCP_LOG, route=REF),
        ],
        "routes": [
            route(name="bar", paths=["/"], service=REF),
            route(name="foo", methods=["GET"], service=REF),
        ],
        "services": [
            service(name="bar", host="example.test", port=3000),
            service(name="foo", host="example.com", protocol="https"),
        ],
    }
    assert refs(config, "plugins", "route", "routes") == {
        "key-auth": "foo",
        "http-log": "foo",
        "basic-auth": "bar",
        "tcp-log": "bar",
    }
    assert refs(config, "routes", "service", "services") == {"foo": "foo", "bar": "bar"}
