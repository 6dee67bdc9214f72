"""Kong's prometheus specs, the describes that need a gateway of their own (the rest of the
files, and the shared helpers, are in ``test_kong_prometheus_spec``).

Ported (Kong's ``spec/03-plugins/26-prometheus/``):

- ``02-access_spec.lua`` 321-378 ("no stream listeners"), 380-515 ("per-consumer metrics"):
  one gateway without stream listener (``test_prometheus::test_per_consumer_labels`` and
  ``test_short_circuited_requests_are_counted`` cover parts, without ``per_consumer`` on the
  401 and not through the admin listener).
- ``02-access_spec.lua`` 517-620 and ``04-status_api_spec.lua`` 431-539 (the granular switches,
  one gateway per switch, each scraped on the admin and on the status listener).
- ``02-access_spec.lua`` 622-917 ("AI metrics"): ai-proxy to a fake OpenAI
  (``tests/plugins/ai_proxy_fakes.py``, the shapes of Kong's fixtures); Kong's ``PATCH
  /plugins/{id}`` is a ``POST /config`` here (DB-less Kong's admin API answers 405 to it).
- ``07-optional_fields_spec.lua`` 32-163 ("less metrics when disabling/removing prometheus"):
  Kong restarts between the two cases; here one gateway, each case posting the config with the
  plugin first (Kong's ``PATCH``/``DELETE`` are ``POST /config`` here, as above).

Left out: nothing else of these describes (the ``each_strategy`` loop is one run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.helpers import Echo, Gateway, eventually
from tests.plugins.ai_proxy_fakes import CHAT_REQUEST, FakeProvider
from tests.plugins.test_kong_prometheus_spec import (
    ALL_FLAGS,
    NO_ERRORS,
    PROTOCOLS,
    UUID,
    admin_metrics,
    contains,
    has_line,
    post_config,
    requests_total,
    scrape_until,
    status_metrics,
    value,
)

pytestmark = pytest.mark.integration


def get(gateway: Gateway, path: str, **headers: str) -> httpx.Response:
    return httpx.get(gateway.url(path), headers=headers, timeout=10)


def has(pattern: str, body: str) -> bool:
    return re.search(pattern, body, re.M) is not None


# -- 02 "per-consumer metrics" and "no stream listeners" ---------------------------------------


@pytest.fixture(scope="class")
def consumers(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    # cache-route: a proxy-cache memory store, the shared dict fastkong reports (see
    # test_kong_prometheus_spec.test_exposes_shared_dict_metrics)
    config = f"""
_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
services:
- name: mock-service
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: http-route
    protocols: [http]
    paths: [/]
    methods: [GET]
    plugins: [{{name: key-auth}}]
  - name: cache-route
    paths: [/cache]
    plugins: [{{name: proxy-cache, config: {{strategy: memory}}}}]
plugins:
- name: prometheus
  protocols: {PROTOCOLS}
  config: {{per_consumer: true, status_code_metrics: true, latency_metrics: true,
            bandwidth_metrics: true, upstream_health_metrics: true}}
