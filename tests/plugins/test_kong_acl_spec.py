"""Kong's ``spec/03-plugins/18-acl/02-access_spec.lua`` (DB-less run) against one real
``fastkong start`` gateway and the echo upstream (Kong's ``mock_upstream`` ``/request``: the
echo's view of the request headers).

Both of the spec's Kong instances (6-1514 and the ``anonymous`` one, 1516-1897) are one config
here, their entities renamed where they clash (the second ``anonymous`` consumer). Kong starts
with ``plugins = "bundled, ctx-checker"``, a test plugin from ``spec/fixtures/custom_plugins``
that sets ``kong.ctx.shared.authenticated_groups`` (what an auth plugin without consumers
sets) or ``ngx.ctx.authenticated_credential``. Its twin here is a Python plugin of the same name,
priority and config (:mod:`tests.kong_ctx_checker`), installed for the gateway as a third-party
plugin is, through the ``fastkong.plugins`` entry-point group; it writes the same fields of
fastkong's request context the acl plugin reads (``ctx.shared``, ``ctx.credential``).

Ported (one row of :data:`CASES` per request, named by the spec line of its ``it``): 868/966,
892, 919, 943, 988, 1010, 1030, 1051, 1063, 1088, 1099, 1111, 1135, 1157, 1178, 1199, 1220,
1406, 1417, 1430, 1442, 1475, 1494, 1777, 1817 and 1837 (the ``-none-`` hosts), 1857 and 1877
(the hosts not below).

Left out:

- Covered by ``test_acl.py`` (same config shape, same request): 856/955/999 (allowed consumer
  and its ``X-Consumer-Groups``: ``test_allowed_consumer_gets_its_groups_upstream``), 880
  (anonymous consumer with a group: ``test_anonymous_consumers``), 907 (no auth plugin:
  ``test_no_authentication_plugin_is_401``), 931 (consumer without groups: ``test_not_allowed``),
  977 (``hide_groups_header``: ``test_hide_groups_header``), 1021/1039/1123/1148/1166/1208
  (deny lists, single and multi: ``test_deny``), 1077/1190 (multi allow list:
  ``test_allowed_consumer_gets_its_groups_upstream``); of 1817/1837/1857/1877 the
  ``allow-everyone-anonymous``, ``deny-everyone-anonymous``,
  ``allow-everyone-anonymous-with-group`` and ``deny-everyone-anonymous-with-group`` requests
  (``test_anonymous_consumers``).
- 1234-1403 ("Real-world usage"): consumers, credentials, routes, plugins and ACL groups created
  one by one through the admin API between requests; that needs a database (Kong DB-less
  refuses those admin API writes: its config changes only as a whole, ``POST /config``).
- 1456-1472 ("cache warmup acls group"): a ``pre-function`` (Lua) reading ``kong.cache`` after a
  restart with ``db_cache_warmup_entities``: Kong internals (its node cache), Lua.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx
import pytest

from tests import kong_ctx_checker
from tests.helpers import Echo, Gateway, echoed_headers

pytestmark = pytest.mark.integration

FORBIDDEN = "You cannot consume this service"

ANONYMOUS = "a0000000-0000-4000-8000-000000000001"  # 6-1514's, in group "anonymous"
ANON_NO_GROUP = "a0000000-0000-4000-8000-000000000002"  # 1516-1897's "anonymous"
ANON_WITH_GROUP = "a0000000-0000-4000-8000-000000000003"  # "anonymous_with_group"

CONSUMERS = f"""
consumers:
- {{username: consumer1, keyauth_credentials: [{{key: apikey123}}]}}
- {{username: consumer2, keyauth_credentials: [{{key: apikey124}}], acls: [{{group: admin}}]}}
- username: consumer3
  keyauth_credentials: [{{key: apikey125}}]
  acls: [{{group: pro}}, {{group: hello}}]
- username: consumer4
  keyauth_credentials: [{{key: apikey126}}]
  acls: [{{group: free}}, {{group: hello}}]
- username: consumer5
  keyauth_credentials: [{{key: apikey127}}]
  acls: [{{group: acl_group1}}]
