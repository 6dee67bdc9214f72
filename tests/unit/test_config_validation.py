"""Each validation rule: the exact path and Kong's exact message."""

from __future__ import annotations

import json

import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.ids import generate

BASE = '_format_version: "3.0"\n'
PROTOCOLS = "grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"
CONDITIONAL = "failed conditional validation given value of field '{}'"
HTTPS_NEEDS = (
    "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
)
CERT = (
    "-----BEGIN CERTIFICATE-----\\n"
    "MIIBgzCCASmgAwIBAgIUOnpGr+05ssfGDjJkaGE1uXljerIwCgYIKoZIzj0EAwIw\\n"
    "FjEUMBIGA1UEAwwLZXhhbXBsZS5jb20wIBcNMjYxMTI1MTk0ODIzWhgPMjEyNjEx\\n"
    "MDExOTQ4MjNaMBYxFDASBgNVBAMMC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYI\\n"
    "KoZIzj0DAQcDQgAE2Mxm1Ei+J1FDwUrd+24LJm6RzswfoGFmRpssLmwQyVIWD8Ip\\n"
    "q8+BCq+IF2LE/0I7tuQbWDboOeItTXfNwkioIqNTMFEwHQYDVR0OBBYEFPDyH5vb\\n"
    "1lUsGoRLZRrdJFoid4iPMB8GA1UdIwQYMBaAFPDyH5vb1lUsGoRLZRrdJFoid4iP\\n"
    "MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAPiVfr9CVW/Lnf1T\\n"
    "OL7YUJAO1f+31KXtOXb6tG8KZEXnAiA5kkqWuVfEnsvvTi0GxCFkdbX4CiGbCW0E\\n"
    "1Cwwil1fAA==\\n"
    "-----END CERTIFICATE-----\\n"
)
KEY = (
    "-----BEGIN PRIVATE KEY-----\\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzGpoXzbMhobI/bat\\n"
    "dFVcsKORQlpgy3TcoJ6lVz5kDAShRANCAATYzGbUSL4nUUPBSt37bgsmbpHOzB+g\\n"
    "YWZGmywubBDJUhYPwimrz4EKr4gXYsT/Qju25BtYNug54i1Nd83CSKgi\\n"
    "-----END PRIVATE KEY-----\\n"
)

#: Kong's id of acl group "g" of consumer "a": the key mixes in the consumer's id.
ACL_ID = generate("acls", f"acls:*:{generate('consumers', 'a')}:g")


def errors(text: str, base: str = BASE) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(base + text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def ok(text: str) -> None:
    load_config(BASE + text)


# -- document level --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services: []\n", ["_format_version: required field missing"]),
        ('_format_version: "2.0"\n', ["_format_version: expected one of: 1.1, 2.1, 3.0"]),
        ("_format_version: 3.0\n", ["_format_version: expected a string"]),
        ('_format_version: "3.0"\nfoo: 1\n', ["foo: unknown field"]),
        ('_format_version: "3.0"\n_transform: "yes"\n', ["_transform: expected a boolean"]),
        ('_format_version: "3.0"\n_comment: [1]\n', ["_comment: expected a string"]),
        ('_format_version: "3.0"\nservices: {a: 1}\n', ["services: expected an array"]),
        ('_format_version: "3.0"\nservices: [1]\n', ["services[0]: expected a record"]),
        ('_format_version: "3.0"\nwidgets: []\n', ["widgets: unknown field"]),
    ],
)
def test_document(text: str, expected: list[str]) -> None:
    assert errors(text, base="") == expected


def test_meta_and_extra_keys_are_allowed() -> None:
    ok(
        '_comment: "hello"\n_ignore: [1, 2]\n'
        "services:\n- host: h\n  _comment: svc\n  _ignore: [x]\n"
    )


