"""Kong's ``spec/03-plugins/16-jwt/03-access_spec.lua`` (DB-less run), what ``test_jwt`` does not
cover, against one real ``fastkong start`` gateway, the echo upstream (Kong's ``mock_upstream``
``/request``: its JSON shows the headers the upstream got) and Kong's fixture keys and secrets
(``kong_jwt_fixtures``, from the spec's ``fixtures.lua``).

One config holds both ``describe`` blocks' entities: the routes ``jwt1.test`` .. ``jwt13.test``
with Kong's plugin configs, the ``#grpc`` route, and ``logical-and.test``/``logical-or.test``
(jwt with key-auth). Kong's random credential keys and secrets are given fixed values; the ids
the spec compares (consumers, the key-auth credential) are fixed too.

Ported (spec lines):

- 375-391 alg of the token (RS256) is not the credential's (HS256): "Invalid algorithm";
- 449-456 gRPC call without credentials: grpc-status 16 ``Unauthenticated`` (the gateway's own
  error reaches a gRPC client as Kong writes it, README "Kong compatibility notes");
- 523-539 key in another claim (``key_claim_name = aud``);
- 540-570 ``secret_is_base64``: Kong PATCHes the secret to its base64 through the Admin API
  first (no PATCH DB-less); here the config holds that base64 secret from the start;
- 628-640 a Bearer token on a route reading cookies; 690-701 a custom URL parameter;
- 704-1077 RS256 (and on ``secret_is_base64``'s route), RS384, RS512, ES384, ES512, PS256,
  PS384, PS512 and EdDSA (Ed25519, Ed448) with Kong's fixture keys, each key a consumer
  (two consumers share the RS256 key); 1079-1119 HS384 and HS512 with the fixture secrets;
- 1213-1238 anonymous without any token, by id and by username;
- 1176-1193 ``kong.ctx.shared.authenticated_jwt_token``, shown by Kong's ``ctx-checker`` test
  plugin (its Python twin :mod:`tests.kong_ctx_checker`, installed as an entry-point plugin);
- 1254-1488 jwt with key-auth: logical AND (no ``anonymous``) and OR (both ``anonymous``).

Covered by ``test_jwt``: 296-306 and 641-651 (no token: ``Bearer``, with the realm),
307-357 (no/empty/unknown ``iss``: ``test_key_claim_errors``), 358-374
(``test_invalid_signature_and_algorithm``), 392-413 (``test_preflight``), 414-447
(``test_maximum_expiration``), 458-472 (``test_multiple_and_unrecognizable_tokens``), 476-493
(``test_token_in_header_proxies_with_consumer_headers``), 509-522 (``test_key_claim_from_header``),
571-627 and 652-689 (cookies, ``CustomAuthorization``, first of a repeated header, ``?jwt=``:
``test_token_in_query_cookie_and_custom_places``), 1122-1173 (``test_claims_to_verify``),
1196-1212 and 1239-1249 (``test_anonymous``).

Left out:

- 495-507 "accepts gRPC call with credentials": the call must be proxied to grpcbin, and a plain
  gRPC call cannot be proxied by fastkong (README "Kong compatibility notes": Granian's ASGI
  carries no HTTP/2 trailers).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests import kong_ctx_checker
from tests.helpers import Echo, Gateway, free_port
from tests.plugins import kong_jwt_fixtures as fx
from tests.plugins.kong_jwt_fixtures import encode

pytestmark = pytest.mark.integration

NO_BODY_ID = "a0000000-0000-4000-8000-000000000001"  # the "no-body" anonymous consumer
NONEXISTING = "a0000000-0000-4000-8000-0000000000ff"
ANONYMOUS_ID = "a0000000-0000-4000-8000-000000000010"  # second describe: "Anonymous"
MICKEY_ID = "a0000000-0000-4000-8000-000000000011"
ALADDIN_ID = "a0000000-0000-4000-8000-000000000012"
KEY_AUTH_ID = "a0000000-0000-4000-8000-000000000013"

JWT_SECRET = ("jwt_secret", "jwt-secret-value-0123456789abcdef")
JWT_SECRET_2 = ("jwt_secret_2", "jwt-secret-2-value-0123456789abcd")
ALADDIN_SECRET = ("aladdin_jwt_secret", "aladdin-secret-0123456789abcdef")
#: ``base64_jwt_secret``: signed with the original, stored as ``ngx.encode_base64`` of it (chosen
#: so that the standard alphabet's encoding is also URL-safe, as Kong's decoder wants).
B64_KEY, B64_ORIGINAL = "base64_jwt_secret", "base64-original-secret-0123456789"
B64_STORED = base64.b64encode(B64_ORIGINAL.encode()).decode()
assert "+" not in B64_STORED and "/" not in B64_STORED

#: The asymmetric and HS384/512 credentials (spec 191-267): key, consumer, algorithm, the
#: fixture's name (``<name>_public_key``/``<name>_private_key``, or ``<name>_secret``).
KEYED: list[tuple[str, str, str, str]] = [
    ("rsa_jwt_secret_1", "jwt_tests_rsa_consumer_1", "RS256", "rs256"),
    ("rsa_jwt_secret_2", "jwt_tests_rsa_consumer_2", "RS256", "rs256"),
    ("rsa_jwt_secret_3", "jwt_tests_rsa_consumer_5", "RS512", "rs512"),
    ("rsa_jwt_secret_4", "jwt_tests_rsa_consumer_9", "RS384", "rs384"),
    ("rsa_jwt_secret_5", "jwt_tests_rsa_consumer_10", "ES384", "es384"),
    ("rsa_jwt_secret_6", "jwt_tests_rsa_consumer_11", "ES512", "es512"),
    ("rsa_jwt_secret_7", "jwt_tests_rsa_consumer_12", "PS256", "ps256"),
    ("rsa_jwt_secret_8", "jwt_tests_rsa_consumer_13", "PS384", "ps384"),
    ("rsa_jwt_secret_9", "jwt_tests_rsa_consumer_14", "PS512", "ps512"),
    ("rsa_jwt_secret_10", "jwt_tests_rsa_consumer_15", "EdDSA", "ed25519"),
    ("rsa_jwt_secret_11", "jwt_tests_rsa_consumer_16", "EdDSA", "ed448"),
    ("hs_jwt_secret_1", "jwt_tests_hs_consumer_7", "HS384", "hs384"),
    ("hs_jwt_secret_2", "jwt_tests_hs_consumer_8", "HS512", "hs512"),
]


def fixture_key(name: str, alg: str, kind: str) -> str:
    """``fixtures.<name>_public_key``/``_private_key``; the HS secrets are both."""
    attr = f"{name}_secret" if alg.startswith("HS") else f"{name}_{kind}_key"
    return str(getattr(fx, attr.upper()))


SIGNING = {key: (fixture_key(name, alg, "private"), alg) for key, _, alg, name in KEYED}

#: Spec 86-165: the jwt config of route ``jwt<i>.test``.
ROUTE_CONFIGS: dict[int, dict[str, Any]] = {
    1: {},
    2: {"uri_param_names": ["token", "jwt"]},
    3: {"claims_to_verify": ["nbf", "exp"]},
    4: {"key_claim_name": "aud"},
    5: {"secret_is_base64": True},
    6: {"anonymous": NO_BODY_ID},
    7: {"anonymous": NONEXISTING},
    8: {"run_on_preflight": False},
    9: {"cookie_names": ["silly", "crumble"], "realm": "test-jwt"},
    10: {"key_claim_name": "kid"},
    11: {"claims_to_verify": ["nbf", "exp"], "maximum_expiration": 300},
    12: {"header_names": ["CustomAuthorization"]},
    13: {"anonymous": "no-body"},
}


def credential(key: str, consumer: str, alg: str, name: str) -> dict[str, Any]:
    cred: dict[str, Any] = {"key": key, "algorithm": alg}
    cred["secret" if alg.startswith("HS") else "rsa_public_key"] = fixture_key(name, alg, "public")
    return {"username": consumer, "jwt_secrets": [cred]}


#: Spec 167-172: Kong's ctx-checker test plugin shows ``kong.ctx.shared.authenticated_jwt_token``.
CTX_CHECK = [
    {
        "name": "ctx-checker",
        "config": {"ctx_kind": "kong.ctx.shared", "ctx_check_field": "authenticated_jwt_token"},
    }
]


def config(echo: Echo, grpc_port: int) -> str:
    def hs(key: str, secret: str) -> list[dict[str, str]]:
        return [{"key": key, "secret": secret}]

    consumers = [
        {"username": "jwt_tests_consumer", "jwt_secrets": hs(*JWT_SECRET)},
        {"username": "jwt_tests_base64_consumer", "jwt_secrets": hs(B64_KEY, B64_STORED)},
        {"username": "jwt_tests_consumer_6", "jwt_secrets": hs(*JWT_SECRET_2)},
        *(credential(*row) for row in KEYED),
        {"id": NO_BODY_ID, "username": "no-body"},
        # the second describe (1292-1336)
        {"id": ANONYMOUS_ID, "username": "Anonymous"},
        {
            "id": MICKEY_ID,
            "username": "Mickey",
            "keyauth_credentials": [{"id": KEY_AUTH_ID, "key": "Mouse"}],
        },
        {"id": ALADDIN_ID, "username": "Aladdin", "jwt_secrets": hs(*ALADDIN_SECRET)},
    ]
    routes = [
        {
            "name": f"jwt{i}",
            "hosts": [f"jwt{i}.test"],
            "plugins": [{"name": "jwt", "config": conf}, *(CTX_CHECK if i == 1 else [])],
        }
        for i, conf in ROUTE_CONFIGS.items()
    ]
    anonymous = {"anonymous": ANONYMOUS_ID}

    def both(host: str, conf: dict[str, Any]) -> dict[str, Any]:
        plugins = [{"name": "jwt", "config": conf}, {"name": "key-auth", "config": conf}]
        return {"name": host, "hosts": [host], "plugins": plugins}

    doc = {
        "_format_version": "3.0",
        "consumers": consumers,
        "services": [
            {"name": "mock", "url": echo.url, "routes": routes},
            {
                "name": "grpc",
                "url": f"grpc://127.0.0.1:{grpc_port}",  # never reached: refused first
                "routes": [
                    {
                        "name": "grpc",
                        "protocols": ["grpc"],
                        "paths": ["/hello.HelloService/"],
                        "plugins": [{"name": "jwt"}],
                    }
                ],
            },
            {"name": "and", "url": f"{echo.url}/request", "routes": [both("logical-and.test", {})]},
            {
                "name": "or",
                "url": f"{echo.url}/request",
                "routes": [both("logical-or.test", anonymous)],
            },
        ],
    }
    return json.dumps(doc)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("jwt-spec"), config(echo, free_port()))
    gw.port_flags = "http2"  # h2c beside HTTP/1.1: Kong's gRPC client speaks h2c
    path = kong_ctx_checker.install(tmp_path_factory.mktemp("ctx-checker"))
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PYTHONPATH", path)
            gw.start()
        yield gw
    finally:
        gw.stop()


def payload(**claims: Any) -> dict[str, Any]:
    """Spec 8-13's ``PAYLOAD`` with its ``iss`` (or another claim) set."""
    now = int(time.time())
    return {"nbf": now, "iat": now, "exp": now + 3600, **claims}


