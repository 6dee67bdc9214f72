"""prometheus through running gateways (Kong's spec/03-plugins/26-prometheus), and the node-side
merge of the workers' snapshots (fastkong.metrics)."""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.metrics import (
    KONG_LATENCY_BUCKETS,
    UPSTREAM_LATENCY,
    UPSTREAM_LATENCY_BUCKETS,
    Snapshot,
    WorkerMetrics,
    collect,
    render_node_metrics,
    reset_node_metrics,
    target_health_rows,
)
from fastkong.upstreams import health as H
from fastkong.upstreams.checker import ActiveChecker
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

ALL = "{status_code_metrics: true, latency_metrics: true, bandwidth_metrics: true}"


def start(tmp: Path, config: str, workers: int = 1) -> tuple[Gateway, Path]:
    prefix = tmp / "prefix"
    return Gateway(tmp, config, workers, "--prefix", str(prefix)).start(), prefix


def wait_for(prefix: Path, pattern: str, timeout: float = 10.0) -> str:
    """Scrape until ``pattern`` (a regex) matches; the text of the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        text = render_node_metrics(prefix)
        if re.search(pattern, text, re.M):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} never appeared in:\n{text}")
        time.sleep(0.1)


def series(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric name."""
    out = {}
    for m in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        out[m.group(1) or ""] = float(m.group(2))
    return out


def mine(found: dict[str, float], labels: str) -> dict[str, float]:
    return {k: v for k, v in found.items() if k.startswith("{" + labels + ",")}


def requests_total(service: str, route: str, code: int, source: str, consumer: str = "") -> str:
    return (
        f'kong_http_requests_total{{service="{service}",route="{route}",code="{code}",'
        f'source="{source}",workspace="default",consumer="{consumer}"}}'
    )


# -- schema ------------------------------------------------------------------------------------


def test_config_defaults_are_kongs() -> None:
    doc = '_format_version: "3.0"\nplugins: [{name: prometheus}]\n'
    assert load_config(doc).config.plugins[0].config == {
        "per_consumer": False,
        "status_code_metrics": False,
        "ai_metrics": False,
        "latency_metrics": False,
        "bandwidth_metrics": False,
        "upstream_health_metrics": False,
        "wasm_metrics": False,
    }


def test_config_errors_have_paths() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            '_format_version: "3.0"\nroutes: [{name: r, paths: [/]}]\n'
            "plugins: [{name: prometheus, route: r, config: {per_consumer: yes please, "
            "latency: true}}]\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.per_consumer: expected a boolean",
        "plugins[0].config.latency: unknown field",
    ]


# -- one worker --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[tuple[Gateway, Path]]:
    config = f"""
_format_version: "3.0"
services:
- name: mock-service
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: http-route
    paths: [/http]
    plugins: [{{name: prometheus, config: {ALL}}}]
  - paths: [/unnamed]
    plugins: [{{name: prometheus, config: {ALL}}}]
  - name: quiet
    paths: [/quiet]
    plugins: [{{name: prometheus}}]
- host: 127.0.0.1
  port: {echo.port}
  routes:
  - name: nameless-service
    paths: [/nameless]
    plugins: [{{name: prometheus, config: {{status_code_metrics: true}}}}]
- name: down
  url: http://127.0.0.1:1
  retries: 0
  routes:
  - name: down-route
    paths: [/down]
    plugins: [{{name: prometheus, config: {{status_code_metrics: true}}}}]
upstreams:
- name: lb
  targets: [{{target: "127.0.0.1:{echo.port}"}}, {{target: "10.0.0.9:81", weight: 0}}]
plugins:
- name: prometheus
  service: mock-service
  config: {{upstream_health_metrics: true}}
"""
    gateway, prefix = start(tmp_path_factory.mktemp("prometheus"), config)
    yield gateway, prefix
    gateway.stop()


