"""Port of Kong's ``spec/01-unit/01-db/01-schema/11-declarative_config/01-validate_spec.lua``.

Ported: lines 30-57 (``_format_version``), 59-131 (``_comment``, ``_ignore``), 133-601
(services, plugins, plugins and routes nested in services, plugins in routes in services),
603-632 (vaults). Each ``it`` feeds the same document to :func:`load_config`; Kong's nested error
tables are the flat ``path: message`` lines, ``@entity`` entries the entity's own path.

Kong's spec calls ``DeclarativeConfig:validate`` alone, which does not resolve top-level
references by name; fastkong's loader always resolves them (as Kong's ``parse``/``flatten``
does with ``validate_references``), so "allows foreign relationships as strings" adds the
entities its references name.

Left out:

- lines 22-28, ``metaschema`` (``pending`` in Kong): a Lua metaschema check of Kong's schema table.
- lines 634-885, ``oauth2_credentials`` and ``oauth2_tokens`` (top level and nested in
  consumers): fastkong has no ``oauth2`` plugin nor its entities.
- lines 888-952, custom plugin DAOs with keyword field names (``plugins``) and the hash-like
  ``daos.lua`` format: Lua plugin-loading internals (``package.loaded``) with no YAML/JSON input.
"""

from __future__ import annotations

import textwrap

import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.schema import Config
from tests import kong_declarative_docs as docs

HTTPS_NEEDS = (
    "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
)
NOT_ENABLED = "plugin 'foo' not enabled; add it to the 'plugins' configuration property"


def load(text: str) -> Config:
    return load_config(textwrap.dedent(text)).config


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(textwrap.dedent(text))
    return [f"{e.path}: {e.message}" for e in info.value.errors]


# -- lines 30-57: _format_version ------------------------------------------------------------
# The refusals of a float and of an unknown string are also covered by
# test_config_validation::test_document (with 3.0 and "2.0"); these are the spec's own inputs.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_format_version: 1.1\n", ["_format_version: expected a string"]),
        ('_format_version: "foobar"\n', ["_format_version: expected one of: 1.1, 2.1, 3.0"]),
    ],
)
def test_format_version_refused(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


@pytest.mark.parametrize("version", ["1.1", "2.1"])
def test_format_version_accepted(version: str) -> None:
    assert load(f'_format_version: "{version}"\n').format_version == version


# -- lines 59-131: _comment and _ignore --------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("_comment: 1234\n", ["_comment: expected a string"]),
        ("_comment:\n  foo: bar\n", ["_comment: expected a string"]),
        ("_ignore: 1234\n", ["_ignore: expected an array"]),
        ("_ignore:\n  foo: bar\n  bla: 123\n", ["_ignore: expected an array"]),
    ],
)
def test_meta_fields_refused(text: str, expected: list[str]) -> None:
    assert errors('_format_version: "1.1"\n' + text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '_comment: "1234" # this is how yaml works!\n',
        "_comment: I am a happy comment!\n",
        "_ignore:\n- 1234\n",
        '_ignore:\n- foo: bar\n  bla: 123\n- "Hello, world"\n- 1234\n',
    ],
)
def test_meta_fields_accepted(text: str) -> None:
    assert load('_format_version: "1.1"\n' + text).is_empty()


# -- lines 133-214: services -------------------------------------------------------------------
def test_services_accepts_an_empty_list() -> None:
    assert load('_format_version: "1.1"\nservices:\n').services == []


def test_services_accepts_entities() -> None:
    config = load(docs.SERVICES_ENTITIES)
    assert [(s.name, s.host, s.protocol, s.port) for s in config.services] == [
        ("foo", "example.com", "https", 80),
        ("bar", "example.test", "http", 3000),
    ]


def test_services_verifies_required_fields() -> None:
    assert errors('_format_version: "1.1"\nservices:\n- name: foo\n') == [
        "services[0].host: required field missing"
    ]


