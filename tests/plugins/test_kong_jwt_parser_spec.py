"""Kong's ``spec/03-plugins/16-jwt/01-jwt_parser_spec.lua`` (lines 5-328, every ``it``), against
fastkong's parser (``fastkong/plugins/bundled/_jwt_parser.py``) directly, with Kong's fixture keys
(``kong_jwt_fixtures``).

Mapping: ``jwt_parser:new(token)`` is :func:`decode` (a ``Token``, or Kong's error string);
``jwt:verify_signature(key)`` is :func:`verify_signature` with the secret's bytes (HS*) or the
PEM public key loaded by :func:`load_public_key`, as the plugin passes them;
``jwt:verify_registered_claims(names)`` is :func:`verify_registered_claims` (``ok`` is an empty
error table). fastkong's parser has no encoder (the gateway only reads tokens): the "Encoding"
cases (7-167) sign with ``kong_jwt_fixtures.encode``, the twin of Kong's test-only
``jwt_parser.encode``, and check that fastkong decodes and verifies the result.

Nothing left out. 171-175 "throws an error if not given a string": Kong's message ("Token must
be a string, got nil") is Lua's; the port checks that a non-string raises.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from fastkong.plugins.bundled._jwt_parser import (
    Token,
    decode,
    load_public_key,
    verify_registered_claims,
    verify_signature,
)
from tests.plugins import kong_jwt_fixtures as fx
from tests.plugins.kong_jwt_fixtures import encode

JOHN = {"sub": "1234567890", "name": "John Doe", "admin": True}
JANE = {"sub": "5656565656", "name": "Jane Doe", "admin": True}


def new(token: str) -> Token:
    """``assert(jwt_parser:new(token))``."""
    jwt = decode(token)
    assert isinstance(jwt, Token), jwt
    return jwt


def key(material: str) -> Any:
    """What ``verify_signature`` gets: a PEM public key loaded, a secret as bytes."""
    if material.startswith("-----BEGIN"):
        loaded = load_public_key(material)
        assert loaded is not None
        return loaded
    return material.encode()


# -- Encoding (7-167): signed by the test's encoder, read and verified by fastkong ---------------
ENCODING = [
    # (spec line, claims, private key or secret, alg, public key or secret)
    (7, JOHN, "secret", "HS256", "secret"),
    (18, JOHN, "secret", "HS384", "secret"),
    (29, JOHN, "secret", "HS512", "secret"),
    (40, JOHN, fx.RS256_PRIVATE_KEY, "RS256", fx.RS256_PUBLIC_KEY),
    (51, JOHN, fx.RS384_PRIVATE_KEY, "RS384", fx.RS384_PUBLIC_KEY),
    (62, JOHN, fx.RS512_PRIVATE_KEY, "RS512", fx.RS512_PUBLIC_KEY),
    (74, JANE, fx.ES256_PRIVATE_KEY, "ES256", fx.ES256_PUBLIC_KEY),
    (86, JANE, fx.ES384_PRIVATE_KEY, "ES384", fx.ES384_PUBLIC_KEY),
    (98, JANE, fx.ES512_PRIVATE_KEY, "ES512", fx.ES512_PUBLIC_KEY),
    (109, JANE, fx.PS256_PRIVATE_KEY, "PS256", fx.PS256_PUBLIC_KEY),
    (121, JANE, fx.PS384_PRIVATE_KEY, "PS384", fx.PS384_PUBLIC_KEY),
    (133, JANE, fx.PS512_PRIVATE_KEY, "PS512", fx.PS512_PUBLIC_KEY),
    (145, JANE, fx.ED25519_PRIVATE_KEY, "EdDSA", fx.ED25519_PUBLIC_KEY),
    (157, JANE, fx.ED448_PRIVATE_KEY, "EdDSA", fx.ED448_PUBLIC_KEY),
]


@pytest.mark.parametrize(
    ("line", "claims", "signing_key", "alg", "verifying_key"),
    ENCODING,
    ids=[f"{row[0]}-{row[3]}" for row in ENCODING],
)
def test_encoding(
    line: int, claims: dict[str, Any], signing_key: str, alg: str, verifying_key: str
) -> None:
    token = encode(claims, signing_key, alg)
    assert token
    jwt = new(token)
    assert jwt.header == {"typ": "JWT", "alg": alg}
    assert jwt.claims == claims
    assert verify_signature(jwt, key(verifying_key)) is True


# -- Decoding (170-202) ---------------------------------------------------------------------------
def test_decoding_refuses_a_non_string() -> None:
    """171-175: Kong raises "Token must be a string, got nil"."""
    with pytest.raises((TypeError, AttributeError)):
        decode(None)  # type: ignore[arg-type]


def test_decoding_refuses_invalid_alg() -> None:
    """176-183."""
    token = encode({"sub": "1234"}, "secret", header={"typ": "JWT", "alg": "foo"})
    assert decode(token) == "invalid alg"


@pytest.mark.parametrize(
    ("line", "header"),
    [
        (184, {"typ": "JWT", "alg": "RS256"}),
        (191, {"typ": "jwt", "alg": "RS256"}),  # lowercase typ
        (198, {"alg": "RS256"}),  # no typ
    ],
)
def test_decoding_accepts_a_valid_encoding(line: int, header: dict[str, str]) -> None:
    """An RS256 header over an HS256 signature decodes: only verifying would fail."""
    jwt = new(encode({"sub": "1234"}, "secret", header=header))
    assert jwt.header == header
    assert jwt.claims == {"sub": "1234"}


# -- verify signature (203-288) -------------------------------------------------------------------
SIGNATURES = [
    # (spec line, signing key, alg, the right key, a wrong key, repetitions)
    (204, "secret", "HS256", "secret", "invalid", 1),
    (210, "secret", "HS384", "secret", "invalid", 1),
    (216, "secret", "HS512", "secret", "invalid", 1),
    (222, fx.RS256_PRIVATE_KEY, "RS256", fx.RS256_PUBLIC_KEY, fx.RS384_PUBLIC_KEY, 1),
    (228, fx.RS384_PRIVATE_KEY, "RS384", fx.RS384_PUBLIC_KEY, fx.RS512_PUBLIC_KEY, 1),
    (234, fx.RS512_PRIVATE_KEY, "RS512", fx.RS512_PUBLIC_KEY, fx.RS256_PUBLIC_KEY, 1),
    # Kong signs 500 times: an r or s with leading zero bytes must still be padded to size.
    (240, fx.ES256_PRIVATE_KEY, "ES256", fx.ES256_PUBLIC_KEY, fx.RS256_PUBLIC_KEY, 500),
    (248, fx.ES384_PRIVATE_KEY, "ES384", fx.ES384_PUBLIC_KEY, fx.RS256_PUBLIC_KEY, 500),
    (256, fx.ES512_PRIVATE_KEY, "ES512", fx.ES512_PUBLIC_KEY, fx.RS256_PUBLIC_KEY, 500),
    (264, fx.PS256_PRIVATE_KEY, "PS256", fx.PS256_PUBLIC_KEY, fx.ES256_PUBLIC_KEY, 500),
    (272, fx.PS384_PRIVATE_KEY, "PS384", fx.PS384_PUBLIC_KEY, fx.ES256_PUBLIC_KEY, 500),
    (280, fx.PS512_PRIVATE_KEY, "PS512", fx.PS512_PUBLIC_KEY, fx.ES256_PUBLIC_KEY, 500),
]


@pytest.mark.parametrize(
    ("line", "signing_key", "alg", "right", "wrong", "times"),
    SIGNATURES,
    ids=[f"{row[0]}-{row[2]}" for row in SIGNATURES],
)
def test_verify_signature(
    line: int, signing_key: str, alg: str, right: str, wrong: str, times: int
) -> None:
    right_key, wrong_key = key(right), key(wrong)
    for _ in range(times):
        jwt = new(encode({"sub": "foo"}, signing_key, alg))
        assert verify_signature(jwt, right_key) is True
        assert verify_signature(jwt, wrong_key) is False


# -- verify registered claims (289-327) -----------------------------------------------------------
def claims_errors(claims: dict[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    jwt = new(encode(claims, "secret"))
    return verify_registered_claims(jwt.claims, names, int(time.time()))


def test_registered_claims_are_required() -> None:
    """290-301."""
    both = {"exp": "must be a number", "nbf": "must be a number"}
    assert claims_errors({"sub": "foo"}, ("exp", "nbf")) == both
    assert claims_errors({"sub": "foo"}, ("nbf",)) == {"nbf": "must be a number"}


def test_registered_claims_types() -> None:
    """302-309."""
    assert claims_errors({"exp": "bar", "nbf": "foo"}, ("exp", "nbf")) == {
        "exp": "must be a number",
        "nbf": "must be a number",
    }


def test_exp_claim() -> None:
    """310-318."""
    assert claims_errors({"exp": int(time.time()) - 10}, ("exp",)) == {"exp": "token expired"}


def test_nbf_claim() -> None:
    """319-326."""
    errors = claims_errors({"nbf": int(time.time()) + 10}, ("nbf",))
    assert errors == {"nbf": "token not valid yet"}