def test_counts_proxied_requests_by_status(single: tuple[Gateway, Path]) -> None:
    gateway, prefix = single
    assert httpx.get(gateway.url("/http/status/200")).status_code == 200
    text = wait_for(prefix, re.escape(requests_total("mock-service", "http-route", 200, "service")))
    assert requests_total("mock-service", "http-route", 200, "service") + " 1" in text
    for _ in range(3):
        assert httpx.get(gateway.url("/http/status/400")).status_code == 400
    wait_for(prefix, re.escape(requests_total("mock-service", "http-route", 400, "service")) + " 3")
    assert "kong_nginx_metric_errors_total 0" in text
    # the gateway's own answers count with source="kong": here nginx's 502 (connection refused)
    assert httpx.get(gateway.url("/down")).status_code == 502
    wait_for(prefix, re.escape(requests_total("down", "down-route", 502, "kong")) + " 1")


def test_route_and_service_label_fallbacks(single: tuple[Gateway, Path]) -> None:
    gateway, prefix = single
    assert httpx.get(gateway.url("/unnamed")).status_code == 200
    assert httpx.get(gateway.url("/nameless")).status_code == 200
    text = wait_for(prefix, 'route="nameless-service"')
    unnamed = load_config(gateway.config_path.read_text()).config.routes[1].id
    # no route name: the route id; no service name: the service host (Kong's exporter)
    assert requests_total("mock-service", unnamed, 200, "service") + " 1" in text
    assert requests_total("127.0.0.1", "nameless-service", 200, "service") + " 1" in text


def test_latency_histograms_use_kongs_buckets(single: tuple[Gateway, Path]) -> None:
    gateway, prefix = single
    labels = 'service="mock-service",route="http-route",workspace="default"'
    counts = series(render_node_metrics(prefix), "kong_upstream_latency_ms_count")
    before = int(counts.get(f"{{{labels}}}", 0))
    assert httpx.get(gateway.url("/http/delay/120")).status_code == 200
    text = wait_for(prefix, rf"^kong_upstream_latency_ms_count\{{{labels}\}} {before + 1}$")
    upstream = mine(series(text, "kong_upstream_latency_ms_bucket"), labels)
    assert [k.rsplit('le="', 1)[1][:-2] for k in upstream] == [
        *map(str, UPSTREAM_LATENCY_BUCKETS),
        "+Inf",
    ]
    count = series(text, "kong_upstream_latency_ms_count")[f"{{{labels}}}"]
    # the 120 ms request lands above 100 and at or below 250; buckets are cumulative
    assert upstream[f'{{{labels},le="250"}}'] - upstream[f'{{{labels},le="100"}}'] >= 1
    assert upstream[f'{{{labels},le="+Inf"}}'] == count
    assert series(text, "kong_upstream_latency_ms_sum")[f"{{{labels}}}"] >= 120
    kong = mine(series(text, "kong_kong_latency_ms_bucket"), labels)
    assert [k.rsplit('le="', 1)[1][:-2] for k in kong] == [
        *map(str, KONG_LATENCY_BUCKETS),
        "+Inf",
    ]
    total = series(text, "kong_request_latency_ms_sum")[f"{{{labels}}}"]
    assert total >= 120
    assert "# TYPE kong_request_latency_ms histogram" in text


def test_bandwidth_counts_heads_and_bodies(single: tuple[Gateway, Path]) -> None:
    gateway, prefix = single
    before = series(render_node_metrics(prefix), "kong_bandwidth_bytes")
    body = b"x" * 1000
    r = httpx.post(gateway.url("/http/bytes/5000"), content=body)
    assert r.status_code == 200
    labels = (
        'service="mock-service",route="http-route",direction="{}",workspace="default",consumer=""'
    )
    egress_key = "{" + labels.format("egress") + "}"
    deadline = time.monotonic() + 10
    while True:
        after = series(render_node_metrics(prefix), "kong_bandwidth_bytes")
        if after.get(egress_key, 0) > before.get(egress_key, 0):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ingress_key = "{" + labels.format("ingress") + "}"
    ingress = after[ingress_key] - before.get(ingress_key, 0)
    egress = after[egress_key] - before.get(egress_key, 0)
    assert 1000 < ingress < 1000 + 500  # request line, headers and the body
    assert 5000 < egress < 5000 + 500


