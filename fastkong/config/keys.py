"""The ``keys`` entity's material: Kong's checks of a JWK or PEM key, and the private key a
plugin asks for (Kong's ``kong.db.keys:get_privkey``), as PEM.

A JWK is read as RFC 7517/7518 say (``kty`` ``RSA``, ``EC`` on P-256/P-384/P-521, ``OKP``
Ed25519/Ed448), with ``cryptography``; Kong reads it with OpenSSL (lua-resty-openssl's JWK
format), which takes the same keys.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from fastkong.config import vault

_CURVES: Final = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
JWK_INVALID: Final = "could not load JWK, likely not a valid key"


def _int(jwk: dict[str, Any], name: str) -> int:
    return int.from_bytes(_bytes(jwk, name), "big")


def _bytes(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f"JWK member {name} missing")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def load_jwk(jwk: dict[str, Any]) -> Any:
    """The key a JWK holds: a private key when it has ``d``, else a public key. ValueError
    when it holds none."""
    kty = jwk.get("kty")
    private = "d" in jwk
    if kty == "RSA":
        public = rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n"))
        if not private:
            return public.public_key()
        d = _int(jwk, "d")
        if all(m in jwk for m in ("p", "q")):
            p, q = _int(jwk, "p"), _int(jwk, "q")
        else:
            p, q = rsa.rsa_recover_prime_factors(public.n, public.e, d)
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
        )
        return numbers.private_key()
    if kty == "EC":
        curve = _CURVES.get(str(jwk.get("crv")))
        if curve is None:
            raise ValueError("unsupported curve")
        point = ec.EllipticCurvePublicNumbers(_int(jwk, "x"), _int(jwk, "y"), curve)
        if not private:
            return point.public_key()
        return ec.EllipticCurvePrivateNumbers(_int(jwk, "d"), point).private_key()
    if kty == "OKP":
        kinds: dict[str, Any] = {"Ed25519": ed25519, "Ed448": ed448}
        module = kinds.get(str(jwk.get("crv")))
        if module is None:
            raise ValueError("unsupported curve")
        cls = module.Ed25519PrivateKey if module is ed25519 else module.Ed448PrivateKey
        pub = module.Ed25519PublicKey if module is ed25519 else module.Ed448PublicKey
        if private:
            return cls.from_private_bytes(_bytes(jwk, "d"))
        return pub.from_public_bytes(_bytes(jwk, "x"))
    raise ValueError(f"unsupported kty {kty!r}")


def jwk_problem(text: str, kid: str | None) -> str | None:
    """Kong's checks of a key's ``jwk`` (its custom entity check), None when it passes."""
    try:
        jwk = json.loads(text)
    except ValueError:
        return "could not json decode jwk string"
    if not isinstance(jwk, dict):
        return "could not json decode jwk string"
    if jwk.get("kid") != kid:
        return "kid in jwk.kid must be equal to keys.kid"
    try:
        load_jwk(jwk)
    except (ValueError, TypeError, ArithmeticError):
        return JWK_INVALID
    return None


def pem_problem(private_key: str | None, public_key: str | None) -> str | None:
    """Kong's ``validate_pem_keys``, None when the pair passes."""
    public = private = None
    if public_key is not None:
        try:
            public = serialization.load_pem_public_key(public_key.encode())
        except (ValueError, TypeError):
            return "could not load public key"
    if private_key is not None:
        try:
            private = serialization.load_pem_private_key(private_key.encode(), None)
        except (ValueError, TypeError):
            return "could not load private key"
    if private is not None and public is not None:
        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        mine = private.public_key().public_bytes(serialization.Encoding.PEM, fmt)
        if mine != public.public_bytes(serialization.Encoding.PEM, fmt):
            return "public key does not match private key"
    return None


def find_key(config: Any, kid: str, key_set: str | None = None) -> Any:
    """The config's key with ``kid``, in the key set named (or with the id) ``key_set``, or
    outside any set when none is named (Kong's lookup by the ``(kid, set)`` cache key)."""
    set_id = None
    if key_set is not None:
        found = [s for s in config.key_sets if key_set in (s.name, s.id)]
        if not found:
            raise LookupError(f"could not load keyset: no key set {key_set!r}")
        set_id = found[0].id
    for key in config.keys:
        if key.kid == kid and key.set == set_id:
            return key
    where = f" in key set {key_set!r}" if key_set is not None else ""
    raise LookupError(f"could not load keys: no key with kid {kid!r}{where}")


def private_key_pem(key: Any) -> str:
    """Kong's ``get_privkey``: the key's private half as PKCS#8 PEM (from its JWK or PEM,
    vault references resolved). ValueError when it has none."""
    if key.jwk is not None:
        text = vault.resolve(key.jwk) if vault.is_reference(key.jwk) else key.jwk
        loaded = load_jwk(json.loads(text))
    elif key.pem is not None and key.pem.private_key is not None:
        text = key.pem.private_key
        text = vault.resolve(text) if vault.is_reference(text) else text
        loaded = serialization.load_pem_private_key(text.encode(), None)
    else:
        raise ValueError(f"key {key.kid!r} has no private key")
    if not hasattr(loaded, "private_bytes"):
        raise ValueError(f"key {key.kid!r} has no private key")
    pem: bytes = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


__all__ = ["find_key", "jwk_problem", "load_jwk", "pem_problem", "private_key_pem"]
