"""JWS compact tokens as Kong's jwt plugin reads them (``kong:kong/plugins/jwt/jwt_parser.lua``).

:func:`decode` splits and decodes a token and returns Kong's error strings (``invalid JSON``,
``invalid alg``, ``invalid claims``, ``invalid signature``); the algorithm must be one Kong
verifies, so ``none`` is refused before any key is looked up. :func:`verify_signature` checks
HS256/384/512 (HMAC, constant-time), RS256/384/512 (PKCS#1 v1.5), PS256/384/512 (PSS),
ES256/384/512 (raw ``r || s``) and EdDSA (Ed25519, Ed448) with the ``cryptography`` package.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from fastkong.plugins.bundled._consumer import decode_base64

_HMAC: Final = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
#: ``r || s`` sizes (RFC 7518 3.4); Kong rejects other lengths.
_EC_SIZES: Final = {"ES256": 64, "ES384": 96, "ES512": 132}
ALGORITHMS: Final = frozenset(
    ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
    + ("PS256", "PS384", "PS512", "EdDSA")
)


class Token:
    """A decoded token: header and claims (JSON objects), signature and signed bytes."""

    __slots__ = ("header", "claims", "signature", "signing_input")

    def __init__(
        self, header: dict[str, Any], claims: dict[str, Any], signature: bytes, signing_input: bytes
    ) -> None:
        self.header = header
        self.claims = claims
        self.signature = signature
        self.signing_input = signing_input

    def __repr__(self) -> str:
        return f"<Token alg={self.header.get('alg')!r} claims={sorted(self.claims)}>"


def _json(part: str) -> Any:
    raw = decode_base64(part, "url")
    if raw is None:
        raise ValueError("not base64url")
    return msgspec.json.decode(raw)


def decode(token: str) -> Token | str:
    """The parsed token, or Kong's reason (``Bad token; <reason>``) why it cannot be."""
    parts = token.split(".", 2)
    if len(parts) < 3:
        return "invalid JSON"
    header_64, claims_64, signature_64 = parts
    try:
        header = _json(header_64)
        claims = _json(claims_64)
    except (ValueError, msgspec.DecodeError):
        return "invalid JSON"
    alg = header.get("alg") if isinstance(header, dict) else None
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        return "invalid alg"
    if isinstance(claims, (list, str)):
        claims = {}  # Lua indexes these as empty tables
    elif not isinstance(claims, dict):
        return "invalid claims"
    signature = decode_base64(signature_64, "url")
    if signature is None:
        return "invalid signature"
    signing_input = f"{header_64}.{claims_64}".encode("latin-1")
    return Token(header, claims, signature, signing_input)


def load_public_key(pem: str) -> PublicKeyTypes | None:
    try:
        return load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def verify_signature(token: Token, key: bytes | PublicKeyTypes) -> bool:
    """True when ``token``'s signature verifies with ``key`` (a secret for HS*, else a public
    key); a key of the wrong type for the algorithm does not verify."""
    alg: str = token.header["alg"]
    data = token.signing_input
    signature = token.signature
    digest = _HMAC.get(alg)
    if digest is not None:
        if not isinstance(key, bytes):
            return False
        return hmac.compare_digest(hmac.new(key, data, digest).digest(), signature)
    try:
        if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), _HASHES[alg[2:]]())
            return True
        if alg.startswith("PS") and isinstance(key, rsa.RSAPublicKey):
            algorithm = _HASHES[alg[2:]]()
            pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.AUTO)
            key.verify(signature, data, pss, algorithm)
            return True
        if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != _EC_SIZES[alg]:
                return False
            half = len(signature) // 2
            r = int.from_bytes(signature[:half], "big")
            s = int.from_bytes(signature[half:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_HASHES[alg[2:]]()))
            return True
        if alg == "EdDSA" and isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def verify_registered_claims(
    claims: dict[str, Any], names: tuple[str, ...], now: int
) -> dict[str, str]:
    """Kong's ``verify_registered_claims``: claim -> error, empty when all hold."""
    errors: dict[str, str] = {}
    for name in names:
        value: Any = claims.get(name)
        if not _is_number(value):
            errors[name] = "must be a number"
        elif name == "nbf" and value > now:
            errors[name] = "token not valid yet"
        elif name == "exp" and value <= now:
            errors[name] = "token expired"
    return errors


def check_maximum_expiration(claims: dict[str, Any], maximum: float, now: int) -> dict[str, str]:
    exp: Any = claims.get("exp")
    if maximum > 0 and (not _is_number(exp) or exp - now > maximum):
        return {"exp": "exceeds maximum allowed expiration"}
    return {}