def test_families_are_off_by_default(single: tuple[Gateway, Path]) -> None:
    gateway, prefix = single
    assert httpx.get(gateway.url("/quiet")).status_code == 200
    assert httpx.get(gateway.url("/http/status/201")).status_code == 201
    text = wait_for(prefix, re.escape(requests_total("mock-service", "http-route", 201, "service")))
    assert 'route="quiet"' not in text


def test_node_metrics_and_upstream_health(single: tuple[Gateway, Path], echo: Echo) -> None:
    gateway, prefix = single
    text = render_node_metrics(prefix)
    node_id = re.search(r'kong_node_info\{node_id="([0-9a-f-]{36})",version="[^"]+"\} 1', text)
    assert node_id is not None
    assert "kong_datastore_reachable 1" in text
    assert re.search(
        rf'^kong_nginx_requests_total\{{node_id="{node_id.group(1)}",subsystem="http"\}} \d+$',
        text,
        re.M,
    )
    (pid,) = gateway.worker_pids()
    assert re.search(
        rf'^kong_memory_workers_lua_vms_bytes\{{node_id="[^"]+",pid="{pid}",'
        r'kong_subsystem="http"\} [1-9]\d*$',
        text,
        re.M,
    )
    health = series(text, "kong_upstream_target_health")
    target = f"127.0.0.1:{echo.port}"
    assert health == {
        f'{{upstream="lb",target="{t}",address="{t}",state="{state}",subsystem="http"}}': float(
            state == "healthchecks_off"
        )
        for t in (target, "10.0.0.9:81")
        for state in ("healthchecks_off", "healthy", "unhealthy", "dns_error")
    }
    # every line is a comment or a kong_ metric (Kong's "metrics and comments only")
    assert all(line.startswith(("#", "kong_")) for line in text.splitlines())


# -- several workers ---------------------------------------------------------------------------


def test_two_workers_are_summed(tmp_path: Path, echo: Echo) -> None:
    config = f"""
_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:{echo.port}
  routes: [{{name: r, paths: [/]}}]
plugins: [{{name: prometheus, config: {ALL}}}]
"""
    gateway, prefix = start(tmp_path, config, workers=2)
    try:
        deadline = time.monotonic() + 20
        while len(pids := set(gateway.worker_pids())) < 2:
            assert time.monotonic() < deadline, "the second worker never reported"
            time.sleep(0.1)
        sent = 0

        def one(_: int) -> int:
            # a new connection each time, so both workers get a share
            return httpx.get(gateway.url("/delay/20"), headers={"connection": "close"}).status_code

        deadline = time.monotonic() + 30
        while True:
            with ThreadPoolExecutor(16) as pool:
                assert set(pool.map(one, range(32))) == {200}
            sent += 32
            line = re.escape(requests_total("s", "r", 200, "service")) + f" {sent}$"
            text = wait_for(prefix, line)
            counted = {
                int(p.name.removeprefix("metrics-"))
                for p in prefix.glob("metrics-*")
                if p.name[8:].isdigit()
                and msgspec.msgpack.decode(p.read_bytes(), type=Snapshot).counters
            }
            if counted == pids:
                break
            assert time.monotonic() < deadline, f"one worker got every request: {counted}"
        assert series(text, "kong_request_latency_ms_count") == {
            '{service="s",route="r",workspace="default"}': float(sent)
        }
        assert len(series(text, "kong_memory_workers_lua_vms_bytes")) == 2
    finally:
        gateway.stop()


# -- merging snapshots (no gateway) ------------------------------------------------------------


def dead_pid() -> int:
    proc = multiprocessing.get_context("spawn").Process(target=os.getpid)
    proc.start()
    proc.join()
    assert proc.pid is not None
    return proc.pid


def write_snapshot(prefix: Path, worker: WorkerMetrics, pid: int) -> None:
    worker.pid = pid
    worker.state_dir = prefix
    assert worker.write()


