"""Kong's ``spec/03-plugins/10-basic-auth`` specs (DB-less run) against real ``fastkong start``
gateways and the echo upstream (Kong's ``mock_upstream``: its echo of the request).

Ported:

- ``01-crypto_spec.lua`` 4-9 and 11-13: fastkong's ``password_digest`` (Kong's ``crypto.hash``):
  a 40-character hex SHA-1 of ``password .. consumer_id``; an empty password hashes the
  consumer id alone, which is what Kong's ``hash(id)`` (nil password) gives.
- ``03-access_spec.lua``, one gateway for its three ``start_kong`` blocks (distinct hosts, one
  config): 239-246 (gRPC call refused before any upstream: the gateway's own 401 as gRPC status),
  271-283 and 285-297 (the credential identifier of ``user123``/``user321``), 399-411 and
  413-424 (no credentials at all, anonymous by id and by username), 585-595 (logical AND, no
  credential: key-auth's ``WWW-Authenticate: Key``), 723-757 (consumer cache consistency: Kong
  DELETEs the consumer through its database's Admin API; DB-less, the config without it is
  ``POST``ed to ``/config``, Kong's DB-less way to change entities).
- ``05-declarative_spec.lua``: a second gateway whose config is what Kong's two
  ``load_into_db`` calls leave in the database (``_transform: false``, both passwords as stored
  digests); 114-148 read back through the DB-less Admin API (``GET /services/foo``...), the
  hashing done by ``_transform: true`` (the first load) read back on the first gateway, which
  also holds consumer ``andru`` and credential ``james``; 177-187, 191-208 and 210-227 proxied.

Covered by ``test_basic_auth.py`` (not repeated): 139-152 and 156-169
(``test_missing_credentials``), 175-237 and 299-313 (``test_invalid_credentials``), 259-269
and 331-345 (``test_valid_credentials_and_consumer_headers``), 315-325
(``test_proxy_authorization_first``), 351-377 (``test_valid_credentials_and_consumer_headers``,
``test_hide_credentials``), 384-397 (``test_anonymous_with_right_credentials``), 426-436
(``test_anonymous_that_does_not_exist_is_500``), 543-583 (``test_logical_and``), 601-662
(``test_logical_or``).

Left out:

- 03-access 248-257 (authorized gRPC call): it must be proxied to grpcbin, and fastkong cannot
  proxy a plain gRPC call (README "Kong compatibility notes": Granian's ASGI carries no HTTP/2
  trailers).
- 01-crypto 15-17 (``ngx.null`` password): a Lua value with no Python counterpart; Kong treats
  it as nil, the case 11-13 ports.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from fastkong.plugins.bundled.basic_auth import password_digest
from tests.helpers import Echo, Gateway, echoed_headers, eventually, free_port

pytestmark = pytest.mark.integration

BOB = "b0000000-0000-4000-8000-000000000001"
NO_BODY = "b0000000-0000-4000-8000-000000000002"
ANONYMOUS = "b0000000-0000-4000-8000-000000000003"  # 442-664's "Anonymous"
MICKEY = "b0000000-0000-4000-8000-000000000004"
ALADDIN = "b0000000-0000-4000-8000-000000000005"
CACHE_ANONYMOUS = "b0000000-0000-4000-8000-000000000006"  # 667-759's "Anonymous"
NONEXISTING = "b0000000-0000-4000-8000-0000000000ff"

# 05-declarative's entities.
SERVICE_ID = "3b9c2302-a610-4925-a7b9-25942309335d"
ROUTE_ID = "eb88ccb8-274d-4e7e-b4cb-0d673a4fa93b"
ANDRU = "ad06b77c-0d2f-407a-8d6d-07f272a92d6a"
JAMES_ID = "ad06b77c-0d2f-407a-8d6d-07f272a92d9a"
BOND_ID = "caa33a6f-8e6b-4b02-9f55-0e2cffd26fb5"
PLUGIN_ID = "389ad9bd-b158-4e19-aed7-c9b040f7f312"


def kong_hash(consumer_id: str, password: str | None = None) -> str:
    """Kong's ``kong/plugins/basic-auth/crypto.lua`` ``hash``: SHA-1 hex of the password
    salted with the consumer id (the id alone for a nil password)."""
    salted = consumer_id if password is None else password + consumer_id
    return hashlib.sha1(salted.encode()).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def basic_auth(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "basic-auth", **({"config": config} if config else {})}]


def host_route(host: str, plugins: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": host, "hosts": [host], "plugins": plugins}


def andru() -> dict[str, Any]:
    return {"id": ANDRU, "username": "andru", "custom_id": "donalds"}


def access_config(echo: Echo, nowhere: int) -> dict[str, Any]:
    """03-access's three setups (11-126, 448-531, 672-710) in one config; consumer ``andru`` and
    credential ``james`` of 05-declarative loaded with ``_transform: true`` (its first load)."""
    request = f"{echo.url}/request"
    return {
        "_format_version": "3.0",
        "consumers": [
            {
                "id": BOB,
                "username": "bob",
                "basicauth_credentials": [
                    {"username": "bob", "password": "kong"},
                    {"username": "user123", "password": "password123"},
                    {"username": "user321", "password": "password:123"},
                ],
            },
            {"id": NO_BODY, "username": "no-body"},
            {"id": ANONYMOUS, "username": "anonymous-or"},
            {"id": MICKEY, "username": "Mickey", "keyauth_credentials": [{"key": "Mouse"}]},
            {
                "id": ALADDIN,
                "username": "Aladdin",
                "basicauth_credentials": [{"username": "Aladdin", "password": "OpenSesame"}],
            },
            {"id": CACHE_ANONYMOUS, "username": "Anonymous"},
            {
                **andru(),
                "basicauth_credentials": [
                    {"id": JAMES_ID, "username": "james", "password": "secret"}
                ],
            },
        ],
        "services": [
            {
                "name": "echo",
                "url": echo.url,
                "routes": [
                    host_route("basic-auth1.test", basic_auth(realm="test-realm")),
                    host_route("basic-auth2.test", basic_auth(hide_credentials=True)),
                    host_route("basic-auth3.test", basic_auth(anonymous=NO_BODY)),
                    host_route("basic-auth4.test", basic_auth(anonymous=NONEXISTING)),
                    host_route("basic-auth5.test", basic_auth(anonymous="no-body")),
                ],
            },
            {
                "name": "grpc",
                "url": f"grpc://127.0.0.1:{nowhere}",
                "routes": [
                    {
                        "name": "grpc",
                        "protocols": ["grpc"],
                        "paths": ["/hello.HelloService/"],
                        "plugins": basic_auth(),
                    }
                ],
            },
            {
                "name": "service1",
                "url": request,
                "routes": [host_route("logical-and.test", [*basic_auth(), {"name": "key-auth"}])],
            },
            {
                "name": "service2",
                "url": request,
                "routes": [
                    host_route(
                        "logical-or.test",
                        [
                            *basic_auth(anonymous=ANONYMOUS),
                            {"name": "key-auth", "config": {"anonymous": ANONYMOUS}},
                        ],
                    )
                ],
            },
            {
                "name": "service3",
                "url": request,
                "routes": [
                    host_route("anonymous-with-username.test", basic_auth(anonymous="Anonymous"))
                ],
            },
        ],
    }


def declarative_config(echo: Echo) -> dict[str, Any]:
    """05-declarative 20-110: the entities as Kong's database holds them after both loads
    (``james`` hashed by the ``_transform: true`` load, ``bond`` given hashed)."""
    return {
        "_format_version": "3.0",
        "_transform": False,
        "services": [
            {
                "id": SERVICE_ID,
                "name": "foo",
                "url": echo.url,
                "connect_timeout": 60000,
                "read_timeout": 60000,
                "write_timeout": 60000,
                "retries": 5,
                "created_at": 1549025889,
                "updated_at": 1549025889,
            }
        ],
        "routes": [
            {
                "id": ROUTE_ID,
                "name": "bar",
                "protocols": ["http"],
                "paths": ["/status/200"],
                "regex_priority": 0,
                "strip_path": True,
                "preserve_host": False,
                "service": SERVICE_ID,
                "created_at": 1549025889,
            }
        ],
        "consumers": [{**andru(), "created_at": 1549476023}],
        "plugins": [
            {
                "id": PLUGIN_ID,
                "name": "basic-auth",
                "service": SERVICE_ID,
                "enabled": True,
                "created_at": 1547047308,
                "config": {"hide_credentials": True, "realm": "service"},
            }
        ],
        "basicauth_credentials": [
            {
                "id": JAMES_ID,
                "consumer": ANDRU,
                "username": "james",
                "password": kong_hash(ANDRU, "secret"),
            },
            {
                "id": BOND_ID,
                "consumer": ANDRU,
                "username": "bond",
                "password": kong_hash(ANDRU, "MI6"),
            },
        ],
    }


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = json.dumps(access_config(echo, free_port()))
    gateway = Gateway(tmp_path_factory.mktemp("basic-auth-access"), config)
    gateway.port_flags = "http2"  # Kong's gRPC client speaks h2c (prior knowledge)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def declarative(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = json.dumps(declarative_config(echo))
    gateway = Gateway(tmp_path_factory.mktemp("basic-auth-declarative"), config)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


def get(gateway: Gateway, path: str, host: str | None = None, **headers: str) -> httpx.Response:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if host is not None:
        sent["host"] = host
    return httpx.get(gateway.url(path), headers=sent, timeout=30)


def upstream(response: httpx.Response) -> dict[str, str]:
    """The request headers the echo got (one value each)."""
    assert response.status_code == 200, response.text
    return {k: v[0] for k, v in echoed_headers(response.json()).items()}


def admin(gateway: Gateway, path: str) -> dict[str, Any]:
    r = httpx.get(f"http://127.0.0.1:{gateway.admin_port}{path}", timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- 01-crypto_spec.lua ------------------------------------------------------------------------
def test_crypto_hash_with_consumer_id_salt() -> None:
    """01-crypto 4-9."""
    value = password_digest("id123", b"pass123")
    assert len(value) == 40
    assert value == password_digest("id123", b"pass123")
    assert value.decode() == kong_hash("id123", "pass123")


def test_crypto_empty_password_is_nil_password() -> None:
    """01-crypto 11-13: Kong's ``hash(id)`` (nil password) equals ``hash(id, "")``."""
    assert password_digest("id123", b"").decode() == kong_hash("id123")


