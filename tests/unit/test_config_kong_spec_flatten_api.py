"""Kong's ``spec/02-integration/04-admin_api/15-off_spec.lua``, "Admin API #off /config
[flattened errors]" (lines 1125-3073), ported as unit tests of ``ConfigError.flattened(raw)``.

Kong posts each invalid config to ``POST /config?flatten_errors=1`` and compares the
``flattened_errors`` list entry by entry (``validate``, lines 1183-1409): entries are correlated
by the first tag of their ``entity``; ``entity_id``, an entity's ``id`` and any ``{id = ...}``
foreign key are compared only when the expected entry gives them (``ngx.null``, here ``None``:
must be absent); ``errors`` lists are compared sorted. :func:`validate` ports that comparison.
Here each input is the JSON text Kong posts, loaded with ``load_config``; the HTTP layer is
checked by ``tests/integration/test_kong_admin_off_spec.py``. The expected tables below are
Kong's, evaluated from the spec's Lua (the ``tags.X.next`` helper yields ``X-01``, ``X-02``...).

Ported: "sanity" (1412-2152, one test per expected entry, plus one for unexpected entries),
"flattens nested, entity field errors" (2202-2324), "correctly handles nested entity errors"
(2326-2480; test_config_errors.py::test_flattened_credentials_and_uniqueness checks a reduced
form), "preserves IDs from the input" (2482-2499), "drains errors from the top-level fields
object" (2549-2675: the ``fields`` tree without flattening and the count of flattened entries;
the drained ``fields`` of the flattened answer is an HTTP matter, in the integration module),
"does not throw for invalid input - (#10767)" (2677-2924), "origin error do not loss when enable
flatten_errors - (#12167)" (2926-2962), "correctly handles duplicate upstream target errors"
(2964-3072).

Covered elsewhere: "flattens nested, non-entity field errors" (2154-2200) by
test_config_errors.py::test_flattened_nested_record_fields_are_dotted, and the same upstream
("upstream-02") is an entry of "sanity" here; "preserves foreign keys from nested entity
collections" (2501-2525) by test_config_errors.py::test_flattened_preserves_parent_key_of_nested_
entities; "omits top-level entity_* fields if they are invalid" (2527-2547) by
test_config_errors.py::test_flattened_omits_invalid_entity_fields.

Left out: ``post_config``'s checks that Kong's error log has no ``[warn]``/``[error]`` lines
(Kong internals: nginx's log of the flattening code).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final

import pytest

from fastkong.config import ConfigError, load_config

#: An absent key (Lua's ``nil``), apart from ``None`` (the spec's ``ngx.null``).
MISSING: Final = object()
UNIQUE: Final = "uniqueness violation: '{}' entity with {} set to '{}' already declared"


def post_config(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's ``post_config``: the document posted as JSON must be refused; its
    ``flattened_errors``."""
    text = json.dumps({"_format_version": "3.0", **document})
    with pytest.raises(ConfigError) as info:
        load_config(text)
    return info.value.flattened(json.loads(text))


def first_tag(entry: dict[str, Any]) -> Any:
    entity = entry.get("entity")
    tags = entity.get("tags") if isinstance(entity, dict) else None
    return tags[0] if isinstance(tags, list) and tags else None


