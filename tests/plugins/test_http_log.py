"""http-log through a running gateway to a real loopback collector (Kong's
spec/03-plugins/03-http-log), plus the Kong queue it rides on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled import _queue
from tests.helpers import ROOT, Echo, Gateway, LoopServer, free_port, read_request, wait_port

pytestmark = pytest.mark.integration

SECRET_HEADER = "s3cret-header-value"
SECRET_PASSWORD = "hunter2-password"


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def entries(self) -> list[dict[str, Any]]:
        data = json.loads(self.body)
        return data if isinstance(data, list) else [data]


class Collector(LoopServer):
    """A loopback HTTP/1.1 log server in its own thread: records every request and answers
    with the next status of ``statuses`` (200 once they run out), or never (``hang``)."""

    def __init__(self, hang: bool = False) -> None:
        super().__init__()
        self.hang = hang
        self.received: list[Received] = []
        self.statuses: deque[int] = deque()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request = await read_request(reader)
                self.received.append(
                    Received(request.method, request.target, request.lowered, request.body)
                )
                if self.hang:
                    await asyncio.Event().wait()
                status = self.statuses.popleft() if self.statuses else 200
                writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\nok" % status)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def wait_entries(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            entries = [e for r in list(self.received) for e in r.entries()]
            if len(entries) >= count:
                return entries
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(entries)} of {count} log entries arrived")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def blackhole() -> Iterator[Collector]:
    server = Collector(hang=True).start()
    yield server
    server.stop()


def start_capturing(gateway: Gateway, log: Path) -> Gateway:
    """``gateway.start()`` with the node's stderr (every worker's log lines) going to ``log``."""
    with log.open("wb") as sink:
        gateway.proc = subprocess.Popen(
            gateway.command(), cwd=ROOT, env=dict(os.environ), stderr=sink
        )
    wait_port(gateway.status_port, proc=gateway.proc)
    wait_port(gateway.port, proc=gateway.proc)
    gateway.wait_ready()
    return gateway


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    collector: Collector,
    blackhole: Collector,
) -> Iterator[tuple[Gateway, Path]]:
    closed = free_port()
    fast_retry = "{initial_retry_delay: 0.05, max_retry_time: 5, max_coalescing_delay: 0.1}"
    config = f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: single
    paths: [/single]
    plugins:
    - name: http-log
      config:
        http_endpoint: "http://logger:{SECRET_PASSWORD}@127.0.0.1:{collector.port}/logs/single"
        headers: {{X-Token: {SECRET_HEADER}}}
        content_type: "application/json; charset=utf-8"
  - name: batched
    paths: [/batched]
    plugins:
    - name: http-log
      config:
        http_endpoint: "{collector.url}/logs/batched?x=1"
        method: PUT
        queue: {{max_batch_size: 10, max_coalescing_delay: 2}}
  - name: legacy
    paths: [/legacy]
    plugins:
    - name: http-log
      config: {{http_endpoint: "{collector.url}/logs/legacy", queue_size: 5, flush_timeout: 0.5}}
  - name: retried
    paths: [/retried]
    plugins:
    - name: http-log
      config: {{http_endpoint: "{collector.url}/logs/retried", queue: {fast_retry}}}
  - name: hanging
    paths: [/hanging]
    plugins:
    - name: http-log
      config: {{http_endpoint: "{blackhole.url}/logs", timeout: 10000}}
  - name: refused
    paths: [/refused]
    plugins:
    - name: http-log
      config:
        http_endpoint: "http://user:{SECRET_PASSWORD}@127.0.0.1:{closed}/logs"
        headers: {{Api-Key: {SECRET_HEADER}}}
        queue: {fast_retry}
  - name: plain
    paths: [/plain]
"""
    tmp = tmp_path_factory.mktemp("http-log")
    gw = start_capturing(Gateway(tmp, config), tmp / "gateway.log")
    yield gw, tmp / "gateway.log"
    gw.stop()


