"""Kong's request debugging (fastkong/proxy/request_debug.py): the output tree's shape, its
truncation and log parts, the token file, and the removal of the three request headers, on an
in-process gateway whose upstream connection records what it was sent."""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from fastkong._core import NO_EXTENSIONS, _h1_py
from fastkong.config import load_config
from fastkong.proxy import upstream
from fastkong.proxy.app import Gateway
from fastkong.proxy.request_debug import (
    HEADER_JSON_TRUNCATE_LENGTH,
    LOG_JSON_TRUNCATE_LENGTH,
    TOKEN_FILE,
    RequestDebug,
    Timing,
    is_loopback,
    request_debug_settings,
    write_token,
)
from fastkong.runtime import compile_runtime

TOKEN = "01dd4c9e-cb5e-4b26-9e49-4eb0509fbd68"
DEBUG_HEADERS = (
    b"x-kong-request-debug",
    b"x-kong-request-debug-token",
    b"x-kong-request-debug-log",
)
CONFIG = """
_format_version: "3.0"
services:
- name: up
  url: http://127.0.0.1:9
  routes:
  - {name: plain, paths: [/plain]}
  - name: plugged
    paths: [/plugged]
    plugins:
    - name: correlation-id
    - name: response-transformer
      config: {add: {headers: ["x-added:1"]}}
    - name: file-log
      config: {path: /dev/null}
"""
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Connection: keep-alive\r\n\r\nhello"
)


# -- the tree ------------------------------------------------------------------------------------
def test_contexts_nest_accumulate_and_floor_to_two_decimals() -> None:
    timing = Timing(log=False, loopback=True)
    timing.set_root_prop("request_id", "abc")
    timing.phase("rewrite")
    timing.phase("access")
    for _ in range(2):  # the same name twice: one context, its times added
        timing.enter("router")
        timing.leave()
    timing.record(("access", "dns", "example.test", "resolve"), 1.23456, cache_hit=True)
    timing.end_phase()
    tree = json.loads(timing.to_json())
    assert tree["request_id"] == "abc"
    assert set(tree["child"]) == {"rewrite", "access"}
    access = tree["child"]["access"]
    assert set(access["child"]) == {"router", "dns"}
    resolve = access["child"]["dns"]["child"]["example.test"]["child"]["resolve"]
    assert resolve == {"total_time": 1.23, "cache_hit": True}
    for node in (tree["child"]["rewrite"], access, access["child"]["router"]):
        assert round(node["total_time"], 2) == node["total_time"]
    assert "dangling" not in tree
    assert tree["total_time_without_upstream"] == round(
        tree["child"]["rewrite"]["total_time"] + access["total_time"], 2
    )


def test_a_context_left_open_is_kongs_dangling_one() -> None:
    timing = Timing(log=False, loopback=True)
    timing.phase("access")
    timing.enter("plugins")
    tree = json.loads(timing.to_json())
    assert tree["dangling"] is True
    assert tree["child"]["access"]["child"]["plugins"]["dangling"] is True


def test_the_upstream_is_whole_milliseconds_streaming_only_in_the_log() -> None:
    timing = Timing(log=True, loopback=True)
    timing.waiting_since = 100.0
    timing.tfb = 0.2505
    timing.upstream_done = 100.6509
    header = json.loads(timing.to_json())
    assert header["child"]["upstream"] == {
        "total_time": 250,
        "child": {"time_to_first_byte": {"total_time": 250}},
    }
    logged = json.loads(timing.to_json(logging_phase=True))["child"]["upstream"]
    assert logged["total_time"] == 650
    assert logged["child"]["streaming"]["total_time"] == 400
    assert logged["total_time"] == (
        logged["child"]["time_to_first_byte"]["total_time"]
        + logged["child"]["streaming"]["total_time"]
    )
    # (the upstream's time is left out of Kong's total_time_without_upstream)
    assert json.loads(timing.to_json())["total_time_without_upstream"] == 0


def _big(loopback: bool) -> Timing:
    timing = Timing(log=False, loopback=loopback)
    timing.phase("access")
    for n in range(200):
        timing.enter(f"plugin-number-{n}")
        timing.leave()
    timing.end_phase()
    return timing