def get_by_tag(tag: str, haystack: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The spec's ``get_by_tag``: removes and returns the entry whose first tag is ``tag``."""
    for i, entry in enumerate(haystack):
        if first_tag(entry) == tag:
            return haystack.pop(i)
    return None


def _same(exp: Any, got: Any) -> bool:
    """Penlight's ``deepcompare``: an empty Lua table is both ``{}`` and ``[]``."""
    if isinstance(exp, dict | list) and isinstance(got, dict | list) and not exp and not got:
        return True
    if isinstance(exp, dict) and isinstance(got, dict):
        return exp.keys() == got.keys() and all(_same(exp[k], got[k]) for k in exp)
    if isinstance(exp, list) and isinstance(got, list):
        return len(exp) == len(got) and all(map(_same, exp, got))
    if isinstance(exp, bool) or isinstance(got, bool):
        return exp is got
    return exp == got


def _sorted_errors(errors: Any) -> Any:
    if not isinstance(errors, list):
        return errors
    return sorted(errors, key=lambda e: (e.get("type", ""), e.get("field", ""), e["message"]))


def _diffs(field: str, exp: Any, got: Any, prefix: str = "") -> list[str]:
    """The spec's ``compare_field``/``compare_entity``: the names of the fields that differ."""
    if field in ("entity_id", "id") or (isinstance(got, dict) and list(got) == ["id"]):
        if exp is MISSING:
            return []
        if exp is None:
            exp = MISSING
    elif field == "entity" and isinstance(exp, dict) and isinstance(got, dict):
        keys = [*exp, *(k for k in got if k not in exp)]
        return [
            d for k in keys for d in _diffs(k, exp.get(k, MISSING), got.get(k, MISSING), "entity.")
        ]
    elif field == "errors":
        exp, got = _sorted_errors(exp), _sorted_errors(got)
    return [] if _same(exp, got) else [prefix + field]


def validate(expected: list[dict[str, Any]], received: list[dict[str, Any]]) -> None:
    """The spec's ``validate``: every expected entry found (by first tag) and equal, none left."""
    received = list(received)
    problems: list[str] = []
    for exp in expected:
        got = get_by_tag(first_tag(exp), received)
        if got is None:
            problems.append(f"missing entry: {exp}")
            continue
        keys = [*exp, *(k for k in got if k not in exp)]
        diffs = [d for k in keys for d in _diffs(k, exp.get(k, MISSING), got.get(k, MISSING))]
        if diffs:
            problems.append(f"unmatched {diffs}\n  expected: {exp}\n  got:      {got}")
    problems += [f"unexpected entry: {got}" for got in received]
    assert not problems, "\n".join(problems)


# -- Kong's tables, evaluated from the spec's Lua ---------------------------------------------
CERT: Final = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIICIzCCAYSgAwIBAgIUUMiD8e3GDZ+vs7XBmdXzMxARUrgwCgYIKoZIzj0EAwIw\n"
    "IzENMAsGA1UECgwES29uZzESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTIyMTIzMDA0\n"
    "MDcwOFoXDTQyMTIyNTA0MDcwOFowIzENMAsGA1UECgwES29uZzESMBAGA1UEAwwJ\n"
    "bG9jYWxob3N0MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQBxSldGzzRAtjt825q\n"
    "Uwl+BNgxecswnvbQFLiUDqJjVjCfs/B53xQfV97ddxsRymES2viC2kjAm1Ete4TH\n"
    "CQmVltUBItHzI77HB+UsfqHoUdjl3lC/HC1yDSPBp5wd9eRRSagdl0eiJwnB9lof\n"
    "MEnmOQLg177trb/YPz1vcCCZj7ikhzCjUzBRMB0GA1UdDgQWBBSUI6+CKqKFz/Te\n"
    "ZJppMNl/Dh6d9DAfBgNVHSMEGDAWgBSUI6+CKqKFz/TeZJppMNl/Dh6d9DAPBgNV\n"
    "HRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA4GMADCBiAJCAZL3qX21MnGtQcl9yOMr\n"
    "hNR54VrDKgqLR+ChU7/358n/sK/sVOjmrwVyQ52oUyqaQlfBQS2EufQVO/01+2sx\n"
    "86gzAkIB/4Ilf4RluN2/gqHYlVEDRZzsqbwVJBHLeNKsZBSJkhNNpJBwa2Ndl9/i\n"
    "u2tDk0KZFSAvRnqRAo9iDBUkIUI1ahA=\n"
    "-----END CERTIFICATE-----"
)


BROKEN_CERT: Final = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIICIzCCAYSgAwIBAgIUUMiD8e3GDZ+vs7XBmdXzMxARUrgwCgYIKoZIzj0EAwIw\n"
    "IzENMAsGA1UECgwES29uZzESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTIyMTIzMDA0\n"
    "MDcwOFoXDTQyohnoooooooooooooooooooooooooooooooooooooooooooasdfa\n"
    "Uwl+BNgxecswnvbQFLiUDqJjVjCfs/B53xQfV97ddxsRymES2viC2kjAm1Ete4TH\n"
    "CQmVltUBItHzI77AAAAAAAAAAAAAAAC/HC1yDSBBBBBBBBBBBBBdl0eiJwnB9lof\n"
    "MEnmOQLg177trb/AAAAAAAAAAAAAAACjUzBRMBBBBBBBBBBBBBBUI6+CKqKFz/Te\n"
    "ZJppMNl/Dh6d9DAAAAAAAAAAAAAAAASUI6+CKqBBBBBBBBBBBBB/Dh6d9DAPBgNV\n"
    "HRMBAf8EBTADAQHAAAAAAAAAAAAAAAMCA4GMADBBBBBBBBBBBBB1MnGtQcl9yOMr\n"
    "hNR54VrDKgqLR+CAAAAAAAAAAAAAAAjmrwVyQ5BBBBBBBBBBBBBEufQVO/01+2sx\n"
    "86gzAkIB/4Ilf4RluN2/gqHYlVEDRZzsqbwVJBHLeNKsZBSJkhNNpJBwa2Ndl9/i\n"
    "u2tDk0KZFSAvRnqRAo9iDBUkIUI1ahA=\n"
    "-----END CERTIFICATE-----"
)


KEY: Final = (
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MIHcAgEBBEIARPKnAYLB54bxBvkDfqV4NfZ+Mxl79rlaYRB6vbWVwFpy+E2pSZBR\n"
    "doCy1tHAB/uPo+QJyjIK82Zwa3Kq0i1D2QigBwYFK4EEACOhgYkDgYYABAHFKV0b\n"
    "PNEC2O3zbmpTCX4E2DF5yzCe9tAUuJQOomNWMJ+z8HnfFB9X3t13GxHKYRLa+ILa\n"
    "SMCbUS17hMcJCZWW1QEi0fMjvscH5Sx+oehR2OXeUL8cLXINI8GnnB315FFJqB2X\n"
    "R6InCcH2Wh8wSeY5AuDXvu2tv9g/PW9wIJmPuKSHMA==\n"
    "-----END EC PRIVATE KEY-----"
)