def sent_to(collector: Collector, path: str) -> list[Received]:
    return [r for r in list(collector.received) if r.target.startswith(path)]


# -- delivery ----------------------------------------------------------------------------------


def test_one_entry_per_request_as_a_json_object(
    gateway: tuple[Gateway, Path], collector: Collector
) -> None:
    gw, _ = gateway
    tag = str(uuid.uuid4())
    r = httpx.get(gw.url("/single/status/201"), headers={"x-tag": tag})
    assert r.status_code == 201
    deadline = time.monotonic() + 10
    while not sent_to(collector, "/logs/single"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (received,) = sent_to(collector, "/logs/single")
    assert received.method == "POST"
    assert received.target == "/logs/single"
    assert received.headers["host"] == f"127.0.0.1:{collector.port}"
    assert received.headers["content-type"] == "application/json; charset=utf-8"
    assert received.headers["content-length"] == str(len(received.body))
    assert received.headers["x-token"] == SECRET_HEADER
    # user info in the URL becomes Basic authentication
    assert (
        received.headers["authorization"]
        == "Basic " + base64.b64encode(f"logger:{SECRET_PASSWORD}".encode()).decode()
    )
    entry = json.loads(received.body)
    assert isinstance(entry, dict)
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["request"]["headers"]["x-tag"] == tag
    assert entry["response"]["status"] == 201
    assert entry["route"]["name"] == "single"
    assert entry["request"]["id"] == r.headers["x-kong-request-id"]


def test_batches_are_json_arrays(gateway: tuple[Gateway, Path], collector: Collector) -> None:
    gw, _ = gateway
    tags = [str(uuid.uuid4()) for _ in range(10)]
    with httpx.Client() as client:
        for tag in tags:
            assert client.get(gw.url("/batched"), headers={"x-tag": tag}).status_code == 200
    deadline = time.monotonic() + 10
    while sum(len(r.entries()) for r in sent_to(collector, "/logs/batched")) < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    batches = sent_to(collector, "/logs/batched")
    assert all(r.method == "PUT" and r.target == "/logs/batched?x=1" for r in batches)
    assert all(isinstance(json.loads(r.body), list) for r in batches)
    # ten entries within the two-second coalescing window: one batch (10 = max_batch_size)
    assert [len(r.entries()) for r in batches] == [10]
    assert [e["request"]["headers"]["x-tag"] for e in batches[0].entries()] == tags


def test_legacy_queue_size_and_flush_timeout(
    gateway: tuple[Gateway, Path], collector: Collector
) -> None:
    gw, _ = gateway
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(gw.url("/legacy")).status_code == 200
    deadline = time.monotonic() + 10
    while sum(len(r.entries()) for r in sent_to(collector, "/logs/legacy")) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # queue_size 5 is max_batch_size 5; flush_timeout 0.5 s sends the three together
    assert [len(r.entries()) for r in sent_to(collector, "/logs/legacy")] == [3]


def test_failed_batches_are_retried(gateway: tuple[Gateway, Path], collector: Collector) -> None:
    gw, _ = gateway
    collector.statuses.extend([500, 503])
    tag = str(uuid.uuid4())
    assert httpx.get(gw.url("/retried"), headers={"x-tag": tag}).status_code == 200
    deadline = time.monotonic() + 10
    while len(sent_to(collector, "/logs/retried")) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    attempts = sent_to(collector, "/logs/retried")
    assert len(attempts) == 3  # 500, 503, then 200: delivered, not resent
    assert {r.body for r in attempts} == {attempts[0].body}
    assert attempts[0].entries()[0]["request"]["headers"]["x-tag"] == tag
    time.sleep(0.3)
    assert len(sent_to(collector, "/logs/retried")) == 3


# -- a dead log server -------------------------------------------------------------------------


def timings(client: httpx.Client, url: str, n: int = 30) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert client.get(url).status_code == 200
        out.append(time.perf_counter() - t0)
    return out


@pytest.mark.parametrize("route", ["/hanging", "/refused"])
def test_a_dead_endpoint_does_not_slow_requests(
    gateway: tuple[Gateway, Path], blackhole: Collector, route: str
) -> None:
    gw, _ = gateway
    with httpx.Client() as client:
        baseline = timings(client, gw.url("/plain"))
        logged = timings(client, gw.url(route))
    # The log server accepts and never answers (or refuses): every request still returns at
    # once; the queue holds the entries, bounded by queue.max_entries.
    assert max(logged) < 0.5
    assert statistics.median(logged) < statistics.median(baseline) + 0.02
    if route == "/hanging":
        assert blackhole.received  # the entries did go out, to a server that never answers


def test_secrets_stay_out_of_the_gateways_log(gateway: tuple[Gateway, Path]) -> None:
    gw, log = gateway
    assert httpx.get(gw.url("/refused")).status_code == 200
    deadline = time.monotonic() + 10
    while "handler could not process entries" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    text = log.read_text()
    assert "failed request to 127.0.0.1:" in text
    assert SECRET_PASSWORD not in text
    assert SECRET_HEADER not in text


# -- schema ------------------------------------------------------------------------------------


def errors(config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config('_format_version: "3.0"\nroutes: [{name: r, paths: [/]}]\n' + config)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_defaults_are_kongs() -> None:
    doc = '_format_version: "3.0"\nplugins: [{name: http-log, config: {http_endpoint: "http://x/"}}]\n'
    assert load_config(doc).config.plugins[0].config == {
        "http_endpoint": "http://x/",
        "method": "POST",
        "content_type": "application/json",
        "timeout": 10000,
        "keepalive": 60000,
        "retry_count": None,
        "queue_size": None,
        "flush_timeout": None,
        "headers": None,
        "queue": {
            "max_batch_size": 1,
            "max_coalescing_delay": 1,
            "max_entries": 10000,
            "max_bytes": None,
            "max_retry_time": 60,
            "initial_retry_delay": 0.01,
            "max_retry_delay": 60,
            "concurrency_limit": 1,
        },
        "custom_fields_by_lua": None,
    }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("{Host: MyHost}", "cannot contain 'Host' header"),
        ("{coNTEnt-Length: '123'}", "cannot contain 'Content-Length' header"),
        ("{coNTEnt-Type: bad}", "cannot contain 'Content-Type' header"),
        ("{X-My-Header: ''}", "length must be at least 1"),
        ("{'a b': c}", "bad header name 'a b', allowed characters are A-Z, a-z, 0-9, '_', and '-'"),
    ],
)
def test_header_rules(headers: str, message: str) -> None:
    config = f'{{http_endpoint: "http://myservice.test/path", headers: {headers}}}'
    assert errors(f"plugins: [{{name: http-log, route: r, config: {config}}}]\n") == [
        f"plugins[0].config.headers: {message}"
    ]


