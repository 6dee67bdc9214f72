"""Kong's ``spec/03-plugins/09-key-auth/02-access_spec.lua`` (DB-less run), the cases that
``test_key_auth.py`` does not already cover, against one real ``fastkong start`` gateway (h2c
beside HTTP/1.1, for the gRPC case) and the echo upstream; routes by host as in the spec.

Ported:

- 350-410 "key in request body" (form, JSON, multipart): valid key in the body (353), in the
  query with a body ``non_apikey`` (366), in a header (379), and the invalid key (393), each
  with the spec's own request: a ``GET`` (lua-resty-http's default method) with the body
  encoded as spec/internal/client.lua 96-127 does (``test_key_in_body`` sends them as ``POST``).
- 465-478 ``apikey[1]=kong&apikey[1]=kong`` is no API key.
- 513-520 "key in gRPC headers": a call without a key is refused before any upstream.
- 556-585 underscores: ``api_key: 123`` and ``api-key: 123`` are ``Unauthorized``.
- 700-715 ``key_in_body`` with ``hide_credentials`` and a ``text/plain`` body.

Covered by ``test_key_auth.py`` (not repeated): 195-307 Unauthorized/realm/preflight
(``test_preflight``, ``test_missing_credentials``, ``test_empty_key_header_and_query``,
``test_realm_in_www_authenticate``); 309-348 key in query (``test_key_in_query_and_header``,
``test_invalid_key_is_unauthorized``, ``test_duplicate_keys``); 411-463 duplicated body keys and
``apikey[]`` (``test_key_in_body_duplicates``); 484-510 key in headers; 534-555 valid
``api_key``/``api-key`` (``test_underscores_or_hyphens_in_key_headers``); 587-603 consumer headers
(``test_consumer_headers_upstream``); 605-698 and 717-758 ``hide_credentials`` for the query,
headers and bodies, MIME type and query order (``test_key_in_body``,
``test_hide_credentials_false_sends_key``, ``test_hide_credentials_strips_query_and_header``);
760-811 anonymous (``test_anonymous_*``); 1120-1382 the 168-row key-source matrix
(``test_key_sources_combinations`` sends all 189 header/query/body combinations on the same
seven routes; its rule gives Kong's expected status for each of the spec's 168 rows).
Covered by ``test_basic_auth.py``: 814-1030 basic-auth + key-auth logical AND / OR
(``test_logical_and``, ``test_logical_or``, same config and asserts).

Left out:

- 521-531 "accepts authorized calls" (#grpc): the call must be proxied to grpcbin, and fastkong
  cannot proxy a plain gRPC call (README "Kong compatibility notes": Granian's ASGI carries no
  HTTP/2 trailers).
- 1032-1116 "auto-expiring keys": the credential is inserted with the database's row ``ttl``
  option (30 s from now) and expires in the database; DB-less, a credential's ``ttl`` is the
  Unix time it expires at (fastkong/plugins/bundled/key_auth.py docstring), covered by
  ``test_ttl_is_an_absolute_expiry_time`` and ``test_ttl_in_the_future_lasts_until_that_time``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests.helpers import Echo, Gateway, free_port

pytestmark = pytest.mark.integration

BOB_ID = "b0000000-0000-4000-8000-000000000002"
ERR_NO_KEY = "No API key found in request"
#: spec/internal/client.lua 110: the boundary Kong's test client writes multipart bodies with.
BOUNDARY = "8fd84e9444e3946c"
CONTENT_TYPES = ("application/x-www-form-urlencoded", "application/json", "multipart/form-data")


def key_auth(host: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"hosts": [host], "plugins": [{"name": "key-auth", "config": config or {}}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    routes = [
        key_auth("key-auth1.test"),
        key_auth("key-auth5.test", {"key_in_body": True}),
        key_auth("key-auth6.test", {"key_in_body": True, "hide_credentials": True}),
        key_auth("key-auth8.test", {"key_names": ["api_key"]}),
    ]
    config = {
        "_format_version": "3.0",
        "consumers": [
            {"id": BOB_ID, "username": "bob", "keyauth_credentials": [{"key": "kong"}]},
        ],
        "services": [
            {"name": "echo", "url": echo.url, "routes": routes},
            {
                # helpers.grpcbin_url: never reached, key-auth answers first
                "name": "grpc",
                "url": f"grpc://127.0.0.1:{free_port()}",
                "routes": [
                    {
                        "protocols": ["grpc"],
                        "paths": ["/hello.HelloService/"],
                        "plugins": [{"name": "key-auth"}],
                    }
                ],
            },
        ],
    }
    gw = Gateway(tmp_path_factory.mktemp("key-auth-spec"), json.dumps(config))
    gw.port_flags = "http2"  # h2c beside HTTP/1.1: Kong's gRPC client speaks prior knowledge
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def encode(content_type: str, fields: dict[str, str]) -> tuple[str, bytes]:
    """The Content-Type and body Kong's test client sends for a table body
    (spec/internal/client.lua 102-127)."""
    if content_type == "application/json":
        return content_type, json.dumps(fields).encode()
    if content_type == "application/x-www-form-urlencoded":
        return content_type, str(httpx.QueryParams(fields)).encode()
    body = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    return f"{content_type}; boundary={BOUNDARY}", (body + f"--{BOUNDARY}--\r\n").encode()


def send(
    gateway: Gateway,
    host: str,
    target: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    with httpx.Client() as client:
        return client.request(
            method, gateway.url(target), headers={"host": host, **(headers or {})}, content=content
        )


def upstream(response: httpx.Response) -> dict[str, str]:
    """The headers the echo upstream received (the request reached it as bob)."""
    assert response.status_code == 200, response.text
    headers = dict(response.json()["headers"])
    assert headers["x-consumer-id"] == BOB_ID
    return headers


def assert_401(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["message"] == message
    assert response.headers["www-authenticate"] == "Key"


# -- 350-410: key in request body ----------------------------------------------------------------
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_key_in_request_body(gateway: Gateway, content_type: str) -> None:
    def get(target: str, fields: dict[str, str], **headers: str) -> httpx.Response:
        ctype, body = encode(content_type, fields)
        headers = {"content-type": ctype, **headers}
        return send(gateway, "key-auth5.test", target, headers=headers, content=body)

    # 353-365 authenticates valid credentials
    upstream(get("/request", {"apikey": "kong"}))
    # 366-378 authenticates valid credentials in query
    upstream(get("/request?apikey=kong", {"non_apikey": "kong"}))
    # 379-392 authenticates valid credentials in header
    upstream(get("/request?apikey=kong", {"non_apikey": "kong"}, apikey="kong"))
    # 393-410 returns 401 Unauthorized on invalid key
    assert_401(get("/status/200", {"apikey": "123"}), "Unauthorized")


def test_does_not_identify_indexed_apikey_as_api_keys(gateway: Gateway) -> None:
    """465-478: ``apikey[1]`` is a name of its own, not ``apikey``."""
    r = send(
        gateway,
        "key-auth5.test",
        "/status/200",
        method="POST",
        headers={"content-type": "application/x-www-form-urlencoded"},
        content=b"apikey[1]=kong&apikey[1]=kong",
    )
    assert_401(r, ERR_NO_KEY)


# -- 513-520: key in gRPC headers ----------------------------------------------------------------
def test_grpc_rejects_call_without_credentials(gateway: Gateway) -> None:
    """``kong.response.error(401, ...)`` to a gRPC request: Content-Type application/grpc, no
    body, grpc-status 16 and the status's name as grpc-message (kong/pdk/response.lua 87-120,
    695-710, 786-793, 1145-1156)."""
    with grpc.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        say_hello = channel.unary_unary("/hello.HelloService/SayHello")
        with pytest.raises(grpc.RpcError) as info:
            say_hello(b"", timeout=20)
    error: Any = info.value
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED  # the spec's "Code: Unauthenticated"
    assert error.details() == "Unauthenticated"


# -- 556-585: underscores or hyphens in key headers ----------------------------------------------
@pytest.mark.parametrize("header", ["api_key", "api-key"])
def test_underscore_key_name_invalid_key(gateway: Gateway, header: str) -> None:
    r = send(gateway, "key-auth8.test", "/status/200", headers={header: "123"})
    assert_401(r, "Unauthorized")


# -- 700-715: hide_credentials with key_in_body and an unsupported content type --------------------
def test_key_in_body_hidden_unsupported_content_type(gateway: Gateway) -> None:
    r = send(
        gateway,
        "key-auth6.test",
        "/status/200",
        headers={"content-type": "text/plain"},
        content=b"foobar",
    )
    assert_401(r, ERR_NO_KEY)
