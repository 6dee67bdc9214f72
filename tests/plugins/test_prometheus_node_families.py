"""The prometheus families with no direct fastkong twin of Kong's source: ``kong_nginx_timers``
(the processes' asyncio tasks), the ``subsystem="stream"`` target health rows, and the
``ai_metrics`` families read from the AI plugins' log sections (fastkong.metrics,
fastkong.plugins.bundled.prometheus). The ported Kong specs are in ``test_kong_prometheus_spec*``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from fastkong.config import load_config
from fastkong.metrics import Snapshot, WorkerMetrics, loop_timers, render_node_metrics
from fastkong.plugins.bundled._serializer import _EXTRA_KEY, AI_LOG_KEY
from fastkong.plugins.bundled.prometheus import _count_ai, ai_sections
from tests.helpers import Gateway, eventually
from tests.plugins.ai_proxy_fakes import CHAT_REQUEST, FakeProvider
from tests.plugins.test_kong_prometheus_spec_more import ai_config
from tests.plugins.test_prometheus import dead_pid, series, write_snapshot

PROMETHEUS = '_format_version: "3.0"\nplugins: [{name: prometheus}]\n'


# -- kong_nginx_timers -------------------------------------------------------------------------


async def test_loop_timers_tell_started_from_unstarted_tasks() -> None:
    running, pending = loop_timers()
    gate = asyncio.Event()
    tasks = [asyncio.create_task(gate.wait()) for _ in range(3)]
    assert loop_timers() == (running, pending + 3)  # created, not started: pending
    await asyncio.sleep(0)
    assert loop_timers() == (running + 3, pending)  # started, waiting: running
    gate.set()
    await asyncio.gather(*tasks)
    assert loop_timers() == (running, pending)


def test_loop_timers_outside_a_loop_are_zero() -> None:
    assert loop_timers() == (0, 0)


async def test_an_idle_worker_still_reports_its_timers(tmp_path: Path) -> None:
    """No request, nothing counted: the flusher writes when the task counts change."""
    worker = WorkerMetrics(interval=0.02)
    worker.start(state_dir=tmp_path)
    path = tmp_path / f"metrics-{os.getpid()}"

    def timers() -> tuple[int, int]:
        return msgspec.msgpack.decode(path.read_bytes(), type=Snapshot).timers

    try:
        await async_eventually(lambda: path.exists() and timers()[0] >= 1)
        before = timers()[0]
        gate = asyncio.Event()
        waiting = [asyncio.create_task(gate.wait()) for _ in range(5)]
        await async_eventually(lambda: timers()[0] == before + 5)
        gate.set()
        await asyncio.gather(*waiting)
        await async_eventually(lambda: timers()[0] == before)
    finally:
        worker.close()


async def async_eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "never held"
        await asyncio.sleep(0.01)


def test_nginx_timers_sum_the_live_processes(tmp_path: Path) -> None:
    """Exported with or without an enabled plugin (a gauge of Kong's local storage)."""
    for timers, pid in (((3, 1), os.getpid()), ((2, 0), os.getppid()), ((90, 90), dead_pid())):
        worker = WorkerMetrics()
        worker.timers = timers
        write_snapshot(tmp_path, worker, pid)
    text = render_node_metrics(tmp_path, config=load_config("_format_version: '3.0'").config)
    assert "# HELP kong_nginx_timers Number of nginx timers" in text
    assert series(text, "kong_nginx_timers") == {'{state="pending"}': 1, '{state="running"}': 5}


def test_old_snapshots_have_no_timers_and_no_stream_listeners() -> None:
    old = msgspec.msgpack.encode([os.getpid(), 3, 1024, [], [], [], "http"])
    snap = msgspec.msgpack.decode(old, type=Snapshot)
    assert (snap.timers, snap.stream_listeners) == ((0, 0), 0)


# -- the stream subsystem's target health ------------------------------------------------------

HEALTH_CONFIG = (
    '_format_version: "3.0"\n'
    'upstreams: [{name: up, targets: [{target: "10.0.0.1:80"}]}]\n'
    "plugins: [{name: prometheus, config: {upstream_health_metrics: true}}]\n"
)


@pytest.mark.parametrize(
    ("listeners", "subsystems"), [(0, {"http"}), (2, {"http", "stream"})], ids=["edge", "stream"]
)
def test_stream_rows_while_a_stream_process_serves_stream_listen(
    tmp_path: Path, listeners: int, subsystems: set[str]
) -> None:
    """Kong adds the stream rows when ``stream_listen`` names listeners; a stream process that
    serves only the edge (``proxy_listen ... ssl``) is no stream listener."""
    stream = WorkerMetrics()
    stream.subsystem = "stream"
    stream.stream_listeners = listeners
    write_snapshot(tmp_path, stream, os.getpid())
    config = load_config(HEALTH_CONFIG).config
    rows = [("up", "10.0.0.1:80", "10.0.0.1:80", "unhealthy")]
    text = render_node_metrics(tmp_path, config=config, node_id="n", target_health=rows)
    health = series(text, "kong_upstream_target_health")
    assert len(health) == 4 * len(subsystems)
    for subsystem in subsystems:
        labels = 'upstream="up",target="10.0.0.1:80",address="10.0.0.1:80"'
        for state in ("healthchecks_off", "healthy", "unhealthy", "dns_error"):
            key = f'{{{labels},state="{state}",subsystem="{subsystem}"}}'
            assert health[key] == (state == "unhealthy")
    assert text.count("# HELP kong_upstream_target_health") == 1


# -- ai_metrics --------------------------------------------------------------------------------

META = {"provider_name": "openai", "request_model": "gpt-4o", "llm_latency": 1200}


def test_ai_sections_are_kongs_message_ai() -> None:
    """ai-proxy's section and the transformers' ``ai.<plugin>.*`` serialize values, one use
    case each; payloads are not read."""
    transformer = {"provider_name": "anthropic", "request_model": "claude"}
    plugin_data = {
        AI_LOG_KEY: {"proxy": {"meta": META, "usage": {"total_tokens": 3}}},
        _EXTRA_KEY: {
            "ai.ai-request-transformer.meta": transformer,
            "ai.ai-request-transformer.usage": {"prompt_tokens": 2},
            "ai.ai-request-transformer.cache": {},
            "ai.ai-request-transformer.payload.response": "text",
            "other.value": 1,
        },
    }
    assert ai_sections(plugin_data) == {
        "proxy": {"meta": META, "usage": {"total_tokens": 3}},
        "ai-request-transformer": {
            "meta": transformer,
            "usage": {"prompt_tokens": 2},
            "cache": {},
        },
    }
    assert ai_sections({}) == {}


def test_ai_counts_follow_kongs_exporter() -> None:
    worker = WorkerMetrics()
    usage = {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7, "cost": 0.5}
    _count_ai(worker, {"meta": META, "usage": usage})
    # a section without usage, latency or model: one request, nothing else
    _count_ai(worker, {"meta": {"provider_name": "openai"}})
    labels = ("openai", "gpt-4o", "", "", "", "")
    bare = ("openai", "", "", "", "", "", "default")
    assert worker.counters == {
        ("ai_llm_requests_total", (*labels, "default")): 1,
        ("ai_llm_requests_total", bare): 1,
        ("ai_llm_cost_total", (*labels, "default")): 0.5,
        ("ai_llm_tokens_total", (*labels, "prompt_tokens", "default")): 7,
        ("ai_llm_tokens_total", (*labels, "total_tokens", "default")): 7,
    }
    ((name, hist_labels),) = worker.histograms
    assert (name, hist_labels) == ("ai_llm_provider_latency_ms", (*labels, "default"))
    assert worker.histograms[(name, hist_labels)][-1] == 1200


@pytest.fixture(scope="module")
def ai_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    provider = FakeProvider().start()
    gateway = Gateway(tmp_path_factory.mktemp("prometheus-ai-refused"), ai_config(provider, True))
    try:
        yield gateway.start()
    finally:
        gateway.stop()
        provider.stop()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "model"),
    [(b"", "UNSPECIFIED"), (json.dumps({**CHAT_REQUEST, "model": "mine"}).encode(), "mine")],
    ids=["no-body", "own-model"],
)
def test_a_refused_ai_request_counts_under_kongs_unspecified_provider(
    ai_node: Gateway, body: bytes, model: str
) -> None:
    """Kong's ai-proxy refuses these before its normalize-request filter settles the model, so
    its analytics name the model its parse-request filter saw: provider ``UNSPECIFIED``, the
    body's ``model`` if any. Counted once, with its latency, and no tokens or cost."""
    r = httpx.request(
        "GET",
        ai_node.url("/status/200"),
        headers={"host": "127.0.0.1", "content-type": "application/json"},
        content=body,
        timeout=10,
    )
    assert r.status_code == 400, r.text
    url = f"http://127.0.0.1:{ai_node.admin_port}/metrics"
    labels = (
        f'ai_provider="UNSPECIFIED",ai_model="{model}",cache_status="",vector_db="",'
        'embeddings_provider="",embeddings_model="",workspace="default"'
    )
    text = ""

    def counted() -> bool:
        nonlocal text
        text = httpx.get(url, timeout=10).text
        return f"kong_ai_llm_requests_total{{{labels}}} 1" in text.splitlines()

    eventually(counted, 10)
    assert f'kong_ai_llm_provider_latency_ms_bucket{{{labels},le="+Inf"}} 1' in text
    for family in ("kong_ai_llm_tokens_total", "kong_ai_llm_cost_total"):
        assert f'{family}{{ai_provider="UNSPECIFIED",ai_model="{model}",' not in text
