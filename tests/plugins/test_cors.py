"""cors through a running gateway (Kong's spec/03-plugins/13-cors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
OPTS = {
    "origins": ["example.test"],
    "methods": ["GET"],
    "headers": ["origin", "type", "accepts"],
    "exposed_headers": ["x-auth-token"],
    "max_age": 23,
    "credentials": True,
}

# Kong's regex test table: origins -> {request Origin: expected Access-Control-Allow-Origin},
# where True echoes the request's Origin and False means no header.
REGEX_CASES: list[tuple[list[str], dict[str, str | bool]]] = [
    (
        ["foo.test"],  # a single plain entry is sent as is, whatever the request
        {"http://evil.test": "foo.test", "http://foo.test:80": "foo.test"},
    ),
    (
        ["https://bar.test:1234"],
        {"http://evil.test": "https://bar.test:1234", "https://bar.test:1234": True},
    ),
    (
        ["foo\\.test"],  # a regex without ':' is anchored and matched on the host
        {
            "http://evil.test": False,
            "http://foo.test": True,
            "http://foo.test.evil.test": False,
            "http://something.foo.test": False,
            "http://foo.test:80": "http://foo.test",
            "https://foo.test:8000": True,
            "http://foobtest": False,
        },
    ),
    (
        ["(.*[./])?foo\\.test:8000"],  # with ':', matched on scheme://host:port
        {
            "http://foo.test": False,
            "http://foo.test:8000": True,
            "https://foo.test:8000": True,
            "http://foo.test:90": False,
        },
    ),
    (
        ["^http://(.*[.])?foo\\.test(:(80|90))?$"],  # explicitly anchored
        {
            "http://foo.test": True,
            "http://something.foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "http://foo.test:90": True,
            "http://foo.test:8000": False,
            "https://foo.test:8000": False,
        },
    ),
    (
        ["foo.test", "bar.test"],  # several plain hosts: compared with the full origin
        {"http://foo.test": False, "http://bar.test": False},
    ),
    (
        ["http://foo.test", "https://bar.test:1234"],
        {
            "http://foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "http://foo.test:8000": False,
            "https://bar.test:1234": True,
            "http://evil.test": False,
        },
    ),
    (
        ["bar.test", "(.*\\.)?foo\\.test"],
        {
            "http://something.foo.test": True,
            "http://foo.test:8000": True,
            "http://bar.test": False,
            "http://foo.test.evil.test": False,
        },
    ),
]


def cors(config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"name": "cors", "config": config or {}}]


ROUTES: dict[str, list[dict[str, Any]]] = {
    "default": cors(),
    "empty": cors({"origins": []}),
    "opts": cors(OPTS),
    "continue": cors({**OPTS, "preflight_continue": True}),
    "star-credentials": cors({"origins": ["*"], "credentials": True}),
    "star-among": cors({"origins": ["foo.bar", "*"]}),
    "flat": cors({"origins": ["http://my-site.test", "http://my-other-site.test"]}),
    "private": cors({"private_network": True, "origins": ["allowed-domain.test"]}),
    "absent-skip": cors(
        {
            "allow_origin_absent": False,
            "origins": ["foo.bar"],
            "exposed_headers": ["x-auth-token"],
            "credentials": True,
        }
    ),
    "absent-ok": cors(
        {"origins": ["foo.bar"], "exposed_headers": ["x-auth-token"], "credentials": True}
    ),
    "terminated": [
        *cors({"origins": ["example.test"], "credentials": True}),
        {"name": "request-termination", "config": {"status_code": 403, "message": "Closed"}},
    ],
    **{f"regex-{i}": cors({"origins": origins}) for i, (origins, _) in enumerate(REGEX_CASES)},
}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes = [
        {"name": name, "paths": [f"/{name}"], "plugins": plugins}
        for name, plugins in ROUTES.items()
    ]
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
    }
    return gateway_with(json.dumps(config))


def preflight(gateway: Gateway, route: str, origin: str, **headers: str) -> httpx.Response:
    sent = {"origin": origin, "access-control-request-method": "GET"}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.request("OPTIONS", gateway.url(f"/{route}"), headers=sent)


def assert_empty_200(r: httpx.Response) -> None:
    assert r.status_code == 200
    assert r.headers["content-length"] == "0"
    assert r.content == b""
    assert "x-echo-server" not in r.headers  # answered by the gateway, not proxied


# -- preflight ---------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["default", "empty"])
def test_preflight_defaults(gateway: Gateway, route: str) -> None:
    r = preflight(gateway, route, "origin1.test")
    assert_empty_200(r)
    assert r.headers["access-control-allow-methods"] == DEFAULT_METHODS
    assert r.headers["access-control-allow-origin"] == "*"
    for absent in ("allow-headers", "expose-headers", "allow-credentials", "max-age"):
        assert f"access-control-{absent}" not in r.headers
    assert "vary" not in r.headers


def test_preflight_star_with_credentials_echoes_origin(gateway: Gateway) -> None:
    r = preflight(gateway, "star-credentials", "origin5.test")
    assert_empty_200(r)
    assert r.headers["access-control-allow-origin"] == "origin5.test"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"
    assert r.headers["access-control-allow-methods"] == DEFAULT_METHODS


def test_preflight_star_among_origins_allows_all(gateway: Gateway) -> None:
    r = preflight(gateway, "star-among", "http://www.example.net")
    assert_empty_200(r)
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in r.headers


def test_preflight_config_options(gateway: Gateway) -> None:
    r = preflight(gateway, "opts", "origin5.test")
    assert_empty_200(r)
    assert r.headers["access-control-allow-methods"] == "GET"
    assert r.headers["access-control-allow-origin"] == "example.test"
    assert r.headers["access-control-max-age"] == "23"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-headers"] == "origin,type,accepts"
    assert r.headers.get_list("vary") == ["Origin"]
    assert "access-control-expose-headers" not in r.headers


def test_preflight_echoes_request_headers(gateway: Gateway) -> None:
    r = preflight(
        gateway, "star-credentials", "origin5.test", access_control_request_headers="origin,x"
    )
    assert_empty_200(r)
    assert r.headers["access-control-allow-headers"] == "origin,x"


def test_preflight_continue_proxies_without_cors_headers(gateway: Gateway) -> None:
    r = preflight(gateway, "continue", "origin5.test")
    assert r.status_code == 200
    assert r.json()["method"] == "OPTIONS"
    assert not [h for h in r.headers if h.startswith("access-control-")]
    assert "vary" not in r.headers


def test_private_network(gateway: Gateway) -> None:
    r = preflight(
        gateway, "private", "allowed-domain.test", access_control_request_private_network="true"
    )
    assert_empty_200(r)
    assert r.headers["access-control-allow-private-network"] == "true"
    r = preflight(gateway, "private", "allowed-domain.test")
    assert "access-control-allow-private-network" not in r.headers


def test_options_without_request_method_is_not_a_preflight(gateway: Gateway) -> None:
    r = httpx.request("OPTIONS", gateway.url("/opts"), headers={"origin": "http://x.test"})
    assert r.json()["method"] == "OPTIONS"  # proxied
    assert r.headers["access-control-allow-origin"] == "example.test"
    assert r.headers["access-control-expose-headers"] == "x-auth-token"


CASES = [
    (f"regex-{i}", origin, expected)
    for i, (_, table) in enumerate(REGEX_CASES)
    for origin, expected in sorted(table.items())
]


@pytest.mark.parametrize(("route", "origin", "expected"), CASES)
def test_origin_matching(gateway: Gateway, route: str, origin: str, expected: str | bool) -> None:
    r = preflight(gateway, route, origin)
    assert_empty_200(r)
    if expected is False:
        assert "access-control-allow-origin" not in r.headers
    else:
        want = origin if expected is True else expected
        assert r.headers["access-control-allow-origin"] == want
        assert r.headers["access-control-allow-methods"] == DEFAULT_METHODS
        assert "access-control-allow-headers" not in r.headers
        assert "access-control-allow-credentials" not in r.headers
        assert "access-control-max-age" not in r.headers
    assert r.headers["vary"] == "Origin"


# -- actual requests ---------------------------------------------------------------------------
def test_request_defaults(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/default"), headers={"origin": "http://a.test"})
    assert r.status_code == 200
    assert r.headers["x-echo-server"] == "echo-1"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "vary" not in r.headers
    assert "access-control-allow-methods" not in r.headers  # preflight only


def test_request_with_config_options(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/opts"), headers={"origin": "http://a.test"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "example.test"
    assert r.headers["access-control-expose-headers"] == "x-auth-token"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"
    for absent in ("allow-methods", "allow-headers", "max-age"):
        assert f"access-control-{absent}" not in r.headers


def test_request_with_star_and_credentials(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/star-credentials"), headers={"origin": "http://a.test"})
    assert r.headers["access-control-allow-origin"] == "http://a.test"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"


def test_flat_origins(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/flat"), headers={"origin": "http://my-site.test"})
    assert r.headers["access-control-allow-origin"] == "http://my-site.test"
    assert r.headers["vary"] == "Origin"
    r = httpx.get(gateway.url("/flat"), headers={"origin": "http://my-other-site.test"})
    assert r.headers["access-control-allow-origin"] == "http://my-other-site.test"
    r = httpx.get(gateway.url("/flat"), headers={"origin": "http://bad-guys.test"})
    assert "access-control-allow-origin" not in r.headers
    assert r.headers["vary"] == "Origin"


def test_origin_absent(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/absent-skip"))
    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("access-control-")]
    r = httpx.get(gateway.url("/absent-skip"), headers={"origin": ""})
    assert not [h for h in r.headers if h.startswith("access-control-")]
    r = httpx.get(gateway.url("/absent-ok"))
    assert r.headers["access-control-allow-origin"] == "foo.bar"
    assert r.headers["access-control-expose-headers"] == "x-auth-token"
    assert r.headers["access-control-allow-credentials"] == "true"


def test_headers_on_a_response_another_plugin_gave(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/terminated"), headers={"origin": "http://a.test"})
    assert r.status_code == 403
    assert r.json() == {"message": "Closed"}
    assert r.headers["access-control-allow-origin"] == "example.test"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"


# -- schema ------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: cors\n").config.plugins[0]
    assert plugin.config == {
        "origins": None,
        "headers": None,
        "exposed_headers": None,
        "methods": DEFAULT_METHODS.split(","),
        "max_age": None,
        "credentials": False,
        "private_network": False,
        "preflight_continue": False,
        "allow_origin_absent": True,
    }
    load_config(
        base + "- {name: cors, config: {origins: ['*', 'example.com', '.*\\.ex(?:-a)?\\.com']}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- name: cors\n"
            "  config: {origins: ['.*.example.com', 'invalid_**regex'], methods: [GET, FAKE],"
            " max_age: soon, credentials: 1}\n"
            "- {name: cors, consumer: c}\n"
            "consumers: [{username: c}]\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.origins[1]: 'invalid_**regex' is not a valid regex",
        "plugins[0].config.methods[1]: expected one of: " + DEFAULT_METHODS.replace(",", ", "),
        "plugins[0].config.max_age: expected a number",
        "plugins[0].config.credentials: expected a boolean",
        "plugins[1].consumer: value must be null",
    ]
