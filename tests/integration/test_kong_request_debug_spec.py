"""Kong's ``spec/02-integration/21-request-debug/01-request-debug_spec.lua`` (Kong 3.9.1), the
DB-less cases, against real gateways (fastkong/proxy/request_debug.py).

Two nodes, started together: ``token`` (``request_debug_token`` set, ``trusted_ips =
0.0.0.0/0``, notice logs kept) and ``random`` (no token: the node generates one). As in Kong's
spec, a non-loopback client is made by a trusted peer's ``X-Real-IP`` (Kong checks nginx's
``binary_remote_addr``, which the real-IP module sets). Shapes and containment are asserted,
never durations.

Left out: "can be disabled manually" (a third node: the unit module checks ``request_debug =
off`` in process, headers forwarded and no token file); "subrequests involved" and "external_http
span" (Kong's fixture plugins enable-buffering-response and muti-external-http-calls, which
fastkong has not); "redis span" (fastkong's debug tree does not record Redis calls).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers, eventually
from tests.plugins.kong_tracing_fakes import GatewaySpec, start_gateways, stderr_of

TOKEN = "01dd4c9e-cb5e-4b26-9e49-4eb0509fbd68"
TOKEN_FILE = ".request_debug_token"
BIG_ROUTE_PLUGINS = """
    - {name: correlation-id}
    - {name: request-transformer, config: {add: {headers: ["x-a:1"]}}}
    - {name: response-transformer, config: {add: {headers: ["x-b:1"]}}}
    - {name: cors}
    - {name: ip-restriction, config: {allow: ["0.0.0.0/0", "::/0"]}}
    - {name: request-size-limiting}
    - {name: rate-limiting, config: {minute: 100000, policy: local}}
    - {name: response-ratelimiting, config: {limits: {video: {minute: 100000}}}}
    - {name: bot-detection}
    - {name: prometheus}
    - {name: proxy-cache, config: {strategy: memory, request_method: [POST]}}
    - {name: session}
    - {name: statsd}
    - {name: datadog}
    - {name: udp-log, config: {host: 127.0.0.1, port: 9}}
    - {name: loggly, config: {host: 127.0.0.1, port: 9, key: k}}
"""


def _config(echo: Echo) -> str:
    return f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - {{name: dummy, paths: [/dummy]}}
  - {{name: slow-streaming, paths: [/slow-streaming]}}
  - {{name: invalid_header, paths: [/invalid_header]}}
  - name: large_debug_output
    paths: [/large_debug_output]
    plugins:{BIG_ROUTE_PLUGINS}
- name: by-name
  url: http://localhost:{echo.port}
  routes:
  - {{name: mutiple-spans, paths: [/mutiple-spans]}}
"""


@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    server = Echo().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nodes(echo: Echo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway]]:
    workdir = Path(tmp_path_factory.mktemp("request-debug"))
    specs = [
        GatewaySpec(
            _config(echo),
            {
                "KONG_REQUEST_DEBUG_TOKEN": TOKEN,
                "KONG_TRUSTED_IPS": "0.0.0.0/0",
                "KONG_LOG_LEVEL": "notice",
                "KONG_PREFIX": str(workdir / "token-prefix"),
            },
            keep_stderr=True,
        ),
        GatewaySpec(
            _config(echo),
            {"KONG_TRUSTED_IPS": "0.0.0.0/0", "KONG_PREFIX": str(workdir / "random-prefix")},
        ),
    ]
    gateways = start_gateways(specs, workdir)
    yield {"token": gateways[0], "random": gateways[1]}
    for gateway in gateways:
        gateway.stop()


def _prefix(gateway: Gateway) -> Path:
    return gateway.workdir.parent / ("token-prefix" if gateway.stderr_path else "random-prefix")


def _token_file(gateway: Gateway) -> str:
    return (_prefix(gateway) / TOKEN_FILE).read_text()


def _send(
    gateway: Gateway,
    path: str,
    debug: str | None = "*",
    fake_ip: str | None = None,
    token: str | None = None,
    log: bool = False,
) -> httpx.Response:
    headers = {"X-Real-IP": fake_ip or "127.0.0.1"}
    if debug is not None:
        headers["X-Kong-Request-Debug"] = debug
    if token is not None:
        headers["X-Kong-Request-Debug-Token"] = token
    if log:
        headers["X-Kong-Request-Debug-Log"] = "true"
    response = httpx.get(gateway.url(path), headers=headers)
    assert response.status_code != 500, response.text
    return response


