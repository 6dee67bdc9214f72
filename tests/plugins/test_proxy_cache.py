"""proxy-cache through a running gateway (Kong's spec/03-plugins/31-proxy-cache), and its key,
directive and media-type rules."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from fastkong.config.ids import generate
from fastkong.plugins.bundled.proxy_cache import (
    Entry,
    MemoryStore,
    build_cache_key,
    parse_directive_header,
    parse_mime_type,
    resource_ttl,
)
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration


def route(name: str, config: str = "") -> str:
    extra = f", {config}" if config else ""
    return (
        f"  - name: {name}\n    paths: [/{name}]\n"
        f"    plugins: [{{name: proxy-cache, config: {{strategy: memory{extra}}}}}]\n"
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = (
        f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
"""
        + route("simple")
        + route("other")
        + route("ttl", "cache_ttl: 1")
        + route("stale", "cache_ttl: 1, storage_ttl: 30")
        + route("args", "vary_query_params: [foo]")
        + route("vary", "vary_headers: [Foo]")
        + route(
            "quiet", "response_headers: {age: false, X-Cache-Status: false, X-Cache-Key: false}"
        )
        + route("posts", "request_method: [GET, POST], response_code: [200, 418]")
        + route("wild", "content_type: ['*/*']")
        + route("control", "cache_control: true")
        + route("caseless", "ignore_uri_case: true")
    )
    gw = Gateway(tmp_path_factory.mktemp("proxy-cache"), config).start()
    yield gw
    gw.stop()


def get(gateway: Gateway, path: str, **kw: object) -> httpx.Response:
    return httpx.get(gateway.url(path), **kw)  # type: ignore[arg-type]


def test_miss_then_hit(gateway: Gateway) -> None:
    first = get(gateway, "/simple/status/200")
    assert first.status_code == 200
    assert first.headers["x-cache-status"] == "Miss"
    key = first.headers["x-cache-key"]
    assert len(key) == 64 and int(key, 16) >= 0
    assert "age" not in first.headers
    second = get(gateway, "/simple/status/200")
    assert second.status_code == 200
    assert second.headers["x-cache-status"] == "Hit"
    assert second.headers["x-cache-key"] == key
    assert second.content == first.content
    assert second.headers["content-type"] == "application/json"
    assert second.headers["x-echo-server"] == first.headers["x-echo-server"]
    assert int(second.headers["age"]) >= 0
    # a hit answers as a proxied response does (Kong sets KONG_PROXIED)
    assert second.headers["x-kong-proxy-latency"].isdigit()
    assert second.headers["x-kong-upstream-latency"].isdigit()
    assert "x-kong-response-latency" not in second.headers
    assert second.headers["x-kong-request-id"] != first.headers["x-kong-request-id"]


def test_the_key_is_kongs(gateway: Gateway) -> None:
    r = get(gateway, "/simple/kong-key")
    route_id = generate("routes", "simple")
    # sha256("<route id>|GET|GET /simple/kong-key HTTP/1.1||"): no query, no vary headers
    text = f"{route_id}|GET|GET /simple/kong-key HTTP/1.1||"
    assert r.headers["x-cache-key"] == hashlib.sha256(text.encode()).hexdigest()
    r = get(gateway, "/simple/kong-key?b=2&a=1&a=0&flag")
    text = f"{route_id}|GET|GET /simple/kong-key|a=0,1:b=2:flag|"
    assert r.headers["x-cache-key"] == hashlib.sha256(text.encode()).hexdigest()


def test_routes_have_separate_caches(gateway: Gateway) -> None:
    a = get(gateway, "/other/status/200")
    b = get(gateway, "/simple/status/200?other")
    assert a.headers["x-cache-status"] == "Miss"
    assert a.headers["x-cache-key"] != b.headers["x-cache-key"]


def test_query_arguments_are_part_of_the_key(gateway: Gateway) -> None:
    assert get(gateway, "/simple/q?a=b&b=c").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/simple/q?a=c").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/simple/q?b=c&a=b").headers["x-cache-status"] == "Hit"
    assert get(gateway, "/simple/q?a&b").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/simple/q?a&b").headers["x-cache-status"] == "Hit"


def test_vary_query_params_and_headers(gateway: Gateway) -> None:
    assert get(gateway, "/args/x?foo=b&b=c").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/args/x?b=d&foo=b").headers["x-cache-status"] == "Hit"
    assert get(gateway, "/vary/x", headers={"foo": "bar"}).headers["x-cache-status"] == "Miss"
    assert get(gateway, "/vary/x", headers={"foo": "bar"}).headers["x-cache-status"] == "Hit"
    assert get(gateway, "/vary/x", headers={"foo": "baz"}).headers["x-cache-status"] == "Miss"
    assert get(gateway, "/vary/x", headers={"other": "1"}).headers["x-cache-status"] == "Miss"