def test_a_large_tree_is_truncated_for_a_remote_client_and_logged() -> None:
    timing = _big(loopback=False)
    output = json.loads(timing.header_output("rid"))
    assert output == {
        "truncated": True,
        "request_id": "rid",
        "message": "Output is truncated, please check the error_log for full output by "
        "filtering with the request_id.",
    }
    assert timing.log  # Kong logs what it truncated
    local = _big(loopback=True)
    assert len(local.header_output("rid")) >= HEADER_JSON_TRUNCATE_LENGTH
    assert not local.log


def test_the_log_splits_the_tree_in_3kb_parts() -> None:
    timing = _big(loopback=True)
    lines = timing.log_lines()
    assert len(lines) > 1
    data = ""
    for n, line in enumerate(lines, 1):
        prefix = f"[request-debug] parts: {n}/{len(lines)} output: "
        assert line.startswith(prefix)
        part = line[len(prefix) :]
        assert len(part) <= LOG_JSON_TRUNCATE_LENGTH
        data += part
    assert set(json.loads(data)["child"]["access"]["child"]) >= {"plugin-number-199"}
    small = Timing(log=True, loopback=True)
    small.set_root_prop("request_id", "x")
    (line,) = small.log_lines()
    assert line == '[request-debug] output: {"request_id":"x"}'


# -- settings, token, the scan -------------------------------------------------------------------
def test_settings_and_the_token_file(tmp_path: Path) -> None:
    assert request_debug_settings({}) == (True, None)
    assert request_debug_settings({"KONG_REQUEST_DEBUG": "off"}).enabled is False
    with pytest.raises(ValueError, match="request_debug"):
        request_debug_settings({"KONG_REQUEST_DEBUG": "maybe"})
    assert write_token(tmp_path, {"KONG_REQUEST_DEBUG_TOKEN": TOKEN}) == TOKEN
    assert (tmp_path / TOKEN_FILE).read_text() == TOKEN
    generated = write_token(tmp_path, {})
    assert generated and generated != TOKEN
    assert (tmp_path / TOKEN_FILE).read_text() == generated
    off = tmp_path / "off"
    off.mkdir()
    assert write_token(off, {"KONG_REQUEST_DEBUG": "off"}) is None
    assert not (off / TOKEN_FILE).exists()
    assert RequestDebug.from_environ({"KONG_REQUEST_DEBUG": "off"}) is None


def test_loopback_is_kongs() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.9.8.7") and is_loopback("::1")
    assert not is_loopback("1.1.1.1")
    assert not is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("unix:")


# (the compiled scanner too, where the suite runs on the compiled kernels)
@pytest.mark.parametrize("compiled", [False] if NO_EXTENSIONS else [False, True])
def test_the_scan_notes_the_request_debug_headers(compiled: bool) -> None:
    h1 = importlib.import_module("fastkong._core.h1") if compiled else _h1_py
    headers = [(b"host", b"x"), (b"x-kong-request-debug-log", b"true"), (b"accept", b"*/*")]
    lines, *_, debug = h1.scan_request_headers(headers, False)
    assert debug == 2
    assert lines == [b"x-kong-request-debug-log: true\r\n", b"accept: */*\r\n"]
    *_, debug = h1.scan_request_headers([*headers, (b"kong-debug", b"1")], False)
    assert debug == 3
    *_, debug = h1.scan_request_headers([(b"host", b"x")], False)
    assert debug == 0


# -- the request path, in process ----------------------------------------------------------------
class _Answering:
    """An upstream connection's transport: records the request, answers it at once."""

    def __init__(self, conn: upstream.UpstreamConnection, written: list[bytes]) -> None:
        self.conn = conn
        self.written = written

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.conn.loop.call_soon(self.conn.data_received, RESPONSE)

    def set_write_buffer_limits(self, **_: int) -> None:
        pass

    def close(self) -> None:
        pass


