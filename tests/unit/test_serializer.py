"""Kong's basic log serializer (``kong.log.serialize`` in ``kong/pdk/log.lua``) on requests."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from fastkong.config import load_config
from fastkong.config.ids import generate
from fastkong.plugins.bundled import _serializer as S
from fastkong.plugins.context import RequestContext
from fastkong.proxy.routing import Decision, decide
from fastkong.runtime import Runtime, compile_runtime

CONFIG = """
_format_version: "3.0"
services:
- name: svc
  url: http://upstream.internal:8080/base
  routes:
  - name: api
    paths: [/api]
    strip_path: true
consumers:
- username: alice
  custom_id: a-1
"""


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    loaded = load_config(CONFIG)
    return compile_runtime(loaded.config, loaded.hash)


def request(
    runtime: Runtime,
    target: str = "/api/items?x=1&x=2&flag&empty=",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
) -> RequestContext:
    path, _, query = target.partition("?")
    hdrs = headers or [
        (b"host", b"gw.example:8000"),
        (b"authorization", b"Bearer secret-token"),
        (b"x-multi", b"1"),
        (b"x-multi", b"2"),
        (b"content-length", b"5"),
    ]
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": hdrs,
        "scheme": "http",
        "http_version": "1.1",
    }
    decision = decide(runtime, method, "gw.example:8000", 8000, path, "http", None)
    assert isinstance(decision, Decision)
    return RequestContext(
        runtime,
        scope,
        None,  # type: ignore[arg-type]
        decision.plan,
        decision.match,
        decision.path,
        decision.host,
        8000,
        "10.0.0.7",
        "req-1",
        100.0,
    )


def proxied(ctx: RequestContext) -> RequestContext:
    """The request went upstream 2 ms after it started, the head came 30 ms later."""
    ctx.proxied = True
    ctx.upstream_started = 100.002
    ctx.upstream_latency = 0.030
    ctx.status = 200
    ctx.response_size = 11
    S.remember_response_headers(ctx, [(b"content-type", b"text/plain"), (b"via", b"1.1 x")])
    return ctx


def test_shape_of_a_proxied_request(runtime: Runtime) -> None:
    ctx = proxied(request(runtime))
    message = S.serialize(ctx, now=100.040)
    assert sorted(message) == sorted(
        [
            "request",
            "upstream_uri",
            "upstream_status",
            "response",
            "latencies",
            "tries",
            "client_ip",
            "started_at",
            "source",
            "workspace",
            "workspace_name",
            "route",
            "service",
        ]
    )
    req = message["request"]
    assert req["id"] == "req-1"
    assert req["uri"] == "/api/items?x=1&x=2&flag&empty="
    assert req["url"] == "http://gw.example:8000/api/items?x=1&x=2&flag&empty="
    assert req["querystring"] == {"x": ["1", "2"], "flag": True, "empty": ""}
    assert req["method"] == "GET"
    assert req["headers"] == {
        "host": "gw.example:8000",
        "authorization": "REDACTED",
        "x-multi": ["1", "2"],
        "content-length": "5",
    }
    head = (
        b"GET /api/items?x=1&x=2&flag&empty= HTTP/1.1\r\n"
        b"host: gw.example:8000\r\nauthorization: Bearer secret-token\r\n"
        b"x-multi: 1\r\nx-multi: 2\r\ncontent-length: 5\r\n\r\n"
    )
    assert req["size"] == len(head) + 5
    assert message["upstream_uri"] == "/base/items?x=1&x=2&flag&empty="
    assert message["upstream_status"] == "200"
    assert message["response"] == {
        "status": 200,
        "headers": {"content-type": "text/plain", "via": "1.1 x"},
        "size": len(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nvia: 1.1 x\r\n\r\n") + 11,
    }
    assert message["latencies"] == {"kong": 2, "proxy": 30, "request": 40, "receive": 8}
    assert message["tries"] == [
        {
            "balancer_start": message["started_at"] + 2,
            "balancer_latency": 0,
            "ip": "upstream.internal",
            "port": 8080,
        }
    ]
    assert message["client_ip"] == "10.0.0.7"
    assert message["source"] == "upstream"
    assert message["workspace"] == "0dc6f45b-8f8d-40d2-a504-473544ee190b"  # Kong DB-less
    assert message["workspace_name"] == "default"
    assert message["route"]["id"] == generate("routes", "api")
    assert message["route"]["name"] == "api"
    assert message["route"]["service"] == {"id": generate("services", "svc")}
    assert message["route"]["paths"] == ["/api"]
    assert message["service"]["name"] == "svc"
    assert message["service"]["host"] == "upstream.internal"
    assert "tags" not in message["service"]  # null fields are left out
    # the document is JSON as such (started_at follows the wall clock between the two calls)
    again = msgspec.json.decode(S.serialize_json(ctx, now=100.040))
    for doc in (again, message):
        del doc["started_at"], doc["tries"]
    assert again == message


def test_a_gateway_answer_has_no_proxy_latency(runtime: Runtime) -> None:
    ctx = request(runtime)
    ctx.status = 401
    ctx.response_size = 26
    message = S.serialize(ctx, now=100.0124)
    assert message["latencies"] == {"kong": 12, "proxy": -1, "request": 12, "receive": 0}
    assert message["source"] == "kong"
    assert message["upstream_status"] == ""
    # Kong's runloop makes the (empty) tries once a route matched, before the plugins run.
    assert message["tries"] == []
    assert msgspec.json.encode(message["tries"]) == b"[]"
    assert message["response"]["status"] == 401


def test_consumer_and_authenticated_entity(runtime: Runtime) -> None:
    ctx = proxied(request(runtime))
    (alice,) = runtime.consumers.values()
    credential = {"id": "cred-1", "consumer": {"id": alice.id}}
    ctx.authenticate(alice, msgspec.convert(credential, Credential))
    message = S.serialize(ctx, now=100.040)
    assert message["consumer"] == {"id": alice.id, "username": "alice", "custom_id": "a-1"}
    assert message["authenticated_entity"] == {"id": "cred-1", "consumer_id": alice.id}


class Credential(msgspec.Struct):
    id: str
    consumer: dict[str, str]


class BareCredential(msgspec.Struct):
    id: str


def test_a_credential_without_consumer(runtime: Runtime) -> None:
    # ldap-auth authenticates a credential and no consumer: Kong's entity has no consumer_id.
    ctx = proxied(request(runtime))
    ctx.authenticate(None, BareCredential(id="cred-2"))
    message = S.serialize(ctx, now=100.040)
    assert message["authenticated_entity"] == {"id": "cred-2"}
    assert "consumer" not in message


def test_proxy_authorization_is_redacted_too(runtime: Runtime) -> None:
    ctx = request(runtime, headers=[(b"proxy-authorization", b"Basic eDp5"), (b"apikey", b"k")])
    headers = S.serialize(ctx, now=100.001)["request"]["headers"]
    # Kong redacts these two; other credentials are logged as sent (Kong's behaviour).
    assert headers == {"proxy-authorization": "REDACTED", "apikey": "k"}


def test_upstream_uri_follows_plugin_rewrites(runtime: Runtime) -> None:
    ctx = request(runtime, target="/api/x?a=1")
    ctx.upstream_path = "/other"
    ctx.upstream_query = b"b=2"
    assert S.serialize(ctx, now=100.001)["upstream_uri"] == "/other?b=2"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("a=1", {"a": "1"}),
        ("a=1&a=2&a", {"a": ["1", "2", True]}),
        ("a+b=c%20d&&=x", {"a b": "c d"}),
        ("flag", {"flag": True}),
        ("e=", {"e": ""}),
    ],
)
def test_kong_query(raw: str, expected: dict[str, Any]) -> None:
    assert S.kong_query(raw.encode()) == expected