def test_services_performs_regular_validations() -> None:
    # Kong's error table is unordered: compare as a set.
    assert sorted(
        errors(
            """\
            _format_version: "1.1"
            services:
            - name: foo
              retries: -1
              protocol: foo
              host: 1234
              port: 99999
              path: /foo//bar/
            """
        )
    ) == [
        "services[0].host: expected a string",
        "services[0].path: must not have empty segments",
        "services[0].port: value should be between 0 and 65535",
        "services[0].protocol: expected one of: grpc, grpcs, http, https, tcp, tls, "
        "tls_passthrough, udp",
        "services[0].retries: value should be between 0 and 32767",
    ]


def test_services_allows_url_shorthand() -> None:
    svc = load(docs.SERVICE_URL_SHORTHAND).services[0]
    assert (svc.protocol, svc.host, svc.port, svc.path) == (
        "https",
        "example.com",
        8000,
        "/hello/world",
    )


# -- lines 216-257: plugins ----------------------------------------------------------------------
def test_plugins_accepts_an_empty_list() -> None:
    assert load('_format_version: "1.1"\nplugins:\n').plugins == []


def test_plugins_accepts_entities() -> None:
    config = load(docs.PLUGINS_ENTITIES)
    assert [p.name for p in config.plugins] == ["key-auth", "http-log"]
    assert config.plugins[1].config["http_endpoint"] == "https://example.com"


def test_plugins_allows_foreign_relationships_as_strings() -> None:
    # The spec's document, plus the entities it names (see the module docstring).
    config = load(docs.PLUGINS_FOREIGN_AS_STRINGS)
    (key_auth, http_log), route = config.plugins, config.routes[0]
    assert (key_auth.route, key_auth.service, key_auth.consumer) == (route.id, None, None)
    assert (http_log.service, http_log.consumer) == (config.services[0].id, config.consumers[0].id)


# -- lines 259-601: nested relationships ---------------------------------------------------------
def test_plugins_in_services_accepts_an_empty_list() -> None:
    config = load(docs.SERVICE_WITH_EMPTY_CHILDREN.format(children="  plugins: []\n"))
    assert (len(config.services), config.plugins) == (1, [])


def test_plugins_in_services_accepts_entities() -> None:
    config = load(docs.PLUGINS_IN_SERVICES)
    foo, bar = (s.id for s in config.services)
    assert [(p.name, p.service) for p in config.plugins] == [
        ("key-auth", foo),
        ("http-log", foo),
        ("basic-auth", bar),
        ("tcp-log", bar),
    ]


def test_routes_in_services_accepts_an_empty_list() -> None:
    config = load(docs.SERVICE_WITH_EMPTY_CHILDREN.format(children="  routes: []\n"))
    assert (len(config.services), config.routes) == (1, [])


def test_routes_in_services_accepts_entities() -> None:
    config = load(docs.ROUTES_IN_SERVICES)
    foo, bar = (s.id for s in config.services)
    assert [(r.service, r.paths, r.hosts, r.methods) for r in config.routes] == [
        (foo, ["/path"], None, None),
        (foo, None, ["example.com"], None),
        (foo, None, None, ["GET", "POST"]),
        (bar, ["/path"], ["example.com"], ["GET", "POST"]),
    ]


def test_plugins_in_routes_in_services_accepts_an_empty_list() -> None:
    config = load(docs.PLUGINS_IN_ROUTES_IN_SERVICES_EMPTY.format(path_handling="v0"))
    assert (len(config.routes), config.plugins) == (1, [])


def test_plugins_in_routes_in_services_accepts_entities() -> None:
    config = load(docs.PLUGINS_IN_ROUTES_IN_SERVICES.format(path_handling="v0"))
    foo, bar = (r.id for r in config.routes)
    assert [(p.name, p.route, p.service) for p in config.plugins] == [
        ("key-auth", foo, None),
        ("http-log", foo, None),
        ("basic-auth", bar, None),
        ("tcp-log", bar, None),
    ]


