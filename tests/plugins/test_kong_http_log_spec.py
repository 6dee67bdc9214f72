"""Kong's spec/03-plugins/03-http-log/01-log_spec.lua, ported against real gateways: a real
echo upstream and a real collecting HTTP(S) server standing in for the mock upstream's
``/post_log/<name>`` (each posted entry kept with the POST's headers as ``log_req_headers``, as
``/read_log/<name>`` answers them).

Ported:

- l.403-415, the plugin instance named in its queue's log lines. Kong's spec watches for the
  queue's "done processing queue", a ``kong.log.trace`` line, and ``kong.log.trace`` writes only
  while Kong runs its own tests (a no-op otherwise, kong/pdk/log.lua:1045-1049). The tag naming
  the instance, ``[http-log plugin <id> (<instance_name>)]`` (kong/tools/queue.lua:268-276,
  453-456), is observed instead on the line a failed delivery writes under the same tag;
- l.417-429 ``application/json``; 506-518 HTTPS; 520-536 layer 4 failures;
- l.565-577 a vault reference in ``headers`` (Kong's bundled ``env`` vault, which fastkong
  reads: docs/plugins.md "Secret references");
- l.598-665 changed configuration: Kong changes it through the admin API's entity endpoints,
  which need a database; here the DB-less counterpart, ``POST /config``;
- l.667-682 ``concurrency_limit: -1``;
- l.685-900 the queue describe, for 1 and 4 workers (its second Kong node, ``servroot2``, only
  served the mock upstream);
- l.903-962 enabled globally, a request no route matches.

Covered elsewhere: l.390-401 "logs to HTTP", 431-443 ``application/json; charset=utf-8``,
538-563 user info and ``headers`` as ``Authorization``/headers, 579-596 the implicit Host
header: ``test_http_log.py::test_one_entry_per_request_as_a_json_object``.

Left out: l.445-462 ``custom_fields_by_lua`` (fastkong runs no Lua: the field is refused at
config load, docs/plugins.md; ``test_http_log.py::test_other_config_errors_have_paths``);
l.464-504 gRPC and gRPCs (README.md: a plain gRPC call cannot be proxied, Granian's ASGI carries
no HTTP/2 trailers).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, LoopServer, eventually, free_port, read_request
from tests.pki import Pki

pytestmark = pytest.mark.integration

VAULT_ENV_NAME = "HTTP_LOG_KEY2"
VAULT_ENV_VALUE = "the secret"
QUEUE = {"max_batch_size": 5, "max_coalescing_delay": 0.1}
FAST_RETRY = {"initial_retry_delay": 0.05, "max_retry_time": 2}
#: Nothing listens there.
CLOSED_PORT = free_port()


class LogCollector(LoopServer):
    """Kong's mock upstream as a log server: ``POST /post_log/<name>`` keeps each entry (a JSON
    object, or every entry of an array) under ``name`` with the request's headers (lower-case)
    as ``log_req_headers``; ``/delay/<s>`` answers after that many seconds."""

    def __init__(self, ssl: Any = None) -> None:
        super().__init__(ssl)
        self.logs: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                path = request.target.partition("?")[0]
                if path.startswith("/delay/"):
                    await asyncio.sleep(float(path.split("/")[2]))
                if path.startswith("/post_log/"):
                    data = json.loads(request.body)
                    for entry in data if isinstance(data, list) else [data]:
                        entry["log_req_headers"] = request.lowered
                        self.logs[path.split("/")[2]].append(entry)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    def reset_log(self, name: str) -> None:
        self.logs.pop(name, None)

    def get_log(self, name: str, n: int | None = None) -> list[dict[str, Any]]:
        """Kong's ``get_log``: the entries once there are some, exactly ``n`` of them if given."""
        eventually(lambda: len(self.logs.get(name, ())) > 0)
        entries = list(self.logs[name])
        if n is not None:
            assert len(entries) == n, f"expected {n} log entries, but got {len(entries)}"
        return entries