def test_dead_workers_are_folded_not_forgotten(tmp_path: Path) -> None:
    live = WorkerMetrics()
    live.inc("http_requests_total", ("s", "r", "200", "service", "default", ""), 2)
    write_snapshot(tmp_path, live, os.getpid())
    dead = WorkerMetrics()
    dead.inc("http_requests_total", ("s", "r", "200", "service", "default", ""), 5)
    dead.logged = 5
    gone = dead_pid()
    write_snapshot(tmp_path, dead, gone)

    node = collect(tmp_path)
    assert node.counters == {
        ("http_requests_total", ("s", "r", "200", "service", "default", "")): 7
    }
    assert node.requests == 5
    assert sorted(node.workers) == [os.getpid()]  # the dead one's gauges are gone
    assert not (tmp_path / f"metrics-{gone}").exists()
    assert (tmp_path / "metrics-retired").exists()
    # a second scrape counts the retired worker once
    assert collect(tmp_path).counters == node.counters
    reset_node_metrics(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_histograms_merge_bucket_by_bucket(tmp_path: Path) -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    labels = ("s", "r", "default")
    for value in (10, 25, 26):
        a.observe(UPSTREAM_LATENCY, labels, value)
    b.observe(UPSTREAM_LATENCY, labels, 99999)
    write_snapshot(tmp_path, a, os.getpid())
    write_snapshot(tmp_path, b, os.getppid())
    config = load_config(
        '_format_version: "3.0"\nplugins: [{name: prometheus, config: {latency_metrics: true}}]\n'
    ).config
    text = render_node_metrics(tmp_path, config=config, node_id="n")
    buckets = series(text, "kong_upstream_latency_ms_bucket")
    key = '{{service="s",route="r",workspace="default",le="{}"}}'
    assert buckets[key.format(25)] == 2  # 10 and 25 (le is inclusive)
    assert buckets[key.format(50)] == 3
    assert buckets[key.format(60000)] == 3
    assert buckets[key.format("+Inf")] == 4
    assert series(text, "kong_upstream_latency_ms_sum") == {
        '{service="s",route="r",workspace="default"}': 10 + 25 + 26 + 99999
    }


def test_request_families_need_an_enabled_plugin(tmp_path: Path) -> None:
    worker = WorkerMetrics()
    worker.inc("http_requests_total", ("s", "r", "200", "service", "default", ""))
    write_snapshot(tmp_path, worker, os.getpid())
    disabled = load_config(
        '_format_version: "3.0"\nplugins: [{name: prometheus, enabled: false}]\n'
    ).config
    text = render_node_metrics(tmp_path, config=disabled, node_id="n")
    # Kong's "less metrics when disabling prometheus": node gauges only
    assert "kong_http_requests_total" not in text
    assert "kong_nginx_metric_errors_total" not in text
    assert 'kong_node_info{node_id="n",version=' in text
    enabled = load_config('_format_version: "3.0"\nplugins: [{name: prometheus}]\n').config
    text = render_node_metrics(tmp_path, config=enabled, node_id="n")
    assert requests_total("s", "r", 200, "service") + " 1" in text


def test_the_stream_process_snapshot_names_its_subsystem(tmp_path: Path) -> None:
    http, stream = WorkerMetrics(), WorkerMetrics()
    stream.subsystem = "stream"
    stream.inc("stream_sessions_total", ("s", "r", "502", "kong", "default"))
    write_snapshot(tmp_path, http, os.getpid())
    write_snapshot(tmp_path, stream, os.getppid())
    config = load_config('_format_version: "3.0"\nplugins: [{name: prometheus}]\n').config
    text = render_node_metrics(tmp_path, config=config, node_id="n")
    memory = series(text, "kong_memory_workers_lua_vms_bytes")
    assert {k.rsplit(",", 1)[1] for k in memory} == {
        'kong_subsystem="http"}',
        'kong_subsystem="stream"}',
    }
    assert (
        'kong_stream_sessions_total{service="s",route="r",code="502",source="kong",'
        'workspace="default"} 1'
    ) in text
    # a snapshot written before the subsystem field existed reads as an HTTP worker's
    old = msgspec.msgpack.encode([os.getpid(), 3, 1024, [], [], []])
    assert msgspec.msgpack.decode(old, type=Snapshot).subsystem == "http"


def test_label_values_are_escaped(tmp_path: Path) -> None:
    worker = WorkerMetrics()
    worker.inc("http_requests_total", ('a"b\\c', "r\nx", "200", "kong", "default", ""))
    write_snapshot(tmp_path, worker, os.getpid())
    config = load_config('_format_version: "3.0"\nplugins: [{name: prometheus}]\n').config
    text = render_node_metrics(tmp_path, config=config, node_id="n")
    assert 'service="a\\"b\\\\c",route="r\\nx"' in text


def test_corrupt_snapshots_count_as_errors(tmp_path: Path) -> None:
    (tmp_path / f"metrics-{os.getpid()}").write_bytes(b"not msgpack")
    config = load_config('_format_version: "3.0"\nplugins: [{name: prometheus}]\n').config
    text = render_node_metrics(tmp_path, config=config, node_id="n")
    assert "kong_nginx_metric_errors_total 1" in text


def test_target_health_comes_from_the_nodes_checker(tmp_path: Path) -> None:
    config = load_config(
        '_format_version: "3.0"\n'
        "upstreams:\n"
        "- name: up\n"
        "  healthchecks: {active: {healthy: {interval: 5}, unhealthy: {interval: 5}}}\n"
        '  targets: [{target: "10.0.0.1:80"}, {target: "10.0.0.2:80"}, '
        '{target: "no-such-host.invalid:80"}]\n'
        "plugins: [{name: prometheus, config: {upstream_health_metrics: true}}]\n"
    ).config
    checker = ActiveChecker(H.HealthTable(None))
    checker.update(config)
    (upstream,) = config.upstreams
    sick = next(t for t in config.targets if t.target == "10.0.0.2:80")
    fp, tfp = H.key_fp(upstream.id, sick.id, "10.0.0.2", 80)
    checker.table.set(checker.table.slot(fp, tfp), healthy=False)
    rows = target_health_rows(checker, config)
    assert rows == [
        ("up", "10.0.0.1:80", "10.0.0.1:80", "healthy"),
        ("up", "10.0.0.2:80", "10.0.0.2:80", "unhealthy"),
        ("up", "no-such-host.invalid:80", "", "dns_error"),
    ]
    text = render_node_metrics(tmp_path, config=config, node_id="n", target_health=rows)
    health = series(text, "kong_upstream_target_health")
    key = '{{upstream="up",target="{0}",address="{0}",state="{1}",subsystem="http"}}'
    assert health[key.format("10.0.0.2:80", "unhealthy")] == 1
    assert health[key.format("10.0.0.2:80", "healthy")] == 0
    assert len(health) == 3 * 4


# -- with an auth plugin -----------------------------------------------------------------------


def test_per_consumer_labels(tmp_path: Path, echo: Echo) -> None:
    config = f"""
_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
services:
- name: s
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: r
    paths: [/]
    plugins:
    - name: key-auth
    - name: prometheus
      config: {{per_consumer: true, status_code_metrics: true, bandwidth_metrics: true}}
"""
    gateway, prefix = start(tmp_path, config)
    try:
        assert httpx.get(gateway.url("/"), headers={"apikey": "alice-key"}).status_code == 200
        text = wait_for(prefix, 'consumer="alice"')
        assert requests_total("s", "r", 200, "service", "alice") + " 1" in text
        assert re.search(
            r'kong_bandwidth_bytes\{[^}]*direction="egress"[^}]*consumer="alice"\}', text
        )
    finally:
        gateway.stop()


def test_short_circuited_requests_are_counted(tmp_path: Path, echo: Echo) -> None:
    config = f"""
_format_version: "3.0"
services:
- name: mock-service
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: http-route
    paths: [/]
    plugins: [{{name: key-auth}}, {{name: prometheus, config: {{status_code_metrics: true}}}}]
"""
    gateway, prefix = start(tmp_path, config)
    try:
        assert httpx.get(gateway.url("/")).status_code == 401
        # Kong's "behave correctly if consumer is not found"
        wait_for(
            prefix, re.escape(requests_total("mock-service", "http-route", 401, "kong")) + " 1", 3
        )
    finally:
        gateway.stop()
