"""ip-restriction through a running gateway (Kong's spec/03-plugins/17-ip-restriction)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled.ip_restriction import IpMatcher, parse_client_ip
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

NOT_ALLOWED = "IP address not allowed: 127.0.0.1"


def restrict(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "ip-restriction", "config": config}]


ROUTES: dict[str, list[dict[str, Any]]] = {
    "allow-local": restrict(allow=["127.0.0.1"]),
    "allow-range": restrict(allow=["10.0.0.0/8", "127.0.0.0/30", "::1"]),
    "allow-other": restrict(allow=["10.0.0.0/8", "2001:db8::/32"]),
    "deny-local": restrict(deny=["127.0.0.0/24"]),
    "deny-other": restrict(deny=["127.0.0.2", "10.0.0.1/32"]),
    "deny-wins": restrict(deny=["127.0.0.1"], allow=["127.0.0.0/8"]),
    "custom": restrict(deny=["127.0.0.1"], status=401, message="Forbidden"),
    "custom-status": restrict(allow=["10.0.0.0/8"], status=451),
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


def assert_refused(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.json() == {"message": message, "request_id": r.headers["x-kong-request-id"]}
    assert "x-echo-server" not in r.headers


@pytest.mark.parametrize("route", ["allow-local", "allow-range", "deny-other"])
def test_allowed(gateway: Gateway, route: str) -> None:
    r = httpx.get(gateway.url(f"/{route}"))
    assert r.status_code == 200
    assert r.headers["x-echo-server"] == "echo-1"


@pytest.mark.parametrize("route", ["allow-other", "deny-local", "deny-wins"])
def test_refused(gateway: Gateway, route: str) -> None:
    assert_refused(httpx.get(gateway.url(f"/{route}")), 403, NOT_ALLOWED)


def test_custom_status_and_message(gateway: Gateway) -> None:
    assert_refused(httpx.get(gateway.url("/custom")), 401, "Forbidden")
    assert_refused(httpx.get(gateway.url("/custom-status")), 451, NOT_ALLOWED)


def test_error_body_follows_accept(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/deny-local"), headers={"accept": "text/plain"})
    assert r.status_code == 403
    assert r.text == f"{NOT_ALLOWED}\nrequest_id: {r.headers['x-kong-request-id']}\n"


def test_forwarded_for_from_an_untrusted_peer_is_ignored(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/allow-other"), headers={"x-forwarded-for": "10.0.0.1"})
    assert_refused(r, 403, NOT_ALLOWED)


# -- matching ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ranges", "address", "inside"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["10.0.0.0/8"], "10.255.1.2", True),
        (["10.0.0.0/8"], "11.0.0.0", False),
        (["0.0.0.0/0"], "203.0.113.9", True),
        (["0.0.0.0/0"], "::1", False),
        (["::/0"], "2001:db8::1", True),
        (["::/0"], "127.0.0.1", False),
        (["2001:db8::/32"], "2001:db8:ffff::1", True),
        (["2001:db8::/32"], "2001:db9::1", False),
        (["::1", "10.1.2.3/32"], "::1", True),
        (["10.1.2.3/32", "fe80::/10"], "fe80::1234", True),
        (["192.168.1.7/24"], "192.168.1.200", True),  # host bits are ignored, as Kong does
    ],
)
def test_ip_matcher(ranges: list[str], address: str, inside: bool) -> None:
    assert (ipaddress.ip_address(address) in IpMatcher(ranges)) is inside


def test_client_ip_parsing() -> None:
    assert parse_client_ip("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_client_ip("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_client_ip("unix:/tmp/sock") is None
    assert repr(IpMatcher(["10.0.0.0/8", "10.1.0.0/16", "::1"])) == (
        "<IpMatcher ranges=3 v4_prefixes=2 v6_prefixes=1>"
    )


# -- schema ------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- {name: ip-restriction, config: {allow: ['::/0']}}\n")
    assert plugin.config.plugins[0].config == {
        "allow": ["::/0"],
        "deny": None,
        "status": None,
        "message": None,
    }
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- {name: ip-restriction, config: {deny: [], allow: []}}\n"
            "- {name: ip-restriction, route: r, config: {allow: 12}}\n"
            "- name: ip-restriction\n"
            "  service: s\n"
            "  config: {allow: [127.0.0.1/32, hello, 0.0.0.0/33, '::1/129'], deny: ['::/a'],"
            " status: x, message: 1}\n"
            "routes: [{name: r, paths: [/]}]\nservices: [{name: s, host: example.test}]\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0]: at least one of these fields must be non-empty: 'config.allow', 'config.deny'",
        "plugins[1].config.allow: expected an array",
        "plugins[2].config.allow[1]: invalid ip or cidr range: 'hello'",
        "plugins[2].config.allow[2]: invalid ip or cidr range: '0.0.0.0/33'",
        "plugins[2].config.allow[3]: invalid ip or cidr range: '::1/129'",
        "plugins[2].config.deny[0]: invalid ip or cidr range: '::/a'",
        "plugins[2].config.status: expected a number",
        "plugins[2].config.message: expected a string",
    ]
