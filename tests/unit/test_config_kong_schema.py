"""Conformance with Kong's entity schemas: cases from Kong's schema specs and sources.

Each case names the Kong rule it follows (``kong:<file>``); the expected messages are Kong's.
"""

from __future__ import annotations

import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.ids import generate
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


# -- the service `url` shorthand (kong:kong/db/schema/entities/services.lua `shorthand_fields`,
# applied by kong:kong/db/schema/init.lua `process_auto_fields`; split by LuaSocket's url.parse)
def test_url_overrides_the_fields_it_sets() -> None:
    svc = load(
        "services:\n- url: http://a.com:81\n  host: b.com\n  port: 82\n  protocol: https\n"
        "  path: /x\n"
    ).services[0]
    assert (svc.protocol, svc.host, svc.port, svc.path) == ("http", "a.com", 81, None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.com/p;v=1", ("http", "a.com", 80, "/p")),
        ("http://a.com/p#f?q", ("http", "a.com", 80, "/p")),
        ("https://a.com:8443", ("https", "a.com", 8443, None)),
        ("grpcs://a.com", ("grpcs", "a.com", 80, None)),
        ("//a.com:80/x", ("http", "a.com", 80, "/x")),
    ],
)
def test_url_is_split_as_luasocket_splits_it(url: str, expected: tuple[object, ...]) -> None:
    svc = load(f"services:\n- url: '{url}'\n").services[0]
    assert (svc.protocol, svc.host, svc.port, svc.path) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # the authority runs to the next "/": a query right after the host is part of it
        ("'http://a.com?x=1'", "invalid value: a.com?x=1"),
        # the user info ends at the first "@"
        ("'http://u@v@a.com'", "invalid value: v@a.com"),
        # Kong's shorthand parses a null url as a string with no host
        ("null", "missing host in url"),
    ],
)
def test_url_rejected_by_kong(url: str, message: str) -> None:
    assert errors(f"services:\n- url: {url}\n  host: a.com\n") == [f"services[0].url: {message}"]


# -- nested foreign keys (kong:kong/db/schema/others/declarative_config.lua `flatten`: a second
# validation pass with references resolved, then `populate_references` sets the parent)
def test_a_nested_entity_naming_another_existing_parent_gets_the_enclosing_one() -> None:
    config = load(
        "services:\n- name: a\n  host: a.svc\n  routes:\n  - {name: r, paths: [/a], service: b}\n"
        "  plugins:\n  - {name: cors, service: {id: 2f0e2d7c-8d8e-4d8a-9d2b-1a2b3c4d5e6f}}\n"
        "- {name: b, host: b.svc, id: 2f0e2d7c-8d8e-4d8a-9d2b-1a2b3c4d5e6f}\n"
    )
    assert config.routes[0].service == config.services[0].id
    assert config.plugins[0].service == config.services[0].id


def test_a_nested_entity_naming_its_parent_keeps_the_name_in_its_id() -> None:
    # Kong's cache key takes the value as written when the nested entity gives one.
    named = load("services:\n- name: s\n  host: h\n  plugins:\n  - {name: cors, service: s}\n")
    plain = load("services:\n- name: s\n  host: h\n  plugins:\n  - {name: cors}\n")
    svc = plain.services[0].id
    assert named.plugins[0].id == generate("plugins", "plugins:*:cors::s:")
    assert plain.plugins[0].id == generate("plugins", f"plugins:*:cors::{svc}:")
    assert named.plugins[0].service == plain.plugins[0].service == svc


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nope", "value must be null"),
        ("{id: not-a-uuid}", "value must be null"),
        # kong:spec/01-unit/01-db/01-schema/11-declarative_config/03-flatten_spec.lua "#7696"
        (
            "{id: 769bdf51-16df-5476-9830-ef26800b5448}",
            'invalid reference \'service: {"id":"769bdf51-16df-5476-9830-ef26800b5448"}\' '
            "(no such entry in 'services')",
        ),
    ],
)
def test_a_nested_entity_naming_a_missing_parent_is_rejected(value: str, message: str) -> None:
    text = f"services:\n- name: s\n  host: h\n  routes:\n  - {{paths: [/], service: {value}}}\n"
    assert errors(text) == [f"services[0].routes[0].service: {message}"]


