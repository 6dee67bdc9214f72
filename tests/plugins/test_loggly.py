"""loggly through a running gateway (Kong's spec/03-plugins/10-loggly): syslog lines at a real
UDP server on loopback standing in for Loggly."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import DatagramCollector, Echo, Gateway, echo_config, eventually

pytestmark = pytest.mark.integration

LINE = re.compile(
    r"<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (\S+) kong - - \[(\S+)@41058 ([^\]]*)\] (.*)",
    re.DOTALL,
)


loggly = DatagramCollector.module_fixture()


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], echo: Echo, loggly: DatagramCollector
) -> Gateway:
    at = f"host: 127.0.0.1, port: {loggly.port}"
    extras = {
        "defaults": "",
        "severities": ", tags: [a, b], log_level: err, successful_severity: info, "
        "client_errors_severity: err, server_errors_severity: crit",
    }
    routes = {
        name: f"{{name: loggly, config: {{{at}, key: k-{name}{extra}}}}}"
        for name, extra in extras.items()
    }
    return gateway_with(echo_config(echo, routes))


def received(loggly: DatagramCollector, key: str, count: int) -> list[re.Match[str]]:
    def found() -> list[re.Match[str]]:
        out = []
        for packet in list(loggly.packets):
            m = LINE.fullmatch(packet.decode())
            assert m is not None, packet
            if m.group(4) == key:
                out.append(m)
        return out

    eventually(lambda: len(found()) >= count)
    return found()


def test_a_syslog_line_per_request(gateway: Gateway, loggly: DatagramCollector) -> None:
    assert httpx.get(gateway.url("/defaults/x?q=1")).status_code == 200
    (m,) = received(loggly, "k-defaults", 1)
    assert m.group(1) == "14"  # user facility (8) + info (6)
    assert m.group(3) == socket.gethostname()
    assert m.group(5) == 'tag="kong"'
    entry = json.loads(m.group(6))
    assert entry["request"]["uri"] == "/defaults/x?q=1"
    assert entry["response"]["status"] == 200


def test_severities_and_the_level(gateway: Gateway, loggly: DatagramCollector) -> None:
    assert httpx.get(gateway.url("/severities/x")).status_code == 200  # info: under err, dropped
    assert httpx.get(gateway.url("/severities/status/404")).status_code == 404  # err
    assert httpx.get(gateway.url("/severities/status/503")).status_code == 503  # crit
    lines = received(loggly, "k-severities", 2)
    statuses = {json.loads(m.group(6))["response"]["status"]: m.group(1) for m in lines}
    assert statuses == {404: "11", 503: "10"}
    assert all(m.group(5) == 'tag="a" tag="b"' for m in lines)


def test_schema() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            '_format_version: "3.0"\nplugins: [{name: loggly, config: {log_level: loud}}]\n'
        )
    messages = sorted(f"{e.path}: {e.message}" for e in info.value.errors)
    assert messages[0] == "plugins[0].config.key: required field missing"
    assert messages[1].startswith("plugins[0].config.log_level: expected one of: ")
    config = (
        load_config('_format_version: "3.0"\nplugins: [{name: loggly, config: {key: k}}]\n')
        .config.plugins[0]
        .config
    )
    assert (config["host"], config["port"], config["tags"]) == ("logs-01.loggly.com", 514, ["kong"])
