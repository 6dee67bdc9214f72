"""rate-limiting, ``policy: local``, through a running gateway with two Granian workers.

Kong's contract (``spec/03-plugins/23-rate-limiting/01-schema_spec.lua``, ``04-access_spec.lua``):
config errors with their paths, headers per period, the RateLimit-* most-restrictive rule,
Retry-After, hide_client_headers, error_code/error_message, the limit_by variants, scopes. And
what Kong does not do: exactly the limit per node under concurrency, with every worker sharing
the node's counters.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import msgspec
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.plugins.bundled.rate_limiting import RateLimiting, RateLimitingConfig
from fastkong.runtime import empty_runtime
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

BOB, BOB_KEY, BOB_KEY2 = (
    "b0000000-0000-4000-8000-000000000001",
    "b0000000-0000-4000-8000-000000000002",
    "b0000000-0000-4000-8000-000000000003",
)
RUNTIME = empty_runtime()  # plugins hold their snapshot weakly: keep one alive
ALICE, ALICE_KEY = "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"


def fresh_minute(margin: float = 8.0) -> None:
    """Wait for the next minute if this one ends within ``margin`` s (a test must not straddle
    a window boundary; Kong's suite retries for the same reason)."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.05)


# -- schema -----------------------------------------------------------------------------------
def errors(plugin_config: str) -> list[str]:
    doc = f'_format_version: "3.0"\nplugins:\n- name: rate-limiting\n  config: {plugin_config}\n'
    with pytest.raises(ConfigError) as info:
        load_config(doc)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def loaded(plugin_config: str) -> dict[str, Any]:
    doc = f'_format_version: "3.0"\nplugins:\n- name: rate-limiting\n  config: {plugin_config}\n'
    config: dict[str, Any] = load_config(doc).config.plugins[0].config
    return config


def test_schema_defaults_are_kongs() -> None:
    c = loaded("{second: 10}")
    assert (c["second"], c["minute"], c["limit_by"], c["policy"], c["fault_tolerant"]) == (
        10,
        None,
        "consumer",
        "local",
        True,
    )
    assert (c["hide_client_headers"], c["error_code"], c["error_message"], c["sync_rate"]) == (
        False,
        429,
        "API rate limit exceeded",
        -1,
    )
    assert {k: c["redis"][k] for k in ("host", "port", "timeout", "database", "ssl")} == {
        "host": None,
        "port": 6379,
        "timeout": 2000,
        "database": 0,
        "ssl": False,
    }
    assert c["algorithm"] == "fixed-window"


def test_schema_needs_a_period() -> None:
    assert errors("{}") == [
        "plugins[0]: at least one of these fields must be non-empty: 'config.second', "
        "'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"
    ]


def test_schema_limits_are_positive_numbers() -> None:
    assert errors("{minute: 0, hour: x}") == [
        "plugins[0].config.minute: value must be greater than 0",
        "plugins[0].config.hour: expected a number",
    ]


def test_schema_smaller_unit_may_not_have_a_bigger_limit() -> None:
    assert errors("{second: 20, hour: 10}") == [
        "plugins[0].config: The limit for hour(10.0) cannot be lower than the limit for "
        "second(20.0)"
    ]
    assert errors("{second: 10, minute: 20, hour: 30, day: 40, month: 60, year: 50}") == [
        "plugins[0].config: The limit for year(50.0) cannot be lower than the limit for month(60.0)"
    ]


def test_schema_cluster_policy_is_refused_in_dbless() -> None:
    assert errors("{minute: 1, policy: cluster}") == [
        "plugins[0].config.policy: expected one of: local, redis"
    ]


def test_schema_header_and_path_need_their_field() -> None:
    assert errors("{second: 10, limit_by: header}") == [
        "plugins[0].config.header_name: required field missing",
        "plugins[0]: failed conditional validation given value of field 'config.limit_by'",
    ]
    assert errors("{second: 10, limit_by: path}")[0] == (
        "plugins[0].config.path: required field missing"
    )
    loaded("{second: 10, limit_by: header, header_name: X-App-Version}")
    loaded("{second: 10, limit_by: path, path: /request}")


def test_schema_sync_rate_rules() -> None:
    assert errors("{minute: 1, sync_rate: 1}") == [
        "plugins[0].config: sync_rate can only be used with the redis policy"
    ]
    assert errors("{minute: 1, policy: redis, redis: {host: h}, sync_rate: 0.01}") == [
        "plugins[0].config: sync_rate must be greater than 0.02, or -1 to disable"
    ]
    assert errors(
        "{minute: 1, policy: redis, redis: {host: h}, sync_rate: 1, algorithm: token-bucket}"
    ) == ["plugins[0].config.sync_rate: sync_rate > 0 works with the fixed-window algorithm only"]


def test_schema_redis_needs_a_host() -> None:
    assert errors("{second: 10, policy: redis, redis: {port: 6380}}") == [
        "plugins[0].config.redis.host: required field missing",
        "plugins[0]: failed conditional validation given value of field 'config.policy'",
    ]
    loaded("{second: 10, policy: redis, redis: {sentinel_master: m, sentinel_nodes: [{host: s}]}}")
    loaded("{second: 10, policy: redis, redis: {cluster_nodes: [{ip: 10.0.0.1}]}}")
    assert errors("{second: 10, policy: redis, redis: {sentinel_master: m}}") == [
        "plugins[0]: all or none of these fields must be set: 'config.redis.sentinel_master', "
        "'config.redis.sentinel_nodes'"
    ]


def test_schema_redis_new_and_legacy_structures() -> None:
    loaded(
        "{second: 10, policy: redis, redis: {host: r.test, port: 6380, database: 1, "
        "username: u, password: p, ssl: true, ssl_verify: false, timeout: 1100, "
        "server_name: r.test}}"
    )
    c = loaded(
        "{second: 10, policy: redis, redis_host: r.test, redis_port: 6380, redis_database: 1, "
        "redis_username: u, redis_password: p, redis_ssl: true, redis_ssl_verify: true, "
        "redis_timeout: 1100, redis_server_name: r.test}"
    )
    # Kong stores the expanded record: the aliases' values are in ``redis``
    assert {k: c["redis"][k] for k in ("host", "port", "database", "timeout", "ssl")} == {
        "host": "r.test",
        "port": 6380,
        "database": 1,
        "timeout": 1100,
        "ssl": True,
    }
    assert (c["redis"]["username"], c["redis"]["password"], c["redis"]["server_name"]) == (
        "u",
        "p",
        "r.test",
    )
    config = msgspec.convert(c, RateLimitingConfig)
    entity = SimpleNamespace(id="p", route=None, service=None, consumer=None)
    options = RateLimiting(config, RUNTIME, entity).redis_options
    assert options is not None
    assert (options.host, options.port, options.database, options.timeout) == (
        "r.test",
        6380,
        1,
        1.1,
    )
    assert (options.username, options.password, options.ssl, options.ssl_verify) == (
        "u",
        "p",
        True,
        True,
    )
    assert errors("{second: 10, policy: redis, redis_host: a, redis: {host: b}}") == [
        "plugins[0].config.redis_host: both deprecated and new field are used but their values "
        "mismatch: redis_host = a vs redis.host = b"
    ]
    # an alias is validated as the field it becomes
    assert errors(
        "{second: 10, policy: redis, redis_host: 'a:1', redis_server_name: 10.0.0.1}"
    ) == [
        "plugins[0].config.redis.host: must not have a port",
        "plugins[0].config.redis.server_name: must not be an IP",
    ]
    # read back, each alias shows its redis field (Kong keeps them for backward compatibility)
    assert (c["redis_host"], c["redis_port"], c["redis_timeout"], c["redis_ssl"]) == (
        "r.test",
        6380,
        1100,
        True,
    )
    c = loaded("{second: 10, policy: redis, redis: {host: r.test, database: 2}}")
    assert (c["redis_host"], c["redis_port"], c["redis_database"]) == ("r.test", 6379, 2)
    assert loaded("{second: 10}")["redis_host"] is None
    # the alias alone satisfies Kong's "redis.host required with policy redis"
    assert loaded("{second: 10, policy: redis, redis_host: r.test}")["redis"]["host"] == "r.test"


def test_schema_algorithm() -> None:
    assert errors("{minute: 1, algorithm: leaky}") == [
        "plugins[0].config.algorithm: expected one of: fixed-window, sliding-window, token-bucket"
    ]
    assert errors("{year: 10, algorithm: token-bucket}") == [
        "plugins[0].config.year: too low for token-bucket: 10 per year refills less than "
        "0.0005 tokens per second"
    ]


def test_handler_repr_shows_its_limits() -> None:
    config = msgspec.convert({"minute": 6, "hour": 2.5e9}, RateLimitingConfig)
    entity = SimpleNamespace(id="p", route="R", service=None, consumer=None)
    assert repr(RateLimiting(config, RUNTIME, entity)) == (
        "<RateLimiting minute=6, hour=2500000000 by=consumer policy=local "
        "algorithm=fixed-window scope=R:00000000-0000-0000-0000-000000000000>"
    )


def test_local_counters_per_identifier_and_per_window() -> None:
    """The keys of one identifier are kept for the current second: identifiers never share a
    counter, and a new window starts a new one."""
    from fastkong.store.local import CounterTable

    config = msgspec.convert({"second": 100, "minute": 3}, RateLimitingConfig)
    entity = SimpleNamespace(id="p", route="R", service=None, consumer=None)
    plugin = RateLimiting(config, RUNTIME, entity)
    table = CounterTable(None, 1024)
    t = 1_800_000_000.0  # a minute boundary
    assert [plugin.hit_local(table, "a", t)[0] for _ in range(4)] == [True] * 3 + [False]
    ok, remaining, _ = plugin.hit_local(table, "b", t + 0.5)
    assert ok and remaining == [99.0, 2.0]
    ok, remaining, _ = plugin.hit_local(table, "a", t + 1)  # same minute, next second
    assert not ok and remaining == [100, 0]  # a refused request counts nowhere
    ok, remaining, _ = plugin.hit_local(table, "a", t + 60)  # the next minute
    assert ok and remaining == [99.0, 2.0]
    table.close()


# -- through the gateway ----------------------------------------------------------------------
def route(name: str, config: str, *, path: str | None = None, auth: bool = False) -> str:
    plugins = f"{{name: rate-limiting, config: {config}}}"
    if auth:
        plugins += ", {name: key-auth, config: {key_names: [apikey]}}"
    return f"  - name: {name}\n    paths: [{path or '/' + name}]\n    plugins: [{plugins}]\n"


def gateway_config(echo: Echo) -> str:
    routes = "".join(
        (
            route("exact", "{minute: 100}"),
            route("headers", "{minute: 6}"),
            route("multi", "{minute: 6, hour: 99999}"),
            route("tie", "{second: 5, minute: 5}"),
            route("hide", "{minute: 6, hide_client_headers: true}"),
            route("custom", "{minute: 1, error_code: 404, error_message: Fake Not Found}"),
            route("fractional", "{minute: 2.5}"),
            route("not-an-error-code", "{minute: 1, error_code: 200}"),
            route("by-ip", "{minute: 2, limit_by: ip}"),
            route("by-header", "{minute: 2, limit_by: header, header_name: X-Tenant}"),
            route("by-path", "{minute: 2, limit_by: path, path: /by-path/counted}"),
            route("by-consumer", "{minute: 2, limit_by: consumer}", auth=True),
            route("by-credential", "{minute: 2, limit_by: credential}", auth=True),
            route("twin-a", "{minute: 2}"),
            route("twin-b", "{minute: 2}"),
            route("per-second", "{second: 1}"),
            route("reload", "{minute: 4}"),
            route("sliding", "{minute: 3, algorithm: sliding-window}"),
            route("bucket", "{minute: 6, algorithm: token-bucket}"),
            route("buckets", "{second: 2, minute: 3, algorithm: token-bucket}"),
        )
    )
    return f"""
_format_version: "3.0"
consumers:
- id: {BOB}
  username: bob
  keyauth_credentials: [{{id: {BOB_KEY}, key: bob-1}}, {{id: {BOB_KEY2}, key: bob-2}}]
- id: {ALICE}
  username: alice
  keyauth_credentials: [{{id: {ALICE_KEY}, key: alice-1}}]
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
{routes}
- name: shared
  url: http://127.0.0.1:{echo.port}
  plugins: [{{name: rate-limiting, config: {{minute: 3, limit_by: service}}}}]
  routes:
  - name: shared-a
    paths: [/shared-a]
  - name: shared-b
    paths: [/shared-b]
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    echo = Echo("rl-echo").start()
    workdir = tmp_path_factory.mktemp("rl")
    gateway = Gateway(workdir, gateway_config(echo), 2, "--trusted-ips", "127.0.0.1").start()
    yield gateway
    gateway.stop()
    echo.stop()


@pytest.fixture
def client(gw: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url("")) as c:
        yield c


def rl_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if "ratelimit" in k or k == "retry-after"}


def test_two_workers_admit_exactly_the_limit_under_a_concurrent_burst(gw: Gateway) -> None:
    fresh_minute(12)

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=30) as c:
            replies = await asyncio.gather(*(c.get(gw.url("/exact")) for _ in range(300)))
        return [r.status_code for r in replies]

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 100
    assert statuses.count(429) == 200
    assert len(gw.worker_pids()) == 2


def test_blocks_if_exceeding_limit_with_kongs_headers(client: httpx.Client) -> None:
    fresh_minute()
    replies = [client.get("/headers") for _ in range(7)]
    assert [r.status_code for r in replies] == [200] * 6 + [429]
    assert [r.headers["x-ratelimit-limit-minute"] for r in replies] == ["6"] * 7
    assert [r.headers["x-ratelimit-remaining-minute"] for r in replies] == [
        "5",
        "4",
        "3",
        "2",
        "1",
        "0",
        "0",
    ]
    assert [r.headers["ratelimit-limit"] for r in replies] == ["6"] * 7
    assert [r.headers["ratelimit-remaining"] for r in replies] == [
        "5",
        "4",
        "3",
        "2",
        "1",
        "0",
        "0",
    ]
    expected_reset = 60 - int(time.time()) % 60
    for r in replies:
        assert abs(int(r.headers["ratelimit-reset"]) - expected_reset) <= 1
        assert ("retry-after" in r.headers) == (r.status_code == 429)
    blocked = replies[-1]
    assert blocked.headers["retry-after"] == blocked.headers["ratelimit-reset"]
    body = blocked.json()
    assert body["message"] == "API rate limit exceeded"
    assert body["request_id"] == blocked.headers["x-kong-request-id"]
    assert blocked.headers["content-type"] == "application/json; charset=utf-8"


def test_handles_multiple_limits(client: httpx.Client) -> None:
    fresh_minute()
    replies = [client.get("/multi") for _ in range(7)]
    assert [r.status_code for r in replies] == [200] * 6 + [429]
    assert [r.headers["x-ratelimit-limit-hour"] for r in replies] == ["99999"] * 7
    assert [r.headers["x-ratelimit-remaining-hour"] for r in replies] == [
        "99998",
        "99997",
        "99996",
        "99995",
        "99994",
        "99993",
        "99993",  # the rejected request counted nowhere (Kong would show 99992)
    ]
    assert [r.headers["ratelimit-limit"] for r in replies] == ["6"] * 7  # minute: lowest left


def test_equal_remaining_picks_the_longer_window(client: httpx.Client) -> None:
    fresh_minute()
    r = client.get("/tie")
    assert rl_headers(r)["x-ratelimit-remaining-second"] == "4"
    assert rl_headers(r)["x-ratelimit-remaining-minute"] == "4"
    assert abs(int(r.headers["ratelimit-reset"]) - (60 - int(time.time()) % 60)) <= 1


def test_expire_counter(client: httpx.Client) -> None:
    now = time.time()
    time.sleep(1.02 - now % 1 if now % 1 > 0.7 else 0)  # not at the end of a second
    first, second = client.get("/per-second"), client.get("/per-second")
    assert (first.status_code, second.status_code) == (200, 429)
    assert rl_headers(first) == {
        "x-ratelimit-limit-second": "1",
        "x-ratelimit-remaining-second": "0",
        "ratelimit-limit": "1",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "1",
    }
    assert second.headers["retry-after"] == "1"
    time.sleep(1.0)
    assert client.get("/per-second").status_code == 200


def test_hide_client_headers(client: httpx.Client) -> None:
    fresh_minute()
    replies = [client.get("/hide") for _ in range(7)]
    assert [r.status_code for r in replies] == [200] * 6 + [429]
    assert all(rl_headers(r) == {} for r in replies)


def test_blocks_with_a_custom_error_code_and_message(client: httpx.Client) -> None:
    fresh_minute()
    assert client.get("/custom").status_code == 200
    r = client.get("/custom")
    assert r.status_code == 404
    assert r.json()["message"] == "Fake Not Found"
    assert "retry-after" in r.headers


def test_an_error_code_outside_4xx_5xx_ends_in_a_500(client: httpx.Client) -> None:
    # Kong's schema takes any positive number, but kong.response.error raises on a code outside
    # 400-599: the blocked request is answered 500, never with the configured code.
    fresh_minute()
    assert client.get("/not-an-error-code").status_code == 200
    r = client.get("/not-an-error-code")
    assert r.status_code == 500
    assert r.json()["message"] == "An unexpected error occurred"


def test_a_fractional_limit_blocks_like_kong(client: httpx.Client) -> None:
    fresh_minute()
    replies = [client.get("/fractional") for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-minute"] for r in replies] == ["1.5", "0.5", "0", "0"]
    assert replies[0].headers["x-ratelimit-limit-minute"] == "2.5"


def test_limit_by_ip_counts_each_forwarded_client(client: httpx.Client) -> None:
    fresh_minute()
    for ip in ("127.0.0.1", "127.0.0.2"):  # X-Real-IP from a trusted peer names the client
        statuses = [client.get("/by-ip", headers={"x-real-ip": ip}).status_code for _ in "abc"]
        assert statuses == [200, 200, 429]


def test_limit_by_header_counts_each_value_and_falls_back_to_the_ip(client: httpx.Client) -> None:
    fresh_minute()
    a = [client.get("/by-header", headers={"x-tenant": "a"}).status_code for _ in range(3)]
    b = [client.get("/by-header", headers={"x-tenant": "b"}).status_code for _ in range(3)]
    none = [client.get("/by-header").status_code for _ in range(3)]
    assert a == b == none == [200, 200, 429]


def test_limit_by_path_counts_only_the_configured_path(client: httpx.Client) -> None:
    fresh_minute()
    counted = [client.get("/by-path/counted").status_code for _ in range(3)]
    other = [client.get("/by-path/other").status_code for _ in range(3)]
    assert counted == other == [200, 200, 429]  # the other path counts by ip, separately


def test_limit_by_consumer_and_credential(client: httpx.Client) -> None:
    fresh_minute()

    def run(path: str, key: str) -> list[int]:
        return [client.get(path, headers={"apikey": key}).status_code for _ in range(3)]

    # consumer: bob's two keys share bob's counter; alice has her own
    assert run("/by-consumer", "bob-1") == [200, 200, 429]
    assert run("/by-consumer", "bob-2") == [429, 429, 429]
    assert run("/by-consumer", "alice-1") == [200, 200, 429]
    # credential: every key its own counter
    assert run("/by-credential", "bob-1") == [200, 200, 429]
    assert run("/by-credential", "bob-2") == [200, 200, 429]


def test_scope_is_the_plugins_route_and_service(client: httpx.Client) -> None:
    fresh_minute()
    # one plugin per route: two counters for the same ip
    assert [client.get("/twin-a").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/twin-b").status_code for _ in range(3)] == [200, 200, 429]
    # one service-scoped plugin, limit_by service: both routes share one counter
    statuses = [client.get(p).status_code for p in ("/shared-a", "/shared-b") * 2]
    assert statuses == [200, 200, 200, 429]


def test_sliding_window_algorithm(client: httpx.Client) -> None:
    fresh_minute()
    replies = [client.get("/sliding") for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-minute"] for r in replies] == ["2", "1", "0", "0"]
    assert 1 <= int(replies[-1].headers["retry-after"]) <= 60


def test_token_bucket_algorithm(client: httpx.Client) -> None:
    replies = [client.get("/bucket") for _ in range(7)]
    assert [r.status_code for r in replies] == [200] * 6 + [429]
    assert replies[0].headers["x-ratelimit-remaining-minute"] == "5"
    assert 9 <= int(replies[-1].headers["retry-after"]) <= 10  # one token per 10 s


def test_token_buckets_count_a_rejected_request_nowhere(client: httpx.Client) -> None:
    # second: 2, minute: 3. The third request is refused by the second's bucket and must not
    # take a token from the minute's, so one more passes a second later.
    assert [client.get("/buckets").status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.05)
    r = client.get("/buckets")
    assert r.status_code == 200
    assert r.headers["x-ratelimit-remaining-minute"] == "0"
    assert client.get("/buckets").status_code == 429


def test_counters_survive_a_config_reload(gw: Gateway, client: httpx.Client) -> None:
    fresh_minute()
    assert [client.get("/reload").headers["x-ratelimit-remaining-minute"] for _ in "ab"] == [
        "3",
        "2",
    ]
    text = gw.config_path.read_text()
    assert text.count("{minute: 4}") == 1
    new = text.replace("{minute: 4}", "{minute: 5}")
    admin = f"http://127.0.0.1:{gw.admin_port}/config"
    assert httpx.post(admin, content=new, headers={"content-type": "text/yaml"}).status_code == 201
    expected = hashlib.md5(new.encode()).hexdigest()
    deadline = time.monotonic() + 15
    while True:
        status = gw.status()
        workers = status["fastkong"]["workers"]
        if status["configuration_hash"] == expected and set(workers.values()) == {expected}:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    r = client.get("/reload")
    assert (r.headers["x-ratelimit-limit-minute"], r.headers["x-ratelimit-remaining-minute"]) == (
        "5",
        "2",
    )
