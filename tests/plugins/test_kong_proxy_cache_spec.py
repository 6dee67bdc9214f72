"""Kong's ``spec/03-plugins/31-proxy-cache/02-access_spec.lua`` (memory policy) through one
gateway, with a small upstream in this module standing in for Kong's ``mock_upstream``
(``/get``, ``/post``, ``/xml``, ``/status/<code>``, ``/cache/<n>``, ``/response-headers``,
``/stream/<n>``, a 404 JSON elsewhere). Routes are Kong's ``route-<n>.test`` hosts, with the
spec's plugins, consumers and key-auth credentials; the global proxy-cache plugin is a
top-level ``plugins`` entry.

Ported (spec lines): response_headers set to true 451-474; cache ttl via Cache-Control
589-666; max-age only 668-679; s-maxage only 681-690; Expires only 692-703; min-fresh 706-717;
max-age 719-767; max-stale 769-814; caching a streamed (chunked) response 828-854; separate
keys per route for one consumer 856-898; route plugin vs global plugin 900-917; separate
instances 919-940; authenticated routes 1051-1101; non-default methods and statuses with
route-10's config 1144-1199; Kong core headers 1201-1251; content types 1253-1317; ignore and
acknowledge uri case with a 404 response code 1319-1380 (the uri-case rule itself is also in
``test_proxy_cache.test_uri_case``).

Covered by ``test_proxy_cache`` (not ported again): "caches a simple request" 402-430 and
"response_headers ... set to default" 476-499 (``test_miss_then_hit``); no X-Cache headers
without Kong-Debug 431-449 (``test_response_headers_off_unless_kong_debug``); "respects cache
ttl" 501-587 (``test_cache_ttl_expires_the_entry``,
``test_storage_ttl_keeps_stale_entries_for_refresh``); request params, a subset of them and
vary headers 942-1049 (``test_query_arguments_are_part_of_the_key``,
``test_vary_query_params_and_headers``); uncacheable method, status and content type
1103-1142 (``test_bypasses``); only-if-cached 816-825 (``test_cache_control``).

Left out: the spec's ``strategy:flush``/``strategy:fetch`` calls (Kong internals: the
plugin's storage object; the waits they guarded are made here by polling the gateway); the
plugin's admin endpoints (``03-api_spec.lua``, not this file). Nothing in the file needs a
database beyond its blueprints, which are declarative entities here.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
import pytest

from tests.helpers import Gateway, LoopServer

pytestmark = pytest.mark.integration

KEY = re.compile(r"^[0-9a-f]{64}$")

# -- Kong's mock_upstream, the paths this spec uses ----------------------------------------------


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    """One request: method, target, headers (lower-case names) and its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    return method, target, headers, body