def test_userinfo_and_authorization_header_exclude_each_other() -> None:
    config = '{http_endpoint: "http://hi:there@myservice.test/path", headers: {AuthoRIZATion: x}}'
    assert errors(f"plugins: [{{name: http-log, route: r, config: {config}}}]\n") == [
        "plugins[0].config: specifying both an 'Authorization' header and user info in "
        "'http_endpoint' is not allowed"
    ]


def test_other_config_errors_have_paths() -> None:
    assert errors(
        "plugins:\n"
        "- name: http-log\n"
        "  route: r\n"
        "  config:\n"
        "    http_endpoint: nohost\n"
        "    method: GET\n"
        "    content_type: text/plain\n"
        "    custom_fields_by_lua: {a: 'return 1'}\n"
        "    queue: {max_batch_size: 0, concurrency_limit: 2, initial_retry_delay: 0, foo: 1}\n"
    ) == [
        "plugins[0].config.http_endpoint: missing host in url",
        "plugins[0].config.method: expected one of: POST, PUT, PATCH",
        "plugins[0].config.content_type: expected one of: application/json, "
        "application/json; charset=utf-8",
        "plugins[0].config.custom_fields_by_lua: custom_fields_by_lua is not supported: "
        "fastkong does not run Lua code",
        "plugins[0].config.queue.max_batch_size: value should be between 1 and 1000000",
        "plugins[0].config.queue.concurrency_limit: expected one of: -1, 1",
        "plugins[0].config.queue.initial_retry_delay: value should be between 0.001 and 1000000",
        "plugins[0].config.queue.foo: unknown field",
    ]
    assert errors(
        'plugins: [{name: http-log, route: r, config: {http_endpoint: "//host/path"}}]\n'
    ) == ["plugins[0].config.http_endpoint: missing scheme in url"]