# -- services ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- name: s\n", ["services[0].host: required field missing"]),
        ("- {host: h, protocol: nope}\n", [f"services[0].protocol: expected one of: {PROTOCOLS}"]),
        ("- {host: 'a.com:80'}\n", ["services[0].host: must not have a port"]),
        ("- {host: 'a b'}\n", ["services[0].host: invalid value: a b"]),
        ("- {host: h, port: 70000}\n", ["services[0].port: value should be between 0 and 65535"]),
        ("- {host: h, port: '80'}\n", ["services[0].port: expected an integer"]),
        (
            "- {host: h, retries: 40000}\n",
            ["services[0].retries: value should be between 0 and 32767"],
        ),
        (
            "- {host: h, connect_timeout: 0}\n",
            ["services[0].connect_timeout: value should be between 1 and 2147483646"],
        ),
        ("- {host: h, path: api}\n", ["services[0].path: should start with: /"]),
        ("- {host: h, path: /a//b}\n", ["services[0].path: must not have empty segments"]),
        (
            "- {host: h, path: '/a b'}\n",
            [
                "services[0].path: invalid path: '/a b' (characters outside of the reserved list "
                "of RFC 3986 found)"
            ],
        ),
        ("- {host: h, path: '/a%zz'}\n", ["services[0].path: invalid url-encoded value: '%zz'"]),
        (
            "- {host: h, name: 'bad name'}\n",
            [
                "services[0].name: invalid value 'bad name': the only accepted ascii characters "
                "are alphanumerics or ., -, _, and ~"
            ],
        ),
        ("- {host: h, name: ''}\n", ["services[0].name: length must be at least 1"]),
        ("- {host: h, enabled: 'yes'}\n", ["services[0].enabled: expected a boolean"]),
        ("- {host: h, tags: a}\n", ["services[0].tags: expected a set"]),
        (
            "- {host: h, tags: [ok, 'a,b']}\n",
            [
                "services[0].tags[1]: invalid tag 'a,b': expected printable ascii (except `,` "
                "and `/`) or valid utf-8 sequences"
            ],
        ),
        ("- {host: h, bogus: 1}\n", ["services[0].bogus: unknown field"]),
        (
            "- {host: h, tls_verify: true}\n",
            [
                "services[0].tls_verify: value must be null",
                f"services[0]: {CONDITIONAL.format('protocol')}",
            ],
        ),
        (
            "- {host: h, protocol: tcp, path: /x}\n",
            [
                "services[0].path: value must be null",
                f"services[0]: {CONDITIONAL.format('protocol')}",
            ],
        ),
        (
            "- {host: h, protocol: https, tls_verify_depth: 65}\n",
            ["services[0].tls_verify_depth: value should be between 0 and 64"],
        ),
        (
            "- {host: h, protocol: https, ca_certificates: [x]}\n",
            ["services[0].ca_certificates[0]: expected a valid UUID"],
        ),
    ],
)
def test_service(text: str, expected: list[str]) -> None:
    assert errors("services:\n" + text) == expected


def test_service_tls_fields_with_https() -> None:
    ok(
        "services:\n- {host: h, protocol: https, tls_verify: true, tls_verify_depth: 3, "
        "ca_certificates: [0855b320-0dd2-547d-891d-601e9b38647f]}\n"
    )


