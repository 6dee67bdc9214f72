"""session (Kong's spec/03-plugins/30-session): the cookie codec with an injected clock, the
schema, the plugin's phases on a request context, and a running two-worker gateway with key-auth
and a real upstream."""

from __future__ import annotations

import asyncio
import string
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastkong.config import ConfigError, load_config
from fastkong.plugins.base import Exit
from fastkong.plugins.bundled._session_cookie import (
    HEADER_ENCODED_SIZE,
    CookieSession,
    Settings,
    cookie_lookup,
)
from fastkong.plugins.bundled.session import NODE_SECRET, SessionPlugin
from fastkong.plugins.context import RequestContext
from fastkong.runtime import Runtime, compile_runtime
from tests.helpers import Echo, Gateway, echoed_headers

SECRET = "correct horse battery staple"
T0 = 1_700_000_000
B64URL = string.ascii_letters + string.digits + "-_"
EXPIRED = "; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0"


# -- helpers -----------------------------------------------------------------------------------
def make(**kw: Any) -> Settings:
    return Settings(kw.pop("secret", SECRET), **kw)


def jar(set_cookies: dict[str, str], into: dict[str, str] | None = None) -> dict[str, str]:
    """What a browser sends back after ``Set-Cookie`` values: expired ones are dropped."""
    out = dict(into or {})
    for name, header in set_cookies.items():
        pair, _, attributes = header.partition(";")
        assert pair.startswith(name + "=")
        if "Max-Age=0" in attributes:
            out.pop(name, None)
        else:
            out[name] = pair[len(name) + 1 :]
    return out


def issue(
    s: Settings, data: Any = None, subject: str | None = "bob", now: int = T0
) -> dict[str, str]:
    session = CookieSession(s, {}.get, now)
    session.open()
    session.data = ["consumer-1", "credential-1"] if data is None else data
    session.subject = subject
    session.save()
    return jar(session.cookies)


def opened(s: Settings, cookies: dict[str, str], now: int) -> CookieSession | None:
    session = CookieSession(s, cookies.get, now)
    exists, _ = session.open()
    return session if exists else None


# -- the cookie ------------------------------------------------------------------------------
def test_round_trip_and_set_cookie_attributes() -> None:
    s = make()
    session = CookieSession(s, {}.get, T0)
    assert session.open() == (False, "missing session cookie")
    session.data = ["consumer-1", "credential-1", ["a", "b"]]
    session.subject = "bob"
    session.save()
    (header,) = session.cookies.values()
    value = header.partition(";")[0].removeprefix("session=")
    # Kong's spec: name=value; Path=/; SameSite=Strict; Secure; HttpOnly
    assert header.split("; ")[1:] == ["Path=/", "SameSite=Strict", "Secure", "HttpOnly"]
    assert set(value) <= set(B64URL)
    back = opened(s, {"session": value}, T0 + 10)
    assert back is not None
    assert back.data == ["consumer-1", "credential-1", ["a", "b"]]
    assert (back.subject, back.audience) == ("bob", "default")
    assert back.property("id") == session.property("id")
    assert back.property("timeout") == 890  # the idle timeout, the first to end
    assert back.property("rolling-timeout") == 3590
    assert back.property("absolute-timeout") == 86390


def test_cookie_attributes_follow_the_settings() -> None:
    def attributes(**kw: Any) -> list[str]:
        session = CookieSession(make(**kw), {}.get, T0)
        session.save()
        return next(iter(session.cookies.values())).split("; ")[1:]

    assert attributes(
        cookie_name="da_cookie", cookie_same_site="Lax", cookie_http_only=False, cookie_secure=False
    ) == ["Path=/", "SameSite=Lax"]
    assert attributes(cookie_domain="example.test", cookie_path="/app") == [
        "Domain=example.test",
        "Path=/app",
        "SameSite=Strict",
        "Secure",
        "HttpOnly",
    ]
    # SameSite=None is always Secure; "localhost" is no Domain attribute
    assert attributes(cookie_domain="localhost", cookie_same_site="None", cookie_secure=False) == [
        "Path=/",
        "SameSite=None",
        "Secure",
        "HttpOnly",
    ]


