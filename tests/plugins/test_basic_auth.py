"""basic-auth through a running gateway (Kong's spec/03-plugins/10-basic-auth), including the
logical AND / OR of several auth plugins."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

ANONYMOUS_ID = "a0000000-0000-4000-8000-000000000001"
MISSING_ID = "a0000000-0000-4000-8000-0000000000ff"
BOB_ID = "b0000000-0000-4000-8000-000000000002"
MICKEY_ID = "b0000000-0000-4000-8000-000000000003"
ALADDIN_ID = "b0000000-0000-4000-8000-000000000004"
REALM = 'Basic realm="service"'


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def config(echo: Echo) -> str:
    def route(name: str, plugins: str) -> str:
        return f"  - name: {name}\n    paths: [/{name}]\n    plugins: {plugins}\n"

    hashed = hashlib.sha1(("MI6" + BOB_ID).encode()).hexdigest()
    return (
        f"""
_format_version: "3.0"
consumers:
- {{id: {ANONYMOUS_ID}, username: no-body}}
- id: {BOB_ID}
  username: bob
  custom_id: bob-custom
  basicauth_credentials:
  - {{username: bob, password: kong}}
  - {{username: user321, password: "password:123"}}
  - {{username: "b\u00f6b", password: "p\u00e4ss"}}
- id: {MICKEY_ID}
  username: Mickey
  keyauth_credentials: [{{key: Mouse}}]