# -- routes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- name: r\n", [f"routes[0]: {HTTPS_NEEDS}"]),
        (
            "- {protocols: [http]}\n",
            [
                "routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths' when "
                "'protocols' is 'http'"
            ],
        ),
        ("- {protocols: [nope], paths: [/]}\n", ["routes[0].protocols: unknown type: nope"]),
        (
            "- {protocols: [http, nope], paths: [/]}\n",
            [f"routes[0].protocols[1]: expected one of: {PROTOCOLS}"],
        ),
        (
            "- {protocols: [http, tcp], paths: [/]}\n",
            [
                "routes[0].protocols: these sets are mutually exclusive: ('http', 'https'), "
                "('tcp', 'tls', 'udp')"
            ],
        ),
        ("- {protocols: [], paths: [/]}\n", ["routes[0].protocols: length must be at least 1"]),
        ("- {protocols: http, paths: [/]}\n", ["routes[0].protocols: expected a set"]),
        (
            "- {paths: [x]}\n",
            ["routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)"],
        ),
        (
            "- {paths: ['~/a(']}\n",
            [
                "routes[0].paths[0]: invalid regex: '/a(' (PCRE returned: pcre2_compile() "
                'failed: missing closing parenthesis in "/a(")'
            ],
        ),
        ("- {paths: [/a//b]}\n", ["routes[0].paths[0]: must not have empty segments"]),
        (
            "- {paths: [/a/./b]}\n",
            ["routes[0].paths[0]: non-normalized path, consider use '/a/b' instead"],
        ),
        (
            "- {paths: ['/%7Euser']}\n",
            ["routes[0].paths[0]: non-normalized path, consider use '/~user' instead"],
        ),
        ("- {paths: /}\n", ["routes[0].paths: expected an array"]),
        ("- {paths: ['']}\n", ["routes[0].paths[0]: length must be at least 1"]),
        ("- {methods: [get]}\n", ["routes[0].methods[0]: invalid value: get"]),
        (
            "- {hosts: ['*.a.*']}\n",
            ["routes[0].hosts[0]: invalid wildcard: must have at most one wildcard"],
        ),
        (
            "- {hosts: ['a.*.b']}\n",
            ["routes[0].hosts[0]: invalid wildcard: must be placed at leftmost or rightmost label"],
        ),
        ("- {hosts: ['a b']}\n", ["routes[0].hosts[0]: invalid hostname: a b"]),
        (
            "- {headers: {Host: [x]}}\n",
            [
                "routes[0].headers: cannot contain 'host' header, which must be specified in the "
                "'hosts' attribute"
            ],
        ),
        (
            "- {headers: {'x y': [a]}}\n",
            [
                "routes[0].headers: bad header name 'x y', allowed characters are A-Z, a-z, 0-9, "
                "'_', and '-'"
            ],
        ),
        ("- {headers: {x-a: b}}\n", ["routes[0].headers: expected an array"]),
        ("- {headers: [x]}\n", ["routes[0].headers: expected a string"]),  # a list: keys 1, 2, ...
        (
            "- {protocols: [http], snis: [a.com], paths: [/]}\n",
            [
                "routes[0].snis: length must be 0",
                "routes[0]: 'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or "
                "'tls_passthrough'",
            ],
        ),
        ("- {snis: [1.2.3.4]}\n", ["routes[0].snis[0]: must not be an IP"]),
        (
            "- {paths: [/], https_redirect_status_code: 300}\n",
            ["routes[0].https_redirect_status_code: expected one of: 426, 301, 302, 307, 308"],
        ),
        (
            "- {paths: [/], path_handling: v2}\n",
            ["routes[0].path_handling: expected one of: v0, v1"],
        ),
        (
            "- {paths: [/], regex_priority: '1'}\n",
            ["routes[0].regex_priority: expected an integer"],
        ),
        ("- {paths: [/], strip_path: 'no'}\n", ["routes[0].strip_path: expected a boolean"]),
        (
            "- {paths: [/], sources: [{ip: 10.0.0.1}]}\n",
            ["routes[0].sources: cannot set 'sources' when 'protocols' is 'http' or 'https'"],
        ),
        (
            "- {protocols: [tcp]}\n",
            [
                "routes[0]: must set one of 'sources', 'destinations', 'snis' when 'protocols' "
                "is 'tcp', 'tls' or 'udp'"
            ],
        ),
        (
            "- {protocols: [tcp], destinations: [{port: 9000}], paths: [/x]}\n",
            [
                "routes[0].paths: cannot set 'paths' when 'protocols' is 'tcp', 'tls', "
                "'tls_passthrough' or 'udp'"
            ],
        ),
        (
            "- {protocols: [tcp], sources: [{}, {ip: 300.1.1.1}, {port: 70000}]}\n",
            [
                "routes[0].sources[0]: at least one of these fields must be non-empty: 'ip', "
                "'port'",
                "routes[0].sources[1].ip: invalid ip or cidr range: '300.1.1.1'",
                "routes[0].sources[2].port: value should be between 0 and 65535",
            ],
        ),
        (
            "- {protocols: [tls_passthrough]}\n",
            ["routes[0]: must set snis when 'protocols' is 'tls_passthrough'"],
        ),
        (
            "- {protocols: [grpc], methods: [GET], paths: [/x]}\n",
            ["routes[0].methods: cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"],
        ),
        (
            "- {protocols: [grpc], strip_path: true, paths: [/x]}\n",
            ["routes[0].strip_path: cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"],
        ),
        (
            "- {protocols: [grpc]}\n",
            ["routes[0]: must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"],
        ),
        (
            "- {protocols: [grpcs]}\n",
            [
                "routes[0]: must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' "
                "is 'grpcs'"
            ],
        ),
    ],
)
def test_route(text: str, expected: list[str]) -> None:
    assert errors("routes:\n" + text) == expected