def test_every_changed_character_is_refused() -> None:
    s = make()
    value = issue(s)["session"]
    assert opened(s, {"session": value}, T0) is not None
    for i, char in enumerate(value):
        for other in (
            B64URL[(B64URL.index(char) + 1) % 64],
            B64URL[(B64URL.index(char) + 33) % 64],
        ):
            changed = value[:i] + other + value[i + 1 :]
            assert opened(s, {"session": changed}, T0) is None, i
    for broken in (
        value[:-1],
        value + "A",
        value[:HEADER_ENCODED_SIZE],
        "",
        value + "=",
        " " + value,
    ):
        assert opened(s, {"session": broken}, T0) is None


def test_a_wrong_secret_is_refused() -> None:
    cookies = issue(make())
    assert opened(make(secret="another secret"), cookies, T0) is None
    assert opened(make(), cookies, T0) is not None


def test_idle_timeout_and_touch() -> None:
    s = make()
    cookies = issue(s)
    assert opened(s, cookies, T0 + 900) is not None
    assert opened(s, cookies, T0 + 901) is None
    # idle for a minute or less: nothing is sent
    session = opened(s, cookies, T0 + 60)
    assert session is not None
    session.refresh()
    assert session.cookies == {}
    # longer: touched, same session id, the idle time counts from now
    session = opened(s, cookies, T0 + 500)
    assert session is not None
    session.refresh()
    touched = jar(session.cookies)
    assert touched["session"] != cookies["session"]
    again = opened(s, touched, T0 + 1400)
    assert again is not None
    assert again.property("id") == session.property("id")
    assert again.property("idling-timeout") == 0
    assert opened(s, touched, T0 + 1401) is None
    assert opened(s, cookies, T0 + 1400) is None


def test_rolling_timeout_renews_past_three_quarters() -> None:
    s = make(idling_timeout=0)
    cookies = issue(s)
    assert opened(s, cookies, T0 + 3600) is not None
    assert opened(s, cookies, T0 + 3601) is None
    session = opened(s, cookies, T0 + 2700)
    assert session is not None
    session.refresh()
    assert session.cookies == {}  # not past 0.75 * 3600
    session = opened(s, cookies, T0 + 2701)
    assert session is not None
    old_id = session.property("id")
    session.refresh()
    renewed = jar(session.cookies)
    fresh = opened(s, renewed, T0 + 2701 + 3600)
    assert fresh is not None
    assert fresh.property("id") != old_id  # saved again: a new session id, the same creation
    assert fresh.property("absolute-timeout") == 86400 - 2701 - 3600
    assert opened(s, renewed, T0 + 2701 + 3601) is None


def test_absolute_timeout_ends_a_session_however_renewed() -> None:
    s = make(idling_timeout=0)
    cookies = issue(s)
    now = T0
    while now + 2701 <= T0 + 86400:
        now += 2701
        session = opened(s, cookies, now)
        assert session is not None
        session.refresh()
        cookies = jar(session.cookies, cookies)
    assert opened(s, cookies, T0 + 86400) is not None
    assert opened(s, cookies, T0 + 86401) is None


def test_zero_disables_a_timeout() -> None:
    s = make(idling_timeout=0, rolling_timeout=0, absolute_timeout=0)
    cookies = issue(s)
    session = opened(s, cookies, T0 + 10 * 365 * 86400)
    assert session is not None
    assert session.property("timeout") is None
    session.refresh()
    assert session.cookies == {}


def test_remember_cookie_restores_the_session() -> None:
    s = make(remember=True, remember_rolling_timeout=3600)
    session = CookieSession(s, {}.get, T0)
    session.data = ["consumer-1", "credential-1"]
    session.save()
    assert list(session.cookies) == ["session", "remember"]
    remember = session.cookies["remember"].split("; ")
    assert remember[1:5] == ["Path=/", "SameSite=Strict", "Secure", "HttpOnly"]
    assert remember[5].startswith("Expires=") and remember[6] == "Max-Age=3600"
    cookies = jar(session.cookies)
    # the browser session ended: only the remember cookie comes back, after the idle timeout
    only = {"remember": cookies["remember"]}
    back = CookieSession(s, only.get, T0 + 3000)
    assert back.open() == (True, None)
    assert back.data == ["consumer-1", "credential-1"]
    assert set(back.cookies) == {"session", "remember"}  # a new session, a renewed remember
    restored = jar(back.cookies)
    again = opened(s, {"session": restored["session"]}, T0 + 3000 + 900)
    # a new session: created when restored
    assert again is not None and again.property("absolute-timeout") == 86400 - 900
    assert opened(s, only, T0 + 3601) is None  # past the remember rolling timeout
    # one cookie cannot stand for the other
    assert opened(s, {"remember": cookies["session"]}, T0) is None
    assert opened(make(), {"session": cookies["remember"]}, T0) is None


