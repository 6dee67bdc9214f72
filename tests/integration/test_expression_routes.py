"""``router_flavor = expressions`` through a real gateway: expression routes by priority ahead of
traditional ones, strip_path by the matched part, captures, headers, query arguments, the
client's address, https-only routes; and ``fastkong config explain`` agrees with the proxy."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    Echo,
    Gateway,
    TaggedEcho,
    eventually,
    explain,
    fastkong_cli,
    free_port,
    tag_and_echo,
    wait_port,
)

pytestmark = pytest.mark.integration

ROUTES = {
    # name: (route fields, in YAML flow style)
    "api-get": '{expression: \'http.path ^= "/api" && http.method == "GET"\', priority: 10}',
    "api-any": "{expression: 'http.path ^= \"/api\"', priority: 5}",
    "canary": (
        '{expression: \'http.path ^= "/api" && lower(http.headers.x_env) == "canary"\', '
        "priority: 20}"
    ),
    "users": "{expression: 'http.path ~ r#\"^/users/(?P<id>\\d+)\"#', priority: 1}",
    "search": (
        '{expression: \'http.path == "/search" && http.queries.q == "fastkong"\', '
        "strip_path: false}"
    ),
    "local": "{expression: 'http.path == \"/local\" && net.src.ip in 127.0.0.0/8'}",
    "elsewhere": "{expression: 'http.path == \"/local\" && net.src.ip not in 127.0.0.0/8'}",
    "secure": "{expression: 'http.path == \"/secure\"', protocols: [https]}",
    "trad-v2": '{paths: ["/api/v2"]}',
    "trad": '{paths: ["/trad"]}',
}


def config(port: int) -> str:
    lines = ['_format_version: "3.0"', "services:"]
    for name, fields in ROUTES.items():
        # One service per route, named after it in its path: the echo tells the route apart.
        lines += [
            f"- name: {name}",
            f"  url: http://127.0.0.1:{port}/{name}",
            f"  routes: [{fields[:-1]}, name: {name}}}]",
        ]
    return "\n".join(lines) + "\n"


REQUESTS = [
    # (method, target, headers, route, upstream path)
    ("GET", "/api/x", {}, "api-get", "/api-get/x"),
    ("POST", "/api/x", {}, "api-any", "/api-any/x"),
    ("GET", "/api/x", {"X-Env": "Canary"}, "canary", "/canary/x"),
    # Every expression route outranks every traditional one.
    ("GET", "/api/v2/y", {}, "api-get", "/api-get/v2/y"),
    ("GET", "/trad/z", {}, "trad", "/trad/z"),
    # strip_path strips what the regex matched.
    ("GET", "/users/42/orders", {}, "users", "/users/orders"),
    ("GET", "/search?q=fastkong", {}, "search", "/search/search?q=fastkong"),
    ("GET", "/search?q=other", {}, None, None),
    ("GET", "/local", {}, "local", "/local"),
    ("GET", "/nowhere", {}, None, None),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("expressions")
    gw = Gateway(workdir, config(echo.port), 1, "--router-flavor", "expressions").start()
    yield gw
    gw.stop()


def predict(config: Path, method: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
    return explain(config, method, url, headers, "expressions")


@pytest.mark.parametrize(("method", "target", "headers", "route", "upstream"), REQUESTS)
def test_the_proxy_routes_by_expression_and_explain_agrees(
    gateway: Gateway,
    method: str,
    target: str,
    headers: dict[str, str],
    route: str | None,
    upstream: str | None,
) -> None:
    url = gateway.url(target)
    predicted = predict(gateway.config_path, method, url, headers)
    assert predicted["route"] == route
    answer = httpx.request(method, url, headers=headers)
    if route is None:
        assert answer.status_code == 404
        assert answer.json()["message"] == "no Route matched with those values"
        return
    assert answer.status_code == 200, answer.text
    assert answer.json()["url"] == upstream == predicted["upstream_path"]


def test_captures_reach_uri_captures(gateway: Gateway) -> None:
    predicted = predict(gateway.config_path, "GET", gateway.url("/users/7/x"), {})
    assert predicted["uri_captures"] == {"0": "/users/7", "1": "7", "id": "7"}


def test_an_https_only_expression_route_answers_426_over_http(gateway: Gateway) -> None:
    answer = httpx.get(gateway.url("/secure"))
    assert answer.status_code == 426
    assert answer.json()["message"] == "Please use HTTPS protocol"


def test_validate_knows_the_flavor(tmp_path: Path, echo: Echo) -> None:
    path = tmp_path / "kong.yml"
    path.write_text(config(echo.port))
    done = fastkong_cli("config", "validate", str(path), "--router-flavor", "expressions")
    assert done.returncode == 0, done.stdout + done.stderr
    done = fastkong_cli("config", "validate", str(path))
    assert done.returncode == 1
    assert "services[0].routes[0].expression: unknown field" in done.stdout


def test_stream_routes_by_expression(tmp_path: Path) -> None:
    """A tcp listener: two expression routes on the listener's port, by priority and by the
    client's address, ahead of a traditional route for the same port."""
    a, b, c = (TaggedEcho(tag).start() for tag in "ABC")
    port = free_port()
    text = f"""
_format_version: "3.0"
services:
- {{name: a, protocol: tcp, host: 127.0.0.1, port: {a.port}, routes: [{{name: a, protocols: [tcp],
    expression: "net.dst.port == {port} && net.src.ip in 127.0.0.0/8", priority: 2}}]}}
- {{name: b, protocol: tcp, host: 127.0.0.1, port: {b.port}, routes: [{{name: b, protocols: [tcp],
    expression: "net.dst.port == {port}", priority: 1}}]}}
- {{name: c, protocol: tcp, host: 127.0.0.1, port: {c.port}, routes: [{{name: c, protocols: [tcp],
    destinations: [{{port: {port}}}]}}]}}
"""
    gw = Gateway(
        tmp_path, text, 1, "--router-flavor", "expressions", "--stream-listen", f"127.0.0.1:{port}"
    )
    try:
        gw.start()
        wait_port(port, proc=gw.proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert tag_and_echo(sock, b"hi") == (b"A", b"hi")
        # Without route a, the next priority takes it; the traditional route comes last.
        gw.config_path.write_text(text.replace("127.0.0.0/8", "10.0.0.0/8"))

        def tag() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                return tag_and_echo(sock, b"x")[0]

        eventually(lambda: tag() == b"B")  # route b, after the reload
    finally:
        gw.stop()
        for server in (a, b, c):
            server.stop()