# -- 03-access_spec.lua ------------------------------------------------------------------------
def test_grpc_rejected_without_credentials(access: Gateway) -> None:
    """03-access 239-246: ``kong.response.error(401)`` on a gRPC request is grpc-status 16 and,
    without a body, the status's name as grpc-message (kong/pdk/response.lua 87-120, 695-710,
    791-793, 1146-1148)."""
    with grpc.insecure_channel(f"127.0.0.1:{access.port}") as channel:
        say_hello = channel.unary_unary("/hello.HelloService/SayHello")
        with pytest.raises(grpc.RpcError) as info:
            say_hello(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details() == "Unauthenticated"


@pytest.mark.parametrize(
    ("line", "value", "identifier"),
    [
        (271, "Basic dXNlcjEyMzpwYXNzd29yZDEyMw==", "user123"),
        (285, "Basic dXNlcjMyMTpwYXNzd29yZDoxMjM=", "user321"),  # password "password:123"
    ],
)
def test_credential_identifier(access: Gateway, line: int, value: str, identifier: str) -> None:
    """03-access 271-283, 285-297."""
    h = upstream(get(access, "/request", "basic-auth1.test", authorization=value))
    assert h["x-consumer-username"] == "bob"
    assert h["x-credential-identifier"] == identifier


@pytest.mark.parametrize(("line", "host"), [(399, "basic-auth3.test"), (413, "basic-auth5.test")])
def test_anonymous_without_credentials(access: Gateway, line: int, host: str) -> None:
    """03-access 399-411 (anonymous by id), 413-424 (by username): no credentials at all."""
    h = upstream(get(access, "/request", host))
    assert h["x-anonymous-consumer"] == "true"
    assert h["x-consumer-username"] == "no-body"
    assert h["x-consumer-id"] == NO_BODY
    assert "x-credential-identifier" not in h


def test_logical_and_without_credentials(access: Gateway) -> None:
    """03-access 585-595: key-auth (priority 1250) runs before basic-auth (1100) and refuses."""
    r = get(access, "/request", "logical-and.test")
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Key"


def test_anonymous_consumer_cache_consistency(access: Gateway) -> None:
    """03-access 723-757: the anonymous consumer (named by username) is used, then removed
    (DB-less: the config without it is POSTed to /config); the next request is a 500."""
    host = "anonymous-with-username.test"
    h = upstream(get(access, "/request", host))
    assert h["x-anonymous-consumer"] == "true"
    assert h["x-consumer-id"] == CACHE_ANONYMOUS
    assert h["x-consumer-username"] == "Anonymous"

    original = json.loads(access.config_path.read_text())
    changed = {
        **original,
        "consumers": [c for c in original["consumers"] if c["id"] != CACHE_ANONYMOUS],
    }
    url = f"http://127.0.0.1:{access.admin_port}/config"
    try:
        r = httpx.post(url, json=changed, timeout=30)
        assert r.status_code == 201, r.text
        eventually(lambda: get(access, "/request", host).status_code != 200)
        r = get(access, "/request", host)
        assert r.status_code == 500, r.text
        assert r.json()["message"] == (
            "anonymous consumer Anonymous is configured but doesn't exist"
        )
    finally:
        assert httpx.post(url, json=original, timeout=30).status_code == 201


# -- 05-declarative_spec.lua -------------------------------------------------------------------
def test_declarative_imports_entities_with_associations(
    access: Gateway, declarative: Gateway
) -> None:
    """05-declarative 114-148, read back through the DB-less Admin API."""
    service = admin(declarative, "/services/foo")
    assert (service["id"], service["host"], service["protocol"]) == (
        SERVICE_ID,
        "127.0.0.1",
        "http",
    )
    route = admin(declarative, "/routes/bar")
    assert route["id"] == ROUTE_ID
    assert route["paths"] == ["/status/200"]
    assert route["protocols"] == ["http"]
    assert route["service"] == {"id": SERVICE_ID}

    consumer = admin(declarative, "/consumers/andru")
    assert (consumer["id"], consumer["username"], consumer["custom_id"]) == (
        ANDRU,
        "andru",
        "donalds",
    )

    plugin = admin(declarative, f"/plugins/{PLUGIN_ID}")
    assert plugin["id"] == PLUGIN_ID
    assert plugin["service"] == {"id": SERVICE_ID}
    assert plugin["name"] == "basic-auth"
    assert {k: plugin["config"][k] for k in ("hide_credentials", "realm")} == {
        "hide_credentials": True,
        "realm": "service",
    }

    # The ``_transform: true`` load stores the hash of the plain password given.
    for gateway in (access, declarative):
        james = admin(gateway, f"/basic-auths/{JAMES_ID}")
        assert james["id"] == JAMES_ID
        assert james["consumer"] == {"id": ANDRU}
        assert james["username"] == "james"
        assert james["password"] == kong_hash(ANDRU, "secret")

    # The ``_transform: false`` load stores the given digest as it is.
    bond = admin(declarative, f"/basic-auths/{BOND_ID}")
    assert bond["id"] == BOND_ID
    assert bond["consumer"] == {"id": ANDRU}
    assert bond["username"] == "bond"
    assert bond["password"] == kong_hash(ANDRU, "MI6")


def test_declarative_unauthorized(declarative: Gateway) -> None:
    """05-declarative 177-187."""
    r = get(declarative, "/status/200", authorization="foobar")
    assert r.status_code == 401, r.text
    assert r.json()["message"] == "Unauthorized"


@pytest.mark.parametrize(
    ("line", "username", "password"), [(191, "james", "secret"), (210, "bond", "MI6")]
)
def test_declarative_accepts_valid_credentials(
    declarative: Gateway, line: int, username: str, password: str
) -> None:
    """05-declarative 191-208, 210-227 (``bond``'s password was given hashed)."""
    h = upstream(get(declarative, "/status/200", authorization=basic(username, password)))
    assert h["x-consumer-id"] == ANDRU
    assert h["x-consumer-username"] == "andru"
    assert h["x-consumer-custom-id"] == "donalds"
    assert h["x-credential-identifier"] == username