def test_uri_case(gateway: Gateway) -> None:
    assert get(gateway, "/caseless/Abc").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/caseless/aBC").headers["x-cache-status"] == "Hit"
    assert get(gateway, "/simple/Abc").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/simple/aBC").headers["x-cache-status"] == "Miss"


def test_cache_ttl_expires_the_entry(gateway: Gateway) -> None:
    assert get(gateway, "/ttl/t").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/ttl/t").headers["x-cache-status"] == "Hit"
    time.sleep(1.2)
    assert get(gateway, "/ttl/t").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/ttl/t").headers["x-cache-status"] == "Hit"


def _at_fraction(low: float, high: float) -> None:
    """Wait until the clock's fraction of a second is in [low, high)."""
    while not low <= time.time() % 1 < high:
        time.sleep(0.01)


def test_age_and_staleness_count_whole_seconds(gateway: Gateway) -> None:
    # Kong stamps entries with ngx.time() (whole seconds): an entry stored late in a second is
    # one second old early in the next, and cache_ttl: 1 holds until the clock's second moves
    # on twice.
    _at_fraction(0.75, 0.85)
    assert get(gateway, "/simple/whole-seconds").headers["x-cache-status"] == "Miss"
    _at_fraction(0.1, 0.2)
    hit = get(gateway, "/simple/whole-seconds")
    assert (hit.headers["x-cache-status"], hit.headers["age"]) == ("Hit", "1")

    _at_fraction(0.05, 0.15)
    assert get(gateway, "/stale/whole-seconds").headers["x-cache-status"] == "Miss"
    time.sleep(1)
    _at_fraction(0.85, 0.95)  # 1.8 s later: one whole second by Kong's clock
    hit = get(gateway, "/stale/whole-seconds")
    assert (hit.headers["x-cache-status"], hit.headers["age"]) == ("Hit", "1")


def test_storage_ttl_keeps_stale_entries_for_refresh(gateway: Gateway) -> None:
    assert get(gateway, "/stale/t").headers["x-cache-status"] == "Miss"
    assert get(gateway, "/stale/t").headers["x-cache-status"] == "Hit"
    time.sleep(2.1)
    assert get(gateway, "/stale/t").headers["x-cache-status"] == "Refresh"
    hit = get(gateway, "/stale/t")
    assert hit.headers["x-cache-status"] == "Hit"
    assert int(hit.headers["age"]) <= 1


def test_bypasses(gateway: Gateway) -> None:
    # method not cacheable: no key
    r = httpx.post(gateway.url("/simple/p"), content=b"x")
    assert r.headers["x-cache-status"] == "Bypass"
    assert "x-cache-key" not in r.headers
    # response status and content type not cacheable
    for path in ("/simple/status/500", "/simple/bytes/10"):
        for _ in range(2):
            r = get(gateway, path)
            assert r.headers["x-cache-status"] == "Bypass"
            assert "x-cache-key" in r.headers


def test_non_default_methods_codes_and_types(gateway: Gateway) -> None:
    assert httpx.post(gateway.url("/posts/status/418")).headers["x-cache-status"] == "Miss"
    hit = httpx.post(gateway.url("/posts/status/418"))
    assert (hit.status_code, hit.headers["x-cache-status"]) == (418, "Hit")
    assert get(gateway, "/posts/status/404").headers["x-cache-status"] == "Bypass"
    assert get(gateway, "/wild/bytes/100").headers["x-cache-status"] == "Miss"
    hit = get(gateway, "/wild/bytes/100")
    assert hit.headers["x-cache-status"] == "Hit"
    assert hit.content == b"x" * 100
    assert hit.headers["content-length"] == "100"


def test_response_headers_off_unless_kong_debug(gateway: Gateway) -> None:
    for _ in range(2):
        r = get(gateway, "/quiet/x")
        assert not {"x-cache-status", "x-cache-key", "age"} & set(r.headers)
    r = get(gateway, "/quiet/x", headers={"kong-debug": "1"})
    assert r.headers["x-cache-status"] == "Hit"
    assert "age" in r.headers
    assert "x-cache-key" in r.headers


def test_cache_control(gateway: Gateway) -> None:
    # the echo sends no Cache-Control or Expires: a TTL of 0, so the response is not stored
    for _ in range(2):
        r = get(gateway, "/control/c")
        assert r.headers["x-cache-status"] == "Bypass"
        assert "x-cache-key" in r.headers
    r = get(gateway, "/control/c", headers={"cache-control": "no-cache"})
    assert r.headers["x-cache-status"] == "Bypass"
    r = get(gateway, "/control/c", headers={"cache-control": "only-if-cached"})
    assert r.status_code == 504