- id: {ALADDIN_ID}
  username: Aladdin
  basicauth_credentials: [{{username: Aladdin, password: OpenSesame}}]
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
"""
        + route("plain", "[{name: basic-auth}]")
        + route("realm", "[{name: basic-auth, config: {realm: test-realm}}]")
        + route("hide", "[{name: basic-auth, config: {hide_credentials: true}}]")
        + route("anon", f"[{{name: basic-auth, config: {{anonymous: {ANONYMOUS_ID}}}}}]")
        + route("anon-name", "[{name: basic-auth, config: {anonymous: no-body}}]")
        + route("anon-missing", f"[{{name: basic-auth, config: {{anonymous: {MISSING_ID}}}}}]")
        + route("and", "[{name: basic-auth}, {name: key-auth}]")
        + route(
            "or",
            f"[{{name: basic-auth, config: {{anonymous: {ANONYMOUS_ID}}}}}, "
            f"{{name: key-auth, config: {{anonymous: {ANONYMOUS_ID}}}}}]",
        )
    ), hashed


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    text, _ = config(echo)
    return gateway_with(text)


def upstream(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return dict(body["headers"])


def assert_401(response: httpx.Response, www: str = REALM) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["message"] == "Unauthorized"
    assert body["request_id"] == response.headers["x-kong-request-id"]
    assert response.headers["www-authenticate"] == www


def get(gateway: Gateway, path: str, **headers: str) -> httpx.Response:
    return httpx.get(
        gateway.url(path), headers={k.replace("_", "-"): v for k, v in headers.items()}
    )


# -- Unauthorized ------------------------------------------------------------------------------
def test_missing_credentials(gateway: Gateway) -> None:
    assert_401(get(gateway, "/plain"))
    assert_401(get(gateway, "/realm"), 'Basic realm="test-realm"')


@pytest.mark.parametrize(
    "value",
    [
        "foobar",
        "Basic a29uZw==",  # no colon
        "Basic Ym9i",  # username only
        "Basic adXNlcjEyMzpwYXNzd29yZDEyMw==",  # garbage base64
        "Basic !!!!",
        "Basic  x",
        "Basic OnBhc3M=",  # ":pass": no username
        basic("bob", "wrong"),
        basic("nobody", "kong"),
        basic("bob", ""),
    ],
)
def test_invalid_credentials(gateway: Gateway, value: str) -> None:
    assert_401(get(gateway, "/plain", authorization=value))
    assert_401(get(gateway, "/plain", proxy_authorization=value))


# -- success -------------------------------------------------------------------------------------
def test_valid_credentials_and_consumer_headers(gateway: Gateway) -> None:
    h = upstream(get(gateway, "/plain", authorization="Basic Ym9iOmtvbmc=", x_consumer_id="evil"))
    assert h["x-consumer-id"] == BOB_ID
    assert h["x-consumer-custom-id"] == "bob-custom"
    assert h["x-consumer-username"] == "bob"
    assert h["x-credential-identifier"] == "bob"
    assert "x-anonymous-consumer" not in h
    assert h["authorization"] == "Basic Ym9iOmtvbmc="


def test_password_containing_colon(gateway: Gateway) -> None:
    upstream(get(gateway, "/plain", authorization="Basic dXNlcjMyMTpwYXNzd29yZDoxMjM="))


def test_lenient_scheme_and_utf8(gateway: Gateway) -> None:
    upstream(get(gateway, "/plain", authorization="basic   Ym9iOmtvbmc"))  # no padding
    value = "Basic " + base64.b64encode("b\u00f6b:p\u00e4ss".encode()).decode()
    h = upstream(get(gateway, "/plain", authorization=value))
    assert h["x-credential-identifier"] == "b\u00f6b".encode().decode("latin-1")


def test_proxy_authorization_first(gateway: Gateway) -> None:
    h = upstream(get(gateway, "/plain", proxy_authorization=basic("bob", "kong")))
    assert h["x-consumer-username"] == "bob"
    # A Proxy-Authorization that names no credential falls back to Authorization.
    r = get(
        gateway,
        "/plain",
        proxy_authorization=basic("nobody", "x"),
        authorization=basic("Aladdin", "OpenSesame"),
    )
    assert upstream(r)["x-consumer-username"] == "Aladdin"


def test_hide_credentials(gateway: Gateway) -> None:
    h = upstream(get(gateway, "/hide", authorization=basic("bob", "kong")))
    assert "authorization" not in h
    h = upstream(get(gateway, "/hide", proxy_authorization=basic("bob", "kong")))
    assert "proxy-authorization" not in h


# -- anonymous -----------------------------------------------------------------------------------
def test_anonymous_with_right_credentials(gateway: Gateway) -> None:
    h = upstream(get(gateway, "/anon", authorization=basic("bob", "kong")))
    assert h["x-consumer-username"] == "bob"
    assert "x-anonymous-consumer" not in h


@pytest.mark.parametrize("path", ["/anon", "/anon-name"])
def test_anonymous_with_wrong_credentials(gateway: Gateway, path: str) -> None:
    h = upstream(get(gateway, path, authorization=basic("bob", "nope")))
    assert h["x-anonymous-consumer"] == "true"
    assert h["x-consumer-username"] == "no-body"
    assert h["x-consumer-id"] == ANONYMOUS_ID
    assert "x-credential-identifier" not in h


def test_anonymous_that_does_not_exist_is_500(gateway: Gateway) -> None:
    r = get(gateway, "/anon-missing")
    assert r.status_code == 500
    assert r.json()["message"] == f"anonymous consumer {MISSING_ID} is configured but doesn't exist"


# -- several auth plugins ------------------------------------------------------------------------
ALADDIN = basic("Aladdin", "OpenSesame")


def test_logical_and(gateway: Gateway) -> None:
    h = upstream(get(gateway, "/and", apikey="Mouse", authorization=ALADDIN))
    assert h["x-consumer-id"] in (MICKEY_ID, ALADDIN_ID)
    assert "x-anonymous-consumer" not in h
    assert_401(get(gateway, "/and", apikey="Mouse"))
    r = get(gateway, "/and", authorization=ALADDIN)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Key"
    assert get(gateway, "/and").status_code == 401


def test_logical_or(gateway: Gateway) -> None:
    h = upstream(get(gateway, "/or", apikey="Mouse", authorization=ALADDIN))
    assert h["x-consumer-id"] in (MICKEY_ID, ALADDIN_ID)
    assert "x-anonymous-consumer" not in h
    h = upstream(get(gateway, "/or", apikey="Mouse"))
    assert h["x-consumer-id"] == MICKEY_ID
    assert "x-anonymous-consumer" not in h
    h = upstream(get(gateway, "/or", authorization=ALADDIN))
    assert (h["x-consumer-id"], h["x-credential-identifier"]) == (ALADDIN_ID, "Aladdin")
    assert "x-anonymous-consumer" not in h
    h = upstream(get(gateway, "/or"))
    assert (h["x-consumer-id"], h["x-anonymous-consumer"]) == (ANONYMOUS_ID, "true")


# -- config --------------------------------------------------------------------------------------
def test_transform_false_takes_stored_digests(
    gateway_with: Callable[[str], Gateway], echo: Echo
) -> None:
    text, hashed = config(echo)
    text = text.replace(
        '_format_version: "3.0"\n', '_format_version: "3.0"\n_transform: false\n'
    ).replace("{username: bob, password: kong}", f"{{username: bond, password: {hashed}}}")
    gateway = gateway_with(text)
    h = upstream(get(gateway, "/plain", authorization=basic("bond", "MI6")))
    assert h["x-credential-identifier"] == "bond"
    assert_401(get(gateway, "/plain", authorization=basic("bond", hashed)))


def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: basic-auth\n").config.plugins[0]
    assert plugin.config == {"anonymous": None, "hide_credentials": False, "realm": "service"}
    with pytest.raises(ConfigError) as info:
        load_config(base + "- {name: basic-auth, config: {realm: '', hide_credentials: x}}\n")
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.realm: length must be at least 1",
        "plugins[0].config.hide_credentials: expected a boolean",
    ]