def get(gateway: Gateway, host: str, path: str = "/request", **headers: str) -> httpx.Response:
    return httpx.get(gateway.url(path), headers={"host": host, **headers})


def upstream(response: httpx.Response) -> dict[str, str]:
    """``cjson.decode(assert.res_status(200, res)).headers``: what the upstream got."""
    assert response.status_code == 200, response.text
    return dict(response.json()["headers"])


# -- refusals ------------------------------------------------------------------------------------
def test_alg_does_not_match_the_credential(gateway: Gateway) -> None:
    """375-391: an HS256 signature under an ``RS256`` header, for an HS256 credential."""
    key, secret = JWT_SECRET
    token = encode(payload(iss=key), secret, "HS256", {"typ": "JWT", "alg": "RS256"})
    r = get(gateway, "jwt1.test", authorization=f"Bearer {token}")
    assert r.status_code == 401
    assert r.json() == {"message": "Invalid algorithm"}
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_grpc_call_without_credentials(gateway: Gateway) -> None:
    """449-456: ``kong.response.exit(401, {message = "Unauthorized"})`` to a gRPC client is
    grpc-status 16 with the message as grpc-message (kong/pdk/response.lua 87-100, 695-719,
    757-766)."""
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        say_hello = channel.unary_unary("/hello.HelloService/SayHello")
        with pytest.raises(grpc.RpcError) as info:
            say_hello(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == "Unauthorized"


# -- HS256 ---------------------------------------------------------------------------------------
def test_key_in_another_claim(gateway: Gateway) -> None:
    """523-539: ``key_claim_name = aud``."""
    key, secret = JWT_SECRET
    authorization = f"Bearer {encode(payload(iss=key, aud=key), secret)}"
    h = upstream(get(gateway, "jwt4.test", authorization=authorization))
    assert h["authorization"] == authorization
    assert h["x-consumer-username"] == "jwt_tests_consumer"
    assert h["x-credential-identifier"] == key


def test_secret_is_base64(gateway: Gateway) -> None:
    """540-570 (after Kong's PATCH of the secret to its base64)."""
    authorization = f"Bearer {encode(payload(iss=B64_KEY), B64_ORIGINAL)}"
    h = upstream(get(gateway, "jwt5.test", authorization=authorization))
    assert h["authorization"] == authorization
    assert h["x-consumer-username"] == "jwt_tests_base64_consumer"
    assert h["x-credential-identifier"] == B64_KEY


def test_bearer_header_on_a_cookie_route(gateway: Gateway) -> None:
    """628-640: the route reads cookies ``silly``/``crumble``; there are none."""
    key, secret = JWT_SECRET
    token = encode(payload(iss=key), secret)
    upstream(get(gateway, "jwt9.test", authorization=f"Bearer {token}"))


def test_custom_url_parameter(gateway: Gateway) -> None:
    """690-701: ``uri_param_names = {"token", "jwt"}``."""
    key, secret = JWT_SECRET
    token = encode(payload(iss=key), secret)
    upstream(get(gateway, "jwt2.test", f"/request/?token={token}"))


# -- RS256 .. EdDSA, HS384, HS512 (704-1119) -------------------------------------------------------
SIGNED = [
    # (spec line, host, credential key, consumer or None when the spec does not check it)
    (705, "jwt1.test", "rsa_jwt_secret_1", "jwt_tests_rsa_consumer_1"),
    (722, "jwt1.test", "rsa_jwt_secret_2", "jwt_tests_rsa_consumer_2"),
    (739, "jwt5.test", "rsa_jwt_secret_2", "jwt_tests_rsa_consumer_2"),  # conf.secret_is_base64
    (759, "jwt1.test", "rsa_jwt_secret_3", "jwt_tests_rsa_consumer_5"),
    (776, "jwt1.test", "rsa_jwt_secret_3", "jwt_tests_rsa_consumer_5"),
    (796, "jwt1.test", "rsa_jwt_secret_4", "jwt_tests_rsa_consumer_9"),
    (813, "jwt1.test", "rsa_jwt_secret_4", "jwt_tests_rsa_consumer_9"),
    (833, "jwt1.test", "rsa_jwt_secret_6", "jwt_tests_rsa_consumer_11"),
    (851, "jwt1.test", "rsa_jwt_secret_6", "jwt_tests_rsa_consumer_11"),
    (872, "jwt1.test", "rsa_jwt_secret_5", "jwt_tests_rsa_consumer_10"),
    (889, "jwt1.test", "rsa_jwt_secret_5", "jwt_tests_rsa_consumer_10"),
    (909, "jwt1.test", "rsa_jwt_secret_7", "jwt_tests_rsa_consumer_12"),
    (927, "jwt1.test", "rsa_jwt_secret_7", "jwt_tests_rsa_consumer_12"),
    (948, "jwt1.test", "rsa_jwt_secret_8", "jwt_tests_rsa_consumer_13"),
    (966, "jwt1.test", "rsa_jwt_secret_8", "jwt_tests_rsa_consumer_13"),
    (987, "jwt1.test", "rsa_jwt_secret_9", "jwt_tests_rsa_consumer_14"),
    (1005, "jwt1.test", "rsa_jwt_secret_9", "jwt_tests_rsa_consumer_14"),
    (1026, "jwt1.test", "rsa_jwt_secret_10", None),  # Ed25519
    (1043, "jwt1.test", "rsa_jwt_secret_11", None),  # Ed448
    (1060, "jwt1.test", "rsa_jwt_secret_10", "jwt_tests_rsa_consumer_15"),
    (1080, "jwt1.test", "hs_jwt_secret_1", "jwt_tests_hs_consumer_7"),
    (1101, "jwt1.test", "hs_jwt_secret_2", "jwt_tests_hs_consumer_8"),
]


@pytest.mark.parametrize(
    ("line", "host", "key", "consumer"), SIGNED, ids=[f"{row[0]}-{row[2]}" for row in SIGNED]
)
def test_signed_by_fixture_keys(
    gateway: Gateway, line: int, host: str, key: str, consumer: str | None
) -> None:
    private, alg = SIGNING[key]
    authorization = f"Bearer {encode(payload(iss=key), private, alg)}"
    h = upstream(get(gateway, host, authorization=authorization))
    assert h["authorization"] == authorization
    if consumer is not None:
        assert h["x-consumer-username"] == consumer
    if line != 1060:  # the one case that does not check it
        assert h["x-credential-identifier"] == key
    assert "x-credential-username" not in h
    assert "x-anonymous-consumer" not in h


# -- config.anonymous ----------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "host"), [(1213, "jwt6.test"), (1226, "jwt13.test")])
def test_anonymous_without_token(gateway: Gateway, line: int, host: str) -> None:
    """1213-1225 (anonymous by id), 1226-1238 (by username)."""
    h = upstream(get(gateway, host))
    assert h["x-anonymous-consumer"] == "true"
    assert h["x-consumer-username"] == "no-body"
    assert "x-credential-identifier" not in h


# -- jwt with key-auth (1254-1488) ---------------------------------------------------------------
def aladdin_token() -> str:
    key, secret = ALADDIN_SECRET
    return f"Bearer {encode(payload(iss=key), secret)}"


def test_logical_and_all_credentials(gateway: Gateway) -> None:
    """1359-1376: both authenticate; key-auth runs last (priority 1250 < 1450)."""
    r = get(gateway, "logical-and.test", apikey="Mouse", authorization=aladdin_token())
    h = upstream(r)
    assert "x-anonymous-consumer" not in h
    assert h["x-consumer-id"] != ANONYMOUS_ID
    assert h["x-consumer-id"] in (MICKEY_ID, ALADDIN_ID)
    assert h["x-credential-identifier"] == KEY_AUTH_ID


@pytest.mark.parametrize(
    ("line", "headers", "www"),
    [
        (1378, {"apikey": "Mouse"}, "Bearer"),  # jwt refuses first
        (1391, {"authorization": None}, "Key"),  # jwt passes, key-auth refuses
        (1404, {}, "Bearer"),
    ],
)
def test_logical_and_refused(
    gateway: Gateway, line: int, headers: dict[str, str | None], www: str
) -> None:
    sent = {name: value or aladdin_token() for name, value in headers.items()}
    r = get(gateway, "logical-and.test", **sent)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == www


@pytest.mark.parametrize(
    ("line", "apikey", "jwt", "consumer", "identifier"),
    [
        (1420, True, True, None, ALADDIN_SECRET[0]),  # jwt first; key-auth then skips
        (1439, True, False, MICKEY_ID, KEY_AUTH_ID),
        (1456, False, True, ALADDIN_ID, ALADDIN_SECRET[0]),
    ],
)
def test_logical_or_passes(
    gateway: Gateway, line: int, apikey: bool, jwt: bool, consumer: str | None, identifier: str
) -> None:
    headers = {"apikey": "Mouse"} if apikey else {}
    if jwt:
        headers["authorization"] = aladdin_token()
    h = upstream(get(gateway, "logical-or.test", **headers))
    assert "x-anonymous-consumer" not in h
    assert h["x-consumer-id"] != ANONYMOUS_ID
    assert h["x-consumer-id"] in ((consumer,) if consumer else (MICKEY_ID, ALADDIN_ID))
    assert h["x-credential-identifier"] == identifier


def test_logical_or_no_credentials(gateway: Gateway) -> None:
    """1474-1487."""
    h = upstream(get(gateway, "logical-or.test"))
    assert "x-anonymous-consumer" in h
    assert h["x-consumer-id"] == ANONYMOUS_ID
    assert h.get("x-credential-identifier") != ALADDIN_SECRET[0]


def test_authenticated_jwt_token_is_in_kong_ctx_shared(gateway: Gateway) -> None:
    # spec 1176-1193
    token = encode(payload(iss=JWT_SECRET[0]), JWT_SECRET[1])
    r = get(gateway, "jwt1.test", authorization=f"Bearer {token}")
    assert r.status_code == 200
    assert r.headers["ctx-checker-authenticated-jwt-token"] == token
