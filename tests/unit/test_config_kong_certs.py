"""Certificates as Kong checks them: loaded, matched to their keys, CA constraints.

Kong: ``kong:kong/db/schema/typedefs.lua`` (``certificate``, ``key``: OpenSSL must load them)
and the entity checks of ``kong:kong/db/schema/entities/certificates.lua`` and
``ca_certificates.lua``. The certificates here are made by the test.
"""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from fastkong.config import ConfigError, load_config
from fastkong.config.schema import Config

NOW = datetime.datetime.now(datetime.UTC)


def make(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool | None = True,
    days: int = 365,
) -> tuple[str, str]:
    """A self-signed certificate for ``key`` and the key, both PEM."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=2 * abs(days)))
        .not_valid_after(NOW + datetime.timedelta(days=days))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def ec_pair(**kw: bool | int | None) -> tuple[str, str]:
    return make(ec.generate_private_key(ec.SECP256R1()), **kw)  # type: ignore[arg-type]


def rsa_pair() -> tuple[str, str]:
    return make(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def load(doc: dict[str, object]) -> Config:
    return load_config(json.dumps({"_format_version": "3.0", **doc})).config


def errors(doc: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps({"_format_version": "3.0", **doc}))
    return [f"{e.path}: {e.message}" for e in info.value.errors]


EC_CERT, EC_KEY = ec_pair()
OTHER_CERT, OTHER_KEY = ec_pair()
RSA_CERT, RSA_KEY = rsa_pair()


def test_a_certificate_with_its_key_and_an_alternative_of_another_type_loads() -> None:
    config = load(
        {
            "certificates": [
                {"cert": EC_CERT, "key": EC_KEY, "cert_alt": RSA_CERT, "key_alt": RSA_KEY}
            ]
        }
    )
    assert config.certificates[0].cert_alt == RSA_CERT


def test_a_pem_block_that_is_not_a_certificate_or_key_is_rejected() -> None:
    body = EC_CERT.splitlines()
    broken = "\n".join([body[0], body[1][::-1], *body[2:]])
    key_body = EC_KEY.splitlines()
    broken_key = "\n".join([key_body[0], key_body[1][::-1], *key_body[2:]])
    assert errors({"certificates": [{"cert": broken, "key": broken_key}]}) == [
        "certificates[0].cert: invalid certificate: expected a PEM-encoded X.509 certificate",
        "certificates[0].key: invalid key: expected a PEM-encoded private key",
    ]


def test_a_certificate_must_match_its_key() -> None:
    assert errors(
        {
            "certificates": [
                {"cert": EC_CERT, "key": OTHER_KEY},
                {"cert": EC_CERT, "key": EC_KEY, "cert_alt": RSA_CERT, "key_alt": OTHER_KEY},
            ]
        }
    ) == [
        "certificates[0]: certificate does not match key",
        "certificates[1]: alternative certificate does not match key",
    ]


def test_the_alternative_certificate_must_have_another_key_type() -> None:
    assert errors(
        {
            "certificates": [
                {"cert": EC_CERT, "key": EC_KEY, "cert_alt": OTHER_CERT, "key_alt": OTHER_KEY}
            ]
        }
    ) == [
        "certificates[0]: certificate and alternative certificate need to have different type "
        "(e.g. RSA and ECDSA), the provided certificates were both of the same type"
    ]


def test_a_ca_certificate_must_be_a_current_ca() -> None:
    expired, _ = ec_pair(days=-1)
    leaf, _ = ec_pair(ca=False)
    bare, _ = ec_pair(ca=None)
    assert errors(
        {
            "ca_certificates": [
                {"cert": EC_CERT},
                {"cert": expired},
                {"cert": leaf},
                {"cert": bare},
                {"cert": OTHER_CERT + EC_CERT},
            ]
        }
    ) == [
        'ca_certificates[1]: certificate expired, "Not After" time is in the past',
        'ca_certificates[2]: certificate does not appear to be a CA because it is missing the "CA" '
        "basic constraint",
        'ca_certificates[3]: certificate does not appear to be a CA because it is missing the "CA" '
        "basic constraint",
        "ca_certificates[4]: please submit only one certificate at a time",
    ]


def test_a_jwt_rsa_public_key_must_load() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    lines = pem.splitlines()
    broken = "\n".join([lines[0], lines[1][::-1], *lines[2:]])
    consumer = {
        "username": "u",
        "jwt_secrets": [
            {"key": "a", "algorithm": "RS256", "rsa_public_key": pem},
            {"key": "b", "algorithm": "RS256", "rsa_public_key": broken},
        ],
    }
    assert errors({"consumers": [consumer]}) == [
        "consumers[0].jwt_secrets[1].rsa_public_key: invalid key",
        "consumers[0].jwt_secrets[1]: failed conditional validation given value of field "
        "'algorithm'",
    ]