SANITY_INPUT: Final[dict[str, Any]] = {
    "_format_version": "3.0",
    "certificates": [
        {"cert": CERT, "key": KEY, "tags": ["certificate-01"]},
        {"cert": BROKEN_CERT, "key": KEY, "tags": ["certificate-02"]},
    ],
    "consumers": [
        {"tags": ["consumer-01"], "username": "valid_user"},
        {"not_allowed": True, "tags": ["consumer-02"], "username": "bobby_in_json_body"},
        {"tags": ["consumer-03"], "username": "super_valid_user"},
        {
            "basicauth_credentials": [
                {
                    "password": "hard2guess",
                    "tags": ["basicauth_credentials-01", "consumer-04"],
                    "username": "superduper",
                },
                {
                    "extra_field": "NO!",
                    "password": "12354",
                    "tags": ["basicauth_credentials-02", "consumer-04"],
                    "username": "dont-add-extra-fields-yo",
                },
            ],
            "tags": ["consumer-04"],
            "username": "credentials",
        },
    ],
    "plugins": [
        {
            "config": {"http_endpoint": "invalid::#//url"},
            "name": "http-log",
            "tags": ["global_plugin-01"],
        }
    ],
    "services": [
        {
            "host": "localhost",
            "name": "nope",
            "port": 1234,
            "protocol": "nope",
            "routes": [
                {
                    "hosts": ["test"],
                    "methods": ["GET"],
                    "name": "valid.route",
                    "protocols": ["http", "https"],
                    "tags": ["route_service-01", "service-01"],
                },
                {
                    "name": "nope.route",
                    "protocols": ["tcp"],
                    "tags": ["route_service-02", "service-01"],
                },
            ],
            "tags": ["service-01"],
        },
        {
            "host": "localhost",
            "name": "mis-matched",
            "path": "/path",
            "protocol": "tcp",
            "routes": [
                {
                    "hosts": ["test"],
                    "methods": ["GET"],
                    "name": "invalid",
                    "protocols": ["http", "https"],
                    "tags": ["route_service-03", "service-02"],
                }
            ],
            "tags": ["service-02"],
        },
        {
            "name": "okay",
            "routes": [
                {
                    "hosts": ["test"],
                    "methods": ["GET"],
                    "name": "probably-valid",
                    "plugins": [
                        {
                            "config": {"not_endpoint": "anything"},
                            "name": "http-log",
                            "tags": ["route_service_plugin-01", "route_service-04", "service-03"],
                        }
                    ],
                    "protocols": ["http", "https"],
                    "tags": ["route_service-04", "service-03"],
                }
            ],
            "tags": ["service-03"],
            "url": "http://localhost:1234",
        },
        {
            "name": "bad-service-plugins",
            "plugins": [
                {"config": {}, "name": "i-dont-exist", "tags": ["service_plugin-01", "service-04"]},
                {
                    "config": {"deeply": {"nested": {"undefined": True}}, "port": 1234},
                    "name": "tcp-log",
                    "tags": ["service_plugin-02", "service-04"],
                },
            ],
            "tags": ["service-04"],
            "url": "http://localhost:1234",
        },
        {
            "client_certificate": {
                "cert": "",
                "key": "",
                "tags": ["service_client_certificate-01", "service-05"],
            },
            "name": "bad-client-cert",
            "tags": ["service-05"],
            "url": "https://localhost:1234",
        },
        {
            "id": 123456,
            "name": "invalid-id",
            "tags": ["service-06", "invalid-id"],
            "url": "https://localhost:1234",
        },
        {
            "name": "invalid-tags",
            "tags": ["service-07", "invalid-tags", [1, 2, 3], True],
            "url": "https://localhost:1234",
        },
        {
            "name": "",
            "tags": ["service-08", "invalid_service_name-01"],
            "url": "https://localhost:1234",
        },
        {
            "name": 1234,
            "tags": ["service-09", "invalid_service_name-02"],
            "url": "https://localhost:1234",
        },
    ],
    "upstreams": [
        {"hash_on": "ip", "name": "ok", "tags": ["upstream-01"]},
        {
            "hash_on": "ip",
            "healthchecks": {
                "active": {
                    "concurrency": -1,
                    "healthy": {"interval": 0, "successes": 0},
                    "http_path": "/",
                    "https_sni": "example.com",
                    "https_verify_certificate": True,
                    "timeout": 1,
                    "type": "http",
                    "unhealthy": {"http_failures": 0, "interval": 0},
                }
            },
            "host_header": 123,
            "name": "bad",
            "tags": ["upstream-02"],
        },
        {
            "name": "ok-bad-targets",
            "tags": ["upstream-03"],
            "targets": [
                {"tags": ["upstream_target-01", "upstream-03"], "target": "127.0.0.1:99"},
                {"tags": ["upstream_target-02", "upstream-03"], "target": "hostname:1.0"},
            ],
        },
    ],
    "vaults": [
        {"config": {"prefix": "SSL_"}, "name": "env", "prefix": "test", "tags": ["vault-01"]},
        {
            "config": {"prefix": "SSL_"},
            "name": "vault-not-installed",
            "prefix": "env",
            "tags": ["vault-02", "vault-not-installed"],
        },
    ],
}


