"""azure-functions (Kong's spec/03-plugins/35-azure-functions), against a function host on
loopback.

Kong connects to ``{appname}.{hostdomain}`` on port 443 (80 without TLS), and its HTTP client
takes a port written at the end of ``hostdomain``. No name of that shape resolves to loopback
offline (``x.localhost`` does not, with glibc's files backend), so the gateway tests name the
function host by address: appname ``127.0.0`` and hostdomain ``1:<port>`` make
``127.0.0.1:<port>``, a config Kong reads the same way, which fastkong's resolver answers
without a lookup. TLS certificates name that address. The name path (a lookup through the DNS
cache, the certificate checked against a DNS name) is tested in process with ``localhost``,
the one name that resolves everywhere, by calling the plugin's client directly.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastkong import __version__
from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled import azure_functions as az
from fastkong.plugins.context import RequestContext
from fastkong.proxy.upstream import UpstreamError
from fastkong.proxy.upstream_tls import TlsProfile
from fastkong.runtime import compile_runtime
from tests.helpers import Gateway, LoopServer, free_port, read_request
from tests.pki import Pki

FASTKONG_VIA = f"1.1 fastkong/{__version__}"
FAILED = {"message": "An unexpected error occurred"}


class FunctionHost(LoopServer):
    """An Azure Functions host stand-in: keeps each connection alive, reads each request whole
    (``Content-Length`` framed) and answers 201 with a JSON echo of it (method, request target,
    headers, body) and a few headers of its own. The query decides the rest: ``mode=chunked``
    answers in chunks, ``mode=slow`` never answers."""

    def __init__(self, ssl: Any = None) -> None:
        super().__init__(ssl)
        self.connections = 0
        self.requests: list[dict[str, Any]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                got = await read_request(reader)
                target = got.target
                seen = {
                    "method": got.method,
                    "target": target,
                    "headers": [[name.lower(), value] for name, value in got.headers],
                    "body": got.body.decode(),
                }
                self.requests.append(seen)
                if "mode=slow" in target:
                    await asyncio.sleep(60)
                payload = json.dumps(seen).encode()
                common = (
                    b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                    b"x-function: hello\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"
                    b"server: Kestrel\r\nvia: 1.1 azure-frontend\r\n"
                )
                if "mode=chunked" in target:
                    half = len(payload) // 2
                    writer.write(
                        common
                        + b"transfer-encoding: chunked\r\n\r\n"
                        + b"%x\r\n%s\r\n" % (half, payload[:half])
                        + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload) - half, payload[half:])
                    )
                else:
                    writer.write(common + b"content-length: %d\r\n\r\n" % len(payload) + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def server_context(pki: Pki, workdir: Path, **names: str) -> ssl.SSLContext:
    cert, key = pki.issue("function host", **names)
    (workdir / "cert.pem").write_text(cert)
    (workdir / "key.pem").write_text(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    return context


def headers_of(seen: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        found.setdefault(name, []).append(value)
    return found


# -- the schema -------------------------------------------------------------------------------


def test_config_defaults() -> None:
    entry = "{name: azure-functions, config: {appname: a, functionname: f}}"
    plugin = load_config(f'_format_version: "3.0"\nplugins:\n- {entry}\n').config.plugins[0]
    assert plugin.config == {
        "timeout": 600000,
        "keepalive": 60000,
        "https": True,
        "https_verify": False,
        "apikey": None,
        "clientid": None,
        "appname": "a",
        "hostdomain": "azurewebsites.net",
        "routeprefix": "api",
        "functionname": "f",
    }
    assert plugin.protocols == ["grpc", "grpcs", "http", "https"]
    assert (az.AzureFunctions.priority, az.AzureFunctions.name) == (749, "azure-functions")


def test_config_errors() -> None:
    ok = {"appname": "a", "functionname": "f"}
    configs: list[dict[str, Any]] = [
        {},
        {**ok, "hostdomain": None},
        {**ok, "appname": "", "routeprefix": ""},
        {**ok, "timeout": "soon", "keepalive": True, "https": "yes", "https_verify": 1},
        {**ok, "apikey": 42, "clientid": ["x"]},
        {**ok, "function_name": "f"},
    ]
    doc = {
        "_format_version": "3.0",
        "routes": [
            {
                "name": f"r{i}",
                "paths": [f"/{i}"],
                "plugins": [{"name": "azure-functions", "config": config}],
            }
            for i, config in enumerate(configs)
        ],
    }
    with pytest.raises(ConfigError) as info:
        load_config(json.dumps(doc))
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "routes[0].plugins[0].config.appname: required field missing",
        "routes[0].plugins[0].config.functionname: required field missing",
        "routes[1].plugins[0].config.hostdomain: required field missing",
        "routes[2].plugins[0].config.appname: length must be at least 1",
        "routes[2].plugins[0].config.routeprefix: length must be at least 1",
        "routes[3].plugins[0].config.timeout: expected a number",
        "routes[3].plugins[0].config.keepalive: expected a number",
        "routes[3].plugins[0].config.https: expected a boolean",
        "routes[3].plugins[0].config.https_verify: expected a boolean",
        "routes[4].plugins[0].config.apikey: expected a string",
        "routes[4].plugins[0].config.clientid: expected a string",
        "routes[5].plugins[0].config.function_name: unknown field",
    ]


# -- the request sent -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routeprefix", "functionname", "path"),
    [
        ("api", "hello", "/api/hello"),
        ("/api/", "/hello/", "/api/hello"),
        ("//v1/api//", "hello", "/v1/api/hello"),
        ("/", "hello", "/hello"),
        (None, "hello", "/hello"),
        ("api", "/", "/api/"),
    ],
)
def test_path_joins_routeprefix_and_functionname(
    routeprefix: str | None, functionname: str, path: str
) -> None:
    assert az.function_path(routeprefix, functionname) == path


def plugin_and_context(
    config: dict[str, Any], headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> tuple[az.AzureFunctions, RequestContext]:
    doc = {
        "_format_version": "3.0",
        "routes": [
            {
                "name": "fn",
                "paths": ["/fn"],
                "plugins": [{"name": "azure-functions", "config": config}],
            }
        ],
    }
    runtime = compile_runtime(load_config(json.dumps(doc)).config, "0" * 32)
    plan = runtime.routes[0]
    (plugin,) = plan.plugins
    assert isinstance(plugin, az.AzureFunctions)
    scope = {"method": "POST", "path": "/fn/x/y", "headers": headers, "query_string": query}
    ctx = RequestContext(
        runtime, scope, None, plan, None, "/fn/x/y", "gw", 80, "127.0.0.1", "id", 0.0
    )  # type: ignore[arg-type]  # noqa: E501
    return plugin, ctx


def head_of(plugin: az.AzureFunctions, ctx: RequestContext, length: int) -> list[str]:
    return plugin.request_head(ctx, length).decode().split("\r\n")


def test_request_head() -> None:
    plugin, ctx = plugin_and_context(
        {
            "appname": "myapp",
            "functionname": "hello",
            "routeprefix": "/api/",
            "apikey": "the-key",
            "clientid": "the-client",
        },
        [
            (b"host", b"gateway.test"),
            (b"connection", b"keep-alive, x-hop"),
            (b"x-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"chunked"),
            (b"content-length", b"99"),
            (b"te", b"trailers"),
            (b"x-functions-key", b"forged"),
            (b"x-functions-clientid", b"forged"),
            (b"x-custom", b"one"),
            (b"x-custom", b"two"),
            (b"accept", b"*/*"),
        ],
        b"a=1&b=%20x&a=2",
    )
    assert head_of(plugin, ctx, 12) == [
        "POST /api/hello?a=1&b=%20x&a=2 HTTP/1.1",
        "host: myapp.azurewebsites.net",
        "x-custom: one",
        "x-custom: two",
        "accept: */*",
        "x-functions-key: the-key",
        "x-functions-clientid: the-client",
        f"user-agent: fastkong/{__version__}",
        "content-length: 12",
        "",
        "",
    ]


def test_request_head_without_keys_drops_the_clients_and_keeps_its_user_agent() -> None:
    plugin, ctx = plugin_and_context(
        {"appname": "a", "functionname": "f", "https": False, "hostdomain": "example.test:80"},
        [
            (b"x-functions-key", b"forged"),
            (b"user-agent", b"curl/8"),
            (b"x-functions-clientid", b"c"),
        ],
    )
    assert head_of(plugin, ctx, 0) == [
        "POST /api/f HTTP/1.1",
        "host: a.example.test",  # the default port is not named
        "user-agent: curl/8",
        "content-length: 0",
        "",
        "",
    ]


def test_request_head_carries_earlier_plugins_edits() -> None:
    """Kong's handler reads the request after the plugins before it (request-transformer,
    key-auth's consumer headers): their edits are what is sent."""
    plugin, ctx = plugin_and_context(
        {"appname": "a", "functionname": "f", "apikey": "k"},
        [(b"apikey", b"secret"), (b"x-keep", b"1")],
        b"q=1",
    )
    ctx.clear_upstream_header("apikey")  # key-auth's hide_credentials
    ctx.set_upstream_header("X-Consumer-Username", "bob")
    ctx.set_upstream_header("x-functions-key", "from-a-plugin")  # the plugin's own value wins
    ctx.set_upstream_header("Host", "ignored.test")
    ctx.upstream_query = b"q=2"
    ctx.upstream_method = "PUT"
    assert head_of(plugin, ctx, 3) == [
        "PUT /api/f?q=2 HTTP/1.1",
        "host: a.azurewebsites.net",
        "x-keep: 1",
        "x-consumer-username: bob",
        "x-functions-key: k",
        f"user-agent: fastkong/{__version__}",
        "content-length: 3",
        "",
        "",
    ]