class LogFile:
    """The gateway's stderr (every worker's log lines), read from a mark on (Kong's
    ``clean_logfile`` before each test)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def text(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def has_line(self, pattern: str, timeout: float = 10.0) -> None:
        regex = re.compile(pattern)
        eventually(lambda: any(regex.search(line) for line in self.text().splitlines()), timeout)


@pytest.fixture(scope="module")
def collector() -> Iterator[LogCollector]:
    server = LogCollector().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogCollector]:
    cert, key = Pki("http-log-ca").issue("127.0.0.1", ip="127.0.0.1")
    directory = tmp_path_factory.mktemp("http-log-tls")
    (directory / "c.pem").write_text(cert)
    (directory / "k.pem").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "c.pem", directory / "k.pem")
    server = LogCollector(ssl=context).start()
    yield server
    server.stop()


def plugin(endpoint: str, **config: Any) -> dict[str, Any]:
    return {"name": "http-log", "config": {"http_endpoint": endpoint, **config}}


def queue_routes(collector: LogCollector) -> dict[str, dict[str, Any]]:
    """The queue describe's routes (l.693-742): host -> plugin."""
    base = f"http://127.0.0.1:{collector.port}/post_log"
    return {
        "http_queue_logging.test": plugin(f"{base}/http_queue", queue=QUEUE),
        "http_queue_logging2.test": plugin(f"{base}/http_queue2", queue=QUEUE),
    }


