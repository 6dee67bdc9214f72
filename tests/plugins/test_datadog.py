"""datadog through a running gateway (Kong's spec/03-plugins/08-datadog): DogStatsD lines at a
real UDP server on loopback."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import DatagramCollector, Echo, Gateway, echo_config, eventually
from tests.plugins.test_statsd import CONSUMER_ID, CONSUMERS

pytestmark = pytest.mark.integration


agent = DatagramCollector.module_fixture()


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], echo: Echo, agent: DatagramCollector
) -> Gateway:
    at = f"host: 127.0.0.1, port: {agent.port}"
    routes = {
        "defaults": f"{{name: key-auth}}, {{name: datadog, config: {{{at}}}}}",
        "custom": f"{{name: key-auth}}, {{name: datadog, config: {{{at}, prefix: dd, "
        "service_name_tag: svc, status_tag: code, consumer_tag: who, metrics: ["
        "{name: request_count, stat_type: distribution, sample_rate: 0.5, "
        "consumer_identifier: consumer_id, tags: ['team:edge', 'tier:1']}]}}",
        "unproxied": "{name: request-termination, config: {status_code: 418}}, "
        f"{{name: datadog, config: {{{at}, prefix: un}}}}",
    }
    return gateway_with(echo_config(echo, routes, CONSUMERS, service="my.service"))


def lines(agent: DatagramCollector, prefix: str, count: int) -> list[str]:
    def found() -> list[str]:
        return [p.decode() for p in list(agent.packets) if p.startswith(prefix.encode() + b".")]

    eventually(lambda: len(found()) >= count)
    return found()


def test_the_default_metrics(gateway: Gateway, agent: DatagramCollector) -> None:
    r = httpx.get(gateway.url("/defaults/x"), headers={"apikey": "bob-key"})
    assert r.status_code == 200
    got = lines(agent, "kong", 6)
    tags = "|#name:my_service,status:200,consumer:bob-custom,app:kong"
    assert {re.sub(r":\d+\|", ":N|", x) for x in got} == {
        f"kong.request.count:N|c{tags}",
        f"kong.latency:N|ms{tags}",
        f"kong.request.size:N|ms{tags}",
        f"kong.response.size:N|ms{tags}",
        f"kong.upstream_latency:N|ms{tags}",
        f"kong.kong_latency:N|ms{tags}",
    }
    assert f"kong.request.count:1|c{tags}" in got


def test_custom_tags_rates_and_consumer_ids(gateway: Gateway, agent: DatagramCollector) -> None:
    assert httpx.get(gateway.url("/custom"), headers={"apikey": "bob-key"}).status_code == 200
    assert lines(agent, "dd", 1) == [
        "dd.request.count:1|d|@0.5|#svc:my_service,code:200,"
        f"who:{CONSUMER_ID.replace('-', '_')},team:edge,tier:1"
    ]


def test_an_unproxied_request_sends_no_upstream_latency(
    gateway: Gateway, agent: DatagramCollector
) -> None:
    assert httpx.get(gateway.url("/unproxied")).status_code == 418
    got = lines(agent, "un", 5)
    assert len(got) == 5 and not [x for x in got if "upstream_latency" in x]
    assert all(x.endswith("|#name:my_service,status:418,app:kong") for x in got)


def errors(plugin_config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(
            f'_format_version: "3.0"\nplugins: [{{name: datadog, config: {plugin_config}}}]\n'
        )
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_schema() -> None:
    assert errors("{metrics: [{name: latency, stat_type: gauge}]}") == [
        "plugins[0].config.metrics[0].sample_rate: required field missing",
        "plugins[0].config.metrics[0]: failed conditional validation given value of field "
        "'stat_type'",
    ]
    assert errors("{metrics: [{name: latency, stat_type: timer, tags: ['a:']}]}") == [
        "plugins[0].config.metrics[0].tags[0]: invalid value: a:"
    ]
    assert errors("{metrics: [{name: latency, stat_type: counter, sample_rate: 2}]}") == [
        "plugins[0].config.metrics[0].sample_rate: value should be between 0 and 1"
    ]
    settings = load_config('_format_version: "3.0"\nplugins: [{name: datadog}]\n').config
    config = settings.plugins[0].config
    assert [m["name"] for m in config["metrics"]] == [
        "request_count",
        "latency",
        "request_size",
        "response_size",
        "upstream_latency",
        "kong_latency",
    ]
    assert config["metrics"][0]["tags"] == ["app:kong"]