SANITY_EXPECTED: Final[list[dict[str, Any]]] = [
    {
        "entity": {
            "extra_field": "NO!",
            "password": "12354",
            "tags": ["basicauth_credentials-02", "consumer-04"],
            "username": "dont-add-extra-fields-yo",
        },
        "entity_tags": ["basicauth_credentials-02", "consumer-04"],
        "entity_type": "basicauth_credential",
        "errors": [{"field": "extra_field", "message": "unknown field", "type": "field"}],
    },
    {
        "entity": {
            "config": {"prefix": "SSL_"},
            "name": "vault-not-installed",
            "prefix": "env",
            "tags": ["vault-02", "vault-not-installed"],
        },
        "entity_name": "vault-not-installed",
        "entity_tags": ["vault-02", "vault-not-installed"],
        "entity_type": "vault",
        "errors": [
            {
                "field": "name",
                "message": "vault 'vault-not-installed' is not installed",
                "type": "field",
            }
        ],
    },
    {
        "entity": {
            "name": "",
            "tags": ["service-08", "invalid_service_name-01"],
            "url": "https://localhost:1234",
        },
        "entity_tags": ["service-08", "invalid_service_name-01"],
        "entity_type": "service",
        "errors": [{"field": "name", "message": "length must be at least 1", "type": "field"}],
    },
    {
        "entity": {
            "name": 1234,
            "tags": ["service-09", "invalid_service_name-02"],
            "url": "https://localhost:1234",
        },
        "entity_tags": ["service-09", "invalid_service_name-02"],
        "entity_type": "service",
        "errors": [{"field": "name", "message": "expected a string", "type": "field"}],
    },
    {
        "entity": {
            "name": "invalid-tags",
            "tags": ["service-07", "invalid-tags", [1, 2, 3], True],
            "url": "https://localhost:1234",
        },
        "entity_name": "invalid-tags",
        "entity_type": "service",
        "errors": [
            {"field": "tags.3", "message": "expected a string", "type": "field"},
            {"field": "tags.4", "message": "expected a string", "type": "field"},
        ],
    },
    {
        "entity": {
            "id": 123456,
            "name": "invalid-id",
            "tags": ["service-06", "invalid-id"],
            "url": "https://localhost:1234",
        },
        "entity_id": None,
        "entity_name": "invalid-id",
        "entity_tags": ["service-06", "invalid-id"],
        "entity_type": "service",
        "errors": [{"field": "id", "message": "expected a string", "type": "field"}],
    },
    {
        "entity": {"cert": BROKEN_CERT, "key": KEY, "tags": ["certificate-02"]},
        "entity_tags": ["certificate-02"],
        "entity_type": "certificate",
        "errors": [
            {
                "field": "cert",
                # Kong's message is the text of its OpenSSL's error queue ("x509.new:
                # error:688010A:asn1 encoding routines:asn1_item_embed_d2i:nested asn1
                # error:asn1/tasn_dec.c:349:"), which changes with the OpenSSL build; fastkong
                # says what is wrong in its own words (README, "Deliberate differences")
                "message": "invalid certificate: expected a PEM-encoded X.509 certificate",
                "type": "field",
            }
        ],
    },
    {
        "entity": {
            "hash_on": "ip",
            "healthchecks": {
                "active": {
                    "concurrency": -1,
                    "healthy": {"interval": 0, "successes": 0},
                    "http_path": "/",
                    "https_sni": "example.com",
                    "https_verify_certificate": True,
                    "timeout": 1,
                    "type": "http",
                    "unhealthy": {"http_failures": 0, "interval": 0},
                }
            },
            "host_header": 123,
            "name": "bad",
            "tags": ["upstream-02"],
        },
        "entity_name": "bad",
        "entity_tags": ["upstream-02"],
        "entity_type": "upstream",
        "errors": [
            {"field": "host_header", "message": "expected a string", "type": "field"},
            {
                "field": "healthchecks.active.concurrency",
                "message": "value should be between 1 and 2147483648",
                "type": "field",
            },
        ],
    },
    {
        "entity": {
            "config": {"http_endpoint": "invalid::#//url"},
            "name": "http-log",
            "tags": ["global_plugin-01"],
        },
        "entity_name": "http-log",
        "entity_tags": ["global_plugin-01"],
        "entity_type": "plugin",
        "errors": [
            {"field": "config.http_endpoint", "message": "missing host in url", "type": "field"}
        ],
    },
    {
        "entity": {"not_allowed": True, "tags": ["consumer-02"], "username": "bobby_in_json_body"},
        "entity_tags": ["consumer-02"],
        "entity_type": "consumer",
        "errors": [{"field": "not_allowed", "message": "unknown field", "type": "field"}],
    },
    {
        "entity": {
            "name": "nope.route",
            "protocols": ["tcp"],
            "tags": ["route_service-02", "service-01"],
        },
        "entity_name": "nope.route",
        "entity_tags": ["route_service-02", "service-01"],
        "entity_type": "route",
        "errors": [
            {
                "message": (
                    "must set one of 'sources', 'destinations', 'snis' when "
                    "'protocols' is 'tcp', 'tls' or 'udp'"
                ),
                "type": "entity",
            }
        ],
    },
    {
        "entity": {
            "host": "localhost",
            "name": "nope",
            "port": 1234,
            "protocol": "nope",
            "tags": ["service-01"],
        },
        "entity_name": "nope",
        "entity_tags": ["service-01"],
        "entity_type": "service",
        "errors": [
            {
                "field": "protocol",
                "message": (
                    "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"
                ),
                "type": "field",
            }
        ],
    },
    {
        "entity": {
            "host": "localhost",
            "name": "mis-matched",
            "path": "/path",
            "protocol": "tcp",
            "tags": ["service-02"],
        },
        "entity_name": "mis-matched",
        "entity_tags": ["service-02"],
        "entity_type": "service",
        "errors": [
            {"field": "path", "message": "value must be null", "type": "field"},
            {
                "message": ("failed conditional validation given value of field 'protocol'"),
                "type": "entity",
            },
        ],
    },
    {
        "entity": {
            "config": {"not_endpoint": "anything"},
            "name": "http-log",
            "tags": ["route_service_plugin-01", "route_service-04", "service-03"],
        },
        "entity_name": "http-log",
        "entity_tags": ["route_service_plugin-01", "route_service-04", "service-03"],
        "entity_type": "plugin",
        "errors": [
            {"field": "config.not_endpoint", "message": "unknown field", "type": "field"},
            {"field": "config.http_endpoint", "message": "required field missing", "type": "field"},
        ],
    },
    {
        "entity": {
            "config": {},
            "name": "i-dont-exist",
            "tags": ["service_plugin-01", "service-04"],
        },
        "entity_name": "i-dont-exist",
        "entity_tags": ["service_plugin-01", "service-04"],
        "entity_type": "plugin",
        "errors": [
            {
                "field": "name",
                "message": (
                    "plugin 'i-dont-exist' not enabled; add it to the 'plugins' "
                    "configuration property"
                ),
                "type": "field",
            }
        ],
    },
    {
        "entity": {
            "config": {"deeply": {"nested": {"undefined": True}}, "port": 1234},
            "name": "tcp-log",
            "tags": ["service_plugin-02", "service-04"],
        },
        "entity_name": "tcp-log",
        "entity_tags": ["service_plugin-02", "service-04"],
        "entity_type": "plugin",
        "errors": [
            {"field": "config.deeply", "message": "unknown field", "type": "field"},
            {"field": "config.host", "message": "required field missing", "type": "field"},
        ],
    },
    {
        "entity": {"cert": "", "key": "", "tags": ["service_client_certificate-01", "service-05"]},
        "entity_tags": ["service_client_certificate-01", "service-05"],
        "entity_type": "certificate",
        "errors": [
            {"field": "key", "message": "length must be at least 1", "type": "field"},
            {"field": "cert", "message": "length must be at least 1", "type": "field"},
        ],
    },
    {
        "entity": {"tags": ["upstream_target-02", "upstream-03"], "target": "hostname:1.0"},
        "entity_tags": ["upstream_target-02", "upstream-03"],
        "entity_type": "target",
        "errors": [
            {
                "field": "target",
                "message": ("Invalid target ('hostname:1.0'); not a valid hostname or ip address"),
                "type": "field",
            }
        ],
    },
]


