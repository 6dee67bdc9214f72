"""Kong's spec/03-plugins/08-datadog/01-log_spec.lua, ported against one real gateway, the real
echo upstream (Kong's mock upstream: ``/status/200`` answers a 200) and real UDP servers on
loopback standing in for the Datadog agent: each route's plugin has a UDP port of its own
(``UdpPorts`` of the statsd port), so a case reads only its route's datagrams. The spec's
``KONG_DATADOG_AGENT_HOST``/``_PORT`` and ``KONG_DATADOG_AGENT_HOST_TEST`` (l.9-13) are set in
the gateway's environment, the port the one of the ``datadog5.test`` route's server.

Ported: l.25-273 (the routes and plugins), every case over HTTP: l.289-310, 337-358, 360-381,
383-400, 402-419, 421-442, 444-465, 469-484 (with a barrier: a second request), 486-510 (Kong's
log line is Lua's; here: no Python traceback on the gateway's stderr), 512-529, 531-553.

Covered elsewhere: the ``distribution`` type, ``sample_rate`` and ``consumer_identifier``
(``test_datadog.py::test_custom_tags_rates_and_consumer_ids``).

Where fastkong documents a difference, its behaviour is asserted: a request never proxied sends
no ``upstream_latency`` (docs/plugins.md, the datadog row; Kong sends ``-1`` ms), so the
serviceless route's request (l.531-553) sends five metrics, not six.

Left out: "logs metrics over UDP #grpc" (l.312-335): README.md, a plain gRPC call cannot be
proxied (Granian's ASGI carries no HTTP/2 trailers).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway
from tests.plugins.test_kong_statsd_spec import UdpPorts, has

pytestmark = pytest.mark.integration

DEFAULT_METRICS_COUNT = 6
LABELS = ["1", "2", "3", "4", "5", "6", "7", "8", "9"]


def dd(port: int, **config: Any) -> dict[str, Any]:
    return {"name": "datadog", "config": {"host": "127.0.0.1", "port": port, **config}}


def config(echo: Echo, udp: UdpPorts) -> dict[str, Any]:
    """l.25-273: a service ``dd<n>`` and a route ``datadog<n>.test`` each, their plugins."""
    key_auth = {"name": "key-auth"}
    port = udp.ports
    counter = {"name": "request_count", "stat_type": "counter", "sample_rate": 1}
    tagged = [
        {**counter, "tags": ["T2:V2", "T3:V3", "T4"]},
        {"name": "latency", "stat_type": "gauge", "sample_rate": 1, "tags": ["T2:V2:V3", "T4"]},
        {"name": "request_size", "stat_type": "distribution", "sample_rate": 1, "tags": []},
    ]
    plugins: dict[str, list[dict[str, Any]]] = {
        "1": [key_auth, dd(port["1"])],
        "2": [dd(port["2"], metrics=[counter])],
        "3": [dd(port["3"], metrics=tagged)],
        "4": [key_auth, dd(port["4"], prefix="prefix")],
        # l.182-189: host and port null, the plugin takes the environment's
        "5": [key_auth, {"name": "datadog", "config": {"host": None, "port": None}}],
        "6": [
            key_auth,
            dd(
                port["6"],
                service_name_tag="upstream",
                status_tag="http_status",
                consumer_tag="user",
            ),
        ],
        "7": [key_auth, dd(port["7"], queue_size=2)],
        "8": [
            {
                "name": "datadog",
                "config": {
                    "host": "{vault://env/kong-datadog-agent-host-test}",
                    "port": port["8"],
                    "queue_size": 2,
                },
            }
        ],
    }
    services = []
    for label, found in plugins.items():
        route: dict[str, Any] = {"id": str(uuid.uuid4()), "hosts": [f"datadog{label}.test"]}
        if label == "8":
            route["paths"] = ["/test_schema"]
        route["plugins"] = found
        services.append(
            {"id": str(uuid.uuid4()), "name": f"dd{label}", "url": echo.url, "routes": [route]}
        )
    serviceless = {
        "id": str(uuid.uuid4()),
        "paths": ["/serviceless"],
        "plugins": [
            dd(port["9"], queue_size=2),
            {"name": "request-termination", "config": {"status_code": 200, "message": "OK"}},
        ],
    }
    consumer = {
        "id": str(uuid.uuid4()),
        "username": "foo",
        "custom_id": "bar",
        "keyauth_credentials": [{"key": "kong"}],
    }
    return {
        "_format_version": "3.0",
        "consumers": [consumer],
        "services": services,
        "routes": [serviceless],
    }


@dataclass
class Env:
    gateway: Gateway
    udp: UdpPorts
    stderr: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Env]:
    with contextlib.ExitStack() as stack:
        udp = UdpPorts(LABELS)
        stack.callback(udp.stop)
        workdir = tmp_path_factory.mktemp("datadog")
        gateway = Gateway(workdir, json.dumps(config(echo, udp)))
        gateway.stderr_path = workdir / "stderr.log"
        stack.callback(gateway.stop)
        with pytest.MonkeyPatch.context() as mp:  # l.9-13
            mp.setenv("KONG_DATADOG_AGENT_HOST", "localhost")
            mp.setenv("KONG_DATADOG_AGENT_HOST_TEST", "localhost")
            mp.setenv("KONG_DATADOG_AGENT_PORT", str(udp.ports["5"]))
            gateway.start()
        yield Env(gateway, udp, gateway.stderr_path)


def send(env: Env, label: str, count: int, path: str = "/status/200?apikey=kong") -> list[str]:
    """GET ``path`` at ``datadog<label>.test`` (a 200), then the first ``count`` datagrams its
    plugin sends (Kong's ``helpers.udp_server(9999, count)``)."""
    start = len(env.udp.got[label])
    r = httpx.get(env.gateway.url(path), headers={"host": f"datadog{label}.test"})
    assert r.status_code == 200, r.text
    return env.udp.since(label, start, count)


def six(prefix: str, tags: str) -> list[str]:
    """The default metrics (l.304-309), as Lua patterns, each with ``tags``."""
    return [
        f"^{prefix}.request.count:1|c|#{tags}$",
        f"{prefix}.latency:%d+|ms|#{tags}",
        f"{prefix}.request.size:%d+|ms|#{tags}",
        f"{prefix}.response.size:%d+|ms|#{tags}",
        f"{prefix}.upstream_latency:%d+|ms|#{tags}",
        f"{prefix}.kong_latency:%d*|ms|#{tags}",
    ]


#: (label, prefix, tags): l.289-310 (logs metrics over UDP), 337-358 (custom prefix), 360-381
#: (custom tag names), 421-442 (host and port from the environment), 444-465 (several batches),
#: 512-529 (the host a vault reference; the tags not asserted by Kong).
DEFAULTS = [
    ("1", "kong", "name:dd1,status:200,consumer:bar,app:kong"),
    ("4", "prefix", "name:dd4,status:200,consumer:bar,app:kong"),
    ("6", "kong", "upstream:dd6,http_status:200,user:bar,app:kong"),
    ("5", "kong", "name:dd5,status:200,consumer:bar,app:kong"),
    ("7", "kong", "name:dd7,status:200,consumer:bar,app:kong"),
    ("8", "kong", "name:dd8,status:200,app:kong"),
]


@pytest.mark.parametrize(("label", "prefix", "tags"), DEFAULTS, ids=[c[0] for c in DEFAULTS])
def test_logs_the_default_metrics_over_udp(env: Env, label: str, prefix: str, tags: str) -> None:
    path = "/test_schema" if label == "8" else "/status/200?apikey=kong"
    gauges = send(env, label, DEFAULT_METRICS_COUNT, path)
    assert len(gauges) == DEFAULT_METRICS_COUNT, gauges
    for pattern in six(prefix, tags):
        assert has(pattern, gauges), (pattern, gauges)


def test_logs_only_given_metrics(env: Env) -> None:
    """l.383-400."""
    gauges = send(env, "2", 1, "/status/200")
    assert gauges == ["kong.request.count:1|c|#name:dd2,status:200"]


def test_logs_metrics_with_tags(env: Env) -> None:
    """l.402-419: the metrics' own tags after Kong's, none for an empty list."""
    gauges = send(env, "3", 3, "/status/200")
    assert "kong.request.count:1|c|#name:dd3,status:200,T2:V2,T3:V3,T4" in gauges
    assert has("kong.latency:%d+|g|#name:dd3,status:200,T2:V2:V3,T4", gauges), gauges
    assert has("kong.request.size:%d+|d|#name:dd3,status:200", gauges), gauges


def test_no_more_messages_than_expected(env: Env) -> None:
    """l.469-484: Kong waits 10 s for 10 datagrams and gets 6. Here a second request is the
    barrier: its metrics come after any repeat of the first's."""
    start = len(env.udp.got["7"])
    assert len(send(env, "7", DEFAULT_METRICS_COUNT)) == DEFAULT_METRICS_COUNT
    send(env, "7", DEFAULT_METRICS_COUNT)
    both = env.udp.since("7", start, 2 * DEFAULT_METRICS_COUNT)  # the first 2n
    assert env.udp.got["7"][start:] == both  # and no more


def test_should_not_return_a_runtime_error(env: Env) -> None:
    """l.486-510: a request no route matched is a 404 and no error is logged (Kong's check is
    for a Lua error; here, a Python traceback), then a valid request's metrics still come."""
    r = httpx.get(env.gateway.url("/NonMatch"), headers={"host": "fakedns.test"})
    assert r.status_code == 404
    assert send(env, "3", 3, "/status/200")
    assert "Traceback" not in env.stderr.read_text(errors="replace")


def test_datadog_plugin_is_triggered_for_serviceless_routes(env: Env) -> None:
    """l.531-553: every metric tagged ``name:`` (empty) for a route without a service. Kong sends
    six, ``upstream_latency`` as ``-1``; fastkong sends no ``upstream_latency`` for a request
    never proxied (docs/plugins.md, the datadog row): five."""
    start = len(env.udp.got["9"])
    r = httpx.get(env.gateway.url("/serviceless"))
    assert r.status_code == 200
    assert r.text == '{"message":"OK"}'
    gauges = env.udp.since("9", start, DEFAULT_METRICS_COUNT - 1)
    assert len(gauges) == DEFAULT_METRICS_COUNT - 1, gauges
    assert not [g for g in gauges if "upstream_latency" in g]
    for g in gauges:
        parts = g.split("#")
        assert len(parts) == 2, "Error: missing tags"
        assert "name:," in parts[1], "the value of `name` must be an empty string"