"""
    gateway = Gateway(tmp_path_factory.mktemp("prometheus-consumers"), config)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


class TestPerConsumer:
    def test_counts_proxied_requests_per_consumer(self, consumers: Gateway) -> None:
        """02 447-489."""
        url = admin_metrics(consumers)
        for code in (200, 400):
            assert get(consumers, f"/status/{code}", apikey="alice-key").status_code == code
            line = requests_total("mock-service", "http-route", code, "service", "alice") + " 1"
            body = scrape_until(url, has_line(line))
            assert NO_ERRORS in body

    def test_consumer_not_found(self, consumers: Gateway) -> None:
        """02 491-514: key-auth's 401, with no consumer."""
        assert get(consumers, "/status/200").status_code == 401
        line = requests_total("mock-service", "http-route", 401, "kong") + " 1"
        body = scrape_until(admin_metrics(consumers), has_line(line))
        alice = requests_total("mock-service", "http-route", 200, "service", "alice")
        assert f"{alice} 1" in body.splitlines()
        assert NO_ERRORS in body

    def test_worker_vm_stats_only_for_http(self, consumers: Gateway) -> None:
        """02 353-363: no stream listener, no stream process."""
        vms = rf'^kong_memory_workers_lua_vms_bytes\{{node_id="{UUID}",pid="\d+",kong_subsystem='
        body = scrape_until(admin_metrics(consumers), lambda b: has(vms + '"http"}', b))
        assert not has(vms + '"stream"}', body)
        assert NO_ERRORS in body

    def test_shared_dict_metrics_only_for_http(self, consumers: Gateway) -> None:
        """02 365-377. Kong's ``prometheus_metrics`` dict is an nginx shared dict, which
        fastkong has not (docs/plugins.md, the statsd row): its workers' proxy-cache stores
        are reported instead (``fastkong/metrics.py`` ``Snapshot.dicts``)."""
        total = "kong_memory_lua_shared_dict_total_bytes"
        body = scrape_until(
            admin_metrics(consumers),
            lambda b: has(
                rf'^{total}\{{node_id="{UUID}",shared_dict="kong_db_cache",'
                r'kong_subsystem="http"\} \d+$',
                b,
            ),
        )
        assert 'kong_subsystem="stream"' not in body
        assert NO_ERRORS in body


# -- 02 517-620, 04 431-539: the granular switches ---------------------------------------------

GRANULAR = {
    "status_code_metrics": "http_requests_total",
    "latency_metrics": "kong_latency_ms",
    "bandwidth_metrics": "bandwidth_bytes",
    "upstream_health_metrics": "upstream_target_health",
}


@dataclass
class Switched:
    gateway: Gateway
    switch: str


@pytest.fixture(scope="class", params=list(GRANULAR))
def switched(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, echo: Echo
) -> Iterator[Switched]:
    config = f"""
_format_version: "3.0"
upstreams:
- name: mock-upstream-healthchecksoff
  targets: [{{target: "127.0.0.1:{echo.port}", weight: 1000}}]
services:
- name: mock-service
  url: http://127.0.0.1:{echo.port}
  routes: [{{name: http-route, protocols: [http], paths: [/], methods: [GET]}}]
plugins:
- name: prometheus
  protocols: {PROTOCOLS}
  config: {{{request.param}: true}}
"""
    gateway = Gateway(tmp_path_factory.mktemp("prometheus-granular"), config)
    try:
        yield Switched(gateway.start(), request.param)
    finally:
        gateway.stop()


class TestGranularSwitch:
    def test_expected_metric_is_found(self, switched: Switched) -> None:
        """02 586-609, 04 505-528."""
        gateway, expected = switched.gateway, GRANULAR[switched.switch]
        assert get(gateway, "/status/200", apikey="alice-key").status_code == 200
        for url in (admin_metrics(gateway), status_metrics(gateway)):
            body = scrape_until(url, contains(expected))
            assert NO_ERRORS in body

    def test_unexpected_metrics_are_not_found(self, switched: Switched) -> None:
        """02 611-617, 04 530-536 (on a scrape showing the expected family)."""
        gateway, expected = switched.gateway, GRANULAR[switched.switch]
        for url in (admin_metrics(gateway), status_metrics(gateway)):
            body = scrape_until(url, contains(expected))
            for switch, family in GRANULAR.items():
                if switch != switched.switch:
                    assert family not in body, switch


# -- 07-optional_fields_spec.lua ---------------------------------------------------------------

HIGH_COST = (
    "kong_http_requests_total",
    "kong_kong_latency_ms",
    "kong_upstream_latency_ms",
    "kong_request_latency_ms",
    "kong_bandwidth_bytes",
)