- {{id: {ANONYMOUS}, username: anonymous, acls: [{{group: anonymous}}]}}
- {{id: {ANON_NO_GROUP}, username: anonymous-no-group}}
- {{id: {ANON_WITH_GROUP}, username: anonymous_with_group, acls: [{{group: everyone}}]}}
"""


def key_auth(anonymous: str | None = None) -> str:
    config = f", config: {{anonymous: {anonymous}}}" if anonymous else ""
    return f"{{name: key-auth{config}}}"


def shared(*groups: str) -> str:
    """ctx-checker setting ``kong.ctx.shared.authenticated_groups``."""
    return (
        "{name: ctx-checker, config: {ctx_kind: kong.ctx.shared, "
        f"ctx_set_field: authenticated_groups, ctx_set_array: [{', '.join(groups)}]}}}}"
    )


CREDENTIAL = (
    "{name: ctx-checker, config: {ctx_set_field: authenticated_credential, "
    "ctx_set_value: dummy-credential}}"
)

#: host -> (acl config, the route's other plugins), as the spec's lazy_setups insert them.
ROUTES: dict[str, tuple[str, list[str]]] = {
    # 12-830
    "acl1b.test": ("{allow: [admin]}", [CREDENTIAL]),
    "acl2.test": ("{allow: [admin]}", [key_auth()]),
    "acl2b.test": ("{allow: [admin]}", [shared("admin")]),
    "acl2c.test": ("{allow: [admin]}", [shared()]),
    "acl3b.test": ("{deny: [admin]}", [shared()]),
    "acl3c.test": ("{deny: [admin]}", [shared("admin")]),
    "acl3d.test": ("{deny: [none]}", []),
    "acl4.test": ("{allow: [admin, pro]}", [key_auth()]),
    "acl4b.test": ("{allow: [admin, pro]}", [shared("pro", "hello")]),
    "acl4c.test": ("{allow: [admin, pro]}", [shared("free", "hello")]),
    "acl5b.test": ("{deny: [admin, pro]}", [shared("pro", "hello")]),
    "acl5c.test": ("{deny: [admin, pro]}", [shared("free", "hello")]),
    "acl6b.test": ("{deny: [admin, pro, hello]}", [shared("free", "hello")]),
    "acl6c.test": ("{deny: [admin, pro, hello]}", [shared("pro", "hello")]),
    "acl7b.test": ("{allow: [admin, pro, hello]}", [shared("free", "hello")]),
    "acl8b.test": ("{allow: [anonymous]}", [key_auth(ANONYMOUS), shared("anonymous")]),
    "acl9b.test": ("{allow: [admin], hide_groups_header: true}", [shared("admin")]),
    "acl10b.test": ("{allow: [admin], hide_groups_header: false}", [shared("admin")]),
    "acl11.test": ("{allow: [admin, anonymous]}", [key_auth(ANONYMOUS), shared("admin")]),
    "acl12.test": ("{allow: [anonymous]}", [key_auth(ANONYMOUS), shared("anonymous")]),
    "acl13.test": ("{allow: [anonymous]}", [key_auth(ANONYMOUS), shared("admin")]),
    "acl15.test": (
        "{allow: [auth_group1], always_use_authenticated_groups: true}",
        [key_auth(), shared("auth_group1")],
    ),
    "acl16.test": (
        "{allow: [auth_group1], always_use_authenticated_groups: true}",
        [key_auth(), shared("auth_group2")],
    ),
    "acl17.test": ("{allow: [acl_group1], always_use_authenticated_groups: true}", [key_auth()]),
    # 1539-1768 (the spec's "deny-" hosts without anonymous have allow lists, as written there)
    "allow-everyone.test": ("{allow: [everyone]}", []),
    "allow-none.test": ("{allow: [none]}", []),
    "deny-everyone.test": ("{allow: [everyone]}", []),
    "deny-none.test": ("{allow: [none]}", []),
    "allow-none-anonymous.test": ("{allow: [none]}", [key_auth(ANON_NO_GROUP)]),
    "allow-none-anonymous-with-group.test": ("{allow: [none]}", [key_auth(ANON_WITH_GROUP)]),
    "deny-none-anonymous.test": ("{deny: [none]}", [key_auth(ANON_NO_GROUP)]),
    "deny-none-anonymous-with-group.test": ("{deny: [none]}", [key_auth(ANON_WITH_GROUP)]),
}


def config(echo: Echo) -> str:
    routes = ""
    for host, (acl, others) in ROUTES.items():
        plugins = ", ".join([*others, f"{{name: acl, config: {acl}}}"])
        routes += f"  - hosts: [{host}]\n    plugins: [{plugins}]\n"
    return (
        f'_format_version: "3.0"\n{CONSUMERS}services:\n'
        f"- name: mock-upstream\n  url: http://127.0.0.1:{echo.port}\n  routes:\n{routes}"
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    path = kong_ctx_checker.install(tmp_path_factory.mktemp("ctx-checker"))
    gateway = Gateway(tmp_path_factory.mktemp("gateway"), config(echo))
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PYTHONPATH", path)
            gateway.start()
        yield gateway
    finally:
        gateway.stop()


SKIP: Any = object()  # the spec does not look at this header


class Case(NamedTuple):
    line: int
    host: str
    key: str | None  # key-auth's ``apikey`` query argument
    status: int
    consumer_groups: str | None = SKIP  # X-Consumer-Groups upstream (None: absent)
    authenticated_groups: str | None = SKIP  # X-Authenticated-Groups upstream


CASES = [
    # Mapping to Consumer or Authenticated Groups
    Case(868, "acl2b.test", None, 200, None, "admin"),  # also 966
    Case(892, "acl8b.test", None, 200, None, "anonymous"),
    # Simple lists
    Case(919, "acl1b.test", None, 403),
    Case(943, "acl2c.test", None, 403),
    Case(988, "acl9b.test", None, 200, None, None),
    Case(1010, "acl10b.test", None, 200, None, "admin"),
    Case(1030, "acl3b.test", None, 200),
    Case(1051, "acl3c.test", None, 403),
    Case(1063, "acl3d.test", None, 401),
    # Multi lists (1088 asserts "pro, hello" or, a typo there, X-Consumer-Groups "hello, pro")
    Case(1088, "acl4b.test", None, 200, None, "pro, hello"),
    Case(1099, "acl4.test", "apikey126", 403),
    Case(1111, "acl4c.test", None, 403),
    Case(1135, "acl5b.test", None, 403),
    Case(1157, "acl5c.test", None, 200),
    Case(1178, "acl6b.test", None, 403),
    Case(1199, "acl7b.test", None, 200),
    Case(1220, "acl6c.test", None, 403),
    # Permits with / Forbids with
    Case(1406, "acl11.test", "apikey124", 200, "admin", None),
    Case(1417, "acl11.test", None, 200, None, "admin"),
    Case(1430, "acl12.test", "apikey124", 403),
    Case(1442, "acl13.test", None, 403),
    # always_use_authenticated_groups
    Case(1475, "acl15.test", "apikey127", 200, None, "auth_group1"),
    Case(1475, "acl16.test", "apikey127", 403),
    Case(1494, "acl17.test", "apikey127", 200, "acl_group1", None),
    Case(1494, "acl17.test", "apikey126", 403),
    # anonymous: without authentication
    Case(1777, "allow-everyone.test", None, 401),
    Case(1777, "allow-none.test", None, 401),
    Case(1777, "deny-everyone.test", None, 401),
    Case(1777, "deny-none.test", None, 401),
    # anonymous: with authentication without groups
    Case(1817, "allow-none-anonymous.test", None, 401),
    Case(1837, "deny-none-anonymous.test", None, 200, ""),
    # anonymous: with authentication with group
    Case(1857, "deny-none-anonymous-with-group.test", None, 200, "everyone", None),
    Case(1877, "allow-none-anonymous-with-group.test", None, 403),
]

MESSAGES = {401: "Unauthorized", 403: FORBIDDEN}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.line}-{c.host}-{c.key or 'nokey'}")
def test_access(gateway: Gateway, case: Case) -> None:
    params = {"apikey": case.key} if case.key else {}
    r = httpx.get(gateway.url("/request"), params=params, headers={"Host": case.host})
    assert r.status_code == case.status, r.text
    body = r.json()
    if case.status != 200:
        assert body["message"] == MESSAGES[case.status]
        assert "headers" not in body  # the gateway's answer, not the upstream's
        return
    seen = echoed_headers(body)
    for name, expected in (
        ("x-consumer-groups", case.consumer_groups),
        ("x-authenticated-groups", case.authenticated_groups),
    ):
        if expected is not SKIP:
            assert seen.get(name) == (None if expected is None else [expected]), name