NESTED_INPUT: Final[dict[str, Any]] = {
    "_format_version": "3.0",
    "services": [
        {
            "client_certificate": {
                "cert": "",
                "key": "",
                "tags": ["service_client_certificate-01", "service-01"],
            },
            "name": "bad-client-cert",
            "plugins": [{"config": {}, "name": "i-do-not-exist", "tags": ["service_plugin-01"]}],
            "routes": [
                {
                    "hosts": ["test"],
                    "paths": ["/"],
                    "plugins": [
                        {
                            "config": {"a": {"b": {"c": "def"}}},
                            "name": "http-log",
                            "tags": ["route_service_plugin-01"],
                        }
                    ],
                    "protocols": ["http"],
                    "tags": ["service_route-01"],
                },
                {
                    "hosts": ["invalid"],
                    "paths": ["/"],
                    "protocols": ["nope"],
                    "tags": ["service_route-02"],
                },
            ],
            "tags": ["service-01"],
            "url": "https://localhost:1234",
        }
    ],
}


NESTED_EXPECTED: Final[list[dict[str, Any]]] = [
    {
        "entity": {"cert": "", "key": "", "tags": ["service_client_certificate-01", "service-01"]},
        "entity_tags": ["service_client_certificate-01", "service-01"],
        "entity_type": "certificate",
        "errors": [
            {"field": "cert", "message": "length must be at least 1", "type": "field"},
            {"field": "key", "message": "length must be at least 1", "type": "field"},
        ],
    },
    {
        "entity": {
            "hosts": ["invalid"],
            "paths": ["/"],
            "protocols": ["nope"],
            "tags": ["service_route-02"],
        },
        "entity_tags": ["service_route-02"],
        "entity_type": "route",
        "errors": [{"field": "protocols", "message": "unknown type: nope", "type": "field"}],
    },
    {
        "entity": {
            "config": {"a": {"b": {"c": "def"}}},
            "name": "http-log",
            "tags": ["route_service_plugin-01"],
        },
        "entity_name": "http-log",
        "entity_tags": ["route_service_plugin-01"],
        "entity_type": "plugin",
        "errors": [
            {"field": "config.a", "message": "unknown field", "type": "field"},
            {"field": "config.http_endpoint", "message": "required field missing", "type": "field"},
        ],
    },
    {
        "entity": {"config": {}, "name": "i-do-not-exist", "tags": ["service_plugin-01"]},
        "entity_name": "i-do-not-exist",
        "entity_tags": ["service_plugin-01"],
        "entity_type": "plugin",
        "errors": [
            {
                "field": "name",
                "message": (
                    "plugin 'i-do-not-exist' not enabled; add it to the "
                    "'plugins' configuration property"
                ),
                "type": "field",
            }
        ],
    },
]