def optional_config(echo: Echo, prometheus: bool = True, enabled: bool = True) -> str:
    # cache-route: not in Kong's spec; a proxy-cache memory store is what fastkong reports as
    # a shared dict (Kong reports its nginx ones: see assert_normal_metrics)
    text = f"""
_format_version: "3.0"
upstreams:
- name: mock_upstream
  algorithm: least-connections
  targets: [{{target: "127.0.0.1:{echo.port}", weight: 100}}]
services:
- host: mock_upstream
  routes:
  - {{hosts: [mock], protocols: [http], paths: [/]}}
  - name: cache-route
    hosts: [mock]
    paths: [/cache]
    plugins: [{{name: proxy-cache, config: {{strategy: memory}}}}]
"""
    if prometheus:
        text += f"""plugins:
- name: prometheus
  enabled: {str(enabled).lower()}
  config: {ALL_FLAGS}
"""
    return text


def assert_normal_metrics(body: str) -> None:
    """07 13-21. Kong's seven ``kong_nginx_connections_total`` states are not asserted: fastkong
    documents that it does not count nginx's connection counters ("Kong's nginx counters: not
    counted here (the proxy runs in Granian)", ``fastkong/control/supervisor.py``)."""
    assert "kong_memory_lua_shared_dict_bytes" in body


@pytest.fixture(scope="class")
def optional(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("prometheus-optional"), optional_config(echo))
    try:
        yield gateway.start()
    finally:
        gateway.stop()


class TestOptionalFields:
    @pytest.mark.parametrize("method", ["disabling", "removing"])
    def test_less_metrics_without_prometheus(
        self, optional: Gateway, echo: Echo, method: str
    ) -> None:
        """07 121-161."""
        post_config(optional, optional_config(echo))  # the first case took the plugin away
        eventually(lambda: get(optional, "/", host="mock").status_code == 200)
        url = status_metrics(optional)
        body = scrape_until(url, lambda b: all(v in b for v in HIGH_COST))
        assert_normal_metrics(body)
        if method == "disabling":
            post_config(optional, optional_config(echo, enabled=False))
        else:
            post_config(optional, optional_config(echo, prometheus=False))
        body = scrape_until(url, lambda b: not any(v in b for v in HIGH_COST))
        assert_normal_metrics(body)


# -- 02 622-917: AI metrics --------------------------------------------------------------------

AI_PROMETHEUS_ID = "6b3a1c52-0b8e-4a57-9a59-0c0a5d3e2f11"
AI_LABELS = (
    'ai_provider="openai",ai_model="gpt-3.5-turbo",cache_status="",vector_db="",'
    'embeddings_provider="",embeddings_model="",workspace="default"'
)


def ai_config(provider: FakeProvider, ai_metrics: bool) -> str:
    ai_proxy = {
        "route_type": "llm/v1/chat",
        "logging": {"log_payloads": False, "log_statistics": True},
        "auth": {"header_name": "Authorization", "header_value": "Bearer openai-key"},
        "model": {
            "name": "gpt-3.5-turbo",
            "provider": "openai",
            "options": {
                "max_tokens": 256,
                "temperature": 1.0,
                "upstream_url": f"http://127.0.0.1:{provider.port}/llm/v1/chat/good",
                "input_cost": 10.0,
                "output_cost": 10.0,
            },
        },
    }
    flags = {"status_code_metrics": True, **({"ai_metrics": True} if ai_metrics else {})}
    return f"""
_format_version: "3.0"
services:
- name: empty_service
  host: localhost
  port: 8080
  path: /
  routes:
  - name: http-route
    protocols: [http]
    strip_path: true
    paths: [/]
    plugins: [{{name: ai-proxy, config: {json.dumps(ai_proxy)}}}]
plugins:
- id: {AI_PROMETHEUS_ID}
  name: prometheus
  protocols: {PROTOCOLS}
  config: {json.dumps(flags)}
"""


