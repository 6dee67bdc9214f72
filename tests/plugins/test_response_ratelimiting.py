"""response-ratelimiting through a running gateway (Kong's spec/03-plugins/24-response-rate-
limiting): an upstream that prices its responses in ``X-Kong-Limit``, local counters shared by
two workers, and the Redis policy on a real ``redis-server``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Gateway, JsonPeer, eventually
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


class PricingPeer(JsonPeer):
    """An upstream that answers with ``X-Kong-Limit: <the request's x-price>`` and, as JSON,
    the request headers it got; it counts the requests it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0

    def respond(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> tuple[Any, bytes]:
        self.answered += 1
        price = headers.get("x-price")
        return headers, (f"X-Kong-Limit: {price}\r\n".encode() if price else b"")


@pytest.fixture(scope="module")
def peer() -> Iterator[PricingPeer]:
    server = PricingPeer().start()
    yield server
    server.stop()


def config(peer: PricingPeer, routes: dict[str, str], extra: str = "") -> str:
    text = f"""
_format_version: "3.0"
services:
- name: priced
  url: http://127.0.0.1:{peer.port}
  routes:
"""
    for name, plugin_config in routes.items():
        text += (
            f"  - name: {name}\n    paths: [/{name}]\n"
            f"    plugins: [{{name: response-ratelimiting, config: {plugin_config}}}]\n"
        )
    return text + extra


# Year windows: a test never straddles one (a minute's end would restart the counts).
ROUTES = {
    "plain": "{limits: {video: {year: 3}, image: {day: 100, year: 200}}}",
    "block": "{block_on_first_violation: true, limits: {video: {year: 1}}}",
    "hidden": "{hide_client_headers: true, header_name: X-Price-Tag, limits: {video: {year: 5}}}",
    "race": "{limits: {video: {year: 20}}}",
    "pair": "{limits: {video: {year: 10}, image: {year: 1}}}",
    "mixed": "{limits: {video: {year: 10}, image: {year: 1}}}",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, peer: PricingPeer) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("rrl"), config(peer, ROUTES), 2).start()
    yield gw
    gw.stop()


def get(gateway: Gateway, path: str, price: str | None = None) -> httpx.Response:
    return httpx.get(gateway.url(path), headers={"x-price": price} if price else {})


def test_the_upstream_spends_and_the_client_sees_what_is_left(gateway: Gateway) -> None:
    r = get(gateway, "/plain", "video=1")
    assert r.status_code == 200
    assert r.json()["x-ratelimit-remaining-video"] == "3"  # what was left before this one
    assert r.json()["x-ratelimit-remaining-image"] == "100"  # the smallest of its periods
    assert "x-kong-limit" not in r.headers  # the upstream's price stays between us
    assert r.headers["x-ratelimit-limit-video-year"] == "3"
    assert r.headers["x-ratelimit-remaining-video-year"] == "2"
    assert r.headers["x-ratelimit-limit-image-day"] == "100"
    assert r.headers["x-ratelimit-remaining-image-day"] == "100"
    r = get(gateway, "/plain", "video=5, image=2")  # overspends: counted (Kong's rule)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-remaining-video-year"] == "0"
    assert r.headers["x-ratelimit-remaining-image-day"] == "98"
    assert r.headers["x-ratelimit-remaining-image-year"] == "198"


def test_an_exhausted_counter_turns_priced_responses_down(
    gateway: Gateway, peer: PricingPeer
) -> None:
    before = peer.answered
    r = get(gateway, "/plain", "video=1")
    assert r.status_code == 429
    assert r.content == b"" and r.headers["content-length"] == "0"
    assert peer.answered == before + 1  # the upstream answered; the client got the 429
    assert r.headers["x-ratelimit-remaining-video-year"] == "0"
    # Free responses, and responses that spend from another counter, still pass.
    assert get(gateway, "/plain").status_code == 200
    assert get(gateway, "/plain", "image=1, nonsense=3, video=x, a=b=c").status_code == 200
    assert get(gateway, "/plain").json()["x-ratelimit-remaining-image"] == "97"


def test_block_on_first_violation(gateway: Gateway, peer: PricingPeer) -> None:
    assert get(gateway, "/block", "video=1").status_code == 200
    before = peer.answered
    r = get(gateway, "/block", "video=1")
    assert r.status_code == 429
    assert r.json()["message"] == "API rate limit exceeded for 'video'"
    assert peer.answered == before  # refused before proxying


def test_hidden_headers_and_a_custom_price_header(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/hidden"), headers={"x-price": "video=1"})
    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("x-ratelimit")]
    # The custom header_name is read (X-Price-Tag): X-Kong-Limit is just another header here.
    assert r.headers["x-kong-limit"] == "video=1"


@pytest.mark.parametrize(
    ("path", "price"), [("/pair", "video=1, image=1"), ("/mixed", "video=2, image=1")]
)
def test_a_refused_response_is_counted_in_none_of_its_counters(
    gateway: Gateway, path: str, price: str
) -> None:
    """Kong's handler skips the count of a response its header filter refused (``stop_log``):
    the counter that still had room keeps it (one price for all, or mixed prices)."""
    assert get(gateway, path, "image=1").status_code == 200
    r = get(gateway, path, price)
    assert r.status_code == 429
    cost = int(price.split(",")[0].split("=")[1])
    # Kong's headers on the 429: the usage before proxying, less the refused price.
    assert r.headers["x-ratelimit-remaining-video-year"] == str(10 - cost)
    assert r.headers["x-ratelimit-remaining-image-year"] == "0"
    r = get(gateway, path)
    assert r.json()["x-ratelimit-remaining-video"] == "10"
    assert r.headers["x-ratelimit-remaining-video-year"] == "10"
    assert get(gateway, path, "video=1").headers["x-ratelimit-remaining-video-year"] == "9"