CONSUMERS: Final[list[dict[str, Any]]] = [
    {
        "basicauth_credentials": [
            {
                "id": "089091f4-cb8b-48f5-8463-8319097be716",
                "password": "pwd",
                "tags": ["consumer-01-credential-01"],
                "username": "user-01",
            },
            {
                "id": "b1443d61-ccd9-4359-b82a-f37515442295",
                "password": "pwd",
                "tags": ["consumer-01-credential-02"],
                "username": "user-11",
            },
            {
                "id": "2603d010-edbe-4713-94ef-145e281cbf4c",
                "password": "pwd",
                "tags": ["consumer-01-credential-03"],
                "username": "user-02",
            },
            {
                "id": "760cf441-613c-48a2-b377-36aebc9f9ed0",
                "password": "pwd",
                "tags": ["consumer-01-credential-04"],
                "username": "user-11",
            },
        ],
        "id": "cdac30ee-cd7e-465c-99b6-84f3e4e17015",
        "tags": ["consumer-01"],
        "username": "consumer-01",
    },
    {
        "basicauth_credentials": [
            {
                "id": "d0cd1919-bb07-4c85-b407-f33feb74f6e2",
                "password": "pwd",
                "tags": ["consumer-02-credential-01"],
                "username": "user-99",
            }
        ],
        "id": "c0c021f5-dae1-4031-bcf6-42e3c4d9ced9",
        "tags": ["consumer-02"],
        "username": "consumer-02",
    },
    {
        "basicauth_credentials": [
            {
                "id": "7e8bcd10-cdcd-41f1-8c4d-9790d34aa67d",
                "password": "pwd",
                "tags": ["consumer-03-credential-01"],
                "username": "user-01",
            },
            {
                "id": "7fe186bd-44e5-4b97-854d-85a24929889d",
                "password": "pwd",
                "tags": ["consumer-03-credential-02"],
                "username": "user-33",
            },
            {
                "id": "6547c325-5332-41fc-a954-d4972926cdb5",
                "password": "pwd",
                "tags": ["consumer-03-credential-03"],
                "username": "user-02",
            },
            {
                "id": "e091a955-9ee1-4403-8d0a-a7f1f8bafaca",
                "password": "pwd",
                "tags": ["consumer-03-credential-04"],
                "username": "user-33",
            },
        ],
        "id": "9acb0270-73aa-4968-b9e4-a4924e4aced5",
        "tags": ["consumer-03"],
        "username": "consumer-03",
    },
]


ISSUE_10767_INPUT: Final[dict[str, Any]] = {
    "_format_version": "3.0",
    "consumers": [
        {
            "acls": [
                {
                    "group": "app",
                    "tags": [
                        "k8s-name:app-acl",
                        "k8s-namespace:default",
                        "k8s-kind:Secret",
                        "k8s-uid:f1c5661c-a087-4c4b-b545-2d8b3870d661",
                        "k8s-version:v1",
                    ],
                }
            ],
            "basicauth_credentials": [
                {
                    "password": "6ef728de-ba68-4e59-acb9-6e502c28ae0b",
                    "tags": [
                        "k8s-name:app-cred",
                        "k8s-namespace:default",
                        "k8s-kind:Secret",
                        "k8s-uid:aadd4598-2969-49ea-82ac-6ab5159e2f2e",
                        "k8s-version:v1",
                    ],
                    "username": "774f8446-6427-43f9-9962-ce7ab8097fe4",
                }
            ],
            "id": "68d5de9f-2211-5ed8-b827-22f57a492d0f",
            "tags": [
                "k8s-name:app",
                "k8s-namespace:default",
                "k8s-kind:KongConsumer",
                "k8s-uid:7ee19bea-72d5-402b-bf0f-f57bf81032bf",
                "k8s-group:configuration.konghq.com",
                "k8s-version:v1",
            ],
            "username": "774f8446-6427-43f9-9962-ce7ab8097fe4",
        }
    ],
    "plugins": [
        {
            "config": {
                "error_code": 429,
                "error_message": "API rate limit exceeded",
                "fault_tolerant": True,
                "hide_client_headers": False,
                "limit_by": "consumer",
                "policy": "local",
                "second": 2000,
            },
            "consumer": "774f8446-6427-43f9-9962-ce7ab8097fe4",
            "enabled": True,
            "name": "rate-limiting",
            "protocols": ["grpc", "grpcs", "http", "https"],
            "tags": [
                "k8s-name:nginx-sample-1-rate",
                "k8s-namespace:default",
                "k8s-kind:KongPlugin",
                "k8s-uid:5163972c-543d-48ae-b0f6-21701c43c1ff",
                "k8s-group:configuration.konghq.com",
                "k8s-version:v1",
            ],
        },
        {
            "config": {
                "error_code": 429,
                "error_message": "API rate limit exceeded",
                "fault_tolerant": True,
                "hide_client_headers": False,
                "limit_by": "consumer",
                "policy": "local",
                "second": 2000,
            },
            "consumer": "774f8446-6427-43f9-9962-ce7ab8097fe4",
            "enabled": True,
            "name": "rate-limiting",
            "protocols": ["grpc", "grpcs", "http", "https"],
            "tags": [
                "k8s-name:nginx-sample-2-rate",
                "k8s-namespace:default",
                "k8s-kind:KongPlugin",
                "k8s-uid:89fa1cd1-78da-4c3e-8c3b-32be1811535a",
                "k8s-group:configuration.konghq.com",
                "k8s-version:v1",
            ],
        },
        {
            "config": {"allow": ["nginx-sample-1", "app"], "hide_groups_header": False},
            "enabled": True,
            "name": "acl",
            "protocols": ["grpc", "grpcs", "http", "https"],
            "service": "default.nginx-sample-1.nginx-sample-1.80",
            "tags": [
                "k8s-name:nginx-sample-1",
                "k8s-namespace:default",
                "k8s-kind:KongPlugin",
                "k8s-uid:b9373482-32e1-4ac3-bd2a-8926ab728700",
                "k8s-group:configuration.konghq.com",
                "k8s-version:v1",
            ],
        },
    ],
    "services": [
        {
            "connect_timeout": 60000,
            "host": "nginx-sample-1.default.80.svc",
            "id": "8c17ab3e-b6bd-51b2-b5ec-878b4d608b9d",
            "name": "default.nginx-sample-1.nginx-sample-1.80",
            "path": "/",
            "port": 80,
            "protocol": "http",
            "read_timeout": 60000,
            "retries": 5,
            "routes": [
                {
                    "https_redirect_status_code": 426,
                    "id": "84d45463-1faa-55cf-8ef6-4285007b715e",
                    "methods": ["GET"],
                    "name": "default.nginx-sample-1.nginx-sample-1..80",
                    "path_handling": "v0",
                    "paths": ["/sample/1"],
                    "preserve_host": True,
                    "protocols": ["http", "https"],
                    "regex_priority": 0,
                    "request_buffering": True,
                    "response_buffering": True,
                    "strip_path": False,
                    "tags": [
                        "k8s-name:nginx-sample-1",
                        "k8s-namespace:default",
                        "k8s-kind:Ingress",
                        "k8s-uid:916a6e5a-eebe-4527-a78d-81963eb3e043",
                        "k8s-group:networking.k8s.io",
                        "k8s-version:v1",
                    ],
                }
            ],
            "tags": [
                "k8s-name:nginx-sample-1",
                "k8s-namespace:default",
                "k8s-kind:Service",
                "k8s-uid:f7cc87f4-d5f7-41f8-b4e3-70608017e588",
                "k8s-version:v1",
            ],
            "write_timeout": 60000,
        }
    ],
    "upstreams": [
        {
            "algorithm": "round-robin",
            "name": "nginx-sample-1.default.80.svc",
            "tags": [
                "k8s-name:nginx-sample-1",
                "k8s-namespace:default",
                "k8s-kind:Service",
                "k8s-uid:f7cc87f4-d5f7-41f8-b4e3-70608017e588",
                "k8s-version:v1",
            ],
            "targets": [{"target": "nginx-sample-1.default.svc:80"}],
        }
    ],
}


