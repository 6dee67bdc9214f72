"""Kong's spec/03-plugins/01-tcp-log/01-tcp-log_spec.lua and 02-udp-log/01-udp-log_spec.lua,
ported against one real gateway (a plain and a TLS proxy listener), a real echo upstream and
real TCP and UDP log servers on loopback. Each request carries a unique ``x-tag`` header; its
log entry is the line (datagram) holding it. The echo's ``/delay/<ms>`` takes milliseconds
(Kong's mock upstream ``/delay/<s>``, seconds).

Ported, tcp-log: l.217-241 (logs to TCP, no ``request.tls`` over plain HTTP), 330-361 (proper
latencies), 461-485 (TLS info through the proxy's TLS listener), 544-563 (``tries`` an empty
JSON array for a request request-termination answered). udp-log: l.111-142 (proper latencies),
269-290 (logs to UDP).

Covered elsewhere: tcp-log l.438-459 (TLS to the log server:
``test_tcp_udp_log.py::test_tls_with_the_server_name``), l.565-599 and 601-630 (tcp and tls
stream sessions: ``tests/integration/test_stream_log_plugins.py::
test_a_proxied_tcp_session_is_logged_with_kongs_stream_message`` and
``test_a_terminated_tls_session_carries_its_tls``).

Left out: ``custom_fields_by_lua`` (tcp-log l.243-298, udp-log l.144-193): fastkong runs no Lua,
the field is refused at config load (docs/plugins.md; ``test_tcp_udp_log.py::test_schema``);
tcp-log l.487-512 (client_verify overwritten by a ``post-function``: Lua); gRPC and gRPCs
(tcp-log l.300-328, 363-436, 514-542; udp-log l.195-267, 292-339): README.md, a plain gRPC call
cannot be proxied (Granian's ASGI carries no HTTP/2 trailers).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import DatagramCollector, Echo, Gateway, LineServer, eventually, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tcp_server() -> Iterator[LineServer]:
    server = LineServer().start()
    yield server
    server.stop()


udp_server = DatagramCollector.module_fixture()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    echo: Echo,
    tcp_server: LineServer,
    udp_server: DatagramCollector,
) -> Iterator[Gateway]:
    tcp = {"name": "tcp-log", "config": {"host": "127.0.0.1", "port": tcp_server.port}}
    udp = {"name": "udp-log", "config": {"host": "127.0.0.1", "port": udp_server.port}}
    terminate = {
        "name": "request-termination",
        "config": {"status_code": 200, "content_type": "text/plain", "body": "hello!"},
    }
    routes = {
        "tcp_logging.test": [tcp],
        "early_termination.example.test": [tcp, terminate],
        "udp_logging.test": [udp],
    }
    doc = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": echo.url,
                "routes": [
                    {"name": host.split(".")[0], "hosts": [host], "plugins": plugins}
                    for host, plugins in routes.items()
                ],
            }
        ],
    }
    gw = Gateway(tmp_path_factory.mktemp("tcp-udp-log-spec"), json.dumps(doc))
    gw.ssl_port = free_port()
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def send(gw: Gateway, host: str, path: str = "/request", tls: bool = False) -> str:
    """A request through the plain (or TLS) listener; its tag."""
    tag = str(uuid.uuid4())
    base = f"https://127.0.0.1:{gw.ssl_port}" if tls else f"http://127.0.0.1:{gw.port}"
    r = httpx.get(base + path, headers={"Host": host, "x-tag": tag}, verify=False, timeout=10)
    assert r.status_code == 200
    return tag


def tcp_line(server: LineServer, tag: str) -> str:
    """The line the TCP log server got for the request tagged ``tag``."""
    found: list[str] = []

    def arrived() -> bool:
        found[:] = [line for line in list(server.lines) if tag in line]
        return bool(found)

    eventually(arrived)
    return found[0]


def udp_entry(server: DatagramCollector, tag: str) -> dict[str, Any]:
    found: list[bytes] = []

    def arrived() -> bool:
        found[:] = [p for p in list(server.packets) if tag.encode() in p]
        return bool(found)

    eventually(arrived)
    entry: dict[str, Any] = json.loads(found[0])
    return entry


def assert_latencies(entry: dict[str, Any]) -> None:
    latencies = entry["latencies"]
    assert latencies["proxy"] < 3000
    # Kong: "Sometimes there's a split millisecond that makes numbers not add up by 1."
    assert 1 + latencies["request"] >= latencies["kong"] + latencies["proxy"]


# -- tcp-log -----------------------------------------------------------------------------------


def test_logs_to_tcp(gateway: Gateway, tcp_server: LineServer) -> None:
    """tcp-log l.217-241."""
    entry = json.loads(tcp_line(tcp_server, send(gateway, "tcp_logging.test")))
    assert entry["client_ip"] == "127.0.0.1"
    # Since it's over HTTP, there is no TLS information.
    assert entry["request"].get("tls") is None


def test_tcp_logs_proper_latencies(gateway: Gateway, tcp_server: LineServer) -> None:
    """tcp-log l.330-361 (``/delay/1``: one second)."""
    tag = send(gateway, "tcp_logging.test", "/delay/1000")
    assert_latencies(json.loads(tcp_line(tcp_server, tag)))


def test_logs_tls_info(gateway: Gateway, tcp_server: LineServer) -> None:
    """tcp-log l.461-485: a request on the TLS listener logs its TLS (kong/pdk/log.lua:782-791,
    ``request.tls`` l.910)."""
    entry = json.loads(tcp_line(tcp_server, send(gateway, "tcp_logging.test", tls=True)))
    assert entry["request"].get("tls") is not None, "no request.tls in the entry"
    assert entry["request"]["tls"]["version"] == "TLSv1.3"
    assert isinstance(entry["request"]["tls"]["cipher"], str)
    assert entry["request"]["tls"]["client_verify"] == "NONE"


def test_tries_field_encoded_as_json_array_instead_of_object(
    gateway: Gateway, tcp_server: LineServer
) -> None:
    """tcp-log l.544-563 (Kong #6390): the runloop's access phase makes the balancer data,
    ``tries`` an empty array (kong/runloop/handler.lua:836, 1340), before request-termination
    answers."""
    line = tcp_line(tcp_server, send(gateway, "early_termination.example.test"))
    assert '"tries":[]' in line


# -- udp-log -----------------------------------------------------------------------------------


def test_udp_logs_proper_latencies(gateway: Gateway, udp_server: DatagramCollector) -> None:
    """udp-log l.111-142 (``/delay/2``: two seconds)."""
    tag = send(gateway, "udp_logging.test", "/delay/2000")
    assert_latencies(udp_entry(udp_server, tag))


def test_logs_to_udp(gateway: Gateway, udp_server: DatagramCollector) -> None:
    """udp-log l.269-290."""
    entry = udp_entry(udp_server, send(gateway, "udp_logging.test"))
    assert entry["client_ip"] == "127.0.0.1"
