"""Kong's ``spec/02-integration/16-queues/01-shutdown_spec.lua`` (l.4-128, the DB-less run)
against a real gateway: what an http-log queue holds is sent when the node shuts down.

Kong's graceful shutdown (``helpers.stop_kong(..., "QUIT")``, nginx's graceful quit) is
fastkong's SIGTERM ("SIGTERM/SIGINT drain (readiness turns 503, in-flight requests finish, exit
0)", README.md "Signals"). ``mock_upstream`` is the echo upstream (it answers ``/status/200``
with a 200), ``http_mock`` a loopback log server of this module. Each case starts its own
gateway, as Kong's ``before_each`` does (the node is stopped by the case).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway, HttpRequest, LoopServer, eventually, read_request

pytestmark = pytest.mark.integration

DNS_ENDPOINT = "http://this-does-not-exist.example.test:80/this-does-not-exist"


class LogServer(LoopServer):
    """``http_mock``: keeps every request it gets and answers 200."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[HttpRequest] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.requests.append(await read_request(reader))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def config(echo: Echo, log_port: int) -> str:
    """The spec's two routes (l.18-64), each with its http-log."""
    return f"""_format_version: "3.0"
services:
- name: service1
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: route1
    hosts: [shutdown.flush.test]
    plugins:
    - name: http-log
      config:
        http_endpoint: http://127.0.0.1:{log_port}
        # an extra long max_coalescing_delay: only the shutdown ends the coalescing
        queue: {{max_batch_size: 1000, max_coalescing_delay: 1000}}
- name: service2
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: route2
    hosts: [shutdown.dns.test]
    plugins:
    - name: http-log
      config:
        http_endpoint: {DNS_ENDPOINT}
        queue: {{max_batch_size: 10, max_coalescing_delay: 10}}
"""


@pytest.fixture
def log_server() -> Iterator[LogServer]:
    server = LogServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(tmp_path: Path, echo: Echo, log_server: LogServer) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, config(echo, log_server.port))
    gw.stderr_path = tmp_path / "stderr.log"
    try:
        yield gw.start()
    finally:
        gw.stop()


def shut_down(gw: Gateway) -> None:
    """``helpers.stop_kong(nil, nil, nil, "QUIT", true)``: the graceful stop, not waited for."""
    assert gw.proc is not None
    gw.proc.terminate()


def test_queue_is_flushed_before_kong_exits(gateway: Gateway, log_server: LogServer) -> None:
    """l.83-108."""
    r = httpx.get(gateway.url("/status/200"), headers={"host": "shutdown.flush.test"})
    assert r.status_code == 200
    # Not in Kong's spec: with max_coalescing_delay 1000 nothing is sent before the shutdown.
    assert log_server.requests == []

    shut_down(gateway)
    eventually(lambda: len(log_server.requests) > 0, 20)  # mock.eventually:has_request()
    assert gateway.stop() == 0  # helpers.wait_pid(pid_file)

    (sent,) = log_server.requests
    (entry,) = json.loads(sent.body)  # max_batch_size 1000: a JSON array
    assert entry["request"]["headers"]["host"] == "shutdown.flush.test"


def test_dns_queries_can_be_performed_when_shutting_down(gateway: Gateway) -> None:
    """l.110-126: the queued entry's log server is resolved during the shutdown. Kong's queue
    logs "handler could not process entries: " (kong/tools/queue.lua:338) with http-log's
    "failed request to <host>:<port>: <err>" (kong/plugins/http-log/handler.lua:135), the error
    being Kong's DNS client's answer for a name that does not exist, through the cosocket
    patch (kong/globalpatches.lua:566-570)."""
    r = httpx.get(gateway.url("/status/200"), headers={"host": "shutdown.dns.test"})
    assert r.status_code == 200

    shut_down(gateway)
    assert gateway.stop() == 0  # helpers.stop_kong(nil, true, nil, "QUIT"): waits for the exit

    assert gateway.stderr_path is not None
    log = gateway.stderr_path.read_text(errors="replace")
    # The lookup was made during the shutdown; the answer is in the system resolver's words
    # ("name or service not known": fastkong resolves through it, README "Kong compatibility
    # notes", DNS), where Kong's own client says "dns server error: 3 name error"
    assert "failed request to this-does-not-exist.example.test:80: " in log
    assert "name or service not known" in log.lower() or "name resolution" in log.lower()
