"""Nested and top-level forms, references by name and id, the service ``url`` shorthand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from fastkong.config import Config, ConfigError, load_config
from fastkong.plugins.registry import PluginSpec, register, unregister

BASE = '_format_version: "3.0"\n'
CERT = """-----BEGIN CERTIFICATE-----
MIIBgzCCASmgAwIBAgIUOnpGr+05ssfGDjJkaGE1uXljerIwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLZXhhbXBsZS5jb20wIBcNMjYxMTI1MTk0ODIzWhgPMjEyNjEx
MDExOTQ4MjNaMBYxFDASBgNVBAMMC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAE2Mxm1Ei+J1FDwUrd+24LJm6RzswfoGFmRpssLmwQyVIWD8Ip
q8+BCq+IF2LE/0I7tuQbWDboOeItTXfNwkioIqNTMFEwHQYDVR0OBBYEFPDyH5vb
1lUsGoRLZRrdJFoid4iPMB8GA1UdIwQYMBaAFPDyH5vb1lUsGoRLZRrdJFoid4iP
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAPiVfr9CVW/Lnf1T
OL7YUJAO1f+31KXtOXb6tG8KZEXnAiA5kkqWuVfEnsvvTi0GxCFkdbX4CiGbCW0E
1Cwwil1fAA==
-----END CERTIFICATE-----
"""
KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzGpoXzbMhobI/bat
dFVcsKORQlpgy3TcoJ6lVz5kDAShRANCAATYzGbUSL4nUUPBSt37bgsmbpHOzB+g
YWZGmywubBDJUhYPwimrz4EKr4gXYsT/Qju25BtYNug54i1Nd83CSKgi
-----END PRIVATE KEY-----
"""


class Empty(msgspec.Struct, forbid_unknown_fields=True):
    pass


@pytest.fixture(autouse=True)
def noop_plugin() -> Iterator[None]:
    register(PluginSpec(name="noop", priority=1, config_type=Empty))
    yield
    unregister("noop")


def load(text: str) -> Config:
    return load_config(BASE + text).config


