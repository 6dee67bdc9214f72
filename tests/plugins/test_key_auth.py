"""key-auth through a running gateway (Kong's spec/03-plugins/09-key-auth/02-access_spec.lua)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled import key_auth
from fastkong.runtime import compile_runtime
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

ANONYMOUS_ID = "a0000000-0000-4000-8000-000000000001"
MISSING_ID = "a0000000-0000-4000-8000-0000000000ff"
BOB_ID = "b0000000-0000-4000-8000-000000000002"
BOB_KEY_ID = "c0000000-0000-4000-8000-000000000003"
ERR_NO_KEY = "No API key found in request"
DUPLICATE = "Duplicate API key found"


def config(echo: Echo) -> str:
    def route(name: str, plugin_config: str = "{}") -> str:
        return (
            f"  - name: {name}\n    paths: [/{name}]\n"
            f"    plugins: [{{name: key-auth, config: {plugin_config}}}]\n"
        )

    return (
        f"""
_format_version: "3.0"
consumers:
- id: {ANONYMOUS_ID}
  username: no-body
- id: {BOB_ID}
  username: bob
  custom_id: bob-custom
  keyauth_credentials:
  - {{id: {BOB_KEY_ID}, key: kong}}
  - {{key: "k\u00e9y"}}
  - {{key: epoch-3600, ttl: 3600}}
  - {{key: expired, ttl: 0}}
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
"""
        + route("plain")
        + route("realm", "{realm: test-realm, hide_credentials: true}")
        + route("anon", f"{{anonymous: {ANONYMOUS_ID}}}")
        + route("anon-name", "{anonymous: no-body}")
        + route("anon-missing", f"{{anonymous: {MISSING_ID}}}")
        + route("body", "{key_in_body: true}")
        + route("body-hide", "{key_in_body: true, hide_credentials: true}")
        + route("no-preflight", "{run_on_preflight: false}")
        + route("underscore", "{key_names: [api_key]}")
        + route("names", "{key_names: [first, second], key_in_header: false}")
        + route("header-only", "{key_in_query: false}")
        + "".join(route(name, _sources(name)) for name in SOURCE_ROUTES)
    )


#: Kong's spec matrix of key sources: a route per key_in_header/query/body combination.
SOURCE_ROUTES = ("ttt", "ttf", "tff", "fff", "fft", "tft", "ftf")


def _sources(name: str) -> str:
    flags = ["true" if c == "t" else "false" for c in name]
    return "{{key_in_header: {}, key_in_query: {}, key_in_body: {}}}".format(*flags)


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    return gateway_with(config(echo))


def upstream(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body["h"] = dict(body["headers"])
    return body


def assert_401(response: httpx.Response, message: str, www: str = "Key") -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["message"] == message
    assert body["request_id"] == response.headers["x-kong-request-id"]
    assert response.headers["www-authenticate"] == www


# -- ttl -----------------------------------------------------------------------------------------
def test_ttl_is_an_absolute_expiry_time(gateway: Gateway) -> None:
    # DB-less Kong reads a credential's ttl as the Unix time it expires at (its LMDB reader
    # drops the credential once ttl - now <= 0): 3600 is January 1970, 0 is expired too.
    assert_401(httpx.get(gateway.url("/plain?apikey=epoch-3600")), "Unauthorized")
    assert_401(httpx.get(gateway.url("/plain?apikey=expired")), "Unauthorized")
    upstream(httpx.get(gateway.url("/plain?apikey=kong")))


def test_ttl_in_the_future_lasts_until_that_time() -> None:
    doc = (
        '_format_version: "3.0"\nconsumers:\n- username: bob\n'
        "  keyauth_credentials: [{key: soon}, {key: later}]\n"
    )
    loaded = load_config(doc).config
    soon, later = loaded.keyauth_credentials
    now = int(time.time())
    # (built directly: the config schema caps ttl at 100000000, below any current Unix time)
    creds = [
        msgspec.structs.replace(soon, ttl=now + 1),
        msgspec.structs.replace(later, ttl=now + 3600),
    ]
    runtime = compile_runtime(msgspec.structs.replace(loaded, keyauth_credentials=creds), "h")
    index = runtime.index("key-auth:credentials", key_auth._credentials)
    assert index["soon"][1] == now + 1
    assert index["later"][1] == now + 3600
    # the expiry does not move when a later snapshot holds the same credential
    time.sleep(1.1)
    again = compile_runtime(msgspec.structs.replace(loaded, keyauth_credentials=creds), "h2")
    assert again.index("key-auth:credentials", key_auth._credentials)["soon"][1] == now + 1


# -- Unauthorized ------------------------------------------------------------------------------
def test_missing_credentials(gateway: Gateway) -> None:
    assert_401(httpx.get(gateway.url("/plain")), ERR_NO_KEY)


def test_empty_key_header_and_query(gateway: Gateway) -> None:
    assert_401(httpx.get(gateway.url("/plain"), headers={"apikey": ""}), ERR_NO_KEY)
    assert_401(httpx.get(gateway.url("/plain?apikey")), ERR_NO_KEY)
    assert_401(httpx.get(gateway.url("/plain?apikey=")), ERR_NO_KEY)


def test_realm_in_www_authenticate(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/realm"), headers={"apikey": ""})
    assert_401(r, ERR_NO_KEY, 'Key realm="test-realm"')


def test_invalid_key_is_unauthorized(gateway: Gateway) -> None:
    assert_401(httpx.get(gateway.url("/plain?apikey=123")), "Unauthorized")
    assert_401(httpx.get(gateway.url("/plain"), headers={"apikey": "123"}), "Unauthorized")


def test_duplicate_keys(gateway: Gateway) -> None:
    assert_401(httpx.get(gateway.url("/plain?apikey=kong&apikey=kong")), DUPLICATE)
    headers = [("apikey", "kong"), ("apikey", "kong")]
    assert_401(httpx.get(gateway.url("/plain"), headers=headers), DUPLICATE)


def test_preflight(gateway: Gateway) -> None:
    assert httpx.options(gateway.url("/no-preflight")).status_code == 200
    assert_401(httpx.options(gateway.url("/plain")), ERR_NO_KEY)


def test_error_body_follows_accept(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/plain"), headers={"accept": "text/plain"})
    assert r.status_code == 401
    assert r.text.startswith("No API key found in request\nrequest_id: ")


# -- where the key is found --------------------------------------------------------------------
def test_key_in_query_and_header(gateway: Gateway) -> None:
    assert upstream(httpx.get(gateway.url("/plain?apikey=kong")))["h"]["x-consumer-id"] == BOB_ID
    assert upstream(httpx.get(gateway.url("/plain"), headers={"ApiKey": "kong"}))


def test_percent_encoded_and_non_ascii_keys(gateway: Gateway) -> None:
    upstream(httpx.get(gateway.url("/plain?apikey=%6Bong")))
    upstream(httpx.get(gateway.url("/plain?apikey=k%C3%A9y")))
    upstream(httpx.get(gateway.url("/plain"), headers={"apikey": "k\u00e9y".encode()}))


def test_key_in_header_only(gateway: Gateway) -> None:
    assert_401(httpx.get(gateway.url("/header-only?apikey=kong")), ERR_NO_KEY)
    upstream(httpx.get(gateway.url("/header-only"), headers={"apikey": "kong"}))


def test_underscores_or_hyphens_in_key_headers(gateway: Gateway) -> None:
    upstream(httpx.get(gateway.url("/underscore"), headers={"api_key": "kong"}))
    upstream(httpx.get(gateway.url("/underscore"), headers={"api-key": "kong"}))
    r = httpx.get(gateway.url("/underscore"), headers={"api-key": "123"})
    assert_401(r, "Unauthorized")


def test_key_names_in_order(gateway: Gateway) -> None:
    # The first name that gives a string wins; a flag (``?first``) is skipped.
    upstream(httpx.get(gateway.url("/names?second=kong&first")))
    assert_401(httpx.get(gateway.url("/names?second=kong&first=bad")), "Unauthorized")
    assert_401(httpx.get(gateway.url("/names?first=a&first=b&second=kong")), DUPLICATE)


def multipart(fields: list[tuple[str, str]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, value in fields:
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    return out + f"--{boundary}--\r\n".encode()


BODIES = {
    "application/x-www-form-urlencoded": (b"apikey=kong&foo=bar", b"foo=bar"),
    "application/json": (b'{"apikey": "kong", "foo": "bar"}', b'{"foo":"bar"}'),
    "multipart/form-data; boundary=XyZ": (
        multipart([("apikey", "kong"), ("foo", "bar")]),
        multipart([("foo", "bar")]),
    ),
}


@pytest.mark.parametrize("content_type", list(BODIES))
def test_key_in_body(gateway: Gateway, content_type: str) -> None:
    sent, stripped = BODIES[content_type]
    headers = {"content-type": content_type}
    r = upstream(httpx.post(gateway.url("/body"), content=sent, headers=headers))
    assert r["h"]["x-consumer-username"] == "bob"
    assert r["body_md5"] == hashlib.md5(sent).hexdigest()
    r = upstream(httpx.post(gateway.url("/body-hide"), content=sent, headers=headers))
    assert r["body_md5"] == hashlib.md5(stripped).hexdigest()
    assert r["body_length"] == len(stripped)
    assert r["h"]["content-length"] == str(len(stripped))
    assert r["h"]["content-type"] == content_type
    bad = sent.replace(b"kong", b"nope")
    assert_401(httpx.post(gateway.url("/body"), content=bad, headers=headers), "Unauthorized")


def test_key_in_body_duplicates(gateway: Gateway) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = httpx.post(gateway.url("/body"), content=b"apikey=kong&apikey=kong", headers=form)
    assert_401(r, DUPLICATE)
    r = httpx.post(gateway.url("/body"), content=b"apikey[]=kong&apikey[]=kong", headers=form)
    assert_401(r, ERR_NO_KEY)
    body = json.dumps({"apikey": ["kong", "kong"]})
    r = httpx.post(gateway.url("/body"), content=body, headers={"content-type": "application/json"})
    assert_401(r, DUPLICATE)
    mp = {"content-type": "multipart/form-data; boundary=XyZ"}
    data = multipart([("apikey", "kong"), ("apikey", "kong")])
    assert_401(httpx.post(gateway.url("/body"), content=data, headers=mp), DUPLICATE)


def test_key_in_body_unsupported_or_broken(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.url("/body"), content=b"apikey=kong", headers={"content-type": "text/plain"}
    )
    assert_401(r, ERR_NO_KEY)
    headers = {"content-type": "application/json"}
    assert_401(httpx.post(gateway.url("/body"), content=b"{nope", headers=headers), ERR_NO_KEY)
    assert_401(httpx.post(gateway.url("/body"), content=b'"kong"', headers=headers), ERR_NO_KEY)
    r = httpx.post(gateway.url("/body"), content=b'{"apikey": 1}', headers=headers)
    assert_401(r, ERR_NO_KEY)


def test_key_in_query_wins_over_body(gateway: Gateway) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    r = httpx.post(gateway.url("/body?apikey=kong"), content=b"apikey=nope", headers=headers)
    assert upstream(r)["h"]["x-consumer-username"] == "bob"


@pytest.mark.parametrize("route_name", SOURCE_ROUTES)
def test_key_sources_combinations(gateway: Gateway, route_name: str) -> None:
    """Kong's combination matrix: the first enabled source (header, query, body) that carries
    the key decides, a right key there passes and a wrong one fails, whatever the others hold."""
    enabled = [c == "t" for c in route_name]
    choices = ("kong", "nope", None)
    with httpx.Client() as client:
        for header in choices:
            for query in choices:
                for body in choices:
                    given = (header, query, body)
                    decisive = next(
                        (v for on, v in zip(enabled, given, strict=True) if on and v), None
                    )
                    headers = {"content-type": "application/x-www-form-urlencoded"}
                    if header is not None:
                        headers["apikey"] = header
                    url = gateway.url(f"/{route_name}" + (f"?apikey={query}" if query else ""))
                    content = f"apikey={body}".encode() if body is not None else b""
                    r = client.post(url, content=content, headers=headers)
                    expected = 200 if decisive == "kong" else 401
                    assert r.status_code == expected, (route_name, given, r.text)
                    if expected == 401:
                        assert r.headers["www-authenticate"] == "Key"


# -- consumer headers, hide_credentials --------------------------------------------------------
def test_consumer_headers_upstream(gateway: Gateway) -> None:
    spoofed = {
        "x-consumer-username": "evil",
        "x-consumer-id": "evil",
        "x-anonymous-consumer": "true",
        "x-credential-identifier": "evil",
    }
    h = upstream(httpx.get(gateway.url("/plain?apikey=kong"), headers=spoofed))["h"]
    assert h["x-consumer-id"] == BOB_ID
    assert h["x-consumer-custom-id"] == "bob-custom"
    assert h["x-consumer-username"] == "bob"
    assert h["x-credential-identifier"] == BOB_KEY_ID
    assert "x-anonymous-consumer" not in h


def test_hide_credentials_false_sends_key(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/plain?c=1&apikey=kong&a=3"), headers={"apikey": "kong"}))
    assert r["query"] == "c=1&apikey=kong&a=3"
    assert r["h"]["apikey"] == "kong"


def test_hide_credentials_strips_query_and_header(gateway: Gateway) -> None:
    r = upstream(httpx.get(gateway.url("/realm?c=value1&b=value2&apikey=kong&a=value3")))
    assert r["query"] == "c=value1&b=value2&a=value3"
    r = upstream(httpx.get(gateway.url("/realm?c=valu%651&b=value2&api%6B%65%79=kong&a=valu%653")))
    assert r["query"] == "c=value1&b=value2&a=value3"
    r = upstream(httpx.get(gateway.url("/realm?x=a+b"), headers={"apikey": "kong"}))
    assert "apikey" not in r["h"]
    assert r["query"] == "x=a+b"  # untouched when the key is not in the query


# -- anonymous ---------------------------------------------------------------------------------
def test_anonymous_with_right_credentials(gateway: Gateway) -> None:
    h = upstream(httpx.get(gateway.url("/anon?apikey=kong")))["h"]
    assert h["x-consumer-username"] == "bob"
    assert h["x-credential-identifier"] == BOB_KEY_ID
    assert "x-anonymous-consumer" not in h


@pytest.mark.parametrize("path", ["/anon", "/anon-name", "/anon?apikey=wrong"])
def test_anonymous_with_wrong_credentials(gateway: Gateway, path: str) -> None:
    spoofed = {"x-credential-identifier": "evil", "x-consumer-custom-id": "evil"}
    h = upstream(httpx.get(gateway.url(path), headers=spoofed))["h"]
    assert h["x-anonymous-consumer"] == "true"
    assert h["x-consumer-username"] == "no-body"
    assert h["x-consumer-id"] == ANONYMOUS_ID
    assert "x-credential-identifier" not in h
    assert "x-consumer-custom-id" not in h


def test_anonymous_that_does_not_exist_is_500(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/anon-missing"))
    assert r.status_code == 500
    assert r.json()["message"] == (
        f"anonymous consumer {MISSING_ID} is configured but doesn't exist"
    )
    assert "request_id" in r.json()


# -- config ------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: key-auth\n").config.plugins[0]
    assert plugin.config == {
        "key_names": ["apikey"],
        "hide_credentials": False,
        "anonymous": None,
        "key_in_header": True,
        "key_in_query": True,
        "key_in_body": False,
        "run_on_preflight": True,
        "realm": None,
    }
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- {name: key-auth, config: {key_names: ['a b'], hide_credentials: 1, x: 1}}\n"
            "- {name: key-auth, consumer: c, route: r}\n"
            "consumers: [{username: c}]\nroutes: [{name: r, paths: [/]}]\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.key_names[0]: bad header name 'a b', allowed characters are "
        "A-Z, a-z, 0-9, '_', and '-'",
        "plugins[0].config.hide_credentials: expected a boolean",
        "plugins[0].config.x: unknown field",
        "plugins[1].consumer: value must be null",
    ]


def test_consumer_headers_for_a_client_and_for_the_anonymous_fallback() -> None:
    """set_consumer sets or clears every consumer header: the same consumer as an authenticated
    client and as the anonymous fallback gets each its own set, over a plugin's earlier edit."""
    from fastkong.config import load_config
    from fastkong.plugins.bundled._consumer import set_consumer
    from fastkong.plugins.context import RequestContext
    from fastkong.runtime import compile_runtime

    text = (
        '_format_version: "3.0"\nservices:\n- {name: s, host: h, routes: [{name: r, paths: [/]}]}\n'
        "consumers:\n- {username: bob, custom_id: c-1, keyauth_credentials: [{key: k}]}\n"
    )
    runtime = compile_runtime(load_config(text).config, "0" * 32)
    bob = next(iter(runtime.consumers.values()))
    credential = runtime.config.keyauth_credentials[0]  # type: ignore[union-attr]

    def edits(anonymous: bool) -> tuple[dict[str, str], list[str]]:
        scope = {"method": "GET", "path": "/", "headers": [], "query_string": b""}
        ctx = RequestContext(
            runtime, scope, None, runtime.routes[0], None, "/", "h", 80, "127.0.0.1", "id", 0.0
        )  # type: ignore[arg-type]  # noqa: E501
        ctx.upstream_set[b"x-anonymous-consumer"] = b"spoofed"  # set earlier in the chain
        if anonymous:
            set_consumer(ctx, bob, None, None)
        else:
            set_consumer(ctx, bob, credential, credential.id)
        found = {k.decode(): v.decode() for k, v in ctx.upstream_set.items()}  # type: ignore[union-attr]
        return found, sorted(k.decode() for k in ctx.upstream_remove)

    authenticated = {
        "x-consumer-id": bob.id,
        "x-consumer-custom-id": "c-1",
        "x-consumer-username": "bob",
        "x-credential-identifier": credential.id,
    }
    anonymous = {
        "x-consumer-id": bob.id,
        "x-consumer-custom-id": "c-1",
        "x-consumer-username": "bob",
        "x-anonymous-consumer": "true",
    }
    for _ in range(2):  # nothing carries over from one request to the next
        assert edits(False) == (authenticated, ["x-anonymous-consumer"])
        assert edits(True) == (anonymous, ["x-credential-identifier"])