ROUTES_IN_SERVICE = '_format_version: "1.1"\nservices:\n- name: foo\n  url: https://example.com\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # lines 302-323: plugins in services, "verifies required fields"
        ("  plugins:\n  - enabled: true\n", "services[0].plugins[0].name: required field missing"),
        # lines 325-346: plugins in services, "performs regular validations"
        ("  plugins:\n  - name: foo\n", f"services[0].plugins[0].name: {NOT_ENABLED}"),
        # lines 348-371: plugins in services, "does not accept additional foreign keys"
        (
            "  plugins:\n  - name: key-auth\n    consumer: foo\n",
            "services[0].plugins[0].consumer: value must be null",
        ),
        # lines 410-433: routes in services, "verifies required fields" (an @entity error)
        ("  routes:\n  - preserve_host: true\n", f"services[0].routes[0]: {HTTPS_NEEDS}"),
        # lines 435-460: routes in services, "performs regular validations"
        (
            "  routes:\n  - name: foo\n    paths:\n    - bla\n",
            "services[0].routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)",
        ),
        # lines 509-537: plugins in routes in services, "verifies required fields"
        (
            "  routes:\n  - paths:\n    - /\n    plugins:\n    - enabled: true\n",
            "services[0].routes[0].plugins[0].name: required field missing",
        ),
        # lines 539-567: plugins in routes in services, "performs regular validations"
        (
            "  routes:\n  - paths:\n    - /\n    plugins:\n    - name: foo\n",
            f"services[0].routes[0].plugins[0].name: {NOT_ENABLED}",
        ),
        # lines 569-597: plugins in routes in services, "does not accept additional foreign keys"
        (
            "  routes:\n  - paths:\n    - /\n    plugins:\n"
            "    - name: key-auth\n      route: foo\n",
            "services[0].routes[0].plugins[0].route: value must be null",
        ),
    ],
    ids=[
        "plugins-in-services-required",
        "plugins-in-services-not-enabled",
        "plugins-in-services-foreign-key",
        "routes-in-services-required",
        "routes-in-services-paths",
        "plugins-in-routes-required",
        "plugins-in-routes-not-enabled",
        "plugins-in-routes-foreign-key",
    ],
)
def test_nested_entities_refused(text: str, expected: str) -> None:
    assert errors(ROUTES_IN_SERVICE + text) == [expected]


def test_nested_plugin_other_foreign_key_must_be_null() -> None:
    # Beyond the spec's input, the rule of lines 348-371 with a plugin that allows consumers
    # (key-auth forbids them anyway: ``consumer = typedefs.no_consumer``): every foreign key of
    # a nested record is ``eq = null`` (kong:kong/db/schema/others/declarative_config.lua
    # ``copy_record``), and ``flatten`` keeps that message when the name matches no entity.
    text = (
        "  plugins:\n  - name: http-log\n    consumer: foo\n"
        "    config: {http_endpoint: http://a.com}\n"
    )
    assert errors(ROUTES_IN_SERVICE + text) == [
        "services[0].plugins[0].consumer: value must be null"
    ]


def test_routes_in_services_required_fields_is_an_entity_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(ROUTES_IN_SERVICE + "  routes:\n  - preserve_host: true\n")
    (err,) = info.value.errors
    assert (err.path, err.entity) == ("services[0].routes[0]", True)


# -- lines 603-632: vaults -----------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["BANANA_", "BANANA-"])
def test_vaults_accepted(prefix: str) -> None:
    config = load(
        f"""\
        _format_version: "1.1"
        vaults:
        - prefix: aba
          config:
            prefix: "{prefix}"
          description: "Banana vault"
          tags: ~
          name: env
        """
    )
    (vault,) = config.vaults
    assert (vault.prefix, vault.name, vault.description) == ("aba", "env", "Banana vault")
    assert vault.config["prefix"] == prefix