def messages(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(BASE + text)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def as_data(config: Config) -> Any:
    return msgspec.to_builtins(config)


NESTED = """
services:
- name: orders
  host: orders.svc
  routes:
  - name: orders-r
    paths: [/orders]
    plugins:
    - name: noop
  plugins:
  - name: noop
upstreams:
- name: orders.svc
  targets:
  - target: 10.0.0.1:8080
consumers:
- username: alice
  plugins:
  - name: noop
  keyauth_credentials:
  - key: alice-key
  acls:
  - group: gold
certificates:
- cert: |
{cert}  key: |
{key}  snis:
  - example.com
  - name: www.example.com
""".format(
    cert="".join("    " + line + "\n" for line in CERT.splitlines()),
    key="".join("    " + line + "\n" for line in KEY.splitlines()),
)


def test_nested_form_fills_foreign_keys() -> None:
    config = load(NESTED)
    svc, route, up, alice, cert = (
        config.services[0],
        config.routes[0],
        config.upstreams[0],
        config.consumers[0],
        config.certificates[0],
    )
    assert route.service == svc.id
    # Entities are listed in document order (pre-order: a route's plugins before the
    # service's plugins written after the routes).
    assert [(p.route, p.service, p.consumer) for p in config.plugins] == [
        (route.id, None, None),
        (None, svc.id, None),
        (None, None, alice.id),
    ]
    assert config.targets[0].upstream == up.id
    assert config.keyauth_credentials[0].consumer == alice.id
    assert config.acls[0].consumer == alice.id
    assert [(s.name, s.certificate) for s in config.snis] == [
        ("example.com", cert.id),
        ("www.example.com", cert.id),
    ]


def test_top_level_form_by_id_equals_nested_form() -> None:
    nested = load(NESTED)
    ids = {
        "svc": nested.services[0].id,
        "route": nested.routes[0].id,
        "up": nested.upstreams[0].id,
        "alice": nested.consumers[0].id,
        "cert": nested.certificates[0].id,
    }
    flat = load(
        """
services:
- {{name: orders, host: orders.svc}}
routes:
- {{name: orders-r, paths: [/orders], service: {svc}}}
plugins:
- {{name: noop, route: {route}}}
- {{name: noop, service: {svc}}}
- {{name: noop, consumer: {alice}}}
upstreams:
- {{name: orders.svc}}
targets:
- {{target: "10.0.0.1:8080", upstream: {up}}}
consumers:
- {{username: alice}}
keyauth_credentials:
- {{key: alice-key, consumer: {alice}}}
acls:
- {{group: gold, consumer: {alice}}}
certificates:
- id: {cert}
  cert: |
{cert_pem}  key: |
{key_pem}snis:
- {{name: example.com, certificate: {cert}}}
- {{name: www.example.com, certificate: {cert}}}
""".format(
            **ids,
            cert_pem="".join("    " + line + "\n" for line in CERT.splitlines()),
            key_pem="".join("    " + line + "\n" for line in KEY.splitlines()),
        )
    )
    # Kong mixes the parent's id into a nested entity's key: with references by id both forms
    # give the same ids, so the normalized configs are identical (credentials whose cache key
    # names a generated field get a position-derived id, so their ids differ).
    a, b = as_data(nested), as_data(flat)
    a_keyauth, b_keyauth = a.pop("keyauth_credentials"), b.pop("keyauth_credentials")
    assert a == b
    assert [dict(k, id=None) for k in a_keyauth] == [dict(k, id=None) for k in b_keyauth]


def test_top_level_references_by_name() -> None:
    config = load(
        """
services: [{name: orders, host: orders.svc}]
routes: [{name: r, paths: [/], service: orders}]
upstreams: [{name: orders.svc}]
targets: [{target: 10.0.0.1, upstream: orders.svc}]
consumers: [{username: alice}]
keyauth_credentials: [{key: k, consumer: alice}]
plugins: [{name: noop, route: r, consumer: alice}]
"""
    )
    assert config.routes[0].service == config.services[0].id
    assert config.targets[0].upstream == config.upstreams[0].id
    assert config.keyauth_credentials[0].consumer == config.consumers[0].id
    plugin = config.plugins[0]
    assert (plugin.route, plugin.consumer) == (config.routes[0].id, config.consumers[0].id)


def test_references_to_unknown_entities() -> None:
    assert messages(
        """
routes: [{paths: [/], service: nope}]
targets: [{target: 10.0.0.1, upstream: nope}]
keyauth_credentials: [{key: k, consumer: nope}]
plugins: [{name: noop, route: 4e3cb785-a8d0-5866-aa05-117f7c64f24d}]
snis: [{name: a.example.com, certificate: nope}]
"""
    ) == [
        "routes[0].service: invalid reference 'service: nope' (no such entry in 'services')",
        "targets[0].upstream: invalid reference 'upstream: nope' (no such entry in 'upstreams')",
        "keyauth_credentials[0].consumer: invalid reference 'consumer: nope' "
        "(no such entry in 'consumers')",
        "plugins[0].route: invalid reference 'route: 4e3cb785-a8d0-5866-aa05-117f7c64f24d' "
        "(no such entry in 'routes')",
        "snis[0].certificate: invalid reference 'certificate: nope' "
        "(no such entry in 'certificates')",
    ]


def test_top_level_foreign_key_is_required_where_kong_requires_it() -> None:
    assert messages("targets: [{target: 10.0.0.1}]\nacls: [{group: g}]\n") == [
        "targets[0].upstream: required field missing",
        "acls[0].consumer: required field missing",
    ]


def test_nested_entity_may_repeat_its_parent_but_not_name_a_missing_one() -> None:
    config = load("services:\n- name: a\n  host: a.svc\n  routes:\n  - {paths: [/a], service: a}\n")
    assert config.routes[0].service == config.services[0].id
    assert messages(
        "services:\n- name: a\n  host: a.svc\n  routes:\n  - {paths: [/a], service: b}\n"
    ) == ["services[0].routes[0].service: value must be null"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com", ("http", "example.com", 80, None)),
        ("https://example.com", ("https", "example.com", 443, None)),
        ("http://example.com:8080/api/v1", ("http", "example.com", 8080, "/api/v1")),
        ("https://user:pw@example.com:8443/", ("https", "example.com", 8443, "/")),
        ("grpc://10.0.0.1:50051", ("grpc", "10.0.0.1", 50051, None)),
        ("tcp://example.com:9000", ("tcp", "example.com", 9000, None)),
        ("http://[::1]:81/x?q=1", ("http", "::1", 81, "/x")),
        ("//example.com:443", ("https", "example.com", 443, None)),
    ],
)
def test_url_shorthand(url: str, expected: tuple[Any, ...]) -> None:
    svc = load(f"services:\n- url: '{url}'\n").services[0]
    assert (svc.protocol, svc.host, svc.port, svc.path) == expected


def test_url_errors_are_reported_at_url() -> None:
    assert messages(
        "services:\n"
        "- url: ftp://a.com\n"
        "- url: http://a.com:99999\n"
        "- url: /just/a/path\n"
        "- url: 42\n"
        "- url: tcp://a.com:9000/x\n"
    ) == [
        "services[0].url: expected one of: grpc, grpcs, http, https, tcp, tls, "
        "tls_passthrough, udp",
        "services[1].url: value should be between 0 and 65535",
        "services[2].url: missing host in url",
        "services[3].url: expected a string",
        "services[4].url: value must be null",
        "services[4]: failed conditional validation given value of field 'protocol'",
    ]


def test_children_must_be_arrays() -> None:
    assert messages("services:\n- host: a\n  routes: {paths: [/]}\n") == [
        "services[0].routes: expected an array"
    ]


def test_certificate_sni_strings_are_checked() -> None:
    indented_cert = "".join("    " + line + "\n" for line in CERT.splitlines())
    indented_key = "".join("    " + line + "\n" for line in KEY.splitlines())
    text = (
        f"certificates:\n- cert: |\n{indented_cert}  key: |\n{indented_key}"
        "  snis: [ok.example.com, 'bad:1', 3]\n"
    )
    assert messages(text) == [
        "certificates[0].snis[1].name: must not have a port",
        "certificates[0].snis[2]: expected a record",
    ]