def output_header(gateway: Gateway, path: str, *args: Any) -> Any:
    """Kong's ``get_output_header``: the decoded output, or None."""
    value = _send(gateway, path, *args).headers.get("X-Kong-Request-Debug-Output")
    if value is None:
        return None
    found = json.loads(value)
    assert not found.get("dangling")
    return found


def output_log(gateway: Gateway, path: str, *args: Any) -> tuple[Any, bool]:
    """Kong's ``get_output_log``: the tree the node logged for one request (reassembled from
    its parts), and whether it came in parts; (None, False) when nothing was logged."""
    value = _send(gateway, path, *args, log=True).headers.get("X-Kong-Request-Debug-Output")
    if value is None:
        return None, False
    request_id = json.loads(value)["request_id"]
    tail = rf' while logging request, client: \S+, request_id: "{request_id}"'
    single = re.compile(r"\[request-debug\] output: (?P<data>.+)" + tail)
    multi = re.compile(
        r"\[request-debug\] parts: (?P<part>\d+)/(?P<parts>\d+) output: (?P<data>.+)" + tail
    )
    found: list[Any] = []

    def logged() -> bool:
        parts: dict[int, str] = {}
        for line in stderr_of(gateway).splitlines():
            if (match := multi.search(line)) is not None:
                parts[int(match["part"])] = match["data"]
                if len(parts) == int(match["parts"]):
                    found[:] = [json.loads("".join(parts[n] for n in sorted(parts))), True]
                    return True
            elif (match := single.search(line)) is not None:
                found[:] = [json.loads(match["data"]), False]
                return True
        return False

    eventually(logged, timeout=5)
    tree, parted = found
    assert not tree.get("dangling")
    assert tree["request_id"] == request_id
    return tree, parted


def has_no_output_log(gateway: Gateway, path: str, *args: Any) -> bool:
    return _send(gateway, path, *args, log=True).headers.get("X-Kong-Request-Debug-Output") is None


def assert_total_time_is_float(tree: Any, path: str = "$") -> None:
    """Kong's check: every total_time but the upstream's (whole milliseconds) a float."""
    if "total_time" in tree:
        assert isinstance(tree["total_time"], float), f"{path}.total_time"
    for name, child in tree.get("child", {}).items():
        if name != "upstream":
            assert_total_time_is_float(child, f"{path}.{name}")


# -- Request debug: enabled, the token -------------------------------------------------------------
def test_should_enabled_by_default(nodes: dict[str, Gateway]) -> None:
    assert _token_file(nodes["random"])
    assert output_header(nodes["random"], "/") is not None  # (a 404: Kong's access phase)


def test_generating_token_randomly_if_not_set(nodes: dict[str, Gateway]) -> None:
    node = nodes["random"]
    token = _token_file(node)
    assert token != TOKEN
    assert output_header(node, "/", "*", "1.1.1.1", token) is not None
    assert output_header(node, "/", "*", "1.1.1.1", "invalid-token") is None


def test_token_can_be_set_manually(nodes: dict[str, Gateway]) -> None:
    node = nodes["token"]
    assert _token_file(node) == TOKEN
    assert output_header(node, "/", "*", "1.1.1.1", TOKEN) is not None
    assert output_header(node, "/", "*", "1.1.1.1", "invalid-token") is None


# -- Request debug: the output -------------------------------------------------------------------
def test_do_nothing_if_no_debug_header(nodes: dict[str, Gateway]) -> None:
    response = _send(nodes["token"], "/", debug=None)
    assert "X-Kong-Request-Debug-Output" not in response.headers


def test_clients_from_the_loopback_dont_need_a_token(nodes: dict[str, Gateway]) -> None:
    assert output_header(nodes["token"], "/", "*") is not None


def test_clients_from_the_non_loopback_need_a_token(nodes: dict[str, Gateway]) -> None:
    node = nodes["token"]
    assert output_header(node, "/", "*", "1.1.1.1") is None
    assert has_no_output_log(node, "/", "*", "1.1.1.1")
    assert output_header(node, "/", "*", "1.1.1.1", TOKEN) is not None


