"""jwt through a running gateway (Kong's spec/03-plugins/16-jwt), every algorithm included."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

ANONYMOUS_ID = "a0000000-0000-4000-8000-000000000001"
MISSING_ID = "a0000000-0000-4000-8000-0000000000ff"
HS_SECRET = "examplesecret"
B64_ORIGINAL = b"\xfb\xff\xfe-binary secret"
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "ES512": ec.generate_private_key(ec.SECP521R1()),
}
ED25519 = ed25519.Ed25519PrivateKey.generate()
ED448 = ed448.Ed448PrivateKey.generate()
Private = Any


def pem(key: Private) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(data: bytes, key: Private, alg: str) -> bytes:
    if alg.startswith("HS"):
        digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[alg[2:]]
        return hmac.new(key, data, digest).digest()
    if alg.startswith("RS"):
        return bytes(key.sign(data, padding.PKCS1v15(), HASHES[alg[2:]]()))
    if alg.startswith("PS"):
        algorithm = HASHES[alg[2:]]()
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        return bytes(key.sign(data, pss, algorithm))
    if alg.startswith("ES"):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(HASHES[alg[2:]]())))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return bytes(key.sign(data))


def encode(
    claims: Any, key: Private = HS_SECRET.encode(), alg: str = "HS256", header: Any = None
) -> str:
    head = header if header is not None else {"typ": "JWT", "alg": alg}
    signing = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing}.{b64url(sign(signing.encode(), key, alg))}"


ASYMMETRIC: dict[str, Private] = {
    **{f"{kind}{bits}": RSA_KEY for kind in ("RS", "PS") for bits in ("256", "384", "512")},
    **EC_KEYS,
    "EdDSA-25519": ED25519,
    "EdDSA-448": ED448,
}


def config(echo: Echo) -> str:
    secrets: list[dict[str, Any]] = [
        {"key": "hs", "secret": HS_SECRET},
        {"key": "hs384", "secret": HS_SECRET, "algorithm": "HS384"},
        {"key": "hs512", "secret": HS_SECRET, "algorithm": "HS512"},
        {"key": "b64", "secret": base64.b64encode(B64_ORIGINAL).decode()},
        {"key": "es-no-key", "secret": "x", "algorithm": "ES256"},
    ]
    for name, key in ASYMMETRIC.items():
        alg = name.partition("-")[0]
        secrets.append({"key": name, "algorithm": alg, "rsa_public_key": pem(key)})

    def route(name: str, plugin_config: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "paths": [f"/{name}"],
            "plugins": [{"name": "jwt", "config": plugin_config or {}}],
        }

    doc = {
        "_format_version": "3.0",
        "consumers": [
            {"id": ANONYMOUS_ID, "username": "no-body"},
            {"username": "jwt_tests_consumer", "custom_id": "c1", "jwt_secrets": secrets},
        ],
        "services": [
            {
                "name": "echo",
                "url": f"http://127.0.0.1:{echo.port}",
                "routes": [
                    route("plain"),
                    route("realm", {"realm": "test-jwt", "cookie_names": ["crumble", "silly"]}),
                    route(
                        "custom",
                        {"header_names": ["CustomAuthorization"], "uri_param_names": ["token"]},
                    ),
                    route("claims", {"claims_to_verify": ["exp", "nbf"]}),
                    route("maxexp", {"maximum_expiration": 600, "claims_to_verify": ["exp"]}),
                    route("b64", {"secret_is_base64": True}),
                    route("kid", {"key_claim_name": "kid"}),
                    route("anon", {"anonymous": ANONYMOUS_ID}),
                    route("anon-missing", {"anonymous": MISSING_ID}),
                    route("nopre", {"run_on_preflight": False}),
                ],
            }
        ],
    }
    return json.dumps(doc)


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    return gateway_with(config(echo))


def upstream(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return dict(response.json()["headers"])


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


INVALID = 'Bearer error="invalid_token"'


def assert_401(response: httpx.Response, payload: Any, www: str = INVALID) -> None:
    assert response.status_code == 401, response.text
    if isinstance(payload, str):
        payload = {"message": payload}
    assert response.json() == payload  # kong.response.exit: no request_id
    assert response.headers["www-authenticate"] == www


# -- failures ------------------------------------------------------------------------------------
def test_no_token(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/plain"))
    assert r.text == '{"message":"Unauthorized"}'
    assert_401(r, "Unauthorized", "Bearer")
    assert_401(httpx.get(gateway.url("/realm")), "Unauthorized", 'Bearer realm="test-jwt"')
    assert_401(
        httpx.get(gateway.url("/plain"), headers={"authorization": "Basic x"}),
        "Unauthorized",
        "Bearer",
    )


def test_preflight(gateway: Gateway) -> None:
    assert httpx.options(gateway.url("/nopre")).status_code == 200
    r = httpx.options(gateway.url("/plain"))
    assert r.text == '{"message":"Unauthorized"}'
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"sub": "x"}, "No mandatory 'iss' in claims"),
        ({"iss": ""}, "Invalid 'iss' in claims"),
        ({"iss": "nobody"}, "No credentials found for given 'iss'"),
        ({"iss": 12}, "No credentials found for given 'iss'"),
    ],
)
def test_key_claim_errors(gateway: Gateway, claims: Any, message: str) -> None:
    assert_401(httpx.get(gateway.url("/plain"), headers=bearer(encode(claims))), message)


def test_invalid_signature_and_algorithm(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/plain"), headers=bearer(encode({"iss": "hs"}, b"wrong")))
    assert_401(r, "Invalid signature")
    r = httpx.get(gateway.url("/plain"), headers=bearer(encode({"iss": "hs"}, alg="HS512")))
    assert_401(r, "Invalid algorithm")
    r = httpx.get(
        gateway.url("/plain"),
        headers=bearer(encode({"iss": "es-no-key"}, EC_KEYS["ES256"], "ES256")),
    )
    assert_401(r, "Invalid key/secret")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("no-way-this-works" + encode({"iss": "hs"}), "invalid JSON"),
        ("abc", "invalid JSON"),
        ("abc.def", "invalid JSON"),
        (b64url(b'{"alg":"HS256"}') + ".e30.", None),  # empty signature: 'Invalid signature'
        (b64url(b'{"alg":"none"}') + "." + b64url(b'{"iss":"hs"}') + ".", "invalid alg"),
        (b64url(b'{"typ":"JWT"}') + ".e30.sig", "invalid alg"),
        (b64url(b"[1]") + ".e30.sig", "invalid alg"),
        (b64url(b'{"alg":"HS256"}') + "." + b64url(b"false") + ".sig", "invalid claims"),
        (b64url(b'{"alg":"HS256"}') + "." + b64url(b'{"iss":"hs"}') + ".a.b", "invalid signature"),
        (b64url(b'{"alg":"HS256"}') + "." + b64url(b'{"iss":"hs"}') + ".a", "invalid signature"),
    ],
)
def test_bad_tokens(gateway: Gateway, token: str, reason: str | None) -> None:
    r = httpx.get(gateway.url("/plain"), headers=bearer(token))
    if reason is None:
        assert_401(r, "No mandatory 'iss' in claims")
    else:
        assert_401(r, f"Bad token; {reason}")


def test_multiple_and_unrecognizable_tokens(gateway: Gateway) -> None:
    one, two = encode({"iss": "hs"}), encode({"iss": "hs", "x": 1})
    r = httpx.get(gateway.url(f"/plain?jwt={one}"), headers=bearer(two))
    assert_401(r, "Multiple tokens provided")
    r = httpx.get(gateway.url(f"/plain?jwt={one}&jwt={two}"))
    assert_401(r, "Multiple tokens provided")
    upstream(httpx.get(gateway.url(f"/plain?jwt={one}"), headers=bearer(one)))  # the same token
    assert_401(httpx.get(gateway.url("/plain?jwt")), "Unrecognizable token")


# -- claims --------------------------------------------------------------------------------------
def test_claims_to_verify(gateway: Gateway) -> None:
    now = int(time.time())
    get = lambda claims: httpx.get(gateway.url("/claims"), headers=bearer(encode(claims)))  # noqa: E731
    assert_401(get({"iss": "hs"}), {"exp": "must be a number", "nbf": "must be a number"})
    assert_401(get({"iss": "hs", "exp": "1", "nbf": now}), {"exp": "must be a number"})
    assert_401(get({"iss": "hs", "exp": now - 10, "nbf": now}), {"exp": "token expired"})
    assert_401(get({"iss": "hs", "exp": now + 60, "nbf": now + 60}), {"nbf": "token not valid yet"})
    r = get({"iss": "hs", "exp": now - 1, "nbf": now + 60})
    assert r.text == '{"exp":"token expired","nbf":"token not valid yet"}'
    upstream(get({"iss": "hs", "exp": now + 60, "nbf": now}))


def test_maximum_expiration(gateway: Gateway) -> None:
    now = int(time.time())
    get = lambda claims: httpx.get(gateway.url("/maxexp"), headers=bearer(encode(claims)))  # noqa: E731
    r = get({"iss": "hs", "exp": now + 3600})
    assert r.text == '{"exp":"exceeds maximum allowed expiration"}'
    assert r.headers["www-authenticate"] == INVALID
    upstream(get({"iss": "hs", "exp": now + 300}))


# -- where the token is found --------------------------------------------------------------------
def test_token_in_header_proxies_with_consumer_headers(gateway: Gateway) -> None:
    token = encode({"iss": "hs"})
    spoofed = {**bearer(token), "x-consumer-username": "evil", "x-anonymous-consumer": "true"}
    h = upstream(httpx.get(gateway.url("/plain"), headers=spoofed))
    assert h["authorization"] == f"Bearer {token}"
    assert h["x-consumer-username"] == "jwt_tests_consumer"
    assert h["x-consumer-custom-id"] == "c1"
    assert h["x-credential-identifier"] == "hs"
    assert "x-anonymous-consumer" not in h


def test_token_in_query_cookie_and_custom_places(gateway: Gateway) -> None:
    token = encode({"iss": "hs"})
    upstream(httpx.get(gateway.url(f"/plain?jwt={token}")))
    upstream(httpx.get(gateway.url(f"/custom?token={token}")))
    assert_401(httpx.get(gateway.url(f"/custom?jwt={token}")), "Unauthorized", "Bearer")
    upstream(httpx.get(gateway.url("/custom"), headers={"CustomAuthorization": f"Bearer {token}"}))
    first = [("customauthorization", f"Bearer {token}"), ("customauthorization", "Bearer other")]
    upstream(httpx.get(gateway.url("/custom"), headers=first))
    for name in ("crumble", "silly"):
        cookie = f"{name}={token}; path=/;domain=.jwt9.test"
        upstream(httpx.get(gateway.url("/realm"), headers={"cookie": cookie}))
    bad = f"silly={encode({'iss': 'incorrect-issuer'})}; path=/"
    r = httpx.get(gateway.url("/realm"), headers={"cookie": bad})
    assert_401(
        r, "No credentials found for given 'iss'", 'Bearer realm="test-jwt", error="invalid_token"'
    )
    r = httpx.get(gateway.url("/realm"), headers={"cookie": f"silly=no-way-this-works{token}"})
    assert_401(r, "Bad token; invalid JSON", 'Bearer realm="test-jwt", error="invalid_token"')


def test_key_claim_from_header(gateway: Gateway) -> None:
    token = encode({"sub": "x"}, header={"alg": "HS256", "kid": "hs"})
    h = upstream(httpx.get(gateway.url("/kid"), headers=bearer(token)))
    assert h["x-credential-identifier"] == "hs"


def test_secret_is_base64(gateway: Gateway) -> None:
    token = encode({"iss": "b64"}, B64_ORIGINAL)
    assert (
        upstream(httpx.get(gateway.url("/b64"), headers=bearer(token)))["x-credential-identifier"]
        == "b64"
    )
    r = httpx.get(gateway.url("/plain"), headers=bearer(token))
    assert_401(r, "Invalid signature")


# -- algorithms ----------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_algorithms(gateway: Gateway, alg: str) -> None:
    key = {"HS256": "hs", "HS384": "hs384", "HS512": "hs512"}[alg]
    token = encode({"iss": key}, alg=alg)
    upstream(httpx.get(gateway.url("/plain"), headers=bearer(token)))


@pytest.mark.parametrize("name", list(ASYMMETRIC))
def test_asymmetric_algorithms(gateway: Gateway, name: str) -> None:
    alg = name.partition("-")[0]
    key = ASYMMETRIC[name]
    token = encode({"iss": name}, key, alg)
    h = upstream(httpx.get(gateway.url("/plain"), headers=bearer(token)))
    assert h["x-credential-identifier"] == name
    # Signed by another key of the same kind: refused.
    if alg.startswith(("RS", "PS")):
        other: Private = RSA_OTHER
    elif alg.startswith("ES"):
        other = ec.generate_private_key(key.curve)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        other = ed25519.Ed25519PrivateKey.generate()
    else:
        other = ed448.Ed448PrivateKey.generate()
    r = httpx.get(gateway.url("/plain"), headers=bearer(encode({"iss": name}, other, alg)))
    assert_401(r, "Invalid signature")


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256"])
def test_signature_of_wrong_length(gateway: Gateway, alg: str) -> None:
    # Kong's parser asserts the length of ES (r || s) and PS (always 256 bytes, so a PS token
    # from a 4096-bit key fails too) signatures outside any error handler: a client's bad token
    # becomes a 500. fastkong answers it as the bad signature it is.
    token = encode({"iss": alg}, ASYMMETRIC[alg], alg)
    head, claims, signature = token.split(".")
    short = b64url(base64.urlsafe_b64decode(signature + "==")[:-1])
    r = httpx.get(gateway.url("/plain"), headers=bearer(f"{head}.{claims}.{short}"))
    assert_401(r, "Invalid signature")


# -- anonymous -----------------------------------------------------------------------------------
def test_anonymous(gateway: Gateway) -> None:
    h = upstream(httpx.get(gateway.url("/anon"), headers=bearer(encode({"iss": "hs"}))))
    assert (h["x-consumer-username"], h["x-credential-identifier"]) == ("jwt_tests_consumer", "hs")
    h = upstream(httpx.get(gateway.url("/anon"), headers=bearer(encode({"iss": "nope"}))))
    assert (h["x-consumer-username"], h["x-anonymous-consumer"]) == ("no-body", "true")
    assert "x-credential-identifier" not in h
    r = httpx.get(gateway.url("/anon-missing"))
    assert r.status_code == 500
    body = r.json()
    assert body["message"] == f"anonymous consumer {MISSING_ID} is configured but doesn't exist"
    assert body["request_id"] == r.headers["x-kong-request-id"]


# -- config --------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: jwt\n").config.plugins[0]
    assert plugin.config == {
        "uri_param_names": ["jwt"],
        "cookie_names": [],
        "key_claim_name": "iss",
        "secret_is_base64": False,
        "claims_to_verify": None,
        "anonymous": None,
        "run_on_preflight": True,
        "maximum_expiration": 0,
        "header_names": ["authorization"],
        "realm": None,
    }
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- {name: jwt, config: {maximum_expiration: -1, claims_to_verify: [exp, foo]}}\n"
            "- {name: jwt, route: r, config: {maximum_expiration: 60, claims_to_verify: [nbf]}}\n"
            "- {name: jwt, service: s, config: {uri_param_names: jwt}}\n"
            "routes: [{name: r, paths: [/]}]\nservices: [{name: s, url: 'http://x'}]\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.maximum_expiration: value should be between 0 and 31536000",
        "plugins[0].config.claims_to_verify[1]: expected one of: exp, nbf",
        "plugins[1].config.claims_to_verify: expected to contain: exp",
        "plugins[1]: failed conditional validation given value of field "
        "'config.maximum_expiration'",
        "plugins[2].config.uri_param_names: expected a set",
    ]
    # maximum_expiration without claims_to_verify is accepted, as in Kong.
    load_config(base + "- {name: jwt, config: {maximum_expiration: 60}}\n")