@dataclass
class Ai:
    gateway: Gateway
    provider: FakeProvider

    def chat(self) -> None:
        r = httpx.request(
            "GET",
            self.gateway.url("/status/200"),
            headers={
                "host": "127.0.0.1",
                "authorization": "Bearer openai-key",
                "content-type": "application/json",
                "accept": "application/json",
            },
            content=json.dumps(CHAT_REQUEST),
            timeout=10,
        )
        assert r.status_code == 200, r.text

    def metrics_after(self, code: int, source: str, count: int) -> str:
        """The scrape once ``http_requests_total`` for ``code`` reached ``count`` (the log
        phase that also counts the AI metrics has run)."""
        series = requests_total("empty_service", "http-route", code, source)
        body = scrape_until(
            admin_metrics(self.gateway), lambda b: value(b, series) == count, timeout=10
        )
        assert NO_ERRORS in body
        return body


@pytest.fixture(scope="class")
def ai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ai]:
    provider = FakeProvider().start()
    gateway = Gateway(tmp_path_factory.mktemp("prometheus-ai"), ai_config(provider, False))
    try:
        yield Ai(gateway.start(), provider)
    finally:
        gateway.stop()
        provider.stop()


def assert_ai_metrics(body: str, requests: int, cost: str, tokens: tuple[int, int, int]) -> None:
    assert f"ai_llm_requests_total{{{AI_LABELS}}} {requests}" in body
    assert f"ai_llm_cost_total{{{AI_LABELS}}} {cost}" in body
    assert f'ai_llm_provider_latency_ms_bucket{{{AI_LABELS},le="+Inf"}} {requests}' in body
    for kind, n in zip(("completion_tokens", "prompt_tokens", "total_tokens"), tokens, strict=True):
        labels = AI_LABELS.replace(",workspace=", f',token_type="{kind}",workspace=')
        assert f"ai_llm_tokens_total{{{labels}}} {n}" in body


class TestAiMetrics:
    def test_no_ai_metrics_unless_enabled(self, ai: Ai) -> None:
        """02 749-780."""
        ai.chat()
        body = ai.metrics_after(200, "service", 1)
        for family in ("ai_llm_requests_total", "ai_llm_cost_total", "ai_llm_tokens_total"):
            assert family not in body
        assert "ai_llm_provider_latency_ms_bucket" not in body

    def test_update_prometheus_plugin_config(self, ai: Ai) -> None:
        """02 782-808 (Kong: ``PATCH /plugins/{id}`` with ``ai_metrics = true``)."""
        post_config(ai.gateway, ai_config(ai.provider, True))
        r = httpx.get(f"http://127.0.0.1:{ai.gateway.admin_port}/plugins/{AI_PROMETHEUS_ID}")
        assert r.status_code == 200
        assert r.json()["config"]["ai_metrics"] is True

    def test_counts_proxied_ai_requests(self, ai: Ai) -> None:
        """02 810-848."""
        ai.chat()
        assert_ai_metrics(ai.metrics_after(200, "service", 2), 1, "0.00037", (12, 25, 37))

    def test_increments_proxied_ai_requests(self, ai: Ai) -> None:
        """02 850-887."""
        ai.chat()
        assert_ai_metrics(ai.metrics_after(200, "service", 3), 2, "0.00074", (24, 50, 74))

    def test_ai_metrics_unchanged_by_a_refused_request(self, ai: Ai) -> None:
        """02 889-916: no body, ai-proxy's own 400."""
        assert get(ai.gateway, "/status/400", host="127.0.0.1").status_code == 400
        body = ai.metrics_after(400, "kong", 1)
        assert f"ai_llm_requests_total{{{AI_LABELS}}} 2" in body
        assert f"ai_llm_cost_total{{{AI_LABELS}}} 0.00074" in body
        assert f'ai_llm_provider_latency_ms_bucket{{{AI_LABELS},le="+Inf"}} 2' in body
