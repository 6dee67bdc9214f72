"""Answers no route led to (Kong's 404, nginx's 400/405/414) run the global plugins' response,
body and log phases, as Kong runs them: its rewrite phase collected the global plugins before
the router missed, and its error handler falls back to them (``plugins_iterator.lua``,
``get_collected_iterator``). A global log plugin logs a 404, prometheus counts it, cors and
response-transformer shape it.

Every bundled plugin with such a hook is configured globally here, so that one assuming a
matched route (a service, the router's match, state its access phase would have left) shows
as a traceback or a wrong answer.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Gateway, eventually, free_port

pytestmark = pytest.mark.integration

GLOBALS = """
- name: cors
  config: {{origins: ["*"]}}
- name: response-transformer
  config: {{add: {{headers: ["x-transformed:yes"]}}}}
- name: correlation-id
  config: {{header_name: X-Correlation, echo_downstream: true}}
- name: file-log
  config: {{path: {log}}}
- name: http-log
  config: {{http_endpoint: "http://127.0.0.1:{dead}/log"}}
- name: prometheus
  config: {{status_code_metrics: true}}
- name: statsd
  config: {{host: 127.0.0.1, port: {dead}}}
- name: datadog
  config: {{host: 127.0.0.1, port: {dead}}}
- name: zipkin
  config: {{http_endpoint: "http://127.0.0.1:{dead}/zipkin", sample_ratio: 1}}
- name: opentelemetry
  config: {{traces_endpoint: "http://127.0.0.1:{dead}/v1/traces"}}
- name: tcp-log
  config: {{host: 127.0.0.1, port: {dead}}}
- name: udp-log
  config: {{host: 127.0.0.1, port: {dead}}}
- name: loggly
  config: {{key: abc, host: 127.0.0.1, port: {dead}}}
- name: proxy-cache
  config: {{strategy: memory}}
- name: rate-limiting
  config: {{minute: 100}}
- name: response-ratelimiting
  config: {{limits: {{video: {{minute: 10}}}}}}
- name: session
  config: {{secret: abcdefghijklmnopqrstuvwxyz0123456789}}
- name: grpc-web
- name: hmac-auth
- name: key-auth
- name: acl
  config: {{allow: [a]}}
- name: aws-lambda
  config: {{function_name: f, aws_region: us-east-1, aws_key: k, aws_secret: s}}
"""

CONFIG = """_format_version: "3.0"
services:
- name: dead
  url: http://127.0.0.1:{dead}
  routes:
  - name: only
    paths: [/only]
plugins:
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("unrouted")
    dead = free_port()
    text = CONFIG.format(dead=dead) + GLOBALS.format(dead=dead, log=workdir / "file.log")
    gw = Gateway(workdir, text)
    gw.stderr_path = workdir / "stderr.log"
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def logged(gateway: Gateway) -> list[dict]:  # type: ignore[type-arg]
    path = gateway.workdir / "file.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def entry_for(gateway: Gateway, request_id: str) -> dict:  # type: ignore[type-arg]
    found: list[dict] = []  # type: ignore[type-arg]

    def arrived() -> bool:
        found[:] = [e for e in logged(gateway) if e["request"]["id"] == request_id]
        return bool(found)

    eventually(arrived)
    return found[0]


def raw(gateway: Gateway, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_404_is_shaped_and_logged_by_the_global_plugins(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/nowhere"), headers={"Origin": "https://app.example"})
    assert r.status_code == 404
    assert r.json()["message"] == "no Route matched with those values"
    assert r.headers["access-control-allow-origin"] == "*"  # cors' header_filter
    assert r.headers["x-transformed"] == "yes"  # response-transformer's
    assert r.headers["x-correlation"]  # correlation-id echoes the id it made
    assert r.headers["server"].startswith("fastkong/")
    entry = entry_for(gateway, r.headers["x-kong-request-id"])
    assert entry["response"]["status"] == 404
    assert entry["request"]["uri"] == "/nowhere"
    # no route, no service, no balancer data (Kong logs none of them)
    assert "route" not in entry and "service" not in entry and "tries" not in entry
    assert entry["upstream_uri"] == ""


def test_prometheus_counts_the_404_without_service_or_route(gateway: Gateway) -> None:
    httpx.get(gateway.url("/nowhere-either"))
    metrics = f"http://127.0.0.1:{gateway.status_port}/metrics"

    def counted() -> bool:
        lines = httpx.get(metrics).text.splitlines()
        wanted = ('service=""', 'route=""', 'code="404"', 'source="kong"')
        return any(
            line.startswith("kong_http_requests_total{") and all(w in line for w in wanted)
            for line in lines
        )

    eventually(counted)


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"TRACE / HTTP/1.1", 405),
        (b"get / HTTP/1.1", 400),  # nginx's "client sent invalid method"
        (b"GET /x?" + b"q" * 8200 + b" HTTP/1.1", 414),  # past large_client_header_buffers
    ],
    ids=["405", "400", "414"],
)
def test_nginx_refusals_are_logged_too(gateway: Gateway, request_line: bytes, status: int) -> None:
    answer = raw(gateway, request_line + b"\r\nHost: x\r\nX-Mine: 1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    head = answer.split(b"\r\n\r\n")[0].decode("latin-1").lower()
    request_id = next(
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")
        if line.startswith("x-kong-request-id:")
    )
    entry = entry_for(gateway, request_id)
    assert entry["response"]["status"] == status
    # nginx stopped at a request line too long: it read no header (Kong logs none)
    assert ("x-mine" in entry["request"]["headers"]) == (status != 414)


def test_no_plugin_failed(gateway: Gateway) -> None:
    # (after the other tests of the module: their requests went through every hook)
    assert gateway.stderr_path is not None
    assert "Traceback" not in Path(gateway.stderr_path).read_text()