def _request(
    request_debug: RequestDebug | None,
    path: str,
    headers: list[tuple[bytes, bytes]],
    client: str = "127.0.0.1",
) -> tuple[dict[str, Any], bytes]:
    """One request through an in-process gateway: the response head, and the request head the
    upstream got."""
    written: list[bytes] = []
    found: dict[str, Any] = {}

    async def run() -> None:
        loaded = load_config(CONFIG)
        gateway = Gateway(compile_runtime(loaded.config, loaded.hash), request_debug=request_debug)
        await gateway.startup()
        pool = gateway.pool
        assert pool is not None

        async def connect(key: upstream.PoolKey, *_: Any, **__: Any) -> upstream.UpstreamConnection:
            conn = upstream.UpstreamConnection(pool, key)
            conn.connection_made(_Answering(conn, written))  # type: ignore[arg-type]
            return conn

        pool.connect = connect  # type: ignore[method-assign]
        scope = {
            "type": "http",
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": (client, 40000),
            "scheme": "http",
            "method": "GET",
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"gw.test"), *headers],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                found.update(message)

        await gateway.http(scope, receive, send)
        await gateway.shutdown()

    asyncio.run(run())
    return found, b"".join(written)


def _output(head: dict[str, Any]) -> Any:
    values = [v for k, v in head["headers"] if k == b"x-kong-request-debug-output"]
    return json.loads(values[0]) if values else None


ALL_THREE = [
    (b"x-kong-request-debug", b"*"),
    (b"x-kong-request-debug-token", TOKEN.encode()),
    (b"x-kong-request-debug-log", b"false"),
]


@pytest.mark.parametrize("value", [b"*", b"invalid"])
def test_the_three_headers_never_reach_the_upstream(value: bytes) -> None:
    headers = [(b"x-kong-request-debug", value), *ALL_THREE[1:]]
    head, sent = _request(RequestDebug(TOKEN), "/plain", headers)
    assert head["status"] == 200
    assert sent.startswith(b"GET / HTTP/1.1\r\n")
    for name in DEBUG_HEADERS:
        assert name not in sent.lower()
    assert (_output(head) is not None) == (value == b"*")


def test_with_request_debug_off_they_go_up_and_nothing_is_debugged() -> None:
    head, sent = _request(None, "/plain", ALL_THREE)
    assert _output(head) is None
    for name in DEBUG_HEADERS:
        assert name + b": " in sent


def test_a_remote_client_needs_the_token() -> None:
    head, _ = _request(RequestDebug(TOKEN), "/plain", ALL_THREE[:1], client="10.0.0.1")
    assert _output(head) is None
    head, _ = _request(RequestDebug(TOKEN), "/plain", ALL_THREE, client="10.0.0.1")
    assert _output(head) is not None
    wrong = [ALL_THREE[0], (b"x-kong-request-debug-token", b"invalid-token")]
    head, _ = _request(RequestDebug(TOKEN), "/plain", wrong, client="10.0.0.1")
    assert _output(head) is None


def test_the_tree_of_a_request_with_plugins() -> None:
    head, sent = _request(RequestDebug(TOKEN), "/plugged", ALL_THREE)
    assert (b"x-added", b"1") in [(k.lower(), v) for k, v in head["headers"]]
    assert b"kong-request-id" in sent.lower() or b"x-kong-request-id" in sent
    tree = _output(head)
    assert tree["request_id"] and tree["workspace_id"]
    children = tree["child"]
    assert {"rewrite", "access", "balancer", "header_filter", "upstream"} <= set(children)
    assert "router" in children["access"]["child"]
    access_plugins = children["access"]["child"]["plugins"]["child"]
    assert set(access_plugins) == {"correlation-id"}
    (by_id,) = access_plugins["correlation-id"]["child"].values()
    assert "total_time" in by_id
    header_plugins = children["header_filter"]["child"]["plugins"]["child"]
    assert "response-transformer" in header_plugins
    assert set(children["upstream"]["child"]) == {"time_to_first_byte"}
    assert "body_filter" not in children and "log" not in children  # (after the head)


def test_an_unrouted_request_is_debugged_too() -> None:
    head, sent = _request(RequestDebug(TOKEN), "/nowhere", ALL_THREE[:1])
    assert head["status"] == 404
    assert sent == b""
    tree = _output(head)
    assert "router" in tree["child"]["access"]["child"]
    assert "workspace_id" not in tree and "upstream" not in tree["child"]