def test_concurrent_responses_never_overshoot(gateway: Gateway) -> None:
    """Two workers, 60 concurrent responses costing 1 against a limit of 20: exactly 20 pass
    (Kong reads the usage before proxying and counts afterwards, so all 60 could)."""
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: get(gateway, "/race", "video=1").status_code, range(60)))
    assert statuses.count(200) == 20
    assert statuses.count(429) == 40


# -- the Redis policy ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def test_redis_counts_across_gateways(
    tmp_path: Path,
    peer: PricingPeer,
    redis: RedisServer,
    gateway_with: Callable[[str], Gateway],
) -> None:
    route = {
        "shared": f"{{policy: redis, redis: {{host: 127.0.0.1, port: {redis.port}}}, "
        "limits: {video: {year: 2}}}"
    }
    one = gateway_with(config(peer, route))
    two = gateway_with(config(peer, route))
    assert get(one, "/shared", "video=1").status_code == 200
    assert get(two, "/shared", "video=1").headers["x-ratelimit-remaining-video-year"] == "0"
    assert get(one, "/shared", "video=1").status_code == 429
    assert get(two, "/shared").json()["x-ratelimit-remaining-video"] == "0"
    keys = redis.cli("--scan", "--pattern", "response-ratelimit:*").split()
    assert len(keys) == 1 and keys[0].endswith(":video:year")


def test_redis_counts_a_refused_response_in_none_of_its_counters(
    peer: PricingPeer, redis: RedisServer, gateway_with: Callable[[str], Gateway]
) -> None:
    route = {
        "both": f"{{policy: redis, redis: {{host: 127.0.0.1, port: {redis.port}}}, "
        "limits: {video: {year: 10}, image: {year: 1}}}"
    }
    gw = gateway_with(config(peer, route))
    assert get(gw, "/both", "image=1").status_code == 200

    def left(name: str) -> str:
        return str(get(gw, "/both").json()[f"x-ratelimit-remaining-{name}"])

    eventually(lambda: left("image") == "0")  # the count follows the response
    assert get(gw, "/both", "video=3, image=1").status_code == 429
    assert get(gw, "/both", "video=1").status_code == 200
    # Counted in order: had the refused 3 been, the reading would go 10 -> 7 -> 6.
    eventually(lambda: left("video") != "10")
    assert left("video") == "9"


def test_a_dead_redis_is_tolerated_or_not(
    peer: PricingPeer, gateway_with: Callable[[str], Gateway]
) -> None:
    from tests.helpers import free_port

    dead = free_port()
    routes = {
        "tolerant": f"{{policy: redis, redis: {{host: 127.0.0.1, port: {dead}}}, "
        "limits: {video: {year: 1}}}",
        "strict": f"{{policy: redis, fault_tolerant: false, redis: {{host: 127.0.0.1, "
        f"port: {dead}}}, limits: {{video: {{year: 1}}}}}}",
    }
    gw = gateway_with(config(peer, routes))
    for _ in range(3):
        r = get(gw, "/tolerant", "video=1")
        assert r.status_code == 200 and "x-ratelimit-limit-video-year" not in r.headers
    r = get(gw, "/strict", "video=1")
    assert r.status_code == 500
    assert r.json()["message"] == "An unexpected error occurred"


# -- the schema ----------------------------------------------------------------------------------
def errors(plugin_config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(
            '_format_version: "3.0"\n'
            f"plugins: [{{name: response-ratelimiting, config: {plugin_config}}}]\n"
        )
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_schema() -> None:
    assert errors("{}") == ["plugins[0].config.limits: required field missing"]
    assert errors("{limits: {}}") == ["plugins[0].config.limits: length must be at least 1"]
    assert errors("{limits: {video: {}}}") == [
        "plugins[0].config.limits: at least one of these fields must be non-empty: "
        "'second', 'minute', 'hour', 'day', 'month', 'year'"
    ]
    assert errors("{limits: {video: {minute: 10, hour: 5}}}") == [
        "plugins[0].config.limits: the limit for hour(5.0) cannot be lower than the "
        "limit for minute(10.0)"
    ]
    assert errors("{limits: {video: {minute: 0}}}") == [
        # a record's errors keep their field below the map (Kong's spec: err.config.limits.seco)
        "plugins[0].config.limits.minute: value must be greater than 0"
    ]
    assert errors("{policy: cluster, limits: {video: {minute: 1}}}")[0].startswith(
        "plugins[0].config.policy: "
    )
    assert errors("{policy: redis, limits: {video: {minute: 1}}}") == [
        "plugins[0].config.redis.host: required field missing",
        "plugins[0]: failed conditional validation given value of field 'config.policy'",
    ]
    loaded = load_config(
        '_format_version: "3.0"\nplugins: [{name: response-ratelimiting, '
        "config: {redis_host: r.internal, limits: {video: {minute: 1}}}}]\n"
    )
    config = loaded.config.plugins[0].config
    assert config["redis"]["host"] == "r.internal" and config["redis_host"] == "r.internal"
    assert (config["header_name"], config["limit_by"], config["policy"]) == (
        "x-kong-limit",
        "consumer",
        "local",
    )