class MockUpstream(LoopServer):
    """Kong's ``mock_upstream``: ``/get`` (GET only) and ``/post`` (POST only) answer its default
    JSON (``headers``, ``url``, ``uri_args``, ``vars``); ``/status/<code>`` the same with that
    status; ``/cache/<n>`` with ``Cache-Control: public, max-age=<n>``; ``/response-headers``
    with its query arguments as response headers (overriding the defaults, as nginx's
    ``ngx.header`` does); ``/xml`` an ``application/xml`` text; ``/stream/<n>`` the JSON
    ``n`` times, chunked; anything else the JSON with a 404."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                method, target, headers, _ = await read_request(reader)
                await self.answer(writer, method, target, headers)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def default_json(self, method: str, target: str, headers: dict[str, str]) -> bytes:
        path, _, query = target.partition("?")
        payload = {
            "headers": headers,
            "url": f"http://{headers.get('host', '')}{target}",
            "uri_args": dict(parse_qsl(query, keep_blank_values=True)),
            "vars": {"request_method": method, "request_uri": target, "uri": path},
        }
        return json.dumps(payload).encode()

    async def answer(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str]
    ) -> None:
        path, _, query = target.partition("?")
        status = 200
        fields = {"Content-Type": "application/json", "X-Powered-By": "mock_upstream"}
        text = self.default_json(method, target, headers)
        allowed = {"/get": "GET", "/post": "POST", "/response-headers": "GET"}.get(path)
        if allowed is not None and method != allowed:
            status, fields["Content-Type"] = 405, "text/plain"
            text = b"Method not allowed for the requested URL"
        elif m := re.fullmatch(r"/status/(\d{3})", path):
            status = int(m.group(1))
        elif m := re.fullmatch(r"/cache/(\d+)", path):
            fields["Cache-Control"] = f"public, max-age={m.group(1)}"
        elif path == "/response-headers":
            fields.update(parse_qsl(query, keep_blank_values=True))
        elif path == "/xml":
            fields["Content-Type"] = "application/xml"
            text = b'<?xml version="1.0" encoding="UTF-8"?>\n<note><body>Kong</body></note>'
        elif m := re.fullmatch(r"/stream/(\d+)", path):
            # One write, as nginx's output buffer sends mock_upstream's three ngx.say lines.
            head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
            line = text + b"\n"
            writer.write(
                f"HTTP/1.1 200 OK\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode()
                + b"%x\r\n%s\r\n" % (len(line), line) * int(m.group(1))
                + b"0\r\n\r\n"
            )
            return
        elif path not in ("/get", "/post"):
            status = 404
        text += b"\n"  # ngx.say
        head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        writer.write(
            f"HTTP/1.1 {status} X\r\n{head}Content-Length: {len(text)}\r\n\r\n".encode() + text
        )


# -- the gateway: Kong's routes, consumers and plugins --------------------------------------------

POLICY = {"strategy": "memory", "memory": {"dictionary_name": "kong"}}
TYPES = {"content_type": ["text/plain", "application/json"]}


def cache(**config: Any) -> dict[str, Any]:
    return {"name": "proxy-cache", "config": {**POLICY, **config}}


KEY_AUTH = {"name": "key-auth", "config": {}}

#: route number -> its plugins (routes 3, 4 and 13-16 have the global proxy-cache).
ROUTE_PLUGINS: dict[int, list[dict[str, Any]]] = {
    1: [cache(**TYPES)],
    2: [cache(**TYPES)],
    5: [KEY_AUTH, cache(**TYPES)],
    6: [cache(**TYPES, cache_ttl=2)],
    7: [cache(**TYPES, cache_control=True)],
    8: [cache(**TYPES, cache_control=True, storage_ttl=600)],
    9: [cache(**TYPES, cache_ttl=2, storage_ttl=60)],
    10: [
        cache(
            content_type=["text/html; charset=utf-8", "application/json"],
            response_code=[200, 417],
            request_method=["GET", "HEAD", "POST"],
        )
    ],
    11: [cache(**TYPES, response_code=[200], request_method=["GET", "HEAD", "POST"])],
    12: [cache(**TYPES, response_code=[200], request_method=["GET", "HEAD", "POST"])],
    13: [KEY_AUTH],
    14: [KEY_AUTH],
    15: [KEY_AUTH],
    16: [KEY_AUTH],
    17: [cache(content_type=["*/*"])],
    18: [cache(content_type=["application/xml; charset=UTF-8"])],
    19: [cache(content_type=["application/xml;"])],  # invalid content_type
    20: [cache(**TYPES, response_code=[404], ignore_uri_case=True)],
    21: [cache(**TYPES, response_code=[404], ignore_uri_case=False)],
    22: [
        cache(
            **TYPES,
            response_headers={"age": False, "X-Cache-Status": False, "X-Cache-Key": False},
        )
    ],
    23: [
        cache(**TYPES, response_headers={"age": True, "X-Cache-Status": True, "X-Cache-Key": True})
    ],
    24: [cache(**TYPES)],
}


def kong_config(upstream_port: int) -> str:
    routes = [
        {"name": f"route-{n}", "hosts": [f"route-{n}.test"], "plugins": ROUTE_PLUGINS.get(n, [])}
        for n in range(1, 25)
    ]
    doc = {
        "_format_version": "3.0",
        "services": [
            {"name": "mock", "url": f"http://127.0.0.1:{upstream_port}", "routes": routes}
        ],
        "consumers": [
            {"username": name, "keyauth_credentials": [{"key": name}]} for name in ("bob", "alice")
        ],
        "plugins": [cache(**TYPES)],  # the global plugin, for routes 3 and 4
    }
    return json.dumps(doc)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    upstream = MockUpstream().start()
    try:
        gw = Gateway(tmp_path_factory.mktemp("kong-proxy-cache"), kong_config(upstream.port))
        try:
            yield gw.start()
        finally:
            gw.stop()
    finally:
        upstream.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url(""), timeout=20) as c:
        yield c


Send = Callable[..., httpx.Response]


def requester(client: httpx.Client, route: int, path: str = "/get", **headers: str) -> Send:
    """A request to ``path`` on Kong's ``route-<route>.test`` host, sent when called."""

    def send(method: str = "GET", **kw: Any) -> httpx.Response:
        return client.request(
            method, path, headers={"host": f"route-{route}.test", **headers}, **kw
        )

    return send


