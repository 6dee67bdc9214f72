"""ConfigError: all errors in document order, Kong's ``fields`` tree and ``flattened_errors``."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import yaml

from fastkong.config import ConfigError, FieldError, load_config
from fastkong.config.ids import generate

BASE = '_format_version: "3.0"\n'


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return info.value


def test_kong_validation_error_body_fields() -> None:
    # kong:spec/02-integration/04-admin_api/15-off_spec.lua "returns 400 on a validation error"
    err = error_of('_format_version: "1.1"\nservices:\n- port: -12\n')
    assert err.fields() == {
        "services": [
            {"port": "value should be between 0 and 65535", "host": "required field missing"}
        ]
    }
    assert err.errors == [
        FieldError(
            "services[0].port", "value should be between 0 and 65535", ("services", 0, "port")
        ),
        FieldError("services[0].host", "required field missing", ("services", 0, "host")),
    ]


def test_kong_uniqueness_error_body_fields() -> None:
    # kong:spec/02-integration/04-admin_api/15-off_spec.lua "primary key uniqueness error"
    err = error_of(
        BASE + "services:\n"
        "- {id: 0855b320-0dd2-547d-891d-601e9b38647f, name: foo, host: example.com}\n"
        "- {id: 0855b320-0dd2-547d-891d-601e9b38647f, name: bar, host: example.test}\n"
    )
    assert err.fields() == {
        "services": [
            None,
            "uniqueness violation: 'services' entity with primary key set to "
            "'0855b320-0dd2-547d-891d-601e9b38647f' already declared",
        ]
    }
    assert err.errors[0].entity is True


@pytest.mark.parametrize("body", ["bobby tables", "", "[1, 2]", "42"])
def test_not_an_object(body: str) -> None:
    err = error_of(body)
    message = "failed parsing declarative configuration: expected an object"
    assert err.fields() == {"error": message}
    assert str(err) == message
    assert err.flattened() == []


def test_yaml_syntax_error() -> None:
    err = error_of("services: [\n")
    assert len(err.errors) == 1
    assert err.errors[0].path == ""
    assert err.errors[0].message.startswith("failed parsing declarative configuration: ")
    assert "line 2" in err.errors[0].message


def test_entity_errors_go_under_at_entity() -> None:
    err = error_of(BASE + "routes:\n- name: r\n  protocols: [http]\n  snis: [a.com]\n")
    assert err.fields() == {
        "routes": [
            {
                "snis": "length must be 0",
                "@entity": [
                    "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or "
                    "'tls_passthrough'",
                    "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' "
                    "is 'http'",
                ],
            }
        ]
    }


def test_sparse_nested_arrays() -> None:
    err = error_of(
        BASE + "services:\n- host: a\n- host: b\n  routes:\n  - paths: [/]\n  - paths: [/ok, x]\n"
    )
    assert err.fields() == {
        "services": [
            None,
            {
                "routes": [
                    None,
                    {"paths": [None, "should start with: / (fixed path) or ~/ (regex path)"]},
                ]
            },
        ]
    }


def test_all_errors_in_document_order() -> None:
    err = error_of(
        BASE + "routes:\n- {name: r, service: nope, paths: [x]}\n"
        "services:\n- {name: s, port: 0.5, host: h}\n- {name: s, host: h}\n"
    )
    assert str(err) == "\n".join(
        [
            "routes[0].service: invalid reference 'service: nope' (no such entry in 'services')",
            "routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)",
            "services[0].port: expected an integer",
            "services[1]: uniqueness violation: 'services' entity with name set to 's' "
            "already declared",
        ]
    )
    assert repr(err) == "<ConfigError 4 error(s)>"


def test_odd_keys_are_quoted_in_paths() -> None:
    err = error_of(BASE + "services:\n- {host: h, 'a.b': 1, 7: 2}\n")
    assert [(e.path, e.loc) for e in err.errors] == [
        ('services[0]["a.b"]', ("services", 0, "a.b")),
        ("services[0].7", ("services", 0, "7")),
    ]


def flattened(text: str) -> list[dict[str, Any]]:
    err = error_of(text)
    raw = yaml.safe_load(text)
    assert err.flattened(raw) == err.flattened()
    return err.flattened()


def test_flattened_preserves_parent_key_of_nested_entities() -> None:
    # kong: "preserves foreign keys from nested entity collections"
    svc = "cb019421-62c2-47a8-b714-d7567b114037"
    entries = flattened(
        BASE + f"services:\n- id: {svc}\n  name: test\n  host: localhost\n  port: 1234\n"
        "  protocol: nope\n  tags: [service-01]\n"
        "  routes:\n  - {super_duper_invalid: true, tags: [route-01]}\n"
    )
    assert entries == [
        {
            "entity_type": "service",
            "entity_id": svc,
            "entity_name": "test",
            "entity_tags": ["service-01"],
            "entity": {
                "id": svc,
                "name": "test",
                "host": "localhost",
                "port": 1234,
                "protocol": "nope",
                "tags": ["service-01"],
            },
            "errors": [
                {
                    "type": "field",
                    "field": "protocol",
                    "message": "expected one of: grpc, grpcs, http, https, tcp, tls, "
                    "tls_passthrough, udp",
                }
            ],
        },
        {
            "entity_type": "route",
            "entity_id": generate("routes", "fastkong:services[0].routes[0]"),
            "entity_tags": ["route-01"],
            "entity": {"super_duper_invalid": True, "tags": ["route-01"], "service": {"id": svc}},
            "errors": [
                {"type": "field", "field": "super_duper_invalid", "message": "unknown field"},
                {
                    "type": "entity",
                    "message": "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' "
                    "when 'protocols' is 'https'",
                },
            ],
        },
    ]


def test_flattened_omits_invalid_entity_fields() -> None:
    # kong: "omits top-level entity_* fields if they are invalid"
    entries = flattened(
        BASE + "services:\n- id: 1234\n  name: false\n  tags: [service-01, [1.5], true]\n"
        "  url: http://localhost:1234\n"
    )
    assert entries == [
        {
            "entity_type": "service",
            "entity": {
                "id": 1234,
                "name": False,
                "tags": ["service-01", [1.5], True],
                "url": "http://localhost:1234",
            },
            "errors": [
                {"type": "field", "field": "id", "message": "expected a string"},
                {"type": "field", "field": "name", "message": "expected a string"},
                {"type": "field", "field": "tags.2", "message": "expected a string"},
                {"type": "field", "field": "tags.3", "message": "expected a string"},
            ],
        }
    ]


def test_flattened_nested_record_fields_are_dotted() -> None:
    # kong: "flattens nested, non-entity field errors"
    entries = flattened(
        BASE + "upstreams:\n- name: bad\n  tags: [upstream-01]\n  hash_on: ip\n"
        "  healthchecks: {active: {concurrency: -1, healthy: {interval: 0}}}\n"
        "  host_header: 123\n"
    )
    assert [e["errors"] for e in entries] == [
        [
            {
                "type": "field",
                "field": "healthchecks.active.concurrency",
                "message": "value should be between 1 and 2147483648",
            },
            {"type": "field", "field": "host_header", "message": "expected a string"},
        ]
    ]
    assert entries[0]["entity_name"] == "bad"
    assert entries[0]["entity_id"] == generate("upstreams", "bad")


def test_flattened_credentials_and_uniqueness() -> None:
    # kong: "correctly handles nested entity errors" (uniqueness across consumers)
    c1, c3 = "cdac30ee-cd7e-465c-99b6-84f3e4e17015", "9acb0270-73aa-4968-b9e4-a4924e4aced5"
    cred = "7e8bcd10-cdcd-41f1-8c4d-9790d34aa67d"
    entries = flattened(
        BASE + f"consumers:\n- id: {c1}\n  username: consumer-01\n"
        "  basicauth_credentials:\n"
        "  - {id: 089091f4-cb8b-48f5-8463-8319097be716, username: user-01, password: pwd}\n"
        "  - {username: dont-add-extra-fields-yo, password: '12354', extra_field: NO!}\n"
        f"- id: {c3}\n  username: consumer-03\n  basicauth_credentials:\n"
        f"  - {{id: {cred}, username: user-01, password: pwd, tags: [c3-cred-01]}}\n"
    )
    assert entries == [
        {
            "entity_type": "basicauth_credential",
            "entity_id": generate(
                "basicauth_credentials", "basicauth_credentials:*:dont-add-extra-fields-yo"
            ),
            "entity": {
                "username": "dont-add-extra-fields-yo",
                "password": "12354",
                "extra_field": "NO!",
                "consumer": {"id": c1},
            },
            "errors": [{"type": "field", "field": "extra_field", "message": "unknown field"}],
        },
        {
            "entity_type": "basicauth_credential",
            "entity_id": cred,
            "entity_tags": ["c3-cred-01"],
            "entity": {
                "id": cred,
                "username": "user-01",
                "password": "pwd",
                "tags": ["c3-cred-01"],
                "consumer": {"id": c3},
            },
            "errors": [
                {
                    "type": "entity",
                    "message": "uniqueness violation: 'basicauth_credentials' entity with "
                    "username set to 'user-01' already declared",
                }
            ],
        },
    ]


def test_flattened_leaves_out_document_level_errors() -> None:
    err = error_of('_format_version: "9"\nfoo: 1\nservices: [{host: "a b"}]\n')
    assert err.fields() == {
        "_format_version": "expected one of: 1.1, 2.1, 3.0",
        "foo": "unknown field",
        "services": [{"host": "invalid value: a b"}],
    }
    assert [e["entity_type"] for e in err.flattened()] == ["service"]


def test_config_error_pickles() -> None:
    err = error_of(BASE + "services:\n- routes: [{paths: [x]}]\n")
    copy = pickle.loads(pickle.dumps(err))
    assert copy.errors == err.errors
    assert copy.fields() == err.fields()
    assert copy.flattened() == err.flattened()
