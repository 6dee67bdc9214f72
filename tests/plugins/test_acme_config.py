"""The acme plugin's schema (Kong's fields, defaults and entity checks, errors with paths), its
domain matcher (Kong's ``build_domain_matcher``/``check_domains``) and the Admin API's
description of a stored certificate."""

from __future__ import annotations

import datetime
import json

import msgspec
import pytest

from fastkong.acme.admin import describe
from fastkong.acme.manager import CertKey, directory_url
from fastkong.acme.storage import FileStorage, RedisStorage
from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled.acme import AcmeConfig, DomainMatcher, storage_for
from tests.helpers import plugin_config, plugin_config_errors
from tests.pki import Pki


def test_kong_defaults() -> None:
    config = plugin_config("acme", {"account_email": "ops@example.com"})
    assert config == {
        "account_email": "ops@example.com",
        "account_key": None,
        "api_uri": "https://acme-v02.api.letsencrypt.org/directory",
        "tos_accepted": False,
        "eab_kid": None,
        "eab_hmac_key": None,
        "cert_type": "rsa",
        "rsa_key_size": 4096,
        "renew_threshold_days": 14,
        "domains": None,
        "allow_any_domain": False,
        "fail_backoff_minutes": 5,
        "storage": "shm",
        "storage_config": {
            "shm": {"shm_name": "kong"},
            "kong": {},
            "redis": config["storage_config"]["redis"],
            "consul": {
                "https": False,
                "host": None,
                "port": None,
                "kv_path": None,
                "timeout": None,
                "token": None,
            },
            "vault": config["storage_config"]["vault"],
        },
        "preferred_chain": None,
        "enable_ipv4_common_name": True,
    }
    redis = config["storage_config"]["redis"]
    assert redis["port"] == 6379 and redis["extra_options"] == {"namespace": "", "scan_count": 10}
    assert config["storage_config"]["vault"]["tls_verify"] is True


@pytest.mark.parametrize(
    ("config", "errors"),
    [
        ({}, ["plugins[0].config.account_email: required field missing"]),
        (
            {"account_email": "nobody"},
            ["plugins[0].config.account_email: invalid value: nobody"],
        ),
        (
            {"account_email": "a@b.c", "api_uri": "https://acme-v02.api.letsencrypt.org"},
            [
                "plugins[0].config.tos_accepted: value must be true",
                "plugins[0]: terms of service must be accepted, see "
                "https://letsencrypt.org/repository/",
            ],
        ),
        (
            {"account_email": "a@b.c", "cert_type": "dsa", "rsa_key_size": 1024},
            [
                "plugins[0].config.cert_type: expected one of: rsa, ecc",
                "plugins[0].config.rsa_key_size: expected one of: 2048, 3072, 4096",
            ],
        ),
        (
            {"account_email": "a@b.c", "storage": "redis"},
            [
                "plugins[0].config.storage_config.redis.host: required field missing",
                "plugins[0]: failed conditional validation given value of field 'config.storage'",
            ],
        ),
        (
            {"account_email": "a@b.c", "storage": "kong"},
            ['plugins[0]: "kong" storage can\'t be used with dbless mode'],
        ),
        (
            {"account_email": "a@b.c", "storage": "vault"},
            [
                "plugins[0].config.storage: 'vault' storage is not implemented by fastkong "
                "(use 'shm' or 'redis')"
            ],
        ),
        (
            {
                "account_email": "a@b.c",
                "storage_config": {
                    "redis": {"extra_options": {"namespace": "kong_acme:cert_key:"}}
                },
            },
            [
                "plugins[0].config.storage_config.redis.extra_options.namespace: namespace "
                "can't be prefixed with reserved word: kong_acme:cert_key:"
            ],
        ),
        (
            {"account_email": "a@b.c", "domains": ["ok.example", "bad host"]},
            ["plugins[0].config.domains[1]: invalid hostname: bad host"],
        ),
        (
            {"account_email": "a@b.c", "domains": ["*.a.*"]},
            ["plugins[0].config.domains[0]: invalid wildcard: must have at most one wildcard"],
        ),
    ],
)
def test_config_errors_name_their_path(config: dict, errors: list[str]) -> None:  # type: ignore[type-arg]
    found = plugin_config_errors("acme", config)
    for error in errors:
        assert error in found, found