def test_a_large_session_spans_several_cookies() -> None:
    s = make()
    groups = [f"group-{i:05d}-{i * 7919 % 10007:05d}" for i in range(1500)]
    session = CookieSession(s, {}.get, T0)
    session.data = ["consumer-1", "credential-1", groups]
    session.save()
    assert list(session.cookies)[:2] == ["session", "session2"]
    for header in session.cookies.values():
        assert len(header.partition(";")[0]) <= 4096
    cookies = jar(session.cookies)
    back = opened(s, cookies, T0 + 1)
    assert back is not None and back.data[2] == groups
    missing = {k: v for k, v in cookies.items() if k != "session2"}
    assert opened(s, missing, T0 + 1) is None
    # saved small again: the cookies it no longer needs expire
    back.data = ["consumer-1", "credential-1"]
    back.save()
    assert (
        back.cookies["session2"] == "session2=; Path=/; SameSite=Strict; Secure; HttpOnly" + EXPIRED
    )
    small = jar(back.cookies, cookies)
    assert set(small) == {"session"}
    assert opened(s, small, T0 + 2) is not None


def test_audiences_share_one_cookie() -> None:
    a, b = make(audience="a"), make(audience="b")
    cookies = issue(a, ["consumer-a", "cred-a"])
    session = CookieSession(b, cookies.get, T0 + 1)
    assert session.open() == (False, "missing session audience")
    session.data = ["consumer-b", "cred-b"]
    session.save()
    both = jar(session.cookies)
    first, second = opened(a, both, T0 + 2), opened(b, both, T0 + 2)
    assert first is not None and first.data == ["consumer-a", "cred-a"]
    assert second is not None and second.data == ["consumer-b", "cred-b"]
    # logging out of one audience keeps the other's session
    first.logout()
    left = jar(first.cookies)
    assert opened(a, left, T0 + 3) is None
    kept = opened(b, left, T0 + 3)
    assert kept is not None and kept.data == ["consumer-b", "cred-b"]
    kept.logout()
    assert kept.cookies["session"].endswith(EXPIRED)


def test_cookie_lookup_reads_cookies_as_nginx_does() -> None:
    lookup = cookie_lookup(["a=1; Session=first;b=2", "session=second", "c = 3;d"])
    assert lookup("session") == "first"  # the first one, names compared in any letter case
    assert lookup("c") == "3"
    assert lookup("d") is None and lookup("x") is None
    assert cookie_lookup(None)("session") is None


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.one_of(st.text(max_size=40), st.lists(st.text(max_size=20), max_size=40)), max_size=4
    ),
    subject=st.one_of(st.none(), st.text(max_size=30)),
    audience=st.text(min_size=1, max_size=20),
)
def test_random_sessions_round_trip(data: list[Any], subject: str | None, audience: str) -> None:
    s = make(audience=audience)
    back = opened(s, issue(s, data, subject), T0 + 1)
    assert back is not None
    assert (back.data, back.subject, back.audience) == (data, subject, audience)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_changes_never_open(draw: st.DataObject) -> None:
    s = make()
    value = draw.draw(st.sampled_from(VALUES))
    at = draw.draw(st.integers(0, len(value) - 1))
    char = draw.draw(st.characters(codec="utf-8").filter(lambda c: c != value[at]))
    assert opened(s, {"session": value[:at] + char + value[at + 1 :]}, T0) is None


VALUES = [issue(make(), ["consumer", "credential", ["g"] * n])["session"] for n in (0, 1, 200)]


# -- schema ------------------------------------------------------------------------------------
def plugin_config(config: str = "{}") -> dict[str, Any]:
    text = f'_format_version: "3.0"\nplugins:\n- name: session\n  config: {config}\n'
    return dict(load_config(text).config.plugins[0].config)


