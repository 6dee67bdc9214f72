"""The ACME client's pieces without a CA: JWK thumbprints, JWS signatures, key authorizations,
CSRs, keys, errors, ``Link`` and ``Retry-After`` parsing; and polling against a scripted CA.
The whole exchange with a real CA is ``tests/integration/test_acme_pebble.py``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from fastkong.acme import protocol
from fastkong.acme.protocol import (
    AcmeClient,
    AcmeError,
    csr_der,
    jwk_thumbprint,
    key_authorization,
    new_private_key,
    public_jwk,
)
from fastkong.plugins.bundled import _aws_http

# RFC 7638 section 3.1: an RSA public key and its thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qvzq"
    "Y368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_the_rfc7638_example_thumbprint() -> None:
    n = int.from_bytes(unb64(RFC7638_N), "big")
    key = rsa.RSAPublicNumbers(65537, n).public_key()
    jwk = public_jwk(key)
    assert jwk == {"e": "AQAB", "kty": "RSA", "n": RFC7638_N}
    assert jwk_thumbprint(jwk) == RFC7638_THUMBPRINT


def test_ec_coordinates_keep_their_leading_zeros() -> None:
    # RFC 7518 section 6.2.1.2: x and y are the full coordinate length, so a point whose x
    # is below 2**248 still encodes 32 bytes (a minimal encoding would change the thumbprint).
    secret = next(
        i
        for i in range(1, 100_000)
        if ec.derive_private_key(i, ec.SECP256R1()).public_key().public_numbers().x < 2**248
    )
    key = ec.derive_private_key(secret, ec.SECP256R1()).public_key()
    jwk = public_jwk(key)
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert len(unb64(jwk["x"])) == 32 and unb64(jwk["x"])[0] == 0
    assert len(unb64(jwk["y"])) == 32
    p384 = public_jwk(ec.generate_private_key(ec.SECP384R1()).public_key())
    assert p384["crv"] == "P-384" and len(unb64(p384["x"])) == 48


def signed(account_pem: str, payload: dict[str, Any] | None) -> tuple[dict[str, Any], bytes]:
    """A JWS from the client's signer: its decoded protected header and signature."""
    signer = protocol._Signer(account_pem)
    jws = signer.jws({"alg": signer.alg, "nonce": "n0", "url": "https://ca/x"}, payload)
    assert set(jws) == {"protected", "payload", "signature"}
    return json.loads(unb64(jws["protected"])), unb64(jws["signature"])


def signing_input(account_pem: str, payload: dict[str, Any] | None) -> tuple[bytes, bytes]:
    signer = protocol._Signer(account_pem)
    jws = signer.jws({"alg": signer.alg}, payload)
    return f"{jws['protected']}.{jws['payload']}".encode(), unb64(jws["signature"])


@pytest.mark.parametrize(
    ("curve", "alg", "size", "digest"),
    [
        (ec.SECP256R1(), "ES256", 32, hashes.SHA256()),
        (ec.SECP384R1(), "ES384", 48, hashes.SHA384()),
    ],
)
def test_ecdsa_signatures_are_r_and_s_not_der(
    curve: ec.EllipticCurve, alg: str, size: int, digest: hashes.HashAlgorithm
) -> None:
    key = ec.generate_private_key(curve)
    header, _ = signed(pem(key), {"a": 1})
    assert header["alg"] == alg
    for _ in range(8):  # a DER signature's length varies; r || s never does
        data, signature = signing_input(pem(key), {"a": 1})
        assert len(signature) == 2 * size
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        key.public_key().verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))


def test_rs256_signatures_verify() -> None:
    key = rsa.generate_private_key(65537, 2048)
    header, _ = signed(pem(key), None)
    assert header == {"alg": "RS256", "nonce": "n0", "url": "https://ca/x"}
    data, signature = signing_input(pem(key), None)
    assert data.endswith(b".")  # POST-as-GET: the payload is empty
    key.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, data + b"x", padding.PKCS1v15(), hashes.SHA256())


def test_other_account_keys_are_refused() -> None:
    with pytest.raises(AcmeError, match="unsupported account key type Ed25519"):
        AcmeClient("https://ca/dir", pem(ed25519.Ed25519PrivateKey.generate()))
    with pytest.raises(AcmeError, match="curve secp521r1"):
        AcmeClient("https://ca/dir", pem(ec.generate_private_key(ec.SECP521R1())))


