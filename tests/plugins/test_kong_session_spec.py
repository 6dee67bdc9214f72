"""Kong's ``spec/03-plugins/30-session`` specs (DB-less run): ``01-access_spec.lua`` against a
real ``fastkong start`` gateway over TLS (Kong's ``proxy_ssl_client``) with the echo upstream
(Kong's ``mock_upstream``), and ``03-session_spec.lua`` against fastkong's plugin directly.

Ported:

- 01-access 320-349 "groups are retrieved from session and headers are set": Kong's route4 also
  has the custom test plugin ``ctx-checker``, which sets ``ngx.ctx.authenticated_groups`` to
  ``agents, doubleagents`` so that the session stores them at login. fastkong runs no custom
  Lua plugin and none of its bundled plugins sets groups, so the test signs in with the key as
  Kong's does, then adds the groups to the session it got (the cookie opened and sealed again
  with fastkong's codec, as the plugin stores them: ``[consumer id, credential id, groups]``)
  and sends that cookie, as the spec does. Opening the cookie needs the route's secret, so
  route4's session has a ``secret`` set (Kong's spec leaves the default, drawn per node).
- 03-session 27-120, every ``it``: ``session.logout(conf)`` with Kong's mocked request (every
  query argument present, the body ``{session_logout = true}``) is fastkong's
  ``SessionPlugin.wants_logout`` on a request with the method, the ``logout_query_arg`` in the
  query when the spec's conf sets one, and a form body ``session_logout=true``. A conf without
  ``logout_query_arg`` gets Kong's schema default (``session_logout``), which a real config
  always has: there the request carries no query. 36-63 overlap ``test_session.py``'s
  ``test_logout_by_body_argument``; they stay in the table as the spec's confs.

Covered by ``test_session.py`` (not repeated): 01-access 185-210
(``test_key_auth_login_sets_the_cookie``), 212-248 and 281-317
(``test_the_cookie_alone_authenticates_the_consumer``: the consumer headers, no anonymous, no
custom id, no groups), 250-279 (``test_remember_cookie``).

Left out: ``02-kong_storage_adapter_spec.lua`` (``storage = "kong"``, sessions in Kong's
database: a config error DB-less, docs/plugins.md "session").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fastkong.config import load_config
from fastkong.plugins.bundled._session_cookie import CookieSession, cookie_lookup
from fastkong.plugins.bundled.session import SessionPlugin
from fastkong.runtime import compile_runtime
from tests.helpers import Echo, Gateway, echoed_headers, free_port
from tests.plugins.test_session import context, runtime_with

COOP = "c0000000-0000-4000-8000-000000000001"
COOP_KEY = "c0000000-0000-4000-8000-000000000002"
ANON = "c0000000-0000-4000-8000-000000000003"
SECRET = "a secret for the session spec port, 32+ chars"


# -- 01-access_spec.lua ------------------------------------------------------------------------
def access_config(echo: Echo) -> dict[str, Any]:
    """Kong's lazy_setup 13-178, route4 (mockbin.test) with a ``secret`` (module docstring)."""
    return {
        "_format_version": "3.0",
        "consumers": [
            {
                "id": COOP,
                "username": "coop",
                "keyauth_credentials": [{"id": COOP_KEY, "key": "kong"}],
            },
            {
                "id": ANON,
                "username": "anon",
                "plugins": [
                    {
                        "name": "request-termination",
                        "config": {"status_code": 403, "message": "So it goes."},
                    }
                ],
            },
        ],
        "services": [
            {
                "name": "echo",
                "url": f"http://127.0.0.1:{echo.port}",
                "routes": [
                    {
                        "name": "route4",
                        "paths": ["/headers"],
                        "hosts": ["mockbin.test"],
                        "plugins": [
                            {"name": "session", "config": {"secret": SECRET}},
                            {"name": "key-auth", "config": {"anonymous": ANON}},
                        ],
                    }
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("session-access"), json.dumps(access_config(echo)))
    gw.ssl_port = free_port()  # Kong's spec sends every request with proxy_ssl_client
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def route4_plugin(echo: Echo) -> SessionPlugin:
    """The session plugin of route4 as the gateway builds it (same config, same settings)."""
    runtime = compile_runtime(load_config(json.dumps(access_config(echo))).config, "0" * 32)
    (plugin,) = [p for p in runtime.routes[0].plugins if isinstance(p, SessionPlugin)]
    return plugin


def ssl_get(gateway: Gateway, path: str, **headers: str) -> httpx.Response:
    """One request on a new TLS connection (Kong's spec: a new proxy_ssl_client each time)."""
    with httpx.Client(verify=False) as client:
        return client.get(f"https://127.0.0.1:{gateway.ssl_port}{path}", headers=headers)


@pytest.mark.integration
def test_groups_are_retrieved_from_session_and_headers_are_set(access: Gateway, echo: Echo) -> None:
    """01-access 320-349."""
    # make a request with a valid key, grab the cookie for later
    r = ssl_get(access, "/headers", host="mockbin.test", apikey="kong")
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"].partition(";")[0]
    name, _, _ = cookie.partition("=")
    assert name == "session"

    # what ctx-checker's groups would have put in the session at login
    plugin = route4_plugin(echo)
    session = CookieSession(plugin.settings, cookie_lookup([cookie]), int(time.time()))
    exists, reason = session.open()
    assert exists, reason
    assert session.data == [COOP, COOP_KEY]
    session.data = [COOP, COOP_KEY, ["agents", "doubleagents"]]
    session.save()
    cookie = session.cookies["session"].partition(";")[0]

    r = ssl_get(access, "/headers", host="mockbin.test", cookie=cookie)
    assert r.status_code == 200, r.text
    seen = echoed_headers(r.json())
    assert seen["x-authenticated-groups"] == ["agents, doubleagents"]
    assert seen["x-consumer-id"] == [COOP]
    assert seen["x-credential-identifier"] == [COOP_KEY]


# -- 03-session_spec.lua -----------------------------------------------------------------------
def conf(methods: str, arg: str, read: bool | None = None) -> str:
    """The spec's conf table as a plugin config: ``arg`` is ``query`` or ``post``."""
    text = f"logout_methods: [{methods}], logout_{arg}_arg: session_logout"
    return (
        "{" + text + ("" if read is None else f", read_body_for_logout: {str(read).lower()}") + "}"
    )


@pytest.mark.parametrize(
    ("line", "method", "config", "logs_out"),
    [
        (27, "GET", conf("GET, POST", "query"), True),
        (36, "POST", conf("POST", "post", True), True),
        (46, "POST", conf("POST", "post"), False),
        (55, "POST", conf("POST", "post", False), False),
        (65, "DELETE", conf("DELETE", "post", True), True),
        (75, "DELETE", conf("DELETE", "post"), False),
        (84, "DELETE", conf("DELETE", "post", False), False),
        (95, "DELETE", conf("DELETE", "query"), True),
        (104, "GET", conf("DELETE", "query"), False),
        (113, "POST", conf("DELETE", "post"), False),
    ],
)
def test_logout(line: int, method: str, config: str, logs_out: bool) -> None:
    runtime, plugin = runtime_with(config)
    query = b"session_logout" if "logout_query_arg" in config else b""
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    ctx = context(runtime, method, query, headers, b"session_logout=true")
    assert asyncio.run(plugin.wants_logout(ctx)) is logs_out, line
