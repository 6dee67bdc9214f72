"""acl through a running gateway (Kong's spec/03-plugins/18-acl/02-access_spec.lua)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.base import Exit
from fastkong.plugins.bundled.acl import Acl
from fastkong.plugins.context import RequestContext
from fastkong.runtime import compile_runtime
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

ANON = "a0000000-0000-4000-8000-000000000001"
ANON_GROUP = "a0000000-0000-4000-8000-000000000002"
FORBIDDEN = "You cannot consume this service"


def config(echo: Echo) -> str:
    def route(name: str, acl: str, auth: str = "{name: key-auth}") -> str:
        plugins = (
            f"[{auth}, {{name: acl, config: {acl}}}]" if auth else f"[{{name: acl, config: {acl}}}]"
        )
        return f"  - name: {name}\n    paths: [/{name}]\n    plugins: {plugins}\n"

    def anon(consumer: str) -> str:
        return f"{{name: key-auth, config: {{anonymous: {consumer}}}}}"

    return (
        f"""
_format_version: "3.0"
consumers:
- {{id: {ANON}, username: anonymous}}
- {{id: {ANON_GROUP}, username: anonymous-with-group, acls: [{{group: everyone}}]}}
- username: admin
  keyauth_credentials: [{{key: admin-key}}]
  acls: [{{group: admin}}]
- username: pro
  keyauth_credentials: [{{key: pro-key}}]
  acls: [{{group: pro}}, {{group: hello}}]
