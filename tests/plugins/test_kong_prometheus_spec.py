"""Kong's prometheus specs against one running gateway, scraped as Kong's specs scrape it: the
admin listener's ``/metrics`` and the status listener's ``/metrics``.

Ported (Kong's ``spec/03-plugins/26-prometheus/``; the node-side merge, label fallbacks, bucket
bounds and 2-worker sums are covered by ``test_prometheus``, which reads the node's files
directly, not through the listeners):

- ``02-access_spec.lua`` 9-319 ("Plugin: prometheus (access)"): counts, the stream session,
  no error logged, the scrape's lines, datastore, worker VM and shared-dict gauges, no
  ``http_consumer_status``.
- ``04-status_api_spec.lua`` 6-429 (the same through the status listener): counts with the
  latency and bandwidth families, timers, the target health of an upstream without health
  checks, a healthy, an unhealthy and an unresolvable target, the ``stream`` subsystem rows,
  removed upstreams and targets (by a ``POST /config`` without them: DB-less Kong's admin API
  answers 405 to ``DELETE``), node info.
- ``05-metrics_spec.lua`` 27-216 (https routes, the status API reached through the proxy, a
  route without service).

The other describes of those files (per-consumer, no stream listener, the granular switches,
AI metrics) and ``07-optional_fields_spec.lua`` are in ``test_kong_prometheus_spec_more``.

Left out:

- gRPC counts (02 150-196, 04 230-264): a plain gRPC call cannot be proxied by fastkong
  (README "Kong compatibility notes": Granian's ASGI carries no HTTP/2 trailers).
- ``01-api_spec.lua``: ``POST /plugins`` on a database (DB-less Kong answers 405); the first
  case is ``pending`` in Kong. A config with ``prometheus`` loading is
  ``test_prometheus::test_config_defaults_are_kongs``.
- ``03-custom-serve_spec.lua``: an nginx ``server`` block injected with ``nginx_http_include``
  serving Lua's ``prometheus.serve``; fastkong injects no nginx config (its status listener is
  the other port serving ``/metrics``, ported here from 04).
- 04 541-630 (``kong_control_plane_connected``): hybrid mode (``ROLE`` other than
  ``traditional`` stops fastkong's start); ``06-hybrid-mode_metrics_spec.lua`` and
  ``09-wasmx_spec.lua`` likewise (hybrid, Wasm filters).
- Kong's ``ssl`` status listener (05 101): fastkong serves the status listener over plain HTTP
  only (``fastkong/cli.py`` ``parse_listen``), so the route to it has an ``http`` service.

Waits: a count reaches ``/metrics`` within about a second of the request's log phase
(``fastkong/metrics.py``, "Staleness bound"), so every count is waited for with
``tests.helpers.eventually``. One worker (as Kong's specs that read target health use
``nginx_worker_processes = 1``); counts are compared as increments so that 02's and 04's
cases can share the gateway.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    Echo,
    Gateway,
    LoopServer,
    eventually,
    free_port,
    read_request,
    tls_server_context,
)
from tests.pki import Pki

pytestmark = pytest.mark.integration

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
NO_ERRORS = "kong_nginx_metric_errors_total 0"
ALL_FLAGS = (
    "{status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true, "
    "upstream_health_metrics: true}"
)
PROTOCOLS = "[http, https, grpc, grpcs, tcp, tls]"
HEALTH_STATES = ("healthchecks_off", "healthy", "unhealthy", "dns_error")


# -- helpers shared with test_kong_prometheus_spec_more ----------------------------------------


def scrape(url: str) -> str:
    """One ``GET /metrics``: it must answer 200."""
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def scrape_until(url: str, check: Callable[[str], object], timeout: float = 5.0) -> str:
    """Scrape until ``check(body)`` holds (Kong's ``helpers.wait_until``, 5 s unless told);
    the last body."""
    last = [""]

    def once() -> bool:
        last[0] = scrape(url)
        return bool(check(last[0]))

    try:
        eventually(once, timeout)
    except AssertionError:
        raise AssertionError(f"never held; the last scrape:\n{last[0]}") from None
    return last[0]


def has_line(line: str) -> Callable[[str], bool]:
    """A check for :func:`scrape_until`: ``line`` is one of the body's lines."""
    return lambda body: line in body.splitlines()


def contains(text: str) -> Callable[[str], bool]:
    """A check for :func:`scrape_until`: ``text`` is somewhere in the body."""
    return lambda body: text in body


def value(body: str, series: str) -> float:
    """The value of one series (``name{labels}``), 0 when absent."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", body, re.M)
    return float(found.group(1)) if found else 0.0


def requests_total(service: str, route: str, code: int, source: str, consumer: str = "") -> str:
    return (
        f'kong_http_requests_total{{service="{service}",route="{route}",code="{code}",'
        f'source="{source}",workspace="default",consumer="{consumer}"}}'
    )


def count_one_more(url: str, series: str, send: Callable[[], None]) -> str:
    """Read ``series``, ``send()``, and wait until it went up by exactly one."""
    before = value(scrape(url), series)
    send()
    return scrape_until(url, lambda body: value(body, series) == before + 1)


def health(upstream: str, target: str, address: str, state: str, subsystem: str = "http") -> str:
    return (
        f'kong_upstream_target_health{{upstream="{upstream}",target="{target}",'
        f'address="{address}",state="{state}",subsystem="{subsystem}"}}'
    )


def metrics_and_comments_only(body: str) -> None:
    """Kong's "scrape response has metrics and comments only" (``^[#|kong]``): every line a
    comment or a ``kong_`` series. fastkong's node adds its own ``fastkong_`` series, documented
    in README.md ("Config changes without dropping a request": ``fastkong_config_reloads_total``)
    and docs/settings.md (``fastkong_certificate_reloads_total``)."""
    for line in body.splitlines():
        if line:
            assert line.startswith(("#", "kong_", "fastkong_")), line


def post_config(gateway: Gateway, text: str) -> None:
    """DB-less Kong's way to change entities (``POST /config``), then wait until every worker
    serves it."""
    r = httpx.post(
        f"http://127.0.0.1:{gateway.admin_port}/config", json={"config": text}, timeout=30
    )
    assert r.status_code == 201, r.text
    gateway.wait_ready()


def admin_metrics(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.admin_port}/metrics"


def status_metrics(gateway: Gateway) -> str:
    return gateway.status_url("/metrics")


# -- upstreams of this module ------------------------------------------------------------------


class LineEcho(LoopServer):
    """Kong's ``helpers.tcp_server`` with ``requests = 1``: reads a line, sends it back, closes."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(line)
        await writer.drain()
        writer.close()


class TlsStatus(LoopServer):
    """An https upstream answering ``/status/<code>`` with that status (mock_upstream's ssl
    server)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                parts = request.target.split("/")
                code = int(parts[2]) if len(parts) > 2 and parts[1] == "status" else 200
                writer.write(b"HTTP/1.1 %d Status\r\ncontent-length: 2\r\n\r\nok" % code)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


HEALTHCHECKS = """
    active:
      concurrency: 10
      healthy: {http_statuses: [200, 302], interval: 0.1, successes: 2}
      http_path: /status/200
      https_verify_certificate: true
      timeout: 1
      type: http
      unhealthy:
        http_failures: 1
        http_statuses: [429, 404, 500, 501, 502, 503, 504, 505]
        interval: 0.1
        tcp_failures: 1
        timeouts: 1
    passive:
      healthy:
        http_statuses: [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303,
                        304, 305, 306, 307, 308]
        successes: 1
      type: http
      unhealthy: {http_failures: 1, http_statuses: [429, 500, 503], tcp_failures: 1, timeouts: 1}
"""


@dataclass
class Node:
    gateway: Gateway
    echo: int
    dead: int
    tcp_proxy: int
    log: Path
    config: Callable[..., str]

    @property
    def admin(self) -> str:
        return admin_metrics(self.gateway)

    @property
    def status(self) -> str:
        return status_metrics(self.gateway)

    def get(self, path: str, **headers: str) -> httpx.Response:
        return httpx.get(self.gateway.url(path), headers=headers, timeout=10)

    def expect(self, code: int, path: str | None = None) -> None:
        """GET ``path`` (``/status/<code>``) through http-route: it answers ``code``."""
        assert self.get(path or f"/status/{code}").status_code == code

    def ok(self) -> None:
        self.expect(200)

    def https(self, path: str, host: str) -> httpx.Response:
        url = f"https://127.0.0.1:{self.gateway.ssl_port}{path}"
        with httpx.Client(verify=False, timeout=10) as client:
            return client.get(url, headers={"host": host})

    def expect_https(self, code: int, path: str, host: str) -> None:
        assert self.https(path, host).status_code == code

    def tcp_hi(self) -> None:
        """02/04's TCP session: "hi there!\\n" sent through tcp-route comes back."""
        with socket.create_connection(("127.0.0.1", self.tcp_proxy), timeout=10) as sock:
            sock.sendall(b"hi there!\n")
            got = b""
            while chunk := sock.recv(1024):
                got += chunk
        assert got == b"hi there!\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Node]:
    tcp = LineEcho().start()
    pki = Pki("prometheus-ca")
    workdir = tmp_path_factory.mktemp("prometheus-spec")
    cert, key = pki.issue("localhost", ip="127.0.0.1")
    tls = TlsStatus(ssl=tls_server_context(cert, key, workdir)).start()
    dead, tcp_proxy = free_port(), free_port()
    gateway = Gateway(workdir, "", 1, "--stream-listen", f"127.0.0.1:{tcp_proxy}")
    gateway.extra += ("--log-level", "error")  # Kong's spec looks for "[error]" lines
    gateway.ssl_port = free_port()
    gateway.stderr_path = workdir / "gateway.log"

    def config(healthchecksoff: bool = True, random_dns: bool = True) -> str:
        target = f"127.0.0.1:{echo.port}"
        text = '_format_version: "3.0"\nupstreams:\n'
        if healthchecksoff:
            text += (
                f"- name: mock-upstream-healthchecksoff\n"
                f'  targets: [{{target: "{target}", weight: 1000}}]\n'
            )
        text += f"""- name: mock-upstream
  healthchecks:{HEALTHCHECKS}  targets:
  - {{target: "{target}", weight: 1000}}
  - {{target: "127.0.0.1:{dead}", weight: 1}}
"""
        if random_dns:
            text += "  - {target: some-random-dns:80, weight: 1}\n"
        return (
            text
            + f"""services:
- name: mock-service
  host: mock-upstream
  port: {echo.port}
  protocol: http
  routes:
  - {{name: http-route, protocols: [http], paths: [/], methods: [GET]}}
  - name: cache-route
    paths: [/cache]
    plugins: [{{name: proxy-cache, config: {{strategy: memory}}}}]
- name: tcp-service
  url: tcp://127.0.0.1:{tcp.port}
  routes:
  - {{name: tcp-route, protocols: [tcp], destinations: [{{port: {tcp_proxy}}}]}}
- name: mock-ssl-service
  url: https://127.0.0.1:{tls.port}
  routes:
  - {{name: mock-ssl-route, protocols: [https], hosts: [mock.example.com], paths: [/]}}
- name: status-api-ssl-service
  url: http://127.0.0.1:{gateway.status_port}/metrics
  routes:
  - name: status-api-ssl-route
    protocols: [https]
    hosts: [status.example.com]
    paths: [/metrics]
routes:
- name: serverless
  protocols: [https]
  hosts: [status.example.com]
  paths: [/serverless]
  plugins:
  - name: request-termination
    config:
      status_code: 200
      message: request terminated by request-termination plugin
      echo: true
plugins:
- name: prometheus
  protocols: {PROTOCOLS}
  config: {ALL_FLAGS}
"""
        )

    gateway.config_path.write_text(config())
    try:
        gateway.start()
        yield Node(gateway, echo.port, dead, tcp_proxy, gateway.stderr_path, config)
    finally:
        gateway.stop()
        tls.stop()
        tcp.stop()


# -- 02-access_spec.lua "Plugin: prometheus (access)": the admin listener ---------------------


def test_access_counts_proxied_requests(node: Node) -> None:
    """02 108-148."""
    for code in (200, 400):
        series = requests_total("mock-service", "http-route", code, "service")
        body = count_one_more(node.admin, series, functools.partial(node.expect, code))
        assert NO_ERRORS in body


def test_access_counts_proxied_tcp_streams(node: Node) -> None:
    """02 198-223."""
    series = (
        'kong_stream_sessions_total{service="tcp-service",route="tcp-route",code="200",'
        'source="service",workspace="default"}'
    )
    body = count_one_more(node.admin, series, node.tcp_hi)
    assert NO_ERRORS in body
    assert re.search(
        r'^kong_session_duration_ms_bucket\{service="tcp-service",route="tcp-route",'
        r'workspace="default",le="\+Inf"\} \d+$',
        body,
        re.M,
    )


def error_lines_after(node: Node, url: str, action: Callable[[], None]) -> list[str]:
    """What the gateway logged at ``error`` level (it runs with ``--log-level error``) while
    ``action`` ran and a counted request after it was logged (so the action's own log phase
    has run: one worker, requests in order)."""
    start = node.log.stat().st_size if node.log.exists() else 0
    action()
    count_one_more(
        node.admin,
        requests_total("mock-service", "http-route", 200, "service"),
        node.ok,
    )
    text = node.log.read_bytes()[start:].decode(errors="replace") if node.log.exists() else ""
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("listener", ["admin", "status"])
def test_no_error_logged_when_no_route_matched(node: Node, listener: str) -> None:
    """02 225-237, 04 266-278."""

    def no_route() -> None:
        r = httpx.post(node.gateway.url("/no-route-match-in-kong"), timeout=10)
        assert r.status_code == 404

    assert error_lines_after(node, getattr(node, listener), no_route) == []


@pytest.mark.parametrize("listener", ["admin", "status"])
def test_no_error_logged_during_a_scrape(node: Node, listener: str) -> None:
    """02 239-253, 04 280-288."""
    bodies: list[str] = []
    url = getattr(node, listener)
    assert error_lines_after(node, url, lambda: bodies.append(scrape(url))) == []
    assert NO_ERRORS in bodies[0]


@pytest.mark.parametrize("listener", ["admin", "status"])
def test_scrape_has_metrics_and_comments_only(node: Node, listener: str) -> None:
    """02 255-267, 04 290-296."""
    body = scrape(getattr(node, listener))
    metrics_and_comments_only(body)
    assert NO_ERRORS in body


@pytest.mark.parametrize("listener", ["admin", "status"])
def test_exposes_db_reachability(node: Node, listener: str) -> None:
    """02 269-278, 04 298-301."""
    body = scrape(getattr(node, listener))
    assert "kong_datastore_reachable 1" in body.splitlines()
    assert NO_ERRORS in body


@pytest.mark.parametrize("listener", ["admin", "status"])
def test_exposes_worker_vm_stats(node: Node, listener: str) -> None:
    """02 280-290, 04 410-417: an http and a stream row (the stream process writes its
    snapshot within a second of its start)."""

    def both(body: str) -> bool:
        return all(
            re.search(
                rf'^kong_memory_workers_lua_vms_bytes\{{node_id="{UUID}",pid="\d+",'
                rf'kong_subsystem="{subsystem}"\}} \d+$',
                body,
                re.M,
            )
            for subsystem in ("http", "stream")
        )

    body = scrape_until(getattr(node, listener), both)
    assert NO_ERRORS in body
    assert re.search(rf'^kong_node_info\{{node_id="{UUID}",version="\S+"\}} 1$', body, re.M)


@pytest.mark.parametrize("listener", ["admin", "status"])
def test_exposes_shared_dict_metrics(node: Node, listener: str) -> None:
    """02 292-307, 04 419-428. Kong reports its nginx ``lua_shared_dict``s, among them
    ``prometheus_metrics``; fastkong has no nginx shared dictionaries (docs/plugins.md, the
    statsd row) and reports its workers' memory stores, the proxy-cache dictionaries
    (``fastkong/metrics.py`` ``Snapshot.dicts``): here cache-route's ``kong_db_cache``."""
    body = scrape_until(
        getattr(node, listener), lambda b: "kong_memory_lua_shared_dict_total_bytes{" in b
    )
    for name in ("kong_memory_lua_shared_dict_total_bytes", "kong_memory_lua_shared_dict_bytes"):
        assert re.search(
            rf'^{name}\{{node_id="{UUID}",shared_dict="kong_db_cache",kong_subsystem="http"\}} '
            r"\d+$",
            body,
            re.M,
        )
    assert NO_ERRORS in body


def test_no_per_consumer_metrics_by_default(node: Node) -> None:
    """02 309-318."""
    body = scrape(node.admin)
    assert "http_consumer_status" not in body
    assert NO_ERRORS in body


# -- 04-status_api_spec.lua: the status listener ----------------------------------------------


def test_status_api_counts_proxied_requests(node: Node) -> None:
    """04 195-228."""
    count_one_more(
        node.status,
        requests_total("mock-service", "http-route", 200, "service"),
        node.ok,
    )
    body = count_one_more(
        node.status,
        requests_total("mock-service", "http-route", 400, "service"),
        lambda: node.expect(400),
    )
    labels = 'service="mock-service",route="http-route",workspace="default"'
    for family in ("kong_latency_ms", "upstream_latency_ms", "request_latency_ms"):
        assert re.search(rf'^kong_{family}_bucket\{{{labels},le="\+Inf"\}} +\d', body, re.M)
    for direction in ("ingress", "egress"):
        assert re.search(
            r'^kong_bandwidth_bytes\{service="mock-service",route="http-route",'
            rf'direction="{direction}",workspace="default",consumer=""\}} \d+$',
            body,
            re.M,
        )


def test_status_api_exposes_nginx_timers(node: Node) -> None:
    """04 303-307: Kong's ``kong_nginx_timers`` gauge (running and pending ngx timers)."""
    body = scrape(node.status)
    assert re.search(r'^kong_nginx_timers\{state="running"\} \d+$', body, re.M)
    assert re.search(r'^kong_nginx_timers\{state="pending"\} \d+$', body, re.M)


def assert_target_health(node: Node, upstream: str, target: str, address: str, state: str) -> None:
    """The four series of one target address, ``state``'s at 1 (Kong's wait then asserts)."""
    body = scrape_until(node.status, lambda b: f"{health(upstream, target, address, state)} 1" in b)
    for other in HEALTH_STATES:
        if other != state:
            assert f"{health(upstream, target, address, other)} 0" in body.splitlines()


def test_target_health_healthchecks_off(node: Node) -> None:
    """04 309-318."""
    target = f"127.0.0.1:{node.echo}"
    assert_target_health(node, "mock-upstream-healthchecksoff", target, target, "healthchecks_off")


def test_target_health_healthy(node: Node) -> None:
    """04 320-329."""
    target = f"127.0.0.1:{node.echo}"
    assert_target_health(node, "mock-upstream", target, target, "healthy")


def test_target_health_unhealthy(node: Node) -> None:
    """04 331-340 (Kong's target is mock_upstream_host:8001, where nothing answers in its
    specs; here a free port)."""
    target = f"127.0.0.1:{node.dead}"
    assert_target_health(node, "mock-upstream", target, target, "unhealthy")


def test_target_health_dns_error(node: Node) -> None:
    """04 342-351."""
    assert_target_health(node, "mock-upstream", "some-random-dns:80", "", "dns_error")


def test_target_health_has_a_subsystem_label(node: Node) -> None:
    """04 353-378: after a TCP session, the stream subsystem's balancer reports the targets
    too, each row with ``subsystem="stream"`` beside the ``http`` ones."""
    node.tcp_hi()
    row = "mock-upstream", "some-random-dns:80", ""
    body = scrape_until(node.status, lambda b: f"{health(*row, 'dns_error', 'stream')} 1" in b)
    for state in ("healthy", "unhealthy", "healthchecks_off"):
        for subsystem in ("http", "stream"):
            assert f"{health(*row, state, subsystem)} 0" in body.splitlines()


def test_metrics_of_removed_upstreams_go(node: Node) -> None:
    """04 380-393 (Kong: ``DELETE /upstreams/mock-upstream-healthchecksoff``)."""
    post_config(node.gateway, node.config(healthchecksoff=False))
    scrape_until(
        node.status,
        lambda b: 'kong_upstream_target_health{upstream="mock-upstream-healthchecksoff"' not in b,
        15,
    )


def test_metrics_of_removed_targets_go(node: Node) -> None:
    """04 395-408 (Kong: ``DELETE /upstreams/mock-upstream/targets/some-random-dns:80``)."""
    post_config(node.gateway, node.config(healthchecksoff=False, random_dns=False))
    body = scrape_until(
        node.status,
        lambda b: 'upstream="mock-upstream",target="some-random-dns:80"' not in b,
        15,
    )
    assert 'kong_upstream_target_health{upstream="mock-upstream",' in body


# -- 05-metrics_spec.lua: https routes, the status API through the proxy -----------------------


def test_connection_metrics_by_admin_api(node: Node) -> None:
    """05 133-142. Kong exports nginx's connection counters (``kong_nginx_connections_total``
    by ``state``); fastkong documents that it does not count them ("Kong's nginx counters: not
    counted here (the proxy runs in Granian)", ``fastkong/control/supervisor.py``
    ``status_body``), so the family is absent."""
    body = scrape(node.admin)
    assert NO_ERRORS in body
    assert "kong_nginx_connections_total" not in body


def test_counts_proxied_https_requests(node: Node) -> None:
    """05 144-166."""
    body = count_one_more(
        node.admin,
        requests_total("mock-ssl-service", "mock-ssl-route", 400, "service"),
        lambda: node.expect_https(400, "/status/400", "mock.example.com"),
    )
    assert NO_ERRORS in body


def test_connection_metrics_by_status_api_through_the_proxy(node: Node) -> None:
    """05 168-180 (the connection counters: see test_connection_metrics_by_admin_api)."""
    r = node.https("/metrics", "status.example.com")
    assert r.status_code == 200
    assert NO_ERRORS in r.text
    assert "kong_nginx_connections_total" not in r.text


def test_counts_a_route_without_service(node: Node) -> None:
    """05 182-213."""

    def send() -> None:
        assert node.https("/serverless", "status.example.com").status_code == 200
        assert node.https("/metrics", "status.example.com").status_code == 200

    body = count_one_more(node.admin, requests_total("", "serverless", 200, "kong"), send)
    assert NO_ERRORS in body