def test_key_authorization_is_token_dot_thumbprint() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    value = key_authorization("tok-EN_1", pem(key))
    token, _, thumbprint = value.partition(".")
    assert token == "tok-EN_1"
    jwk = public_jwk(key.public_key())
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest())
    assert thumbprint == expected.rstrip(b"=").decode()
    assert len(thumbprint) == 43 and "=" not in thumbprint


def csr(domain: str, key_pem: str) -> x509.CertificateSigningRequest:
    request = x509.load_der_x509_csr(csr_der(domain, key_pem))
    assert request.is_signature_valid
    return request


def names(request: x509.CertificateSigningRequest) -> tuple[list[str], list[x509.GeneralName]]:
    cn = [str(a.value) for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return cn, list(san)


def test_a_csr_names_the_domain() -> None:
    key = new_private_key("ecc")
    request = csr("www.example.com", key)
    assert names(request) == (["www.example.com"], [x509.DNSName("www.example.com")])
    public = serialization.load_pem_private_key(key.encode(), None).public_key()
    assert request.public_key() == public


@pytest.mark.parametrize(
    ("domain", "address"), [("192.0.2.7", "192.0.2.7"), ("2001:DB8::1", "2001:db8::1")]
)
def test_a_csr_for_an_address_has_an_ip_san(domain: str, address: str) -> None:
    cn, san = names(csr(domain, new_private_key("ecc")))
    assert cn == [address]
    assert san == [x509.IPAddress(ipaddress.ip_address(address))]


def test_a_long_name_goes_in_the_san_only() -> None:
    domain = "a" * 60 + ".example.com"
    cn, san = names(csr(domain, new_private_key("rsa", 2048)))
    assert cn == []
    assert san == [x509.DNSName(domain)]


def test_new_private_keys() -> None:
    rsa_pem = new_private_key("rsa", 2048)
    ecc_pem = new_private_key("ecc")
    for text in (rsa_pem, ecc_pem):
        assert text.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    rsa_key = serialization.load_pem_private_key(rsa_pem.encode(), None)
    assert isinstance(rsa_key, rsa.RSAPrivateKey) and rsa_key.key_size == 2048
    assert rsa_key.public_key().public_numbers().e == 65537
    ecc_key = serialization.load_pem_private_key(ecc_pem.encode(), None)
    assert isinstance(ecc_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ecc_key.curve, ec.SECP256R1)
    with pytest.raises(ValueError, match="rsa or ecc"):
        new_private_key("dsa")


def test_acme_error_reads_as_one_line() -> None:
    problem = {
        "type": "urn:ietf:params:acme:error:rejectedIdentifier",
        "detail": "no\nthanks",
        "status": 400,
    }
    error = AcmeError("newOrder", problem, 400)
    assert str(error) == "newOrder: 400 urn:ietf:params:acme:error:rejectedIdentifier: no thanks"
    assert error.type == "urn:ietf:params:acme:error:rejectedIdentifier"
    assert (error.problem, error.status) == (problem, 400)
    assert str(AcmeError("directory: timed out")) == "directory: timed out"
    assert AcmeError("x").type is None
    compound = AcmeError(
        "newOrder",
        {
            "type": "urn:ietf:params:acme:error:compound",
            "detail": "two",
            "subproblems": [
                {
                    "type": "urn:ietf:params:acme:error:caa",
                    "detail": "CAA forbids",
                    "identifier": {"type": "dns", "value": "a.example"},
                }
            ],
        },
        403,
    )
    assert str(compound) == (
        "newOrder: 403 urn:ietf:params:acme:error:compound: two; "
        "a.example urn:ietf:params:acme:error:caa: CAA forbids"
    )


def test_alternate_links() -> None:
    response = _aws_http.Response(
        200,
        [
            ("Link", '<https://ca/dir>;rel="index", <https://ca/cert/1/1>; rel="alternate"'),
            ("link", "</cert/1/2>;rel=alternate"),
            ("Link", '<https://ca/cert/1/3>;rel="alternate-not"'),
        ],
        b"",
    )
    assert protocol._alternate_links(response, "https://ca/cert/1") == [
        "https://ca/cert/1/1",
        "https://ca/cert/1/2",
    ]


def test_the_top_issuer_of_a_chain() -> None:
    from tests.pki import Pki

    pki = Pki("Top Root")
    leaf, _ = pki.issue("leaf.example", dns="leaf.example")
    assert protocol._chain_top_issuer(leaf) == "Top Root"
    assert protocol._chain_top_issuer(leaf + pki.pem) == "Top Root"  # self-signed at the top
    assert protocol._chain_top_issuer("<html>not a chain</html>") is None


def test_retry_after() -> None:
    def after(value: str | None) -> float | None:
        headers = [] if value is None else [("Retry-After", value)]
        return protocol._retry_after(_aws_http.Response(200, headers, b""))

    assert after(None) is None
    assert after("3") == 3.0
    assert after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
    assert after("Fri, 31 Dec 9999 23:59:59 GMT") > 1e9  # type: ignore[operator]
    assert after("soon") is None


def test_external_account_binding_is_an_hs256_jws_of_the_account_key() -> None:
    mac_key = bytes(range(48))
    eab_key = base64.urlsafe_b64encode(mac_key).rstrip(b"=").decode()
    account = pem(ec.generate_private_key(ec.SECP256R1()))
    client = AcmeClient("https://ca/dir", account, eab_kid="kid-1", eab_hmac_key=eab_key)
    binding = client._eab("https://ca/new-account")
    assert json.loads(unb64(binding["protected"])) == {
        "alg": "HS256",
        "kid": "kid-1",
        "url": "https://ca/new-account",
    }
    assert json.loads(unb64(binding["payload"])) == protocol._Signer(account).jwk
    expected = hmac.new(
        mac_key, f"{binding['protected']}.{binding['payload']}".encode(), hashlib.sha256
    ).digest()
    assert unb64(binding["signature"]) == expected


class ScriptedCa:
    """Answers the client's exchanges like a CA whose authorization stays pending."""

    def __init__(self, retry_after: str | None = None) -> None:
        self.retry_after = retry_after
        self.seen: list[tuple[str, str]] = []
        self.nonces = 0

    async def __call__(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        **_: Any,
    ) -> _aws_http.Response:
        self.seen.append((method, target))
        self.nonces += 1
        head = [("Replay-Nonce", f"nonce-{self.nonces}")]
        base = "https://ca.test"
        if target == "/dir":
            names = ("newNonce", "newAccount", "newOrder")
            return self.json({name: f"{base}/{name}" for name in names}, [])
        if target == "/newNonce":
            return _aws_http.Response(200, head, b"")
        if target == "/newAccount":
            return self.json({"status": "valid"}, [*head, ("Location", f"{base}/acct/1")], 201)
        if target == "/newOrder":
            order = {"status": "pending", "authorizations": ["/authz/1"], "finalize": "/fin"}
            return self.json(order, [*head, ("Location", f"{base}/order/1")], 201)
        if target == "/authz/1":
            authz = {
                "status": "pending",
                "identifier": {"type": "dns", "value": "a.test"},
                "challenges": [{"type": "http-01", "url": "/chall/1", "token": "tok"}],
            }
            if self.retry_after is not None:
                head.append(("Retry-After", self.retry_after))
            return self.json(authz, head)
        if target == "/chall/1":
            return self.json({"type": "http-01", "status": "processing"}, head)
        raise AssertionError(target)

    @staticmethod
    def json(
        value: dict[str, Any], headers: list[tuple[str, str]], status: int = 200
    ) -> _aws_http.Response:
        return _aws_http.Response(status, headers, json.dumps(value).encode())


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def publish(self, token: str, key_authorization: str) -> None:
        self.calls.append(("publish", token))

    async def withdraw(self, token: str) -> None:
        self.calls.append(("withdraw", token))


@pytest.mark.parametrize("retry_after", [None, "3600"])
async def test_polling_gives_up_after_poll_timeout(
    monkeypatch: pytest.MonkeyPatch, retry_after: str | None
) -> None:
    ca = ScriptedCa(retry_after)
    monkeypatch.setattr(_aws_http, "request", ca)
    account = pem(ec.generate_private_key(ec.SECP256R1()))
    client = AcmeClient("https://ca.test/dir", account, poll_interval=0.02, poll_timeout=0.3)
    recorder = Recorder()

    with pytest.raises(AcmeError, match=r"^authorization: still pending after 0.3 s$"):
        await client.order_certificate("a.test", new_private_key("ecc"), recorder)

    assert recorder.calls == [("publish", "tok"), ("withdraw", "tok")]
    polls = ca.seen.count(("POST", "/authz/1")) - 1  # the first read is not a poll
    if retry_after is None:
        assert polls > 3  # every poll_interval until the deadline
    else:
        assert polls == 1  # an hour, even capped, is past the deadline: no wait at all
    # One newNonce for the first request; every later one used the previous answer's nonce.
    assert ca.seen.count(("HEAD", "/newNonce")) == 1
    assert ca.seen[0] == ("GET", "/dir") and ca.seen.count(("GET", "/dir")) == 1