def config_errors(config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        plugin_config(config)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_schema_defaults_are_kongs() -> None:
    assert (SessionPlugin.priority, SessionPlugin.no_consumer) == (1900, True)
    assert SessionPlugin.defines("access") and SessionPlugin.defines("response")
    found = plugin_config()
    assert {k: v for k, v in found.items() if v is not None} == {
        "secret": NODE_SECRET,
        "storage": "cookie",
        "audience": "default",
        "idling_timeout": 900,
        "rolling_timeout": 3600,
        "absolute_timeout": 86400,
        "stale_ttl": 10,
        "cookie_name": "session",
        "cookie_path": "/",
        "cookie_same_site": "Strict",
        "cookie_http_only": True,
        "cookie_secure": True,
        "remember": False,
        "remember_cookie_name": "remember",
        "remember_rolling_timeout": 604800,
        "remember_absolute_timeout": 2592000,
        "read_body_for_logout": False,
        "logout_methods": ["POST", "DELETE"],
        "logout_query_arg": "session_logout",
        "logout_post_arg": "session_logout",
        "hash_subject": False,
        "store_metadata": False,
    }
    # Kong's default secret: 44 random letters and digits, the same for every config this
    # process validates (so the workers it hands them to agree)
    assert len(NODE_SECRET) == 44 and NODE_SECRET.isalnum()
    assert plugin_config("{secret: null}")["secret"] == NODE_SECRET
    assert plugin_config("{secret: mine}")["secret"] == "mine"


def test_schema_validation() -> None:
    assert config_errors(
        "{cookie_same_site: lax, logout_methods: [PUT], response_headers: [id, nope], "
        "idling_timeout: soon, cookie_name: '', remember: 1, x: 1}"
    ) == [
        "plugins[0].config.cookie_same_site: expected one of: Strict, Lax, None, Default",
        "plugins[0].config.logout_methods[0]: expected one of: GET, POST, DELETE",
        "plugins[0].config.response_headers[1]: expected one of: id, audience, subject, "
        "timeout, idling-timeout, rolling-timeout, absolute-timeout",
        "plugins[0].config.idling_timeout: expected a number",
        "plugins[0].config.cookie_name: length must be at least 1",
        "plugins[0].config.remember: expected a boolean",
        "plugins[0].config.x: unknown field",
    ]
    # sets drop duplicates; numbers may be fractional
    found = plugin_config("{request_headers: [id, id, timeout], rolling_timeout: 10.5}")
    assert (found["request_headers"], found["rolling_timeout"]) == (["id", "timeout"], 10.5)


def test_kong_storage_and_infinities_are_refused() -> None:
    assert config_errors("{storage: kong, idling_timeout: .inf}") == [
        "plugins[0].config.storage: 'kong' keeps sessions in Kong's database, which fastkong "
        "does not have (DB-less); use 'cookie'",
        "plugins[0].config.idling_timeout: expected a finite number",
    ]


def test_a_secret_reference_resolves_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSION_SECRET", raising=False)
    assert config_errors("{secret: '{vault://env/session-secret}'}") == [
        "plugins[0].config.secret: unable to resolve reference {vault://env/session-secret} "
        "(could not get value from external vault (no value found))",
    ]
    monkeypatch.setenv("SESSION_SECRET", "from-a-kubernetes-secret")
    # the config keeps the reference; the worker's plugin gets the secret
    assert plugin_config("{secret: '{vault://env/session-secret}'}")["secret"] == (
        "{vault://env/session-secret}"
    )


def test_deprecated_shorthands_set_their_fields() -> None:
    found = plugin_config(
        "{cookie_lifetime: 60, rolling_timeout: 30, cookie_idletime: 0, cookie_renew: 5, "
        "cookie_discard: 3, cookie_samesite: 'off', cookie_httponly: false, "
        "cookie_persistent: true}"
    )
    assert {k: found[k] for k in ("rolling_timeout", "idling_timeout", "stale_ttl")} == {
        "rolling_timeout": 60,  # the shorthand wins, as in Kong
        "idling_timeout": 0,
        "stale_ttl": 3,
    }
    assert (found["cookie_same_site"], found["cookie_http_only"], found["remember"]) == (
        "Lax",
        False,
        True,
    )
    assert all(found[k] is None for k in ("cookie_lifetime", "cookie_renew", "cookie_samesite"))


# -- the phases on a request context -----------------------------------------------------------
BOB = "b0000000-0000-4000-8000-000000000002"
BOB_KEY = "c0000000-0000-4000-8000-000000000003"
BOB_BASIC = "c0000000-0000-4000-8000-000000000004"
GONE = "d0000000-0000-4000-8000-000000000005"


def runtime_with(config: str) -> tuple[Runtime, SessionPlugin]:
    text = (
        '_format_version: "3.0"\n'
        f"consumers:\n- id: {BOB}\n  username: bob\n  custom_id: bob-1\n"
        f"  keyauth_credentials: [{{id: {BOB_KEY}, key: kong}}]\n"
        f"  basicauth_credentials: [{{id: {BOB_BASIC}, username: bob, password: pw}}]\n"
        "routes: [{name: r, paths: [/]}]\n"
        f"plugins: [{{name: session, route: r, config: {config}}}]\n"
    )
    runtime = compile_runtime(load_config(text).config, "0" * 32)
    (plugin,) = runtime.routes[0].plugins
    assert isinstance(plugin, SessionPlugin)
    return runtime, plugin


def context(
    runtime: Runtime,
    method: str = "GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
) -> RequestContext:
    scope = {"method": method, "path": "/", "headers": headers or [], "query_string": query}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return RequestContext(
        runtime, scope, receive, runtime.routes[0], None, "/", "h", 80, "127.0.0.1", "id", 0.0
    )  # type: ignore[arg-type]


def login(runtime: Runtime, plugin: SessionPlugin, credential: Any, groups: Any = None) -> str:
    """A request an auth plugin authenticated: the Set-Cookie pair the response gets."""
    ctx = context(runtime)
    assert asyncio.run(plugin.access(ctx)) is None
    ctx.authenticate(runtime.consumers[BOB], credential)
    ctx.authenticated_groups = groups
    headers: list[tuple[bytes, bytes]] = []
    plugin.response(ctx, 200, headers)
    (cookie,) = [v.decode() for k, v in headers if k == b"set-cookie"]
    return cookie.partition(";")[0]


def test_a_session_authenticates_as_the_consumer_with_its_groups() -> None:
    runtime, plugin = runtime_with("{}")
    basic = runtime.config.basicauth_credentials[0]  # type: ignore[union-attr]
    cookie = login(runtime, plugin, basic, ["agents", "doubleagents"])
    ctx = context(runtime, headers=[(b"cookie", cookie.encode())])
    ctx.upstream_set[b"x-anonymous-consumer"] = b"spoofed"
    assert asyncio.run(plugin.access(ctx)) is None
    assert ctx.consumer is runtime.consumers[BOB]
    assert (ctx.credential.id, ctx.credential.consumer) == (BOB_BASIC, BOB)
    assert ctx.authenticated_groups == ["agents", "doubleagents"]
    assert {k.decode(): v for k, v in ctx.upstream_set.items()} == {
        "x-consumer-id": BOB.encode(),
        "x-consumer-custom-id": b"bob-1",
        "x-consumer-username": b"bob",
        # the credential's id, whichever plugin issued it (basic-auth itself sends the username)
        "x-credential-identifier": BOB_BASIC.encode(),
        "x-authenticated-groups": b"agents, doubleagents",
    }
    assert b"x-anonymous-consumer" in ctx.upstream_remove
    # the same consumer and credential: no new cookie
    headers: list[tuple[bytes, bytes]] = []
    plugin.response(ctx, 200, headers)
    assert headers == []


def test_a_session_of_a_deleted_consumer_is_ended() -> None:
    runtime, plugin = runtime_with("{}")
    gone = CookieSession(plugin.settings, {}.get, int(time.time()))
    gone.data = [GONE, "credential"]
    gone.save()
    cookie = gone.cookies["session"].partition(";")[0]
    ctx = context(runtime, headers=[(b"cookie", cookie.encode())])
    assert asyncio.run(plugin.access(ctx)) is None
    assert ctx.consumer is None
    headers = [(b"set-cookie", b"session=from-upstream"), (b"set-cookie", b"other=1")]
    plugin.response(ctx, 200, headers)
    assert headers == [
        (b"set-cookie", b"other=1"),
        (b"set-cookie", ("session=; Path=/; SameSite=Strict; Secure; HttpOnly" + EXPIRED).encode()),
    ]


@pytest.mark.parametrize(
    ("content_type", "body", "logs_out"),
    [
        ("application/x-www-form-urlencoded", b"a=1&session_logout", True),
        ("application/json", b'{"session_logout": null}', True),  # null is truthy in Lua
        ("application/json", b'{"session_logout": false}', False),
        ("application/json", b'["session_logout"]', False),
        ("text/plain", b"session_logout", False),
    ],
)
def test_logout_by_body_argument(content_type: str, body: bytes, logs_out: bool) -> None:
    runtime, plugin = runtime_with("{read_body_for_logout: true}")
    cookie = login(runtime, plugin, runtime.config.keyauth_credentials[0])  # type: ignore[union-attr]
    headers = [(b"cookie", cookie.encode()), (b"content-type", content_type.encode())]
    result = asyncio.run(plugin.access(context(runtime, "POST", headers=headers, body=body)))
    assert isinstance(result, Exit) == logs_out
    # not read by default
    runtime, plugin = runtime_with("{}")
    cookie = login(runtime, plugin, runtime.config.keyauth_credentials[0])  # type: ignore[union-attr]
    headers = [(b"cookie", cookie.encode()), (b"content-type", content_type.encode())]
    assert asyncio.run(plugin.access(context(runtime, "POST", headers=headers, body=body))) is None


# -- a running gateway -----------------------------------------------------------------------
ANON = "a0000000-0000-4000-8000-000000000001"


def gateway_config(echo: Echo) -> str:
    kong_setup = f"{{name: key-auth, config: {{anonymous: {ANON}}}}}"

    def route(name: str, session: str, auth: str = kong_setup) -> str:
        return (
            f"  - name: {name}\n    paths: [/{name}]\n"
            f"    plugins: [{{name: session, config: {session}}}, {auth}]\n"
        )

    return (
        f"""
_format_version: "3.0"
consumers:
- id: {ANON}
  username: anon
  plugins: [{{name: request-termination, config: {{status_code: 403, message: So it goes.}}}}]
- id: {BOB}
  username: bob
  keyauth_credentials: [{{id: {BOB_KEY}, key: kong}}]
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
"""
        + route("test1", "{}")
        + route(
            "test2",
            "{cookie_name: da_cookie, cookie_same_site: Lax, cookie_http_only: false, "
            "cookie_secure: false, logout_methods: [GET, POST], read_body_for_logout: true}",
        )
        + route("test5", "{remember: true, remember_rolling_timeout: 3600}")
        + route(
            "headers",
            "{request_headers: [id, audience, subject], response_headers: [id, timeout]}",
        )
        + route("and", "{}", "{name: key-auth}")
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("session"), gateway_config(echo), 2).start()
    yield gw
    assert gw.stop() == 0


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def sign_in(gateway: Gateway, path: str) -> tuple[str, httpx.Response]:
    response = httpx.get(gateway.url(path), headers={"apikey": "kong"})
    assert response.status_code == 200, response.text
    return set_cookies(response)[0].partition(";")[0], response


def upstream_headers(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.text
    return echoed_headers(response.json())


@pytest.mark.integration
def test_key_auth_login_sets_the_cookie(gateway: Gateway) -> None:
    cookie, response = sign_in(gateway, "/test1/status/200")
    (header,) = set_cookies(response)
    assert cookie.startswith("session=")
    assert header.split("; ")[1:] == ["Path=/", "SameSite=Strict", "Secure", "HttpOnly"]
    _, response = sign_in(gateway, "/test2")
    assert set_cookies(response)[0].split("; ")[1:] == ["Path=/", "SameSite=Lax"]


@pytest.mark.integration
def test_the_cookie_alone_authenticates_the_consumer(gateway: Gateway) -> None:
    # Kong's spec: the anonymous consumer is turned away, the key lets in, then the cookie
    assert httpx.get(gateway.url("/test2")).status_code == 403
    cookie, _ = sign_in(gateway, "/test2")
    response = httpx.get(gateway.url("/test2"), headers={"cookie": cookie})
    seen = upstream_headers(response)
    assert seen["x-consumer-id"] == [BOB]
    assert seen["x-consumer-username"] == ["bob"]
    assert seen["x-credential-identifier"] == [BOB_KEY]
    assert "x-anonymous-consumer" not in seen and "x-consumer-custom-id" not in seen
    assert "x-authenticated-groups" not in seen
    assert seen["cookie"] == [cookie]  # Kong forwards it
    assert set_cookies(response) == []  # nothing due: no new cookie


@pytest.mark.integration
def test_a_tampered_cookie_is_ignored(gateway: Gateway) -> None:
    cookie, _ = sign_in(gateway, "/test1")
    name, _, value = cookie.partition("=")
    i = HEADER_ENCODED_SIZE + 5
    tampered = f"{name}={value[:i]}{'A' if value[i] != 'A' else 'B'}{value[i + 1 :]}"
    # key-auth decides: with `anonymous`, the anonymous consumer (turned away here)
    response = httpx.get(gateway.url("/test1"), headers={"cookie": tampered})
    assert (response.status_code, response.json()) == (403, {"message": "So it goes."})
    # without it, key-auth's 401; Kong's logical AND holds even for a valid session
    for sent in (tampered, cookie):
        response = httpx.get(gateway.url("/and"), headers={"cookie": sent})
        assert response.status_code == 401
        assert response.json()["message"] == "No API key found in request"


@pytest.mark.integration
def test_logout_clears_the_cookie(gateway: Gateway) -> None:
    cookie, _ = sign_in(gateway, "/test1")
    # GET is not a logout method by default: proxied, still authenticated
    response = httpx.get(gateway.url("/test1?session_logout"), headers={"cookie": cookie})
    assert upstream_headers(response)["x-consumer-username"] == ["bob"]
    response = httpx.delete(gateway.url("/test1?session_logout=1"), headers={"cookie": cookie})
    assert (response.status_code, response.content) == (200, b"")
    assert set_cookies(response) == [
        "session=; Path=/; SameSite=Strict; Secure; HttpOnly" + EXPIRED
    ]
    # a form body on a route that reads it
    cookie, _ = sign_in(gateway, "/test2")
    response = httpx.post(
        gateway.url("/test2"), headers={"cookie": cookie}, data={"session_logout": "yes"}
    )
    assert (response.status_code, set_cookies(response)) == (
        200,
        ["da_cookie=; Path=/; SameSite=Lax" + EXPIRED],
    )


@pytest.mark.integration
def test_remember_cookie(gateway: Gateway) -> None:
    _, response = sign_in(gateway, "/test5/status/200")
    session, remember = set_cookies(response)
    parts = remember.split("; ")
    assert session.startswith("session=") and parts[0].startswith("remember=")
    assert parts[1:5] == ["Path=/", "SameSite=Strict", "Secure", "HttpOnly"]
    assert parts[5].startswith("Expires=") and parts[6] == "Max-Age=3600"
    # only the remember cookie: authenticated, and a new session cookie comes back
    response = httpx.get(gateway.url("/test5"), headers={"cookie": parts[0]})
    assert upstream_headers(response)["x-consumer-id"] == [BOB]
    assert sorted(c.partition("=")[0] for c in set_cookies(response)) == ["remember", "session"]


@pytest.mark.integration
def test_session_properties_in_headers(gateway: Gateway) -> None:
    cookie, response = sign_in(gateway, "/headers")
    sid = response.headers["session-id"]
    assert response.headers["session-timeout"] == "900"
    response = httpx.get(gateway.url("/headers"), headers={"cookie": cookie})
    seen = upstream_headers(response)
    assert seen["session-id"] == [sid]
    assert (seen["session-audience"], seen["session-subject"]) == (["default"], ["bob"])
    assert response.headers["session-id"] == sid
    assert int(response.headers["session-timeout"]) in (899, 900)
    # a client's own Session-Subject never passes for the gateway's
    spoofed = {"apikey": "kong", "session-subject": "mallory", "session-id": "x"}
    seen = upstream_headers(httpx.get(gateway.url("/headers"), headers=spoofed))
    assert "session-subject" not in seen and "session-id" not in seen


@pytest.mark.integration
def test_a_cookie_one_worker_issued_is_accepted_by_the_other(gateway: Gateway) -> None:
    """The default secret is drawn once, by the supervisor that validated the config, and
    reaches both workers with it (each new connection may land on either)."""
    assert len(gateway.worker_pids()) == 2
    cookie, response = sign_in(gateway, "/test1")
    issuer = response.headers["x-kong-request-id"][:16]  # a worker's own prefix
    seen: set[str] = set()
    for _ in range(200):
        response = httpx.get(gateway.url("/test1"), headers={"cookie": cookie})
        worker = response.headers["x-kong-request-id"][:16]
        assert upstream_headers(response)["x-consumer-id"] == [BOB], worker
        seen.add(worker)
        if worker != issuer:
            break
    assert seen - {issuer}, "every request landed on the worker that issued the cookie"