DUPE_TARGETS_INPUT: Final[dict[str, Any]] = {
    "_format_version": "3.0",
    "services": [
        {
            "connect_timeout": 60000,
            "host": "httproute.default.httproute-testing.0",
            "id": "4e3cb785-a8d0-5866-aa05-117f7c64f24d",
            "name": "httproute.default.httproute-testing.0",
            "port": 8080,
            "protocol": "http",
            "read_timeout": 60000,
            "retries": 5,
            "routes": [
                {
                    "https_redirect_status_code": 426,
                    "id": "073fc413-1c03-50b4-8f44-43367c13daba",
                    "name": "httproute.default.httproute-testing.0.0",
                    "path_handling": "v0",
                    "paths": ["~/httproute-testing$", "/httproute-testing/"],
                    "preserve_host": True,
                    "protocols": ["http", "https"],
                    "strip_path": True,
                    "tags": [],
                }
            ],
            "tags": [],
            "write_timeout": 60000,
        }
    ],
    "upstreams": [
        {
            "algorithm": "round-robin",
            "id": "e9792964-6797-482c-bfdf-08220a4f6832",
            "name": "httproute.default.httproute-testing.0",
            "tags": [
                "k8s-name:httproute-testing",
                "k8s-namespace:default",
                "k8s-kind:HTTPRoute",
                "k8s-uid:f9792964-6797-482c-bfdf-08220a4f6839",
                "k8s-group:gateway.networking.k8s.io",
                "k8s-version:v1",
            ],
            "targets": [
                {"target": "10.244.0.11:80", "weight": 1},
                {"target": "10.244.0.12:80", "weight": 1},
            ],
        },
        {
            "algorithm": "round-robin",
            "id": "f9792964-6797-482c-bfdf-08220a4f6839",
            "name": "httproute.default.httproute-testing.1",
            "tags": [
                "k8s-name:httproute-testing",
                "k8s-namespace:default",
                "k8s-kind:HTTPRoute",
                "k8s-uid:f9792964-6797-482c-bfdf-08220a4f6839",
                "k8s-group:gateway.networking.k8s.io",
                "k8s-version:v1",
            ],
            "targets": [
                {"tags": ["target-1"], "target": "10.244.0.12:80", "weight": 1},
                {"tags": ["target-2"], "target": "10.244.0.12:80", "weight": 1},
            ],
        },
    ],
}