def test_valid_routes() -> None:
    ok(
        "routes:\n"
        "- paths: ['~/v(?<version>\\\\d+)/orders/(?<id>\\\\d+)$', /api, '/%2F']\n"
        "- hosts: ['*.example.com', 'example.*', 'a.com:8080']\n"
        "- headers: {x-version: ['1', '~*^v2']}\n"
        "- {protocols: [https], snis: ['*.example.com']}\n"
        "- {protocols: [tcp, tls], sources: [{ip: 10.0.0.0/8}], destinations: [{ip: '::1', port: "
        "1}]}\n"
        "- {protocols: [tls_passthrough], snis: [a.example.com]}\n"
        "- {protocols: [grpc, grpcs], hosts: [g.example.com]}\n"
    )


def test_format_1_1_paths_are_migrated() -> None:
    config = load_config(
        '_format_version: "1.1"\nservices:\n- host: h\n  routes:\n  - paths: [/v1/(.*), /a/./b]\n'
        "routes:\n- paths: ['/x%2Ey']\n"
    ).config
    assert [r.paths for r in config.routes] == [["~/v1/(.*)", "/a/b"], ["/x.y"]]


# -- upstreams and targets ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- {slots: 100}\n", ["upstreams[0].name: required field missing"]),
        (
            "- {name: 10.0.0.1}\n",
            ["upstreams[0].name: Invalid name ('10.0.0.1'); no ip addresses allowed"],
        ),
        (
            "- {name: 'a.com:80'}\n",
            ["upstreams[0].name: Invalid name ('a.com:80'); no port allowed"],
        ),
        (
            "- {name: 'a b'}\n",
            ["upstreams[0].name: Invalid name ('a b'); must be a valid hostname"],
        ),
        (
            "- {name: u, algorithm: random}\n",
            [
                "upstreams[0].algorithm: expected one of: consistent-hashing, least-connections, "
                "round-robin, latency"
            ],
        ),
        ("- {name: u, slots: 5}\n", ["upstreams[0].slots: value should be between 10 and 65536"]),
        (
            "- {name: u, hash_on: header}\n",
            [
                "upstreams[0].hash_on_header: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        (
            "- {name: u, hash_on: cookie}\n",
            [
                "upstreams[0].hash_on_cookie: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        (
            "- {name: u, hash_fallback: ip}\n",
            [
                "upstreams[0].hash_fallback: expected one of: none",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        (
            "- {name: u, hash_on: ip, hash_fallback: ip}\n",
            [
                "upstreams[0].hash_fallback: expected one of: none, consumer, header, cookie, "
                "path, query_arg, uri_capture",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        (
            "- {name: u, hash_on: header, hash_on_header: X-A, hash_fallback: header, "
            "hash_fallback_header: X-A}\n",
            [
                "upstreams[0]: values of these fields must be distinct: 'hash_on_header', "
                "'hash_fallback_header'"
            ],
        ),
        (
            "- {name: u, hash_on: query_arg, hash_fallback: uri_capture}\n",
            [
                "upstreams[0].hash_on_query_arg: required field missing",
                "upstreams[0].hash_fallback_uri_capture: required field missing",
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
                f"upstreams[0]: {CONDITIONAL.format('hash_fallback')}",
            ],
        ),
        (
            "- {name: u, hash_on: cookie, hash_on_cookie: 'a b'}\n",
            [
                "upstreams[0].hash_on_cookie: contains one or more invalid characters. ASCII "
                "control characters (0-31;127), space, tab and the characters "
                '()<>@,;:\\"/?={}[] are not allowed.',
                # Kong's conditional check runs on an invalid field too (run_with_invalid_fields)
                f"upstreams[0]: {CONDITIONAL.format('hash_on')}",
            ],
        ),
        ("- {name: u, host_header: 123}\n", ["upstreams[0].host_header: expected a string"]),
        ("- {name: u, healthchecks: x}\n", ["upstreams[0].healthchecks: expected a record"]),
        (
            "- name: u\n  healthchecks:\n    threshold: 101\n    active:\n      type: udp\n"
            "      concurrency: 0\n      timeout: -1\n      bogus: 1\n"
            "      healthy: {http_statuses: [200, 99]}\n",
            [
                "upstreams[0].healthchecks.threshold: value should be between 0 and 100",
                "upstreams[0].healthchecks.active.type: expected one of: tcp, http, https, grpc, "
                "grpcs",
                "upstreams[0].healthchecks.active.concurrency: value should be between 1 and "
                "2147483648",
                "upstreams[0].healthchecks.active.timeout: value should be between 0 and 65535",
                "upstreams[0].healthchecks.active.bogus: unknown field",
                "upstreams[0].healthchecks.active.healthy.http_statuses[1]: value should be "
                "between 100 and 999",
            ],
        ),
        (
            "- {name: u, targets: [{target: 'hostname:1.0'}, {weight: 1}, {target: a, weight: "
            "70000}]}\n",
            [
                "upstreams[0].targets[0].target: Invalid target ('hostname:1.0'); not a valid "
                "hostname or ip address",
                "upstreams[0].targets[1].target: required field missing",
                "upstreams[0].targets[2].weight: value should be between 0 and 65535",
            ],
        ),
    ],
)
def test_upstream(text: str, expected: list[str]) -> None:
    assert errors("upstreams:\n" + text) == expected


@pytest.mark.parametrize(
    ("fields", "algorithm", "hash_on"),
    [
        ("hash_on: ip", "consistent-hashing", "ip"),
        ("algorithm: consistent-hashing, hash_on: none", "round-robin", "none"),
        ("algorithm: least-connections, hash_on: ip", "least-connections", "none"),
        ("algorithm: latency", "latency", "none"),
        ("algorithm: consistent-hashing", "consistent-hashing", "none"),
    ],
)
def test_upstream_hash_on_shorthand(fields: str, algorithm: str, hash_on: str) -> None:
    upstream = load_config(BASE + f"upstreams:\n- {{name: u, {fields}}}\n").config.upstreams[0]
    assert (upstream.algorithm, upstream.hash_on) == (algorithm, hash_on)


# -- consumers and credentials -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "consumers: [{tags: [a]}]\n",
            [
                "consumers[0]: at least one of these fields must be non-empty: 'custom_id', "
                "'username'"
            ],
        ),
        (
            "consumers: [{username: a}, {username: a}]\n",
            [
                "consumers[1]: uniqueness violation: 'consumers' entity with username set to 'a' "
                "already declared"
            ],
        ),
        (
            "consumers: [{username: foo, custom_id: conflict}, {username: bar, custom_id: "
            "conflict}]\n",
            [
                "consumers[1]: uniqueness violation: 'consumers' entity with custom_id set to "
                "'conflict' already declared"
            ],
        ),
        (
            "consumers:\n- username: a\n  keyauth_credentials: [{key: k}, {key: k}, {key: x, ttl: "
            "soon}]\n",
            [
                "consumers[0].keyauth_credentials[1]: uniqueness violation: 'keyauth_credentials' "
                "entity with key set to 'k' already declared",
                "consumers[0].keyauth_credentials[2].ttl: expected an integer",
            ],
        ),
        (
            "consumers:\n- username: a\n  basicauth_credentials: [{username: u}]\n"
            "- username: b\n  basicauth_credentials: [{username: x, password: p}, {username: x, "
            "password: q}]\n",
            [
                "consumers[0].basicauth_credentials[0].password: required field missing",
                "consumers[1].basicauth_credentials[1]: uniqueness violation: "
                "'basicauth_credentials' entity with username set to 'x' already declared",
            ],
        ),
        (
            "consumers:\n- username: a\n  jwt_secrets:\n  - {algorithm: RS256}\n"
            "  - {algorithm: XX}\n  - {algorithm: ES256, rsa_public_key: junk}\n"
            "  - {algorithm: PS256, rsa_public_key: junk}\n",
            [
                "consumers[0].jwt_secrets[0].rsa_public_key: required field missing",
                f"consumers[0].jwt_secrets[0]: {CONDITIONAL.format('algorithm')}",
                "consumers[0].jwt_secrets[1].algorithm: expected one of: HS256, HS384, HS512, "
                "RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA",
                "consumers[0].jwt_secrets[3].rsa_public_key: invalid key",
                f"consumers[0].jwt_secrets[3]: {CONDITIONAL.format('algorithm')}",
            ],
        ),
        (
            "consumers:\n- username: a\n  acls: [{tags: [x]}]\n",
            ["consumers[0].acls[0].group: required field missing"],
        ),
        (
            "consumers:\n- username: a\n  acls: [{group: g}, {group: g}]\n",
            [
                "consumers[0].acls[1]: uniqueness violation: 'acls' entity with primary key set "
                f"to '{ACL_ID}' already declared"
            ],
        ),
    ],
)
def test_consumers_and_credentials(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


# -- TLS -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "certificates: [{cert: junk, key: junk}]\n",
            [
                "certificates[0].cert: invalid certificate: expected a PEM-encoded X.509 "
                "certificate",
                "certificates[0].key: invalid key: expected a PEM-encoded private key",
            ],
        ),
        (
            f'certificates: [{{cert: "{CERT}", key: "{KEY}", cert_alt: "{CERT}"}}]\n',
            [
                "certificates[0]: all or none of these fields must be set: 'cert_alt', 'key_alt'",
                "certificates[0]: certificate and alternative certificate need to have different "
                "type (e.g. RSA and ECDSA), the provided certificates were both of the same type",
            ],
        ),
        (
            f'certificates: [{{cert: "{CERT}", key: "{KEY}", snis: ["a.*.b", "*.a.*"]}}]\n',
            [
                "certificates[0].snis[0].name: wildcard must be leftmost or rightmost character",
                "certificates[0].snis[1].name: only one wildcard must be specified",
            ],
        ),
        (
            f'certificates: [{{cert: "{CERT}", key: "{KEY}", snis: [a.com]}}]\n'
            "snis: [{name: a.com, certificate: 0855b320-0dd2-547d-891d-601e9b38647f}]\n",
            [
                "snis[0].certificate: invalid reference 'certificate: "
                "0855b320-0dd2-547d-891d-601e9b38647f' (no such entry in 'certificates')",
                "snis[0]: uniqueness violation: 'snis' entity with name set to 'a.com' already "
                "declared",
            ],
        ),
        (
            f'ca_certificates: [{{cert: "{CERT}{CERT}"}}]\n',
            ["ca_certificates[0]: please submit only one certificate at a time"],
        ),
    ],
)
def test_tls(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


# -- uniqueness across entities ------------------------------------------------------------
def test_duplicate_names_and_ids() -> None:
    assert errors(
        "services:\n"
        "- {id: 0855b320-0dd2-547d-891d-601e9b38647f, name: foo, host: a}\n"
        "- {id: 0855b320-0dd2-547d-891d-601e9b38647f, name: bar, host: b}\n"
        "- {name: foo, host: c}\n"
        "upstreams: [{name: u}, {name: u}]\n"
    ) == [
        "services[1]: uniqueness violation: 'services' entity with primary key set to "
        "'0855b320-0dd2-547d-891d-601e9b38647f' already declared",
        "services[2]: uniqueness violation: 'services' entity with name set to 'foo' already "
        "declared",
        "upstreams[1]: uniqueness violation: 'upstreams' entity with name set to 'u' already "
        "declared",
    ]


def test_same_target_written_differently_is_a_duplicate() -> None:
    assert errors(
        "upstreams:\n- name: u\n  targets: [{target: 10.0.0.1}, {target: '10.0.0.1:8000'}]\n"
    ) == [
        "upstreams[0].targets[1]: uniqueness violation: 'targets' entity with cache_key set to "
        f"'targets:{generate('upstreams', 'u')}:10.0.0.1:8000' already declared"
    ]


@pytest.mark.parametrize(
    ("regex", "reason"),
    [
        ("/a)", "unmatched closing parenthesis"),
        ("/a|*b", "quantifier does not follow a repeatable item"),
        ("/a**", "quantifier does not follow a repeatable item"),
        ("/[a", "missing terminating ] for character class"),
        ("/[z-a]", "range out of order in character class"),
        ("/a{2,1}", "numbers out of order in {} quantifier"),
        ("/(?<>a)", "subpattern name expected"),
        ("/\\i", "unrecognized character follows \\"),
        ("/(?P=x)", "reference to non-existent subpattern"),
        ("/\\2", "reference to non-existent subpattern"),
        ("/(?<a>x)(?<a>y)", "two named subpatterns have the same name (PCRE2_DUPNAMES not set)"),
    ],
)
def test_route_regex_errors_in_pcre2_words(regex: str, reason: str) -> None:
    """A route regex that does not compile is refused with what PCRE2 says of it, as Kong
    prints it (``ngx.re``'s ``pcre2_compile() failed: <reason> in "<pattern>"``)."""
    with pytest.raises(ConfigError) as info:
        load_config(f'_format_version: "3.0"\nroutes:\n- paths: [{json.dumps("~" + regex)}]\n')
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        f"routes[0].paths[0]: invalid regex: '{regex}' (PCRE returned: pcre2_compile() failed: "
        f'{reason} in "{regex}")'
    ]
