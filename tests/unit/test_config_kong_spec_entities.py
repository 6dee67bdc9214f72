"""Kong's SNI and consumer schema specs, ported: ``spec/01-unit/01-db/01-schema/11-snis_spec.lua``
and ``14-consumers_spec.lua``.

Each SNI is a top-level ``snis[]`` entry referring to a declared certificate (Kong's spec gives
``certificate = { id = uuid }``); each consumer a top-level ``consumers[]`` entry.

Left out: nothing; both specs are ported whole (the SNI spec's
``process_auto_fields(b, "insert")`` fills only the id and timestamps, as the loader does).
"""

from __future__ import annotations

import datetime
import functools
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fastkong.config import load_config
from tests.kong_schema_spec import VALID_NAMES
from tests.kong_schema_spec import config_errors as errors

CERT_ID = "5e3d8b2f-1c4a-4f6e-9b7d-2a1c3e5f7a9b"


@functools.cache
def certificate() -> dict[str, str]:
    """A self-signed EC certificate and its key (any valid pair: the spec only needs an id)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return {
        "id": CERT_ID,
        "cert": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }


def sni_text(name: str) -> str:
    return json.dumps(
        {
            "_format_version": "3.0",
            "certificates": [certificate()],
            "snis": [{"name": name, "certificate": CERT_ID}],
        }
    )


# -- snis: name (kong/db/schema/typedefs.lua `validate_wildcard_host`) ----------------------
@pytest.mark.parametrize(
    "name",
    [
        # "accepts a hostname"
        "valid.name",
        "foo.valid.name",
        "bar.foo.valid.name",
        # "accepts a * for default certificate"
        "*",
        # "accepts wildcards"
        "*.wildcard.com",
        "wildcard.*",
        "test.wildcard.*",
        "foo.test.wildcard.*",
        "*.test.wildcard.com",
    ],
)
def test_sni_name_accepted(name: str) -> None:
    sni = load_config(sni_text(name)).config.snis[0]
    assert (sni.name, sni.certificate) == (name, CERT_ID)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        # "rejects wrong wildcard placements"
        ("foo.*.com", "wildcard must be leftmost or rightmost character"),
        ("foo.*.wildcard.com", "wildcard must be leftmost or rightmost character"),
        # "rejects multiple wildcards"
        ("*.example.*", "only one wildcard must be specified"),
        ("*.foo.*.wildcard.com", "only one wildcard must be specified"),
        ("*.*.wildcard.*", "only one wildcard must be specified"),
        # "rejects wildcard with port" (the spec takes any of these three messages; each is
        # the one Kong's validate_wildcard_host gives for that name)
        ("*.wildcard.com:8000", "must not have a port"),
        ("wildcard.*:80", "wildcard must be leftmost or rightmost character"),
        ("test.wildcard.*:80", "wildcard must be leftmost or rightmost character"),
        ("test.wildcard.com:*", "invalid value: test.wildcard.com:wildcard"),
        # "rejects a hostname with a port"
        ("valid.name:8000", "must not have a port"),
        ("foo.valid.name:443", "must not have a port"),
        # "rejects a hostname with an IP"
        ("127.0.0.1", "must not be an IP"),
        ("10.0.0.1", "must not be an IP"),
        ("10.0.0.1:8001", "must not be an IP"),
        ("::1", "must not be an IP"),
        # "rejects non-hostname values"
        ("example^com", "invalid value: example^com"),
    ],
)
def test_sni_name_refused(name: str, message: str) -> None:
    assert errors(sni_text(name)) == [f"snis[0].name: {message}"]


# -- consumers: username ---------------------------------------------------------------------
@pytest.mark.parametrize("username", VALID_NAMES)
def test_consumer_username_accepts_valid_names(username: str) -> None:
    text = json.dumps({"_format_version": "3.0", "consumers": [{"username": username}]})
    assert load_config(text).config.consumers[0].username == username