# -- a trailing newline (Lua patterns anchor `$` at the very end, so Kong rejects these)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'services:\n- {host: "h.com\\n"}\n',
            "services[0].host: invalid value: h.com\n",
        ),
        (
            'services:\n- {host: "1.2.3.4\\n"}\n',
            "services[0].host: invalid value: 1.2.3.4\n",
        ),
        (
            'services:\n- {host: h, name: "s\\n"}\n',
            "services[0].name: invalid value 's\n': the only accepted ascii characters are "
            "alphanumerics or ., -, _, and ~",
        ),
        (
            'services:\n- {host: h, path: "/a\\n"}\n',
            "services[0].path: invalid path: '/a\n' (characters outside of the reserved list "
            "of RFC 3986 found)",
        ),
        (
            'consumers:\n- {username: u, tags: ["t\\n"]}\n',
            "consumers[0].tags[0]: invalid tag 't\n': expected printable ascii "
            "(except `,` and `/`) or valid utf-8 sequences",
        ),
        (
            'routes:\n- {hosts: ["a.com\\n"]}\n',
            "routes[0].hosts[0]: invalid hostname: a.com\n",
        ),
        (
            'upstreams:\n- {name: "u\\n"}\n',
            "upstreams[0].name: Invalid name ('u\n'); must be a valid hostname",
        ),
        (
            'upstreams:\n- {name: u, targets: [{target: "a:80\\n"}]}\n',
            "upstreams[0].targets[0].target: Invalid target ('a:80\n'); "
            "not a valid hostname or ip address",
        ),
        (
            'upstreams:\n- {name: u, targets: [{target: "[::1]:80\\n"}]}\n',
            "upstreams[0].targets[0].target: Invalid target ('[::1]:80\n'); "
            "not a valid hostname or ip address",
        ),
    ],
)
def test_a_trailing_newline_is_not_the_end_of_a_value(text: str, expected: str) -> None:
    assert errors(text) == [expected]


def test_a_repeat_count_python_cannot_hold_is_an_invalid_regex_not_a_crash() -> None:
    assert errors("routes:\n- {paths: ['~/a{99999999999}']}\n") == [
        "routes[0].paths[0]: invalid regex: '/a{99999999999}' "
        "(PCRE returned: number too big in {} quantifier)"
    ]


# -- YAML as lyaml reads it (kong:kong/db/declarative/init.lua parses with lyaml.load)
def test_yaml_dates_and_equals_signs_are_strings() -> None:
    config = load(
        "consumers:\n- username: =\n  custom_id: 2024-01-01\n"
        "  tags: [2024-06-30, 2001-12-14t21:59:43.10-05:00]\n"
    )
    consumer = config.consumers[0]
    assert (consumer.username, consumer.custom_id) == ("=", "2024-01-01")
    assert consumer.tags == ["2024-06-30", "2001-12-14t21:59:43.10-05:00"]


def test_yaml_numbers_with_an_exponent_are_numbers() -> None:
    svc = load("services:\n- {host: h, port: 8e3, retries: 1.0e1}\n").services[0]
    assert (svc.port, svc.retries) == (8000, 10)
    assert errors("consumers:\n- {username: 1e3}\n") == ["consumers[0].username: expected a string"]


# -- `updated_at` is never validated (kong:kong/db/schema/init.lua `unvalidated_fields`)
def test_updated_at_is_accepted_anywhere_and_kept_only_when_valid() -> None:
    config = load(
        "services:\n- {host: h, updated_at: yesterday}\n"
        "- {host: h, name: s, updated_at: 1700000001}\n"
        "consumers:\n- username: u\n  updated_at: 1700000002\n"
        "  keyauth_credentials: [{key: k, updated_at: 1700000003}]\n"
        "upstreams:\n- {name: u, healthchecks: {active: {updated_at: x}}}\n"
    )
    assert [s.updated_at for s in config.services] == [None, 1700000001]
    assert config.consumers[0].updated_at == 1700000002
    assert config.keyauth_credentials[0].key == "k"


# -- sources/destinations (kong:kong/tools/ip.lua `is_valid_ip_or_cidr`: inet_pton, prefixes
# written exactly as "0".."32" or "0".."128")
@pytest.mark.parametrize("ip", ["10.0.0.0/08", "fe80::1%eth0", "10.0.0.0/+8", "::/129"])
def test_sources_ip_forms_kong_rejects(ip: str) -> None:
    text = f"routes:\n- {{protocols: [tcp], sources: [{{ip: '{ip}'}}]}}\n"
    assert errors(text) == [f"routes[0].sources[0].ip: invalid ip or cidr range: '{ip}'"]


def test_sources_ip_forms_kong_accepts() -> None:
    route = load(
        "routes:\n- protocols: [tcp]\n"
        "  sources: [{ip: 10.0.0.1/8}, {ip: '::/0'}, {ip: '::1/128'}, {ip: 1.2.3.4, port: 0}]\n"
    ).routes[0]
    assert route.sources is not None and len(route.sources) == 4