- username: nogroups
  keyauth_credentials: [{{key: nogroup-key}}]
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
"""
        + route("allow-admin", "{allow: [admin]}")
        + route("allow-admin-hide", "{allow: [admin], hide_groups_header: true}")
        + route("deny-admin", "{deny: [admin]}")
        + route("allow-multi", "{allow: [pro, foo]}")
        + route("deny-multi", "{deny: [hello, foo]}")
        + route("no-auth", "{allow: [admin]}", auth="")
        + route("allow-everyone-anon", "{allow: [everyone]}", anon(ANON))
        + route("deny-everyone-anon", "{deny: [everyone]}", anon(ANON))
        + route("allow-everyone-anon-group", "{allow: [everyone]}", anon(ANON_GROUP))
        + route("deny-everyone-anon-group", "{deny: [everyone]}", anon(ANON_GROUP))
    )


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    return gateway_with(config(echo))


def get(gateway: Gateway, path: str, key: str | None = None, **headers: str) -> httpx.Response:
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if key is not None:
        sent["apikey"] = key
    return httpx.get(gateway.url(path), headers=sent)


def upstream(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return dict(response.json()["headers"])


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] == message
    assert body["request_id"] == response.headers["x-kong-request-id"]


def test_no_authentication_plugin_is_401(gateway: Gateway) -> None:
    assert_error(get(gateway, "/no-auth"), 401, "Unauthorized")


def test_allowed_consumer_gets_its_groups_upstream(gateway: Gateway) -> None:
    spoofed = {"x_consumer_groups": "admin", "x_authenticated_groups": "admin"}
    h = upstream(get(gateway, "/allow-admin", "admin-key", **spoofed))
    assert h["x-consumer-groups"] == "admin"
    assert "x-authenticated-groups" not in h
    h = upstream(get(gateway, "/allow-multi", "pro-key"))
    assert h["x-consumer-groups"] == "pro, hello"


def test_not_allowed(gateway: Gateway) -> None:
    assert_error(get(gateway, "/allow-admin", "pro-key"), 403, FORBIDDEN)
    assert_error(get(gateway, "/allow-admin", "nogroup-key"), 403, FORBIDDEN)


def test_hide_groups_header(gateway: Gateway) -> None:
    h = upstream(get(gateway, "/allow-admin-hide", "admin-key", x_consumer_groups="forged"))
    assert "x-consumer-groups" not in h
    assert "x-authenticated-groups" not in h


def test_deny(gateway: Gateway) -> None:
    assert_error(get(gateway, "/deny-admin", "admin-key"), 403, FORBIDDEN)
    assert upstream(get(gateway, "/deny-admin", "pro-key"))["x-consumer-groups"] == "pro, hello"
    assert_error(get(gateway, "/deny-multi", "pro-key"), 403, FORBIDDEN)
    assert upstream(get(gateway, "/deny-multi", "admin-key"))["x-consumer-groups"] == "admin"
    # A consumer without groups is never in a deny list.
    assert upstream(get(gateway, "/deny-admin", "nogroup-key"))["x-consumer-groups"] == ""


def test_auth_failure_comes_first(gateway: Gateway) -> None:
    r = get(gateway, "/allow-admin")
    assert_error(r, 401, "No API key found in request")


def test_anonymous_consumers(gateway: Gateway) -> None:
    assert_error(get(gateway, "/allow-everyone-anon"), 401, "Unauthorized")
    assert upstream(get(gateway, "/deny-everyone-anon"))["x-consumer-groups"] == ""
    h = upstream(get(gateway, "/allow-everyone-anon-group"))
    assert h["x-consumer-groups"] == "everyone"
    assert "x-authenticated-groups" not in h
    assert_error(get(gateway, "/deny-everyone-anon-group"), 403, FORBIDDEN)


def test_config_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- {name: acl, config: {allow: [a]}}\n").config.plugins[0]
    assert plugin.config == {
        "allow": ["a"],
        "deny": None,
        "hide_groups_header": False,
        "always_use_authenticated_groups": False,
    }
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- {name: acl}\n"
            "- {name: acl, route: r, config: {allow: [a], deny: [b]}}\n"
            "- {name: acl, service: s, config: {allow: a, hide_groups_header: 1}}\n"
            "- {name: acl, consumer: c, config: {deny: [a]}}\n"
            "routes: [{name: r, paths: [/]}]\nservices: [{name: s, url: 'http://x'}]\n"
            "consumers: [{username: c}]\n"
        )
    fields = "'config.allow', 'config.deny'"
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        f"plugins[0]: at least one of these fields must be non-empty: {fields}",
        f"plugins[1]: exactly one of these fields must be non-empty: {fields}",
        "plugins[2].config.allow: expected an array",
        "plugins[2].config.hide_groups_header: expected a boolean",
        "plugins[3].consumer: value must be null",
    ]


# -- authenticated groups (set by auth plugins without consumers, e.g. ldap-auth) ---------------
def run_acl(acl_config: str, *, consumer: bool, credential: bool, groups: Any) -> Any:
    text = (
        '_format_version: "3.0"\n'
        "consumers: [{id: " + ANON + ", username: c, acls: [{group: admin}]}]\n"
        "routes: [{name: r, paths: [/]}]\n"
        f"plugins: [{{name: acl, route: r, config: {acl_config}}}]\n"
    )
    runtime = compile_runtime(load_config(text).config, "0" * 32)
    plan = runtime.routes[0]
    (plugin,) = plan.plugins
    assert isinstance(plugin, Acl)
    scope = {"method": "GET", "path": "/", "headers": [], "query_string": b""}
    ctx = RequestContext(runtime, scope, None, plan, None, "/", "h", 80, "127.0.0.1", "id", 0.0)  # type: ignore[arg-type]
    if consumer:
        ctx.consumer = runtime.consumers[ANON]
    if credential:
        ctx.credential = object()
    ctx.authenticated_groups = groups
    result = asyncio.run(plugin.access(ctx))
    if isinstance(result, Exit):
        return result.status, result.message
    return {k.decode(): v.decode() for k, v in ctx.upstream_set.items()}, sorted(
        ctx.upstream_remove
    )


def test_authenticated_groups_without_consumer() -> None:
    assert run_acl("{allow: [admin]}", consumer=False, credential=False, groups=["admin"]) == (
        {"x-authenticated-groups": "admin"},
        [b"x-consumer-groups"],
    )
    assert run_acl("{allow: [admin]}", consumer=False, credential=False, groups=["x"]) == (
        403,
        FORBIDDEN,
    )
    assert run_acl("{deny: [x]}", consumer=False, credential=False, groups=None) == (
        401,
        "Unauthorized",
    )
    # A credential without a consumer and without groups is forbidden, not unauthenticated.
    assert run_acl("{allow: [admin]}", consumer=False, credential=True, groups=None) == (
        403,
        FORBIDDEN,
    )


def test_authenticated_groups_override_anonymous_consumer_groups() -> None:
    found = run_acl("{allow: [ldap]}", consumer=True, credential=False, groups=["ldap"])
    assert found[0] == {"x-authenticated-groups": "ldap"}
    # An authenticated consumer's own groups win, unless always_use_authenticated_groups.
    found = run_acl("{allow: [admin]}", consumer=True, credential=True, groups=["ldap"])
    assert found[0] == {"x-consumer-groups": "admin"}
    found = run_acl(
        "{allow: [admin], always_use_authenticated_groups: true}",
        consumer=True,
        credential=True,
        groups=["ldap"],
    )
    assert found == (403, FORBIDDEN)