# -- the queue (Kong's spec/01-unit/27-queue_spec.lua, in a loop of its own) ---------------------


def params(**kw: Any) -> _queue.QueueParams:
    return _queue.QueueParams(name=f"test-{uuid.uuid4()}", label="test", **kw)


async def test_queue_coalesces_up_to_max_batch_size() -> None:
    batches: list[list[bytes]] = []

    async def handler(entries: list[bytes]) -> str | None:
        batches.append(entries)
        return None

    p = params(max_batch_size=3, max_coalescing_delay=0.2)
    for i in range(7):
        assert _queue.enqueue(p, handler, b"%d" % i) is None
    await asyncio.sleep(0.8)
    assert batches == [[b"0", b"1", b"2"], [b"3", b"4", b"5"], [b"6"]]
    assert p.name not in _queue.queues()  # a drained queue is removed


async def test_queue_drops_the_oldest_entries_when_full() -> None:
    release = asyncio.Event()
    batches: list[list[bytes]] = []

    async def handler(entries: list[bytes]) -> str | None:
        await release.wait()
        batches.append(entries)
        return None

    p = params(max_batch_size=1, max_entries=3)
    for i in range(10):
        _queue.enqueue(p, handler, b"%d" % i)
    queue = _queue.queues()[p.name]
    assert list(queue.entries) == [b"7", b"8", b"9"]  # 0 to 6 made room for newer ones
    await asyncio.sleep(0.05)  # "7" is with the handler, which blocks
    for i in range(10, 15):
        _queue.enqueue(p, handler, b"%d" % i)
    assert list(queue.entries) == [b"12", b"13", b"14"]
    assert queue.dropped == 11
    release.set()
    await asyncio.sleep(0.1)
    assert [b for (b,) in batches] == [b"7", b"12", b"13", b"14"]


async def test_queue_retries_with_backoff_then_gives_up() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(entries: list[bytes]) -> str | None:
        calls.append(loop.time())
        return "boom"

    p = params(initial_retry_delay=0.02, max_retry_delay=0.08, max_retry_time=0.3)
    _queue.enqueue(p, handler, b"x")
    queue = _queue.queues()[p.name]
    await asyncio.sleep(0.8)
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert 4 <= len(calls) <= 8
    assert gaps[0] == pytest.approx(0.02, abs=0.015)
    assert gaps[1] == pytest.approx(0.04, abs=0.015)
    assert all(g == pytest.approx(0.08, abs=0.02) for g in gaps[3:])  # capped
    assert queue.lost == 1


async def test_queue_max_bytes_and_unlimited_concurrency() -> None:
    seen: list[bytes] = []

    async def handler(entries: list[bytes]) -> str | None:
        seen.extend(entries)
        return None

    p = params(max_bytes=4)
    assert _queue.enqueue(p, handler, b"12345") == (
        "string to be queued is longer (5 bytes) than the queue's max_bytes (4 bytes)"
    )
    unlimited = params(concurrency_limit=-1)
    for i in range(3):
        assert _queue.enqueue(unlimited, handler, b"%d" % i) is None
    assert unlimited.name not in _queue.queues()
    assert await _queue.drain(1.0)
    assert sorted(seen) == [b"0", b"1", b"2"]