def test_large_bodies_stream_through_uncached(gateway: Gateway) -> None:
    size = 12 * 1024 * 1024  # more than a quarter of the worker's store
    for _ in range(2):
        r = get(gateway, f"/wild/bytes/{size}", timeout=30)
        assert r.status_code == 200
        assert len(r.content) == size
        assert r.headers["x-cache-status"] == "Miss"


# -- schema ------------------------------------------------------------------------------------


def errors(config: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config('_format_version: "3.0"\nroutes: [{name: r, paths: [/]}]\n' + config)
    return [f"{e.path}: {e.message}" for e in info.value.errors]


def test_defaults_are_kongs() -> None:
    doc = '_format_version: "3.0"\nplugins: [{name: proxy-cache, config: {strategy: memory}}]\n'
    assert load_config(doc).config.plugins[0].config == {
        "strategy": "memory",
        "response_code": [200, 301, 404],
        "request_method": ["GET", "HEAD"],
        "content_type": ["text/plain", "application/json"],
        "cache_ttl": 300,
        "cache_control": False,
        "ignore_uri_case": False,
        "storage_ttl": None,
        "memory": {"dictionary_name": "kong_db_cache"},
        "vary_query_params": None,
        "vary_headers": None,
        "response_headers": {"age": True, "X-Cache-Status": True, "X-Cache-Key": True},
    }


def test_config_errors_have_paths() -> None:
    assert errors(
        "plugins:\n"
        "- name: proxy-cache\n"
        "  route: r\n"
        "  config:\n"
        "    response_code: [99, 200]\n"
        "    request_method: [GET, DELETE]\n"
        "    cache_ttl: 0\n"
        "    response_headers: {X-Cache-Status: maybe}\n"
        "- name: proxy-cache\n"
        "  config: {strategy: redis, response_code: []}\n"
    ) == [
        "plugins[0].config.response_code[0]: value should be between 100 and 900",
        "plugins[0].config.request_method[1]: expected one of: HEAD, GET, POST, PATCH, PUT",
        "plugins[0].config.cache_ttl: value must be greater than 0",
        "plugins[0].config.response_headers.X-Cache-Status: expected a boolean",
        "plugins[0].config.strategy: required field missing",
        "plugins[1].config.strategy: expected one of: memory",
        "plugins[1].config.response_code: length must be at least 1",
    ]


# -- rules -------------------------------------------------------------------------------------


def test_build_cache_key_prefixes() -> None:
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    args = ("GET", "GET /x HTTP/1.1", {}, {}, None, None)
    assert build_cache_key("c", "r", *args) == key("c:r|GET|GET /x HTTP/1.1||")
    assert build_cache_key(None, "r", *args) == key("r|GET|GET /x HTTP/1.1||")
    assert build_cache_key(None, None, *args) == key("default|GET|GET /x HTTP/1.1||")
    headers = {"foo": ["b", "a"], "bar": "1"}
    assert build_cache_key(None, "r", "GET", "u", {}, headers, None, ["Foo", "Bar", "Baz"]) == key(
        "r|GET|u||Foo=a,b:Bar=1"
    )


def test_directives() -> None:
    assert parse_directive_header("public, Max-Age=10, no-cache , x=y") == {
        "public": True,
        "max-age": 10,
        "no-cache": True,
        "x": "y",
    }
    assert parse_directive_header(None) == {}
    assert resource_ttl({"s-maxage": 5, "max-age": 10}, None, 0) == 5
    assert resource_ttl({}, "Thu, 01 Jan 1970 00:01:40 GMT", 40) == 60
    assert resource_ttl({}, "garbage", 0) == 0
    assert resource_ttl({"max-age": -3}, None, 0) == 0


def test_media_types() -> None:
    assert parse_mime_type("Application/JSON; Charset=utf-8") == (
        "application",
        "json",
        {"charset": "utf-8"},
    )
    assert parse_mime_type("*") == ("*", "*", {})
    assert parse_mime_type('text/plain; a="x y"') == ("text", "plain", {"a": "x y"})
    assert parse_mime_type("text") is None
    assert parse_mime_type("text/plain; broken") is None


def test_memory_store_is_a_bounded_lru() -> None:
    store = MemoryStore("t", capacity=4000)

    def entry(size: int) -> Entry:
        return Entry(200, [], b"x" * size, 0.0, 10, 10)

    assert store.store("a", entry(700))
    assert store.store("b", entry(700))
    assert store.store("c", entry(700))
    assert store.fetch("a", 1.0) is not None  # a is now the most recent
    assert store.store("d", entry(700))
    assert store.store("e", entry(700))
    assert store.fetch("b", 1.0) is None  # the least recently used went first
    assert store.fetch("a", 1.0) is not None
    assert store.used <= store.capacity
    assert not store.store("big", entry(2000))  # more than a quarter of the store
    assert store.fetch("a", 11.0) is None  # expired
    assert "a" not in store.entries
