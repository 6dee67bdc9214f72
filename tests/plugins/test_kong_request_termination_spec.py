"""Kong's request-termination specs ported, through one gateway (HTTP/1.1 and h2c on its port).

Ported (Kong's ``spec/03-plugins/14-request-termination/``):

- ``02-access_spec.lua`` 281-290 (``#grpc``: a gRPC call to a terminated route is answered
  ``Unavailable``) and 319-440 ("echo & trigger": the whole echoed ``request`` for a client that
  sends only ``Host``, ``Content-Length`` and ``User-Agent``, as lua-resty-http does);
- ``03-integration_spec.lua`` 53-84 ("can be applied on a consumer").

Covered by ``test_request_termination``: 02-access 189-252 ("status code and message": default,
serviceless route, default message, custom message, 204 without Content-Length:
``test_status_and_message``, ``test_204_has_no_body``), 257-303 ("status code and body":
``test_body``), 306-316 ("returns server tokens with Server header": ``test_status_and_message``
asserts fastkong's token, README "Kong compatibility notes": ``Server`` names fastkong), 355-364
("doesn't echo a request if the trigger is set but not specified":
``test_trigger_not_given_proxies``). ``01-schema_spec.lua``:
``test_config_defaults_and_validation``.

Differences in the setup: 03-integration adds the consumer's plugin through the Admin API of a
database-backed Kong; DB-less, it is in the declarative config from the start. Its key-auth is
global in Kong's spec; here it is on that spec's route, so that the 02-access routes sharing the
gateway need no key.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests.helpers import Echo, Gateway, free_port

pytestmark = pytest.mark.integration

API9 = "api9.request-termination.test"
API10 = "api10.request-termination.test"
CONSUMER_HOST = "api1.request-termination.test"


def terminate(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "request-termination", "config": config}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    routes = [
        {
            "name": "route9",
            "hosts": [API9],
            "strip_path": False,
            "paths": ["~/(?<parameter>[^#?/]+)/200"],
            "plugins": terminate(echo=True, status_code=404),
        },
        {
            "name": "route10",
            "hosts": [API10],
            "plugins": terminate(echo=True, trigger="gimme-an-echo", status_code=404),
        },
        {"name": "consumer-route", "hosts": [CONSUMER_HOST], "plugins": [{"name": "key-auth"}]},
    ]
    config = {
        "_format_version": "3.0",
        "services": [
            {"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes},
            {
                # helpers.grpcbin_url: never reached, the plugin answers first
                "name": "grpc",
                "url": f"grpc://127.0.0.1:{free_port()}",
                "routes": [
                    {
                        "name": "route-grpc-1",
                        "protocols": ["grpc"],
                        "paths": ["/hello.HelloService/"],
                        "plugins": terminate(status_code=503),
                    }
                ],
            },
        ],
        "consumers": [
            {
                "username": "bob",
                "keyauth_credentials": [{"key": "kong"}],
                "plugins": terminate(),
            },
            {"username": "alice", "keyauth_credentials": [{"key": "alice-key"}]},
        ],
    }
    gw = Gateway(tmp_path_factory.mktemp("request-termination"), json.dumps(config))
    gw.port_flags = "http2"  # h2c beside HTTP/1.1, for the gRPC case
    gw.extra = ("--headers-upstream", "off")  # as the spec's start_kong
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


# -- 02-access_spec.lua: status code with default message #grpc ---------------------------------


def test_status_code_with_default_message_grpc(gateway: Gateway) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        call = channel.unary_unary("/hello.HelloService/SayHello")
        with pytest.raises(grpc.RpcError) as failed:
            call(b"\n\x06world!", timeout=20)
    error: Any = failed.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # the spec's "Code: Unavailable"
    # kong.response.exit(503, {message = ...}) to a gRPC request: the message goes in
    # grpc-message, with no body (kong/pdk/response.lua 713-760).
    assert error.details() == "Service unavailable"


# -- 02-access_spec.lua: echo & trigger ----------------------------------------------------------


def send_like_kong_client(
    gateway: Gateway, host: str, target: str, extra: dict[str, str]
) -> tuple[int, Any]:
    """GET ``target`` with the body "cool body", the ``extra`` headers and only those
    lua-resty-http adds: ``Host``, ``Content-Length`` and ``User-Agent``; the status and the
    JSON answer."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.putheader("User-Agent", "lua-resty-http/0.17.2 (Lua) ngx_lua/10026")
        for name, value in extra.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", "9")
        conn.endheaders(b"cool body")
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("host", "target", "extra_headers", "query", "captures"),
    [
        # echos a request if no trigger is set
        (
            API9,
            "/status/200?hello=there",
            {},
            {},
            {"named": {"parameter": "status"}, "unnamed": ["status"]},
        ),
        # echos a request if the trigger is specified as a header
        (API10, "/status/200?hello=there", {"Gimme-An-Echo": "anything will do"}, {}, None),
        # echos a request if the trigger is specified as a query parameter
        (
            API10,
            "/status/200?hello=there&gimme-an-echo=anything%20will%20do",
            {},
            {"gimme-an-echo": "anything will do"},
            None,
        ),
    ],
    ids=["no-trigger", "trigger-header", "trigger-query"],
)
def test_echo(
    gateway: Gateway,
    host: str,
    target: str,
    extra_headers: dict[str, str],
    query: dict[str, str],
    captures: dict[str, Any] | None,
) -> None:
    status, body = send_like_kong_client(gateway, host, target, extra_headers)
    assert status == 404
    assert body["matched_route"]["hosts"][0] == host
    body["request"]["headers"].pop("user-agent")  # depends on the client
    assert body["request"] == {
        "headers": {
            "content-length": "9",
            "host": host,
            **{name.lower(): value for name, value in extra_headers.items()},
        },
        "host": host,
        "method": "GET",
        "path": "/status/200",
        "port": gateway.port,
        "query": {"hello": "there", **query},
        "raw_body": "cool body",
        "scheme": "http",
        "uri_captures": captures or {"named": {}, "unnamed": []},
    }


# -- 03-integration_spec.lua ---------------------------------------------------------------------


def test_can_be_applied_on_a_consumer(gateway: Gateway) -> None:
    res = httpx.get(gateway.url("/request"), headers={"host": CONSUMER_HOST, "apikey": "kong"})
    assert res.status_code == 503
    assert res.json() == {"message": "Service unavailable"}
    # Not in Kong's spec: another consumer on the same route is proxied.
    res = httpx.get(gateway.url("/request"), headers={"host": CONSUMER_HOST, "apikey": "alice-key"})
    assert res.status_code == 200
    assert res.headers["x-echo-server"] == "echo-1"