def test_has_request_id_and_workspace_id(nodes: dict[str, Gateway]) -> None:
    node = nodes["token"]
    header = output_header(node, "/dummy", "*")
    logged, _ = output_log(node, "/dummy", "*")
    for tree in (header, logged):
        assert tree["request_id"]
        assert tree["workspace_id"]


def test_upstream_span(nodes: dict[str, Gateway]) -> None:
    node = nodes["token"]
    header = output_header(node, "/slow-streaming", "*")
    logged, _ = output_log(node, "/slow-streaming", "*")
    upstream = header["child"]["upstream"]
    assert "streaming" not in upstream["child"]
    assert upstream["total_time"] == upstream["child"]["time_to_first_byte"]["total_time"]
    upstream = logged["child"]["upstream"]
    tfb = upstream["child"]["time_to_first_byte"]["total_time"]
    streaming = upstream["child"]["streaming"]["total_time"]
    assert all(isinstance(v, int) for v in (upstream["total_time"], tfb, streaming))
    assert upstream["total_time"] == tfb + streaming
    assert_total_time_is_float(header)
    assert_total_time_is_float(logged)


def test_rewrite_access_balancer_header_filter_body_filter_log_plugin_span_dns_span(
    nodes: dict[str, Gateway],
) -> None:
    node = nodes["token"]
    # The first request through this service opens its connection, resolving ``localhost``
    # (fastkong resolves per connection: Kong, per request).
    header = output_header(node, "/mutiple-spans", "*")
    logged, _ = output_log(node, "/mutiple-spans", "*")
    resolve = header["child"]["access"]["child"]["dns"]["child"]["localhost"]["child"]["resolve"]
    assert resolve["cache_hit"] in (True, False)
    for tree in (header, logged):
        children = tree["child"]
        assert {"rewrite", "access", "balancer", "header_filter"} <= set(children)
        assert "router" in children["access"]["child"]
    assert {"body_filter", "log"} <= set(logged["child"])
    assert_total_time_is_float(header)
    assert_total_time_is_float(logged)


def test_plugin_spans(nodes: dict[str, Gateway]) -> None:
    tree = output_header(nodes["token"], "/large_debug_output", "*")
    access = tree["child"]["access"]["child"]["plugins"]["child"]
    assert {"correlation-id", "rate-limiting", "request-transformer"} <= set(access)
    (by_id,) = access["rate-limiting"]["child"].values()
    assert isinstance(by_id["total_time"], float)
    header_filter = tree["child"]["header_filter"]["child"]["plugins"]["child"]
    assert "response-transformer" in header_filter


def test_truncate_split_too_large_debug_output(nodes: dict[str, Gateway]) -> None:
    node = nodes["token"]
    header = output_header(node, "/large_debug_output", "*", "1.1.1.1", TOKEN)
    assert header["truncated"] is True
    assert header["message"].startswith("Output is truncated")
    logged, parted = output_log(node, "/large_debug_output", "*", "1.1.1.1", TOKEN)
    assert parted
    assert "plugins" in logged["child"]["access"]["child"]
    assert_total_time_is_float(logged)


def test_invalid_x_kong_request_debug_header_should_not_trigger_this_feature(
    nodes: dict[str, Gateway],
) -> None:
    node = nodes["token"]
    assert output_header(node, "/invalid_header", "invalid") is None
    assert has_no_output_log(node, "/invalid_header", "invalid")


# -- fastkong's own: the headers never reach the upstream ----------------------------------------
@pytest.mark.parametrize("debug", ["*", "invalid"])
def test_the_upstream_never_sees_the_three_headers(nodes: dict[str, Gateway], debug: str) -> None:
    response = httpx.get(
        nodes["token"].url("/dummy"),
        headers={
            "X-Kong-Request-Debug": debug,
            "X-Kong-Request-Debug-Token": TOKEN,
            "X-Kong-Request-Debug-Log": "false",
        },
    )
    assert response.status_code == 200
    seen = echoed_headers(response.json())
    assert not [name for name in seen if name.startswith("x-kong-request-debug")]
    assert ("X-Kong-Request-Debug-Output" in response.headers) == (debug == "*")