def test_a_path_a_request_line_cannot_carry_is_percent_encoded() -> None:
    plugin, ctx = plugin_and_context({"appname": "a", "functionname": "my func?x#é%41"}, [])
    assert head_of(plugin, ctx, 0)[0] == "POST /api/my%20func%3Fx%23%C3%A9%41 HTTP/1.1"


@pytest.mark.parametrize(
    ("https", "hostdomain", "host", "port", "host_header"),
    [
        (True, "azurewebsites.net", "app.azurewebsites.net", 443, "app.azurewebsites.net"),
        (False, "azurewebsites.net", "app.azurewebsites.net", 80, "app.azurewebsites.net"),
        (True, "example.test:8443", "app.example.test", 8443, "app.example.test:8443"),
        (True, "example.test:443", "app.example.test", 443, "app.example.test"),
        (False, "example.test:443", "app.example.test", 443, "app.example.test:443"),
        # lua-resty-http's URL pattern: the host ends at "/" or "?", digits after ":" only.
        (True, "example.test/x", "app.example.test", 443, "app.example.test"),
        (True, "example.test:abc", "app.example.test", 443, "app.example.test"),
    ],
)
def test_target_is_read_as_kongs_http_client_reads_its_url(
    https: bool, hostdomain: str, host: str, port: int, host_header: str
) -> None:
    target = az.Target("https" if https else "http", f"app.{hostdomain}", None)
    assert (target.error, target.host, target.port) == (None, host, port)
    assert target.host_header == host_header.encode()