def config_doc(
    echo: Echo, routes: dict[str, dict[str, Any]], plugins: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One service on the echo, a route per host with its one plugin."""
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": echo.url,
                "routes": [
                    {"name": host.split(".")[0], "hosts": [host], "plugins": [found]}
                    for host, found in routes.items()
                ],
            }
        ],
        "plugins": plugins or [],
    }


def main_doc(
    echo: Echo, collector: LogCollector, tls_collector: LogCollector, key1: str
) -> dict[str, Any]:
    base = f"http://127.0.0.1:{collector.port}/post_log"
    tls_base = f"https://127.0.0.1:{tls_collector.port}"
    tagged = plugin(f"{base}/http_tag")
    tagged["instance_name"] = "my-plugin-instance-name"
    failing = plugin(f"http://127.0.0.1:{CLOSED_PORT}/post_log/http_tag", queue=FAST_RETRY)
    failing["instance_name"] = "my-failing-instance-name"
    routes = {
        "http_logging_tag.test": tagged,
        "http_logging_tag_failing.test": failing,
        "content_type_application_json_http_logging.test": plugin(
            f"{base}/http2", content_type="application/json"
        ),
        "https_logging.test": plugin(f"{tls_base}/post_log/https"),
        "https_logging_faulty.test": plugin(f"{tls_base}/delay/5", timeout=1),
        "vault_headers_logging.test": plugin(
            f"{base}/vault_header",
            headers={"key1": "value1", "key2": "{vault://env/http-log-key2}"},
        ),
        "no_queue.test": plugin(f"{base}/http", queue={"concurrency_limit": -1}),
        "config_change.test": plugin(f"{base}/config_change", headers={"key1": key1}),
        **queue_routes(collector),
    }
    # The "enabled globally" describe (l.903-925): every route above has its own http-log,
    # which takes precedence, so the global one logs only what matches no route.
    return config_doc(echo, routes, [plugin(f"{base}/http_global")])


@pytest.fixture(scope="module")
def main(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    collector: LogCollector,
    tls_collector: LogCollector,
) -> Iterator[tuple[Gateway, LogFile]]:
    tmp = tmp_path_factory.mktemp("http-log-spec")
    doc = main_doc(echo, collector, tls_collector, "value1")
    gw = Gateway(tmp, json.dumps(doc))
    gw.stderr_path = tmp / "gateway.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(VAULT_ENV_NAME, VAULT_ENV_VALUE)
        gw.start()
    try:
        yield gw, LogFile(gw.stderr_path)
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def four_workers(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, collector: LogCollector
) -> Iterator[Gateway]:
    doc = config_doc(echo, queue_routes(collector))
    gw = Gateway(tmp_path_factory.mktemp("http-log-4"), json.dumps(doc), 4).start()
    try:
        yield gw
    finally:
        gw.stop()


def get(gw: Gateway, host: str, path: str = "/status/200") -> httpx.Response:
    return httpx.get(gw.url(path), headers={"Host": host}, timeout=10)


def test_identifies_plugin_in_queue_handler_logs(
    main: tuple[Gateway, LogFile], collector: LogCollector
) -> None:
    """l.403-415."""
    gw, log = main
    log.mark()
    collector.reset_log("http_tag")
    assert get(gw, "http_logging_tag.test").status_code == 200
    entries = collector.get_log("http_tag", 1)
    assert entries[0]["client_ip"] == "127.0.0.1"
    # The queue's log lines name the plugin and its instance (see the module docstring).
    assert get(gw, "http_logging_tag_failing.test").status_code == 200
    log.has_line(r"http\-log.*my-failing-instance-name.*handler could not process entries")


def test_content_type_application_json(
    main: tuple[Gateway, LogFile], collector: LogCollector
) -> None:
    """l.417-429."""
    gw, _ = main
    collector.reset_log("http2")
    assert get(gw, "content_type_application_json_http_logging.test").status_code == 200
    entries = collector.get_log("http2", 1)
    assert entries[0]["client_ip"] == "127.0.0.1"
    assert entries[0]["log_req_headers"].get("content-type", "") == "application/json"


def test_logs_to_https(main: tuple[Gateway, LogFile], tls_collector: LogCollector) -> None:
    """l.506-518."""
    gw, _ = main
    tls_collector.reset_log("https")
    assert get(gw, "https_logging.test").status_code == 200
    entries = tls_collector.get_log("https", 1)
    assert entries[0]["client_ip"] == "127.0.0.1"


def test_gracefully_handles_layer_4_failures(
    main: tuple[Gateway, LogFile], tls_collector: LogCollector
) -> None:
    """l.520-536: a 1 ms timeout against a log server that answers after 5 s."""
    gw, log = main
    log.mark()
    assert get(gw, "https_logging_faulty.test").status_code == 200
    log.has_line(
        re.escape(
            "handler could not process entries: failed request to "
            f"127.0.0.1:{tls_collector.port}: timeout"
        )
    )


def test_should_dereference_config_headers_value(
    main: tuple[Gateway, LogFile], collector: LogCollector
) -> None:
    """l.565-577."""
    gw, _ = main
    collector.reset_log("vault_header")
    assert get(gw, "vault_headers_logging.test").status_code == 200
    entries = collector.get_log("vault_header", 1)
    assert entries[0]["log_req_headers"]["key1"] == "value1"
    assert entries[0]["log_req_headers"]["key2"] == VAULT_ENV_VALUE


def test_should_not_use_queue_when_concurrency_limit_is_minus_1(
    main: tuple[Gateway, LogFile], collector: LogCollector
) -> None:
    """l.667-682."""
    gw, log = main
    log.mark()
    collector.reset_log("http")
    assert get(gw, "no_queue.test").status_code == 200
    entries = collector.get_log("http", 1)
    assert entries[0]["client_ip"] == "127.0.0.1"
    assert "processing queue" not in log.text()


def send_many(gw: Gateway, host: str, base: int, n: int) -> None:
    """``n`` requests, each on a new connection (Kong's new client per request), for statuses
    ``base + i % 10``."""
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(limits=no_keepalive, timeout=10) as client:
        for i in range(1, n + 1):
            status = base + i % 10
            r = client.get(gw.url(f"/status/{status}"), headers={"Host": host})
            assert r.status_code == status


@pytest.fixture(params=[1, 4], ids=["1-worker", "4-workers"])
def queue_gateway(request: pytest.FixtureRequest) -> Gateway:
    if request.param == 1:
        gw: Gateway = request.getfixturevalue("main")[0]
        return gw
    four: Gateway = request.getfixturevalue("four_workers")
    return four


def test_logs_to_http_with_a_buffer(queue_gateway: Gateway, collector: LogCollector) -> None:
    """l.773-810."""
    collector.reset_log("http_queue")
    n = 200
    send_many(queue_gateway, "http_queue_logging.test", 200, n)
    eventually(lambda: len(collector.logs.get("http_queue", ())) >= n, 60)


def test_does_not_mix_buffers(queue_gateway: Gateway, collector: LogCollector) -> None:
    """l.812-898 (the requests of the two routes interleaved, as Kong sends them)."""
    collector.reset_log("http_queue")
    collector.reset_log("http_queue2")
    n = 200
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(limits=no_keepalive, timeout=10) as client:
        for i in range(1, n + 1):
            for host, base in (("http_queue_logging.test", 200), ("http_queue_logging2.test", 300)):
                r = client.get(
                    queue_gateway.url(f"/status/{base + i % 10}"), headers={"Host": host}
                )
                assert r.status_code == base + i % 10

    def count(name: str) -> int:
        return len(collector.logs.get(name, ()))

    eventually(lambda: count("http_queue") >= n and count("http_queue2") >= n, 60)
    for name, base in (("http_queue", 200), ("http_queue2", 300)):
        entries = sorted(collector.logs[name], key=lambda e: e["response"]["status"])
        assert all(e["client_ip"] == "127.0.0.1" for e in entries)
        assert [e["response"]["status"] for e in entries] == [
            base + i // (n // 10) for i in range(n)
        ]


def test_puts_changed_configuration_into_effect_immediately(
    main: tuple[Gateway, LogFile],
    echo: Echo,
    collector: LogCollector,
    tls_collector: LogCollector,
) -> None:
    """l.598-665, through ``POST /config`` (DB-less): the plugin's header changes from value1
    to value2 and the next entry carries value2."""
    gw, _ = main

    def check_header_is(value: str) -> None:
        collector.reset_log("config_change")
        assert get(gw, "config_change.test").status_code == 200
        entries = collector.get_log("config_change", 1)
        assert entries[0]["log_req_headers"]["key1"] == value

    check_header_is("value1")
    old = gw.status()["configuration_hash"]
    doc = main_doc(echo, collector, tls_collector, "value2")
    r = httpx.post(f"http://127.0.0.1:{gw.admin_port}/config", json=doc, timeout=30)
    assert r.status_code == 201, r.text
    # Kong's spec sleeps 2 s before each check, for the new config to reach the workers: here,
    # until every worker reports the new config's hash.

    def workers_on_new_config() -> bool:
        status = gw.status()
        reports = set(status["fastkong"]["workers"].values())
        return reports == {status["configuration_hash"]} and status["configuration_hash"] != old

    eventually(workers_on_new_config)
    check_header_is("value2")


def test_global_plugin_executes_successfully_when_route_does_not_exist(
    main: tuple[Gateway, LogFile], collector: LogCollector
) -> None:
    """l.943-961: the global plugin logs the 404 of a request no route matches, without an
    error (Kong: no ``[error]`` line; fastkong's log lines carry no level: no failure of the
    log phase, no traceback)."""
    gw, log = main
    log.mark()
    collector.reset_log("http_global")
    assert get(gw, "http_no_exist.test", "/nonexistant/proxy/path").status_code == 404
    entries = collector.get_log("http_global", 1)
    assert entries[0]["client_ip"] == "127.0.0.1"
    text = log.text()
    assert "failed in the log phase" not in text
    assert "Traceback" not in text