def get(client: httpx.Client, route: int, path: str = "/get", **headers: str) -> httpx.Response:
    return requester(client, route, path, **headers)()


def status(r: httpx.Response, code: int = 200) -> str | None:
    """``X-Cache-Status`` of a response that has status ``code``."""
    assert r.status_code == code, r.text
    found: str | None = r.headers.get("x-cache-status")
    return found


def first_not_hit(send: Send, timeout: float = 15.0) -> httpx.Response:
    """Repeat a request while the cache answers it (Kong's spec sleeps instead): the first
    response that is not a Hit, once the cached entry has aged or expired."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = send()
        if r.headers.get("x-cache-status") != "Hit":
            return r
        time.sleep(0.1)
    raise AssertionError(f"still a Hit after {timeout} s")


# -- the cases ------------------------------------------------------------------------------------


def test_response_headers_on_the_response_when_configured(client: httpx.Client) -> None:
    r = get(client, 23)
    assert status(r) == "Miss"
    assert "x-cache-key" in r.headers
    assert "age" not in r.headers
    r = get(client, 23)
    assert status(r) == "Hit"
    assert "age" in r.headers
    assert "x-cache-key" in r.headers


def test_respects_cache_ttl_via_cache_control(client: httpx.Client) -> None:
    send = requester(client, 7, "/cache/2")
    assert status(send()) == "Miss"
    assert status(send()) == "Hit"
    # the entry is stored for its max-age (2 s), then the cycle starts again
    assert status(first_not_hit(send)) == "Miss"
    assert status(send()) == "Hit"
    # max-age=0 never results in caching
    assert status(get(client, 7, "/cache/0")) == "Bypass"
    assert status(get(client, 7, "/cache/0")) == "Bypass"


@pytest.mark.parametrize(
    "query",
    [
        "Cache-Control=max-age%3D604800",  # public not present, but max-age is
        "Cache-Control=s-maxage%3D604800",  # s-maxage only
        # Expires present, Cache-Control absent
        "Expires=" + quote(formatdate(time.time() + 5000, usegmt=True)),
    ],
    ids=["max-age-without-public", "s-maxage-only", "expires-only"],
)
def test_response_freshness_from_the_upstream(client: httpx.Client, query: str) -> None:
    assert status(get(client, 7, f"/response-headers?{query}")) == "Miss"


def test_request_min_fresh(client: httpx.Client) -> None:
    # Kong's case reuses the /cache/2 entry the case before left; stored here first
    assert status(get(client, 7, "/cache/2?min-fresh")) in ("Miss", "Hit")
    r = get(client, 7, "/cache/2?min-fresh", **{"Cache-Control": "min-fresh=30"})
    assert status(r) == "Refresh"


def test_request_max_age(client: httpx.Client) -> None:
    send = requester(client, 7, "/cache/10", **{"Cache-Control": "max-age=2"})
    assert status(send()) == "Miss"
    assert status(send()) == "Hit"
    assert status(first_not_hit(send)) == "Refresh"


def test_request_max_stale(client: httpx.Client) -> None:
    send = requester(client, 8, "/cache/2")
    assert status(send()) == "Miss"
    assert status(send()) == "Hit"
    stale = requester(client, 8, "/cache/2", **{"Cache-Control": "max-stale=1"})
    assert status(first_not_hit(stale)) == "Refresh"


def test_caches_a_streaming_request(client: httpx.Client) -> None:
    first = get(client, 1, "/stream/3")
    assert status(first) == "Miss"
    # Kong's nginx relays an upstream answer without Content-Length chunked to an HTTP/1.1
    # client, however the body arrived
    assert "content-length" not in first.headers
    second = get(client, 1, "/stream/3")
    assert status(second) == "Hit"
    assert second.content == first.content
    assert first.content.count(b"\n") == 3


@pytest.mark.parametrize("routes", [(13, 14), (15, 16)], ids=["routes", "routes-services"])
def test_separate_cache_key_for_the_same_consumer_between_routes(
    client: httpx.Client, routes: tuple[int, int]
) -> None:
    keys = []
    for route in routes:
        r = get(client, route, apikey="bob")
        assert r.status_code == 200
        keys.append(r.headers["x-cache-key"])
    assert keys[0] != keys[1]


def test_separate_cache_key_between_route_specific_and_global_plugin(
    client: httpx.Client,
) -> None:
    r = get(client, 3)
    assert status(r) == "Miss"
    key1 = r.headers["x-cache-key"]
    assert KEY.match(key1)
    r = get(client, 4)
    assert status(r) == "Miss"
    assert r.headers["x-cache-key"] != key1


def test_differentiates_caches_between_instances(client: httpx.Client) -> None:
    r = get(client, 2)
    assert status(r) == "Miss"
    key1 = r.headers["x-cache-key"]
    assert KEY.match(key1)
    r = get(client, 2)
    assert status(r) == "Hit"
    assert r.headers["x-cache-key"] == key1


def test_authenticated_route_ignores_cache_if_unauthenticated(client: httpx.Client) -> None:
    r = get(client, 5)
    assert r.status_code == 401
    assert "x-cache-status" not in r.headers


def test_authenticated_route_keeps_a_cache_per_consumer(client: httpx.Client) -> None:
    for consumer in ("bob", "alice"):
        assert status(get(client, 5, apikey=consumer)) == "Miss"
        assert status(get(client, 5, apikey=consumer)) == "Hit"


def test_caches_non_default_request_methods(client: httpx.Client) -> None:
    send = requester(client, 10, "/post")
    assert status(send("POST", json={"foo": "bar"})) == "Miss"
    assert status(send("POST", json={"foo": "bar"})) == "Hit"


def test_caches_non_default_response_status(client: httpx.Client) -> None:
    assert status(get(client, 10, "/status/417"), 417) == "Miss"
    assert status(get(client, 10, "/status/417"), 417) == "Hit"


@pytest.mark.parametrize("header", ["x-kong-proxy-latency", "x-kong-upstream-latency"])
def test_displays_kong_core_headers(client: httpx.Client, header: str) -> None:
    path = f"/get?show-me={header}"
    for expected in ("Miss", "Hit"):
        r = get(client, 1, path)
        assert status(r) == expected
        assert r.headers[header].isdigit()


def test_caches_with_wildcard_content_type(client: httpx.Client) -> None:
    for expected in ("Miss", "Hit"):
        r = get(client, 17, "/xml")
        assert status(r) == expected
        assert r.headers["content-type"] == "application/xml"


def test_content_type_parameter_mismatch_is_not_cached(client: httpx.Client) -> None:
    r = get(client, 18, "/xml")
    assert status(r) == "Bypass"
    assert r.headers["content-type"] == "application/xml"


def test_invalid_upstream_content_type(client: httpx.Client) -> None:
    r = get(client, 18, "/response-headers?Content-Type=application/xml;")
    assert status(r) == "Bypass"
    assert r.headers["content-type"] == "application/xml;"


def test_invalid_configured_content_type(client: httpx.Client) -> None:
    r = get(client, 19, "/xml")
    assert status(r) == "Bypass"
    assert r.headers["content-type"] == "application/xml"


def test_ignore_uri_case_in_cache_key(client: httpx.Client) -> None:
    first = get(client, 20, "/ignore-case/kong")
    assert status(first, 404) == "Miss"
    key1 = first.headers["x-cache-key"]
    assert KEY.match(key1)
    second = get(client, 20, "/ignore-case/KONG")
    assert status(second, 404) == "Hit"
    assert second.headers["x-cache-key"] == key1
    assert second.content == first.content


def test_acknowledge_uri_case_in_cache_key(client: httpx.Client) -> None:
    first = get(client, 21, "/acknowledge-case/kong")
    assert status(first, 404) == "Miss"
    key1 = first.headers["x-cache-key"]
    assert KEY.match(key1)
    second = get(client, 21, "/acknowledge-case/KONG")
    assert status(second, 404) == "Miss"
    assert second.headers["x-cache-key"] != key1