def test_an_unusable_target_is_an_error_per_request() -> None:
    assert az.Target("https", "app.example.test:70000", None).error == (
        "bad port 70000 in https://app.example.test:70000:443"
    )


def test_via_follows_the_nodes_headers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    az.via_shown.cache_clear()
    try:
        assert az.via_shown()
        az.via_shown.cache_clear()
        monkeypatch.setenv("FASTKONG_HEADERS", "latency_tokens")
        assert not az.via_shown()
    finally:
        az.via_shown.cache_clear()


# -- the plugin's client, in process ----------------------------------------------------------


@pytest.fixture
async def pools() -> AsyncIterator[None]:
    """The plugin's connections made on this test's event loop end with it (aborted: a TLS
    close would wait for the peer)."""
    yield
    for pool in az._CLIENTS.pools.values():
        for stack in pool.idle.values():
            for conn in stack:
                if conn.transport is not None:
                    conn.transport.abort()
        pool.close()
    for _ in range(2):  # an aborted transport lets go of its socket a loop turn later
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki("azure-functions-test-ca")


@pytest.fixture(scope="module")
def localhost_host(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionHost]:
    context = server_context(pki, tmp_path_factory.mktemp("localhost"), dns="localhost")
    server = FunctionHost(context).start()
    yield server
    server.stop()


