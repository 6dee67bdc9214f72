"""Kong's ``keys`` and ``key_sets`` entities: the fields, nesting and ids, Kong's checks of the
key material (errors with their paths), and the private key a plugin takes from one."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.config import ConfigError, load_config
from fastkong.config.keys import find_key, load_jwk, private_key_pem

#: RFC 7517 appendix A.2's EC private key.
EC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
    "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
    "d": "870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE",
    "kid": "1",
}


def _b64(number: int) -> str:
    raw = number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str, primes: bool = True) -> dict[str, str]:
    n = key.private_numbers()
    out = {"kty": "RSA", "kid": kid, "n": _b64(n.public_numbers.n), "e": _b64(n.public_numbers.e)}
    out["d"] = _b64(n.d)
    if primes:
        out |= {"p": _b64(n.p), "q": _b64(n.q), "dp": _b64(n.dmp1), "dq": _b64(n.dmq1)}
        out["qi"] = _b64(n.iqmp)
    return out


def pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load(doc: dict[str, Any]) -> Any:
    return load_config(json.dumps({"_format_version": "3.0", **doc})).config


def errors(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(doc)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


RSA = rsa.generate_private_key(65537, 2048)


def test_nested_and_top_level_keys_with_deterministic_ids() -> None:
    doc = {
        "key_sets": [
            {"name": "jwks", "keys": [{"name": "ec", "kid": "1", "jwk": json.dumps(EC_JWK)}]}
        ],
        "keys": [
            {"name": "rsa", "kid": "r", "set": "jwks", "pem": {"private_key": pem(RSA)}},
            {"name": "loose", "kid": "p", "pem": {"public_key": public_pem(RSA)}},
        ],
    }
    config = load(doc)
    (key_set,) = config.key_sets
    assert [k.name for k in config.keys] == ["ec", "rsa", "loose"]
    assert [k.set for k in config.keys] == [key_set.id, key_set.id, None]
    assert load(doc).keys == config.keys  # the same document, the same ids
    assert len({k.id for k in config.keys}) == 3


def test_kong_s_checks_name_their_paths() -> None:
    other = rsa.generate_private_key(65537, 2048)
    found = errors(
        {
            "keys": [
                {"kid": "a", "jwk": json.dumps(EC_JWK | {"kid": "a"}), "pem": {"private_key": "x"}},
                {"kid": "b"},
                {"kid": "c", "jwk": json.dumps(EC_JWK)},
                {"kid": "d", "jwk": "{not json"},
                {"kid": "e", "jwk": json.dumps(EC_JWK | {"kid": "e", "x": "AA"})},
                {"kid": "f", "pem": {}},
                {"kid": "g", "pem": {"public_key": "nope"}},
                {"kid": "h", "pem": {"private_key": "nope"}},
                {"kid": "i", "pem": {"private_key": pem(RSA), "public_key": public_pem(other)}},
                {"name": "no-kid", "jwk": json.dumps(EC_JWK)},
            ]
        }
    )
    assert found == [
        "keys[0]: only one or none of these fields must be set: 'jwk', 'pem'",
        "keys[1]: at least one of these fields must be non-empty: 'jwk', 'pem'",
        "keys[2]: kid in jwk.kid must be equal to keys.kid",
        "keys[3]: could not json decode jwk string",
        "keys[4]: could not load JWK, likely not a valid key",
        "keys[5].pem: at least one of these fields must be non-empty: 'private_key', 'public_key'",
        "keys[6].pem: could not load public key",
        "keys[7].pem: could not load private key",
        "keys[8].pem: public key does not match private key",
        "keys[9].kid: required field missing",
    ]


def test_a_key_set_reference_must_exist_and_names_are_unique() -> None:
    found = errors(
        {
            "keys": [
                {"name": "k", "kid": "1", "set": "nowhere", "jwk": json.dumps(EC_JWK)},
                {"name": "k", "kid": "2", "jwk": json.dumps(EC_JWK | {"kid": "2"})},
            ]
        }
    )
    assert any(e.startswith("keys[0].set: invalid reference") for e in found), found
    assert any("uniqueness violation" in e for e in found), found


def test_private_key_pem_from_jwk_and_pem() -> None:
    ec_key = load_jwk(EC_JWK)
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey)
    config = load(
        {
            "key_sets": [{"name": "acme"}],
            "keys": [
                {"kid": "1", "set": "acme", "jwk": json.dumps(EC_JWK)},
                {"kid": "1", "pem": {"private_key": pem(RSA)}},
                {"kid": "pub", "pem": {"public_key": public_pem(RSA)}},
            ],
        }
    )
    from_jwk = private_key_pem(find_key(config, "1", "acme"))
    assert from_jwk == pem(ec_key)
    assert private_key_pem(find_key(config, "1")) == pem(RSA)  # outside any set
    with pytest.raises(ValueError, match="no private key"):
        private_key_pem(find_key(config, "pub"))
    with pytest.raises(LookupError, match="no key set 'other'"):
        find_key(config, "1", "other")
    with pytest.raises(LookupError, match="no key with kid 'x'"):
        find_key(config, "x")


def test_rsa_jwk_with_and_without_its_primes() -> None:
    for primes in (True, False):
        loaded = load_jwk(rsa_jwk(RSA, "r", primes))
        assert loaded.private_numbers() == RSA.private_numbers()
    public = load_jwk({k: v for k, v in rsa_jwk(RSA, "r").items() if k in ("kty", "n", "e")})
    assert public.public_numbers() == RSA.public_key().public_numbers()


def test_okp_jwk() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    d = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    loaded = load_jwk({"kty": "OKP", "crv": "Ed25519", "d": d, "x": "unused"})
    assert pem(loaded) == pem(key)
    with pytest.raises(ValueError):
        load_jwk({"kty": "OKP", "crv": "X25519", "d": d})
    with pytest.raises(ValueError):
        load_jwk({"kty": "oct", "k": "AAAA"})


@settings(max_examples=15, deadline=None)
@given(curve=st.sampled_from([ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()]))
def test_ec_jwk_round_trip(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    numbers = key.private_numbers()
    size = (curve.key_size + 7) // 8
    name = {256: "P-256", 384: "P-384", 521: "P-521"}[curve.key_size]

    def fixed(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(size, "big")).decode().rstrip("=")

    jwk = {
        "kty": "EC",
        "crv": name,
        "x": fixed(numbers.public_numbers.x),
        "y": fixed(numbers.public_numbers.y),
        "d": fixed(numbers.private_value),
    }
    assert load_jwk(jwk).private_numbers() == numbers