def test_format_1_1_migration_tells_plain_paths_as_pcre_does() -> None:
    # kong:kong/db/migrations/migrate_path_280_300.lua: PCRE's `$` matches before a final "\n"
    doc = '_format_version: "1.1"\nroutes:\n- {paths: ["/a\\n", "/a.b", "/v1/(x)"]}\n'
    assert load_config(doc).config.routes[0].paths == ["/a\n", "/a.b", "~/v1/(x)"]


def test_a_regex_nested_too_deeply_is_an_invalid_regex_not_a_crash() -> None:
    regex = "/" + "(" * 3000 + "a" + ")" * 3000
    assert errors(f'routes:\n- {{paths: ["~{regex}"]}}\n') == [
        f"routes[0].paths[0]: invalid regex: '{regex}' "
        "(PCRE returned: parentheses are too deeply nested)"
    ]


# -- header regexes (kong:kong/db/schema/entities/routes.lua `validate_route`: under
# traditional_compatible the route's expression, "~*" header values included, must compile)
def test_a_header_regex_must_compile() -> None:
    assert errors("routes:\n- {headers: {x-a: ['~*fo(o', '~*ok+']}}\n") == [
        "routes[0]: Router Expression failed validation: invalid regex 'fo(o' for header 'x-a': "
        "missing ), unterminated subpattern at position 2"
    ]
    route = load("routes:\n- {headers: {x-a: ['~*V[0-9]+', plain(]}}\n").routes[0]
    assert route.headers == {"x-a": ["~*V[0-9]+", "plain("]}


def test_a_null_entity_in_an_array_is_missing() -> None:
    # kong:kong/db/schema/init.lua `validate_elements` makes every element required
    assert errors("services:\n- null\n- host: h\n  routes: [~]\n") == [
        "services[0]: required field missing",
        "services[1].routes[0]: required field missing",
    ]


# -- `{}` and `[]` are one empty table to Kong (kong:kong/db/schema/init.lua `is_sequence`)
def test_an_empty_map_is_an_empty_array_and_the_reverse() -> None:
    config = load(
        "services:\n- host: h\n  tags: {}\n  routes: {}\n"
        "routes:\n- {paths: [/], headers: [], methods: {}}\n"
        "plugins:\n- {name: cors, config: []}\n"
        "upstreams:\n- {name: u, healthchecks: [], targets: {}}\n"
        "consumers: {}\n_ignore: {}\n"
    )
    assert config.services[0].tags == [] and config.routes[0].headers == {}
    assert config.plugins[0].config["origins"] is None
    assert config.upstreams[0].healthchecks.active.concurrency == 10
    assert errors("services:\n- {host: h, tags: {a: b}}\n") == ["services[0].tags: expected a set"]


# -- an entity check does not run when one of its fields failed (kong:kong/db/schema/init.lua
# `run_entity_check`)
def test_an_entity_check_skips_an_entity_whose_fields_failed() -> None:
    assert errors("consumers:\n- {username: ''}\n- {custom_id: 5}\n") == [
        "consumers[0].username: length must be at least 1",
        "consumers[1].custom_id: expected a string",
    ]
    assert errors("certificates:\n- {cert: x, key: y, cert_alt: z}\n") == [
        "certificates[0].cert: invalid certificate: expected a PEM-encoded X.509 certificate",
        "certificates[0].key: invalid key: expected a PEM-encoded private key",
        "certificates[0].cert_alt: invalid certificate: expected a PEM-encoded X.509 certificate",
    ]


def test_route_protocols_given_as_a_string() -> None:
    # Kong picks the route subschema from a string `protocols` before checking it is a set
    assert errors("routes:\n- {paths: [/], protocols: ftp}\n") == [
        "routes[0].protocols: unknown type: ftp"
    ]
    assert errors("routes:\n- {paths: [/], protocols: tcp}\n") == [
        "routes[0].paths: cannot set 'paths' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' "
        "or 'udp'",
        "routes[0].protocols: expected a set",
    ]


def test_a_keyauth_ttl_is_an_expiry_time_without_bounds() -> None:
    # Kong never validates `ttl` (`unvalidated_fields`); its DB-less reader takes it as the Unix
    # time the credential expires at, so an export's ttl is far above the DAO's 1e8 limit
    creds = load(
        "consumers:\n- username: a\n"
        "  keyauth_credentials: [{key: k, ttl: 1900000000}, {key: j, ttl: -1}]\n"
    ).keyauth_credentials
    assert [c.ttl for c in creds] == [1900000000, -1]
