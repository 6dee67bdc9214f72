"""Kong's declarative ``process_auto_fields`` spec, ported:
``spec/01-unit/01-db/01-schema/11-declarative_config/02-process_auto_fields_spec.lua``
lines 16-741 (the "core entities" block).

Kong's spec runs ``process_auto_fields(config, "select", false)`` on the nested document: it
fills every default and drops every null (``kong/db/schema/init.lua``
``Schema:process_auto_fields``, line 1950: ``if value == null and not nulls``). fastkong's loaded
entities are the flattened form of the same document, so each case compares
``msgspec.to_builtins(entity)`` field by field with the spec's expected table after dropping
what that stage of Kong does not show: null fields (at any depth), ``id`` and the timestamps.
Nested entities are compared as the flat entities they become, their foreign key written as
the parent's position (``"services[0]"``); ``_comment``/``_ignore`` are accepted and, as in
Kong's ``flatten`` (``declarative_config.lua`` 851-958, which copies only schema fields), not
kept on the entity.

Left out:
- ``custom entities`` (lines 743-921): ``oauth2_credentials`` / ``oauth2_tokens`` belong to the
  oauth2 plugin, which fastkong does not implement.
- ``created_at``/``updated_at``: timestamps, not compared (the brief's rule).
"""

from __future__ import annotations

from typing import Any

import msgspec

from fastkong.config import load_config
from fastkong.config.schema import Config
from tests import kong_declarative_docs as docs

#: Fields of Kong's entity that the spec's "select" output never shows.
HIDDEN = frozenset({"id", "created_at", "updated_at"})
#: Foreign keys fastkong fills, with the entity list each points into.
FOREIGN = {"service": "services", "route": "routes", "consumer": "consumers"}
ALL_PROTOCOLS = ["grpc", "grpcs", "http", "https"]


def load(text: str) -> Config:
    return load_config(text).config


def drop_nulls(value: Any) -> Any:
    """Kong's "select" without nulls: null fields of every record are removed."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def entities(config: Config, kind: str) -> list[dict[str, Any]]:
    """``config.<kind>`` as Kong's spec shows them: no nulls, ids or timestamps; a foreign key
    as ``"<kind>[<index>]"`` of the entity it points to."""
    out = []
    for entity in getattr(config, kind):
        data = drop_nulls(msgspec.to_builtins(entity))
        for key in HIDDEN:
            data.pop(key, None)
        for key, target in FOREIGN.items():
            if key in data:
                ids = [e.id for e in getattr(config, target)]
                data[key] = f"{target}[{ids.index(data[key])}]"
        out.append(data)
    return out


def service(**fields: Any) -> dict[str, Any]:
    """A service as Kong's spec expects it: the given fields over the schema's defaults."""
    return {
        "protocol": "http",
        "port": 80,
        "connect_timeout": 60000,
        "read_timeout": 60000,
        "write_timeout": 60000,
        "retries": 5,
        "enabled": True,
        **fields,
    }


def route(**fields: Any) -> dict[str, Any]:
    return {
        "preserve_host": False,
        "regex_priority": 0,
        "strip_path": True,
        "path_handling": "v1",
        "protocols": ["http", "https"],
        "https_redirect_status_code": 426,
        "request_buffering": True,
        "response_buffering": True,
        **fields,
    }


def plugin(name: str, config: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "enabled": True, "protocols": ALL_PROTOCOLS, "config": config, **fields}


# The plugins' configs: flatten's, less its null fields (see kong_declarative_docs)
KEY_AUTH = drop_nulls(docs.KEY_AUTH_CONFIG)
HTTP_LOG = drop_nulls(docs.HTTP_LOG_CONFIG)
BASIC_AUTH = drop_nulls(docs.BASIC_AUTH_CONFIG)
TCP_LOG = drop_nulls(docs.TCP_LOG_CONFIG)


def assert_meta(config: Config) -> None:
    """Kong's ``_format_version = "1.1", _transform = true``."""
    assert (config.format_version, config.transform) == ("1.1", True)


# -- services (spec lines 17-112) ---------------------------------------------------------------
def test_services_accepts_an_empty_list() -> None:
    config = load('_format_version: "1.1"\nservices:\n')
    assert_meta(config)
    assert config.services == []


def test_services_accepts_entities() -> None:
    # Kong's copy also sets ``enabled: true`` on foo: the default, the same entity
    config = load(docs.SERVICES_ENTITIES)
    assert_meta(config)
    assert entities(config, "services") == [
        service(name="foo", protocol="https", host="example.com"),
        service(name="bar", host="example.test", port=3000),
    ]


