"""tcp-log and udp-log through a running gateway (Kong's spec/03-plugins/01-tcp-log and
05-udp-log): real TCP, TLS and UDP log servers on loopback."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import (
    DatagramCollector,
    Echo,
    Gateway,
    LineServer,
    echo_config,
    eventually,
    free_port,
)
from tests.pki import Pki

pytestmark = pytest.mark.integration


class LineCollector(LineServer):
    """A log server: its lines as JSON entries, and the TLS server names clients asked for
    (filled by the context's SNI callback)."""

    def __init__(self, ssl: Any = None) -> None:
        super().__init__(ssl)
        self.server_names: list[str | None] = []

    @property
    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture(scope="module")
def tcp_server() -> Iterator[LineCollector]:
    server = LineCollector().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineCollector]:
    cert, key = Pki("log-ca").issue("logs.test", dns="logs.test")
    directory = tmp_path_factory.mktemp("tls-log")
    (directory / "c.pem").write_text(cert)
    (directory / "k.pem").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "c.pem", directory / "k.pem")
    server = LineCollector(ssl=context)

    def remember(_sock: Any, name: str | None, _context: Any) -> None:
        server.server_names.append(name)

    context.sni_callback = remember
    server.start()
    yield server
    server.stop()


udp_server = DatagramCollector.module_fixture()


@pytest.fixture(scope="module")
def dead_port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway],
    echo: Echo,
    tcp_server: LineCollector,
    tls_server: LineCollector,
    udp_server: DatagramCollector,
    dead_port: int,
) -> Gateway:
    routes = {
        "tcp": f"{{name: tcp-log, config: {{host: 127.0.0.1, port: {tcp_server.port}}}}}",
        "tls": f"{{name: tcp-log, config: {{host: 127.0.0.1, port: {tls_server.port}, "
        "tls: true, tls_sni: logs.test}}",
        "udp": f"{{name: udp-log, config: {{host: 127.0.0.1, port: {udp_server.port}}}}}",
        "tcp-dead": f"{{name: tcp-log, config: {{host: 127.0.0.1, port: {dead_port}, "
        "timeout: 500}}",
        "udp-dead": "{name: udp-log, config: {host: no-such-host.invalid, port: 9}}",
    }
    return gateway_with(echo_config(echo, routes))


def test_each_request_is_one_json_line_over_one_kept_connection(
    gateway: Gateway, tcp_server: LineCollector
) -> None:
    for n in range(5):
        assert httpx.get(gateway.url(f"/tcp/{n}?q={n}")).status_code == 200
    eventually(lambda: len(tcp_server.lines) == 5)
    entry = tcp_server.entries[-1]
    assert entry["request"]["uri"] == "/tcp/4?q=4"
    assert entry["request"]["method"] == "GET"
    assert entry["response"]["status"] == 200
    assert entry["route"]["name"] == "tcp" and entry["service"]["name"] == "echo"
    assert entry["upstream_uri"] == "/4?q=4"
    assert tcp_server.connections == 1  # kept alive between entries (keepalive 60 s)


def test_tls_with_the_server_name(gateway: Gateway, tls_server: LineCollector) -> None:
    assert httpx.get(gateway.url("/tls/x"), headers={"authorization": "secret"}).status_code == 200
    eventually(lambda: len(tls_server.lines) == 1)
    assert tls_server.entries[0]["request"]["headers"]["authorization"] == "REDACTED"
    assert tls_server.server_names == ["logs.test"]


def test_udp_one_datagram_per_request(gateway: Gateway, udp_server: DatagramCollector) -> None:
    for n in range(3):
        assert httpx.get(gateway.url(f"/udp/{n}")).status_code == 200
    eventually(lambda: len(udp_server.packets) == 3)
    assert sorted(json.loads(d)["request"]["uri"] for d in udp_server.packets) == [
        "/udp/0",
        "/udp/1",
        "/udp/2",
    ]


def test_a_dead_log_server_never_holds_the_request(gateway: Gateway) -> None:
    for path in ("/tcp-dead/x", "/udp-dead/x"):
        r = httpx.get(gateway.url(path), timeout=5)
        assert r.status_code == 200
    # The gateway stays healthy: later requests still log and answer.
    assert httpx.get(gateway.url("/tcp-dead/y"), timeout=5).status_code == 200


def errors(config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config('_format_version: "3.0"\n' + config)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


@pytest.mark.parametrize("name", ["tcp-log", "udp-log"])
def test_schema(name: str, tmp_path: Path) -> None:
    assert errors(f"plugins: [{{name: {name}, config: {{}}}}]\n") == [
        "plugins[0].config.host: required field missing",
        "plugins[0].config.port: required field missing",
    ]
    assert errors(f"plugins: [{{name: {name}, config: {{host: 'a b', port: 70000}}}}]\n") == [
        "plugins[0].config.host: invalid value: a b",
        "plugins[0].config.port: value should be between 0 and 65535",
    ]
    lua = 'custom_fields_by_lua: {x: "return 1"}'
    assert errors(f"plugins: [{{name: {name}, config: {{host: h, port: 1, {lua}}}}}]\n") == [
        "plugins[0].config.custom_fields_by_lua: "
        "custom_fields_by_lua is not supported: fastkong does not run Lua code"
    ]
    config = (
        load_config(
            f'_format_version: "3.0"\nplugins: [{{name: {name}, config: {{host: h, port: 1}}}}]\n'
        )
        .config.plugins[0]
        .config
    )
    assert config["timeout"] == 10000
    if name == "tcp-log":
        assert (config["keepalive"], config["tls"], config["tls_sni"]) == (60000, False, None)