async def test_a_name_is_looked_up_and_its_certificate_verified(
    pools: None, pki: Pki, localhost_host: FunctionHost
) -> None:
    trusted = TlsProfile(True, [pki.pem])
    target = az.Target("https", f"localhost:{localhost_host.port}", trusted)
    answer = await az.call(target, b"GET /api/f HTTP/1.1\r\nhost: x\r\n\r\n", False, True, 5, 60000)
    assert (answer.status, json.loads(answer.body)["target"]) == (201, "/api/f")
    assert answer.via == b"1.1 azure-frontend, " + FASTKONG_VIA.encode()
    other = Pki("another-ca")
    untrusted = az.Target(
        "https", f"localhost:{localhost_host.port}", TlsProfile(True, [other.pem])
    )
    with pytest.raises(UpstreamError, match="unable to get local issuer certificate"):
        await az.call(untrusted, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", False, True, 5, 60000)
    # The same host by another name than its certificate's: refused.
    by_address = az.Target("https", f"127.0.0.1:{localhost_host.port}", trusted)
    with pytest.raises(UpstreamError, match="IP address mismatch"):
        await az.call(by_address, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", False, True, 5, 60000)


async def test_connections_are_kept_for_keepalive_then_closed(pools: None) -> None:
    server = FunctionHost().start()
    try:
        target = az.Target("http", f"127.0.0.1:{server.port}", None)
        request = b"GET /api/f HTTP/1.1\r\nhost: x\r\n\r\n"
        for _ in range(3):
            answer = await az.call(target, request, False, True, 5, 200)
            assert answer.status == 201
        assert server.connections == 1
        _, pool = az._CLIENTS.get(200)
        assert pool.idle[target.key]
        deadline = time.monotonic() + 5
        while pool.idle.get(target.key) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not pool.idle.get(target.key)  # swept after the keepalive, without a request
    finally:
        server.stop()


class OneAnswerPerConnection(LoopServer):
    """Answers the first request of each connection and closes it at the second, unanswered,
    as a host that dropped an idle connection just as it was reused."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def test_a_stale_connection_is_retried_for_an_idempotent_method_only(pools: None) -> None:
    server = OneAnswerPerConnection().start()
    try:
        target = az.Target("http", f"127.0.0.1:{server.port}", None)
        request = b"GET /api/f HTTP/1.1\r\nhost: x\r\n\r\n"
        assert (await az.call(target, request, False, True, 5, 60000)).body == b"ok"
        assert (await az.call(target, request, False, True, 5, 60000)).body == b"ok"
        assert server.connections == 2  # the second call went again, on a new connection
        with pytest.raises(UpstreamError, match="closed the connection"):
            await az.call(target, request, False, False, 5, 60000)  # a POST is not resent
        assert server.connections == 2
    finally:
        server.stop()


# -- through a gateway ------------------------------------------------------------------------


class Hosts:
    """Function hosts: plain HTTP, and TLS with a certificate for 127.0.0.1 from the CA the
    gateway trusts or from one it does not."""

    def __init__(self, pki: Pki, workdir: Path) -> None:
        (workdir / "trusted").mkdir()
        (workdir / "untrusted").mkdir()
        self.plain = FunctionHost().start()
        trusted = server_context(pki, workdir / "trusted", ip="127.0.0.1")
        untrusted = server_context(Pki("not-trusted-ca"), workdir / "untrusted", ip="127.0.0.1")
        self.trusted = FunctionHost(trusted).start()
        self.untrusted = FunctionHost(untrusted).start()

    def stop(self) -> None:
        for host in (self.plain, self.trusted, self.untrusted):
            host.stop()


@pytest.fixture(scope="module")
def hosts(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    hosts = Hosts(pki, tmp_path_factory.mktemp("hosts"))
    yield hosts
    hosts.stop()


def at(host: FunctionHost | int, **config: Any) -> dict[str, Any]:
    """A plugin entry calling the function ``hello`` on loopback (see the module docstring)."""
    port = host if isinstance(host, int) else host.port
    config = {
        "appname": "127.0.0",
        "hostdomain": f"1:{port}",
        "functionname": "hello",
        "https": False,
        "timeout": 5000,
        **config,
    }
    return {"name": "azure-functions", "config": config}


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway],
    hosts: Hosts,
    pki: Pki,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:
    dead = free_port()
    routes: dict[str, list[dict[str, Any]]] = {
        "fn": [at(hosts.plain, routeprefix="/api/", apikey="the-key", clientid="the-client")],
        "bare": [at(hosts.plain, routeprefix="/")],
        "transformed": [
            at(hosts.plain),
            {"name": "request-transformer", "config": {"add": {"headers": ["x-added:yes"]}}},
        ],
        "slow": [at(hosts.plain, timeout=300)],
        "down": [at(dead)],
        "tls": [at(hosts.trusted, https=True, https_verify=True)],
        "untrusted": [at(hosts.untrusted, https=True, https_verify=True)],
        "unverified": [at(hosts.untrusted, https=True)],
    }
    config = {
        "_format_version": "3.0",
        "routes": [
            {"name": name, "paths": [f"/{name}"], "plugins": plugins}
            for name, plugins in routes.items()
        ],
        # A service that would fail if it were asked (nothing listens): the function answers.
        "services": [
            {
                "name": "unused",
                "url": f"http://127.0.0.1:{dead}/request",
                "routes": [{"name": "with-service", "paths": ["/with-service"]}],
                "plugins": [at(hosts.plain)],
            }
        ],
    }
    ca = tmp_path_factory.mktemp("trust") / "ca.pem"
    ca.write_text(pki.pem)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KONG_LUA_SSL_TRUSTED_CERTIFICATE", str(ca))
        return gateway_with(json.dumps(config))


@pytest.mark.integration
def test_the_functions_answer_is_the_response(gateway: Gateway, hosts: Hosts) -> None:
    r = httpx.get(
        gateway.url("/fn/and/then/some?hello=world&a=1"),
        headers={"Just-A-Header": "just a value", "X-Functions-Key": "forged"},
    )
    assert r.status_code == 201
    seen = r.json()
    assert seen["method"] == "GET"
    assert seen["target"] == "/api/hello?hello=world&a=1"  # not the request's path
    sent = headers_of(seen)
    assert sent["just-a-header"] == ["just a value"]
    assert sent["x-functions-key"] == ["the-key"]
    assert sent["x-functions-clientid"] == ["the-client"]
    assert sent["host"] == [f"127.0.0.1:{hosts.plain.port}"]
    assert "connection" not in sent and "x-forwarded-for" not in sent
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-function"] == "hello"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert r.headers["via"] == f"1.1 azure-frontend, {FASTKONG_VIA}"
    assert r.headers["server"] == f"fastkong/{__version__}"
    assert int(r.headers["content-length"]) == len(r.content)
    assert "x-kong-request-id" in r.headers


@pytest.mark.integration
def test_method_and_body_are_sent_sized(gateway: Gateway) -> None:
    r = httpx.post(gateway.url("/fn"), content=b"I'll be back")
    seen = r.json()
    assert (r.status_code, seen["method"], seen["body"]) == (201, "POST", "I'll be back")
    assert headers_of(seen)["content-length"] == ["12"]

    def parts() -> Iterator[bytes]:
        yield b"in "
        yield b"chunks"

    r = httpx.put(gateway.url("/fn"), content=parts())  # sent chunked to the gateway
    seen = r.json()
    assert (seen["method"], seen["body"]) == ("PUT", "in chunks")
    sent = headers_of(seen)
    assert sent["content-length"] == ["9"] and "transfer-encoding" not in sent


@pytest.mark.integration
def test_a_chunked_answer_is_returned_sized(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/fn?mode=chunked"))
    assert r.status_code == 201
    assert "transfer-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.json()["target"] == "/api/hello?mode=chunked"


@pytest.mark.integration
def test_without_keys_the_clients_own_are_not_forwarded(gateway: Gateway) -> None:
    r = httpx.get(
        gateway.url("/bare"), headers={"X-Functions-Key": "forged", "X-Functions-Clientid": "c"}
    )
    seen = r.json()
    assert seen["target"] == "/hello"
    sent = headers_of(seen)
    assert "x-functions-key" not in sent and "x-functions-clientid" not in sent


@pytest.mark.integration
def test_earlier_plugins_edits_reach_the_function(gateway: Gateway) -> None:
    seen = httpx.get(gateway.url("/transformed")).json()
    assert headers_of(seen)["x-added"] == ["yes"]


@pytest.mark.integration
def test_the_routes_service_is_not_contacted(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/with-service"))
    assert (r.status_code, r.json()["target"]) == (201, "/api/hello")


@pytest.mark.integration
def test_https_verified_against_the_trusted_roots(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/tls"))
    assert (r.status_code, r.json()["target"]) == (201, "/api/hello")
    r = httpx.get(gateway.url("/untrusted"))
    assert (r.status_code, r.json()) == (500, FAILED)
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    r = httpx.get(gateway.url("/unverified"))  # https_verify is off by default, as in Kong
    assert r.status_code == 201


@pytest.mark.integration
def test_a_timeout_or_a_refused_connection_is_kongs_500(gateway: Gateway) -> None:
    started = time.monotonic()
    r = httpx.get(gateway.url("/slow?mode=slow"))
    assert (r.status_code, r.json()) == (500, FAILED)
    assert time.monotonic() - started < 3
    r = httpx.get(gateway.url("/down"))
    assert (r.status_code, r.json()) == (500, FAILED)