def test_services_allows_url_shorthand() -> None:
    # Other URLs' splitting: test_config_nesting.py::test_url_shorthand; here the whole entity.
    config = load(docs.SERVICE_URL_SHORTHAND)
    assert entities(config, "services") == [
        service(name="foo", protocol="https", host="example.com", port=8000, path="/hello/world")
    ]


# -- plugins (spec lines 114-247) ----------------------------------------------------------------
def test_plugins_accepts_an_empty_list() -> None:
    config = load('_format_version: "1.1"\nplugins:\n')
    assert_meta(config)
    assert config.plugins == []


def test_plugins_accepts_entities() -> None:
    config = load(docs.PLUGINS_ENTITIES)
    assert entities(config, "plugins") == [
        plugin("key-auth", KEY_AUTH),
        plugin("http-log", HTTP_LOG),
    ]


def test_plugins_allow_foreign_relationships_as_strings() -> None:
    # Kong's "select" stage keeps the strings; its flatten resolves them to the entities named
    # (declarative_config.lua ``flatten``, ``find_entity``), so the named ones are declared here.
    # Resolution alone: test_config_nesting.py::test_top_level_references_by_name.
    config = load(docs.PLUGINS_FOREIGN_AS_STRINGS)
    assert entities(config, "plugins") == [
        plugin("key-auth", KEY_AUTH, route="routes[0]"),
        plugin("http-log", HTTP_LOG, service="services[0]", consumer="consumers[0]"),
    ]


# -- nested: plugins in services (spec lines 250-401) ----------------------------------------
def test_plugins_in_services_accepts_an_empty_list() -> None:
    config = load(docs.SERVICE_WITH_EMPTY_CHILDREN.format(children="  plugins: []\n"))
    assert entities(config, "services") == [service(name="foo", host="example.com")]
    assert config.plugins == []


def test_plugins_in_services_accepts_entities() -> None:
    config = load(docs.PLUGINS_IN_SERVICES)
    assert entities(config, "services") == [
        service(name="foo", protocol="https", host="example.com"),
        service(name="bar", host="example.test", port=3000),
    ]
    assert entities(config, "plugins") == [
        plugin("key-auth", KEY_AUTH, service="services[0]"),
        plugin("http-log", HTTP_LOG, service="services[0]"),
        plugin("basic-auth", BASIC_AUTH, service="services[1]"),
        plugin("tcp-log", TCP_LOG, service="services[1]"),
    ]


# -- nested: routes in services (spec lines 403-540) -----------------------------------------
def test_routes_in_services_accepts_an_empty_list() -> None:
    config = load(docs.SERVICE_WITH_EMPTY_CHILDREN.format(children="  routes: []\n"))
    assert entities(config, "services") == [service(name="foo", host="example.com")]
    assert config.routes == []


def test_routes_in_services_accepts_entities() -> None:
    config = load(docs.ROUTES_IN_SERVICES)
    assert entities(config, "services") == [
        service(name="foo", protocol="https", host="example.com"),
        service(name="bar", host="example.test", port=3000),
    ]
    assert entities(config, "routes") == [
        route(paths=["/path"], service="services[0]"),
        route(hosts=["example.com"], service="services[0]"),
        route(methods=["GET", "POST"], service="services[0]"),
        route(
            paths=["/path"],
            hosts=["example.com"],
            methods=["GET", "POST"],
            service="services[1]",
        ),
    ]


# -- nested: plugins in routes in services (spec lines 542-740) ------------------------------
def test_plugins_in_routes_in_services_accepts_an_empty_list() -> None:
    config = load(docs.PLUGINS_IN_ROUTES_IN_SERVICES_EMPTY.format(path_handling="v1"))
    assert entities(config, "services") == [
        service(name="foo", protocol="https", host="example.com")
    ]
    assert entities(config, "routes") == [route(name="foo", methods=["GET"], service="services[0]")]
    assert config.plugins == []


def test_plugins_in_routes_in_services_accepts_entities() -> None:
    config = load(docs.PLUGINS_IN_ROUTES_IN_SERVICES.format(path_handling="v1"))
    assert entities(config, "services") == [
        service(name="foo", protocol="https", host="example.com"),
        service(name="bar", host="example.test", port=3000),
    ]
    assert entities(config, "routes") == [
        route(name="foo", methods=["GET"], service="services[0]"),
        route(name="bar", paths=["/"], service="services[1]"),
    ]
    # A plugin nested in a route gets only the route as its foreign key (Kong's nested
    # ``plugins`` under ``routes`` fill ``route``, not the route's service).
    assert entities(config, "plugins") == [
        plugin("key-auth", KEY_AUTH, route="routes[0]"),
        plugin("http-log", HTTP_LOG, route="routes[0]"),
        plugin("basic-auth", BASIC_AUTH, route="routes[1]"),
        plugin("tcp-log", TCP_LOG, route="routes[1]"),
    ]