DRAINS_FIELDS: Final[dict[str, Any]] = {
    "abnormal_extra_field": "unknown field",
    "services": [
        {
            "protocol": (
                "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"
            ),
            "routes": [
                None,
                {
                    "@entity": [
                        (
                            "must set one of 'sources', 'destinations', 'snis' when "
                            "'protocols' is 'tcp', 'tls' or 'udp'"
                        )
                    ]
                },
            ],
        },
        {
            "@entity": [("failed conditional validation given value of field 'protocol'")],
            "path": "value must be null",
        },
        {
            "routes": [
                {
                    "plugins": [
                        {
                            "config": {
                                "http_endpoint": "required field missing",
                                "not_endpoint": "unknown field",
                            }
                        }
                    ]
                }
            ]
        },
    ],
}


# -- "sanity" (1412-2152) -------------------------------------------------------------------
@functools.cache
def _sanity() -> tuple[dict[str, Any], ...]:
    return tuple(post_config(SANITY_INPUT))


@pytest.mark.parametrize("expected", SANITY_EXPECTED, ids=first_tag)
def test_sanity(expected: dict[str, Any]) -> None:
    validate([expected], [e for e in _sanity() if first_tag(e) == first_tag(expected)])


def test_sanity_has_no_unexpected_entries() -> None:
    tags = {first_tag(e) for e in SANITY_EXPECTED}
    assert [e for e in _sanity() if first_tag(e) not in tags] == []


def test_flattens_nested_entity_field_errors() -> None:
    validate(NESTED_EXPECTED, post_config(NESTED_INPUT))


def _credential_error(consumer: int, credential: int) -> dict[str, Any]:
    """An expected entry of "correctly handles nested entity errors" (1-based, as the spec's)."""
    owner = CONSUMERS[consumer - 1]
    cred = owner["basicauth_credentials"][credential - 1]
    return {
        "entity": {"consumer": {"id": owner["id"]}, **{k: cred[k] for k in cred}},
        "entity_id": cred["id"],
        "entity_tags": cred["tags"],
        "entity_type": "basicauth_credential",
        "errors": [
            {
                "message": UNIQUE.format("basicauth_credentials", "username", cred["username"]),
                "type": "entity",
            }
        ],
    }


def test_correctly_handles_nested_entity_errors() -> None:
    expected = [_credential_error(*at) for at in ((1, 4), (3, 1), (3, 3), (3, 4))]
    validate(expected, post_config({"consumers": CONSUMERS}))


def test_preserves_ids_from_the_input() -> None:
    service_id = "0175e0e8-3de9-56b4-96f1-b12dcb4b6691"
    service = {
        "id": service_id,
        "name": "nope",
        "host": "localhost",
        "port": 1234,
        "protocol": "nope",
        "tags": ["service-01"],
    }
    got = get_by_tag("service-01", post_config({"services": [service]}))
    assert got is not None
    assert got["entity_id"] == service_id
    assert got["entity"]["id"] == service_id


def test_drains_errors_from_the_top_level_fields_object() -> None:
    document = {
        "_format_version": "3.0",
        "abnormal_extra_field": 123,
        "services": SANITY_INPUT["services"][:3],
    }
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(document))
    assert info.value.fields() == DRAINS_FIELDS
    assert len(info.value.flattened(document)) == 4


def test_does_not_throw_for_invalid_input_10767() -> None:
    # Kong answers one entry: the first rate-limiting plugin, "consumer.id: missing primary
    # key" (the spec says the message is "somewhat nonsensical"; what it checks is that the
    # answer is a 400, not a 500). fastkong's documented differences (README.md "Deliberate
    # differences": "a plugin configured twice on one scope ... is a config error" and "Kong
    # says 'missing primary key' instead ...") give the second plugin, on the same consumer,
    # a uniqueness error instead.
    received = post_config(ISSUE_10767_INPUT)
    plugin = ISSUE_10767_INPUT["plugins"][1]
    got = next(e for e in received if first_tag(e) == plugin["tags"][0])
    message = UNIQUE.format("plugins", "primary key", got.get("entity_id"))
    expected = {
        "entity_type": "plugin",
        "entity_name": plugin["name"],
        "entity_tags": plugin["tags"],
        "entity": plugin,
        "errors": [{"type": "entity", "message": message}],
    }
    validate([expected], received)


def test_origin_error_is_kept_when_flattening_12167() -> None:
    consumers = [
        {
            "id": "a73dc9a7-93df-584d-97c0-7f41a1bbce3d",
            "username": "test-consumer-1",
            "tags": ["consumer-1"],
        },
        {
            "id": "a73dc9a7-93df-584d-97c0-7f41a1bbce32",
            "username": "test-consumer-1",
            "tags": ["consumer-2"],
        },
    ]
    expected = {
        "entity_type": "consumer",
        "entity_id": consumers[1]["id"],
        "entity_tags": ["consumer-2"],
        "entity": consumers[1],
        "errors": [
            {"type": "entity", "message": UNIQUE.format("consumers", "username", "test-consumer-1")}
        ],
    }
    validate([expected], post_config({"consumers": consumers}))


def test_correctly_handles_duplicate_upstream_target_errors() -> None:
    entry = get_by_tag("target-2", post_config(DUPE_TARGETS_INPUT))
    assert entry is not None, "no error for duplicate target in the response"
    assert entry["entity_tags"] == ["target-2"]
    (error,) = entry["errors"]
    assert error["type"] == "entity"
    assert error["message"] == UNIQUE.format("targets", "primary key", entry["entity_id"])