def test_kong_s_tos_check_fires_for_its_two_exact_uris_only() -> None:
    # Kong's conditional compares api_uri with two values exactly: its own default (with
    # /directory) is not one of them, so a config Kong loads must load here too.
    plugin_config("acme", {"account_email": "a@b.c"})
    accepted = {"account_email": "a@b.c", "tos_accepted": True}
    plugin_config("acme", {**accepted, "api_uri": "https://acme-v02.api.letsencrypt.org"})


def test_global_only() -> None:
    doc = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "s",
                "url": "http://127.0.0.1:1",
                "plugins": [{"name": "acme", "config": {"account_email": "a@b.c"}}],
            }
        ],
    }
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(doc))
    assert any("acme" in e.message and "service" in e.message for e in info.value.errors)


def test_deprecated_redis_shorthands_fold_in() -> None:
    config = msgspec.convert(
        plugin_config(
            "acme",
            {
                "account_email": "a@b.c",
                "storage": "redis",
                "storage_config": {
                    "redis": {
                        "host": "127.0.0.1",
                        "auth": "secret",
                        "ssl_server_name": "redis.internal",
                        "namespace": "team",
                        "scan_count": 50,
                    }
                },
            },
        ),
        AcmeConfig,
    )
    storage = storage_for(config)
    assert isinstance(storage, RedisStorage)
    assert storage.namespace == "team" and storage.scan_count == 50
    assert storage.options.password == "secret"
    assert storage.options.server_name == "redis.internal"


def test_shm_storage_is_a_directory_per_zone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = msgspec.convert(plugin_config("acme", {"account_email": "a@b.c"}), AcmeConfig)
    storage = storage_for(config, tmp_path)
    assert isinstance(storage, FileStorage)
    assert storage.directory.parent == tmp_path / "acme"


def _matcher(**fields: object) -> DomainMatcher:
    return DomainMatcher(
        msgspec.convert(plugin_config("acme", {"account_email": "a@b.c", **fields}), AcmeConfig)
    )


def test_domain_matcher_is_kong_s() -> None:
    allowed = _matcher(domains=["api.example.com", "*.apps.example.com"])
    assert allowed("api.example.com")
    assert not allowed("www.example.com")
    assert allowed("a.apps.example.com") and allowed("a.b.apps.example.com")
    assert not allowed("apps.example.com")  # the wildcard needs a label before the suffix
    assert not allowed("xapps.example.com")
    assert not _matcher()("api.example.com")  # no domains: nothing
    anything = _matcher(allow_any_domain=True, domains=["ignored.example"])
    assert anything("whatever.example") and anything("10.0.0.1")
    no_ip = _matcher(allow_any_domain=True, enable_ipv4_common_name=False)
    assert not no_ip("10.0.0.1") and no_ip("host.example")
    # the Admin API's sanity check asks the list alone
    assert not anything.listed("whatever.example") and anything.listed("ignored.example")


def test_directory_url_backward_compatibility() -> None:
    assert directory_url("https://ca.example/directory") == "https://ca.example/directory"
    assert directory_url("https://ca.example/acme/") == "https://ca.example/acme/directory"
    assert directory_url("https://ca.example/acme") == "https://ca.example/acme/directory"


def test_describe_a_stored_certificate() -> None:
    pki = Pki("Describe CA")
    cert, key = pki.issue("shop.example", dns="shop.example", rsa_key=True)
    row = describe(CertKey(cert + pki.pem, key))
    assert row["host"] == "shop.example" and row["issuer_cn"] == "Describe CA"
    assert row["valid"] is True and row["pubkey_type"] == "rsaEncryption"
    assert len(row["digest"].split(":")) == 20  # SHA-1, Kong's default digest
    assert row["digest"] == row["digest"].upper()
    serial = int(row["serial_number"].replace(":", ""), 16)
    assert serial > 0
    after = datetime.datetime.strptime(row["not_after"], "%Y-%m-%d %H:%M:%S")
    assert after > datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    expired_later = describe(CertKey(cert, key), now=after.timestamp() + 10 * 86400)
    assert expired_later["valid"] is False
    ec_cert, ec_key = pki.issue("ec.example", dns="ec.example")
    assert describe(CertKey(ec_cert, ec_key))["pubkey_type"] == "id-ecPublicKey"


def test_stored_records_need_both_halves() -> None:
    assert CertKey.decode(None) is None
    with pytest.raises(ValueError, match="key or cert"):
        CertKey.decode(json.dumps({"cert": "x"}))
