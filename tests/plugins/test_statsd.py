"""statsd through a running gateway (Kong's spec/03-plugins/06-statsd): the lines a real UDP (or
TCP) StatsD server on loopback receives, in Kong's plain and tagged shapes."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled._serializer import WORKSPACE_ID
from fastkong.plugins.bundled.statsd import line, pack
from tests.helpers import DatagramCollector, Echo, Gateway, LineServer, echo_config, eventually

pytestmark = pytest.mark.integration

CONSUMER_ID = "c0000000-0000-4000-8000-000000000001"
HOST = socket.gethostname().replace(".", "_")


#: Bob, whom key-auth knows by his key: the consumer the metrics name.
CONSUMERS = f"""consumers:
- id: {CONSUMER_ID}
  username: bob
  custom_id: bob-custom
  keyauth_credentials: [{{key: bob-key}}]
"""


udp = DatagramCollector.module_fixture()


@pytest.fixture(scope="module")
def tcp() -> Iterator[LineServer]:
    server = LineServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], echo: Echo, udp: DatagramCollector, tcp: LineServer
) -> Gateway:
    at = f"host: 127.0.0.1, port: {udp.port}"
    routes = {
        "all": f"{{name: key-auth}}, {{name: statsd, config: {{{at}}}}}",
        "tagged": f"{{name: key-auth}}, {{name: statsd, config: {{{at}, prefix: tg, "
        "tag_style: dogstatsd, metrics: [{name: request_count, stat_type: counter, "
        "sample_rate: 1}, {name: status_count, stat_type: counter, sample_rate: 1}]}}",
        "some": f"{{name: statsd, config: {{{at}, prefix: sm, hostname_in_prefix: true, "
        "allow_status_codes: ['200-299'], udp_packet_size: 1000, metrics: ["
        "{name: latency, stat_type: timer}, "
        "{name: request_count, stat_type: counter, sample_rate: 0.5}, "
        "{name: upstream_latency, stat_type: timer, service_identifier: service_id}]}}",
        "tcp": f"{{name: statsd, config: {{host: 127.0.0.1, port: {tcp.port}, use_tcp: true, "
        "prefix: tc, metrics: [{name: request_count, stat_type: counter, sample_rate: 1}]}}",
    }
    return gateway_with(echo_config(echo, routes, CONSUMERS, service="my.service"))


def received(udp: DatagramCollector, prefix: str, count: int) -> list[str]:
    """The lines with ``prefix`` once ``count`` of them arrived (datagrams split on newlines)."""

    def lines() -> list[str]:
        found = []
        for packet in list(udp.packets):
            found += [x for x in packet.decode().split("\n") if x.startswith(prefix + ".")]
        return found

    eventually(lambda: len(lines()) >= count)
    return lines()


def test_every_default_metric_in_kongs_names(gateway: Gateway, udp: DatagramCollector) -> None:
    r = httpx.get(gateway.url("/all/x"), headers={"apikey": "bob-key"})
    assert r.status_code == 200
    lines = received(udp, "kong", 12)
    scope = "kong.service.my_service"
    values = {re.sub(r":[^|]*\|", ":N|", x) for x in lines}  # the measured values vary
    assert values == {
        f"{scope}.request.count:N|c",
        f"{scope}.latency:N|ms",
        f"{scope}.request.size:N|c",
        f"{scope}.status.200:N|c",
        f"{scope}.response.size:N|c",
        f"{scope}.user.uniques:N|s",
        f"{scope}.user.bob-custom.request.count:N|c",
        f"{scope}.upstream_latency:N|ms",
        f"{scope}.kong_latency:N|ms",
        f"{scope}.user.bob-custom.status.200:N|c",
        f"{scope}.workspace.{WORKSPACE_ID}.status.200:N|c",
        f"kong.route.{route_id(gateway, 'all')}.user.bob-custom.status.200:N|c",
    }
    assert f"{scope}.request.count:1|c" in lines
    assert f"{scope}.user.uniques:bob-custom|s" in lines
    size = next(x for x in lines if ".request.size:" in x)
    assert int(size.split(":")[1].split("|")[0]) > 50  # the request line and headers


def route_id(gateway: Gateway, name: str) -> str:
    return str(httpx.get(f"http://127.0.0.1:{gateway.admin_port}/routes/{name}").json()["id"])


def test_a_refused_request_is_measured_too(gateway: Gateway, udp: DatagramCollector) -> None:
    before = len(udp.packets)
    assert httpx.get(gateway.url("/all/x")).status_code == 401  # no key: key-auth's answer
    eventually(lambda: any(b"status.401" in p for p in udp.packets[before:]))
    lines = [p.decode() for p in udp.packets[before:]]
    assert "kong.service.my_service.status.401:1|c" in lines
    assert not [x for x in lines if "upstream_latency" in x]  # nothing was proxied


def test_dogstatsd_tags(gateway: Gateway, udp: DatagramCollector) -> None:
    assert httpx.get(gateway.url("/tagged"), headers={"apikey": "bob-key"}).status_code == 200
    lines = received(udp, "tg", 1)
    assert lines == [
        f"tg.request.count:1|c|#service:my.service,route:tagged,workspace:{WORKSPACE_ID},"
        f"consumer:bob-custom,node:{HOST},status:200"
    ]  # status_count is sent untagged only, so not at all here


def test_rates_ranges_packing_and_hostname(gateway: Gateway, udp: DatagramCollector) -> None:
    before = len(udp.packets)
    assert httpx.get(gateway.url("/some/status/500")).status_code == 500  # not in 200-299
    assert httpx.get(gateway.url("/some/x")).status_code == 200
    lines = received(udp, f"sm.node.{HOST}", 3)
    assert len(lines) == 3  # one request measured
    packets = [p for p in udp.packets[before:] if p.startswith(b"sm.")]
    assert len(packets) == 1  # three lines in one datagram (udp_packet_size 1000)
    service_id = str(
        httpx.get(f"http://127.0.0.1:{gateway.admin_port}/services/my.service").json()["id"]
    )
    assert f"sm.node.{HOST}.service.my_service.request.count:1|c|@0.5" in lines
    assert any(
        x.startswith(f"sm.node.{HOST}.service.{service_id}.upstream_latency:") for x in lines
    )


def test_over_tcp(gateway: Gateway, tcp: LineServer) -> None:
    for _ in range(3):
        assert httpx.get(gateway.url("/tcp")).status_code == 200
    eventually(lambda: len(tcp.lines) == 3)
    assert tcp.lines == ["tc.service.my_service.request.count:1|c"] * 3
    assert len(tcp.writers) == 1  # one kept connection


def test_line_shapes_and_packing() -> None:
    tags = [("service", "s"), ("status", "200")]
    assert line("k", "request.count", 1, "c", 0.25) == "k.request.count:1|c|@0.25"
    assert line("k", "a", 1, "c", 1, tags, "influxdb") == "k.a,service=s,status=200:1|c"
    assert line("k", "a", 1, "c", 1, tags, "librato") == "k.a#service=s,status=200:1|c"
    assert line("k", "a", 1, "c", 1, tags, "signalfx") == "k.a[service=s,status=200]:1|c"
    assert line("k", "a", 2, "ms", None, None, "dogstatsd") == "k.a:2|ms"
    assert pack(["aaaa", "bbbb", "cccc"], 9) == [b"aaaa\nbbbb", b"cccc"]
    assert pack(["aaaaaaaaaaaa", "b"], 5) == [b"aaaaaaaaaaaa", b"b"]
    assert pack(["a", "b"], 0) == [b"a", b"b"]


def errors(plugin_config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(
            f'_format_version: "3.0"\nplugins: [{{name: statsd, config: {plugin_config}}}]\n'
        )
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_schema() -> None:
    assert errors("{metrics: [{name: request_count, stat_type: counter}]}") == [
        "plugins[0].config.metrics[0].sample_rate: required field missing",
        "plugins[0].config.metrics[0]: failed conditional validation given value of field "
        "'stat_type'",
    ]
    assert errors("{metrics: [{name: nope, stat_type: counter, sample_rate: 1}]}")[0].startswith(
        "plugins[0].config.metrics[0].name: expected one of: "
    )
    assert errors("{allow_status_codes: ['2xx'], udp_packet_size: 70000}") == [
        "plugins[0].config.allow_status_codes[0]: invalid value: 2xx",
        "plugins[0].config.udp_packet_size: value should be between 0 and 65507",
    ]
    config = load_config('_format_version: "3.0"\nplugins: [{name: statsd}]\n').config
    settings = config.plugins[0].config
    assert (settings["host"], settings["port"], settings["prefix"]) == ("localhost", 8125, "kong")
    assert len(settings["metrics"]) == 13
    assert settings["service_identifier_default"] == "service_name_or_host"
