"""Port of Kong's ``spec/02-integration/05-proxy/04-plugins_triggering_spec.lua`` (the whole
file, one DB-less run), as far as fastkong's bundled plugins can observe it: which plugin
configuration applies (global, route+service, consumer, route+consumer, anonymous consumer) seen
through ``rate-limiting``'s ``X-RateLimit-Limit-Hour``; plugins running on short-circuited
requests (``key-auth``'s 401); log plugins (``file-log``) running on 502, 503, 504 and on the
client errors nginx produces itself (400, 414), seeing the same request; routes over one
kept-alive TLS connection. Two ``fastkong start``: one for the plugin precedence group (its
global ``key-auth`` would guard every other route), one for the rest.

Ported: lines 238-295 (configuration precedence), 308-498 (short-circuited requests, with
``response-transformer`` standing in for the ``dummy`` test plugin's header_filter and
body_filter), 500-590 (anonymous reports), 592-1070 (proxy-intercepted errors, the ``file-log``
cases), 1240-1292 (TLS keepalive).

Left out:
- "builds complete plugins iterator even when plugin errors" (l. 297), the ``Log-Plugin-Phases``
  and ``Log-Plugin-Service-Matched`` cases (l. 1018-1056): the ``error-generator`` and
  ``error-handler-log`` custom Lua plugins.
- "responses.send stops plugin but runloop continues" (l. 472): the ``dummy`` plugin's
  ``send_error`` (a Lua plugin exiting from its access phase); nothing bundled does that and
  also appends to the body.
- "kong.response.get_source() returns error ..." (l. 1058): ``pre-function`` (Lua code).
- "plugin's init_worker" (l. 1072-1237): the ``short-circuit`` and ``init-worker-lua-error``
  custom Lua plugins (and the runtime-configured part needs a database).
- The 504 cases use a ``read_timeout`` on a peer that never answers where Kong uses a 1 ms
  ``connect_timeout`` to a blackhole address (not on loopback); both are nginx's 504.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, LoopServer, eventually, free_port

pytestmark = pytest.mark.integration

ANONYMOUS_ID = "1c3bb3ae-1b8a-4b5e-9b38-5d6e0d1e0a01"


class Silent(LoopServer):
    """An upstream that reads requests and never answers (nginx's 504 once read_timeout ends)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()


# -- Plugins triggering: which configuration applies (l. 59-295) --------------------------------


def precedence_config(echo: Echo) -> str:
    url = f"http://127.0.0.1:{echo.port}"
    return f"""
_format_version: "3.0"
consumers:
- username: consumer1
  keyauth_credentials: [{{key: secret1}}]
- username: consumer2
  keyauth_credentials: [{{key: secret2}}]
- username: anonymous
  id: {ANONYMOUS_ID}
services:
- name: global1
  url: {url}
  routes: [{{name: global1, hosts: [global1.test], protocols: [http]}}]
- name: api1
  url: {url}
  routes: [{{name: route1, hosts: [api1.test], protocols: [http]}}]
- name: api2
  url: {url}
  routes: [{{name: route2, hosts: [api2.test], protocols: [http]}}]
- name: api3
  url: {url}
  routes: [{{name: route3, hosts: [api3.test], protocols: [http]}}]
plugins:
- {{name: key-auth, config: {{}}}}
- {{name: rate-limiting, config: {{policy: local, hour: 1}}}}
- {{name: rate-limiting, route: route1, service: api1, config: {{policy: local, hour: 2}}}}
- {{name: rate-limiting, consumer: consumer2, config: {{policy: local, hour: 3}}}}
- {{name: rate-limiting, route: route2, consumer: consumer2, config: {{policy: local, hour: 4}}}}
- {{name: key-auth, route: route3, service: api3, config: {{anonymous: {ANONYMOUS_ID}}}}}
- name: rate-limiting
  route: route3
  service: api3
  consumer: anonymous
  config: {{policy: local, hour: 5}}
"""


@pytest.fixture(scope="module")
def precedence(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("triggering-precedence"), precedence_config(echo))
    gw.start()
    yield gw
    assert gw.stop() == 0


def test_global_configuration_without_credentials(precedence: Gateway) -> None:
    # l. 238
    r = httpx.get(precedence.url("/status/200"), headers={"Host": "global1.test"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("host", "apikey", "limit"),
    [
        ("global1.test", "secret1", "1"),  # l. 247: global api configuration
        ("api1.test", "secret1", "2"),  # l. 257: api specific configuration
        ("global1.test", "secret2", "3"),  # l. 267: global consumer configuration
        ("api2.test", "secret2", "4"),  # l. 277: consumer specific configuration
        ("api3.test", None, "5"),  # l. 287: anonymous consumer specific configuration
    ],
)
def test_the_most_specific_configuration_applies(
    precedence: Gateway, host: str, apikey: str | None, limit: str
) -> None:
    path = f"/status/200?apikey={apikey}" if apikey else "/status/200"
    r = httpx.get(precedence.url(path), headers={"Host": host})
    assert r.status_code == 200
    assert r.headers["x-ratelimit-limit-hour"] == limit


# -- the other groups: one gateway ---------------------------------------------------------------


class Node:
    def __init__(self, gateway: Gateway, log: Path) -> None:
        self.gateway = gateway
        self.log = log

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def lines(self, since: int) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        data = self.log.read_bytes()[since:]
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def wait_for_line(
        self,
        since: int,
        x_uuid: str | None,
        check: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The spec's ``wait_for_log_line``: a line from 127.0.0.1 (with that X-UUID, passing
        ``check``) logged after ``since``."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            for message in self.lines(since):
                if message.get("client_ip") != "127.0.0.1":
                    continue
                if x_uuid and message["request"]["headers"].get("x-uuid") != x_uuid:
                    continue
                if check is not None and not check(message):
                    continue
                found.append(message)
                return True
            return False

        eventually(seen, 10)
        return found[0]

    def line_after_settling(
        self, since: int, check: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any] | None:
        """A line logged after ``since`` passing ``check``, looked for once a later request's
        line is in the file (one worker writes its lines in order): no fixed wait for a line
        that may never come."""
        marker = new_uuid()
        r = httpx.get(self.gateway.url("/"), headers={"Host": "unavailable", "X-UUID": marker})
        assert r.status_code == 200
        self.wait_for_line(since, marker)
        return next((m for m in self.lines(since) if check(m)), None)


def node_config(echo: Echo, silent: Silent, log: Path) -> str:
    url = f"http://127.0.0.1:{echo.port}"
    file_log = f"{{name: file-log, config: {{path: {log}, reopen: true}}}}"
    return f"""
_format_version: "3.0"
consumers:
- username: bob
  keyauth_credentials: [{{key: abcd}}]
services:
- name: example
  url: {url}
  routes:
  - name: mock_upstream
    hosts: [mock_upstream]
    protocols: [http]
    plugins:
    - name: key-auth
    - name: response-transformer
      config:
        add:
          headers: ["Dummy-Plugin:executed"]
          json: ["dummy:appended from body filtering"]
    - {{name: file-log, config: {{path: {log}}}}}
- name: anonymous-reports
  url: {url}
  routes:
  - name: anonymous-reports
    hosts: [anonymous-reports.test]
    protocols: [http]
    plugins: [{{name: key-auth}}]
- name: conn_refused
  url: http://127.0.0.1:{free_port()}
  plugins: [{file_log}]
  routes: [{{name: refused, hosts: [refused], protocols: [http]}}]
- name: unavailable
  url: {url}
  plugins: [{file_log}]
  routes: [{{name: unavailable, hosts: [unavailable], protocols: [http]}}]
- name: timeout
  url: http://127.0.0.1:{silent.port}
  read_timeout: 500
  plugins: [{file_log}]
  routes: [{{name: connect_timeout, hosts: [connect_timeout], protocols: [http]}}]
- name: mock
  url: {url}
  routes:
  - name: route-1
    paths: [/route-1]
    protocols: [https]
    plugins: [{{name: request-termination, config: {{status_code: 201}}}}]
  - name: route-2
    paths: [/route-2]
    protocols: [https]
plugins:
- {file_log}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Node]:
    workdir = tmp_path_factory.mktemp("triggering")
    log = workdir / "file.log"
    silent = Silent().start()
    gw = Gateway(workdir, node_config(echo, silent, log))
    gw.ssl_port = free_port()
    try:
        gw.start()
        yield Node(gw, log)
    finally:
        assert gw.stop() == 0
        silent.stop()


def new_uuid() -> str:
    return str(uuid.uuid4())


# -- short-circuited requests (l. 308-498) ------------------------------------------------------


def test_short_circuited_request_runs_a_log_plugin(node: Node) -> None:
    # l. 417
    since, x_uuid = node.offset(), new_uuid()
    r = httpx.get(
        node.gateway.url("/status/200"), headers={"Host": "mock_upstream", "X-UUID": x_uuid}
    )
    assert r.status_code == 401
    node.wait_for_line(since, x_uuid)


def test_short_circuited_request_runs_a_header_filter_plugin(node: Node) -> None:
    # l. 437: plugins such as CORS need to run on short-circuited requests as well.
    r = httpx.get(node.gateway.url("/status/200"), headers={"Host": "mock_upstream"})
    assert r.status_code == 401
    assert r.headers["dummy-plugin"] == "executed"


def test_short_circuited_request_runs_a_body_filter_plugin(node: Node) -> None:
    # l. 455
    r = httpx.get(node.gateway.url("/status/200"), headers={"Host": "mock_upstream"})
    assert r.status_code == 401
    assert "appended from body filtering" in r.text


# -- anonymous reports execution (l. 500-590) ---------------------------------------------------


def test_authenticated_request_runs_without_an_internal_error(node: Node) -> None:
    # l. 570
    url = node.gateway.url("/status/200")
    assert httpx.get(url, headers={"Host": "anonymous-reports.test"}).status_code == 401
    r = httpx.get(url, headers={"Host": "anonymous-reports.test", "apikey": "abcd"})
    assert r.status_code == 200


# -- proxy-intercepted error (l. 592-1070) ------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "status"),
    [
        ("refused", "/status/200", 502),  # l. 767: Bad Gateway
        ("unavailable", "/status/503", 503),  # l. 819: the upstream's own 503
        ("connect_timeout", "/status/200", 504),  # l. 840: Gateway Timeout
    ],
)
def test_a_log_plugin_runs_on_upstream_errors(
    node: Node, host: str, path: str, status: int
) -> None:
    since, x_uuid = node.offset(), new_uuid()
    r = httpx.get(node.gateway.url(path), headers={"Host": host, "X-UUID": x_uuid}, timeout=20)
    assert r.status_code == status
    node.wait_for_line(since, x_uuid)


@pytest.mark.parametrize(
    ("host", "status"),
    [("refused", 502), ("connect_timeout", 504)],  # l. 788, l. 861
)
def test_log_plugins_see_the_same_request_in_the_error_page_handler(
    node: Node, host: str, status: int
) -> None:
    since, x_uuid = node.offset(), new_uuid()
    r = httpx.post(
        node.gateway.url("/status/200?foo=bar"),
        headers={"Host": host, "X-UUID": x_uuid},
        timeout=20,
    )
    assert r.status_code == status

    def same(message: dict[str, Any]) -> bool:
        request = message["request"]
        return (
            request["headers"].get("host") == host
            and request["method"] == "POST"
            and request["querystring"].get("foo") == "bar"
            and message["upstream_uri"] == "/status/200?foo=bar"
        )

    node.wait_for_line(since, x_uuid, same)


LARGE = "a" * (10 * 1024)  # over one of nginx's default 8k large_client_header_buffers


def test_a_global_log_plugin_runs_on_nginx_client_errors_400(node: Node) -> None:
    # l. 892
    since = node.offset()
    r = httpx.get(
        node.gateway.url("/"),
        headers={"Host": "unavailable", "X-Large": LARGE, "X-UUID": new_uuid()},
    )
    assert r.status_code == 400
    assert node.line_after_settling(since, lambda m: m["response"]["status"] == 400)


def test_log_plugins_see_the_same_request_on_nginx_client_errors_400(node: Node) -> None:
    # l. 920: no upstream URI, nginx could not finish the request.
    since = node.offset()
    r = httpx.post(
        node.gateway.url("/status/200?foo=bar"),
        headers={"Host": "unavailable", "X-Large": LARGE, "X-UUID": new_uuid()},
    )
    assert r.status_code == 400

    def same(message: dict[str, Any]) -> bool:
        request = message["request"]
        return (
            request["method"] == "POST"
            and request["querystring"].get("foo") == "bar"
            and message["upstream_uri"] == ""
        )

    assert node.line_after_settling(since, same)


def test_a_global_log_plugin_runs_on_nginx_client_errors_414(node: Node) -> None:
    # l. 955 (Kong's ``#log_message.request.headers == 0`` holds for any Lua hash table)
    since = node.offset()
    r = httpx.get(
        node.gateway.url(f"/?foo={LARGE}"), headers={"Host": "unavailable", "X-UUID": new_uuid()}
    )
    assert r.status_code == 414
    assert node.line_after_settling(since, lambda m: m["response"]["status"] == 414)


def test_log_plugins_see_the_same_request_on_nginx_client_errors_414(node: Node) -> None:
    # l. 983: nginx stopped at the request line, so no headers were read.
    since = node.offset()
    r = httpx.post(
        node.gateway.url(f"/?foo={LARGE}"), headers={"Host": "unavailable", "X-UUID": new_uuid()}
    )
    assert r.status_code == 414

    def same(message: dict[str, Any]) -> bool:
        request = message["request"]
        return (
            request["method"] == "POST"
            and message["upstream_uri"] == ""
            and "x-uuid" not in request["headers"]
            and "host" not in request["headers"]
        )

    assert node.line_after_settling(since, same)


# -- with TLS keepalive (l. 1240-1292) ----------------------------------------------------------


def test_certificate_phase_clears_context(node: Node) -> None:
    # l. 1283 (#7054): two routes over one kept-alive TLS connection.
    base = f"https://127.0.0.1:{node.gateway.ssl_port}"
    with httpx.Client(verify=False, base_url=base) as client:
        assert client.get("/route-1/status/200").status_code == 201
        assert client.get("/route-2/status/200").status_code == 200
