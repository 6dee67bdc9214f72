"""Kong's ``spec/03-plugins/35-azure-functions/01-access_spec.lua`` (all nine cases), against a
running gateway and a loopback function host answering as Kong's ``http_mock`` there does: a
JSON echo of ``query_args`` (parsed), ``uri``, ``method``, raw-named ``headers`` and ``body``.

Kong's setup reaches its mock by rewriting the port in a ``pre-function`` (Lua, which fastkong
does not run) and resolves ``azure.example.test`` with a DNS mock; here the plugin names the
host by address as test_azure_functions does (appname ``127.0.0``, hostdomain ``1:<port>``,
read by Kong's HTTP client and fastkong alike as ``127.0.0.1:<port>``), Kong's other settings
kept (``routeprefix`` ``request``, ``functionname`` ``test-func-name``, the key and client id).
Most of these cases are also covered, with fastkong's own host, by test_azure_functions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from fastkong import __version__
from tests.helpers import Gateway, LoopServer, free_port, read_request

pytestmark = pytest.mark.integration


class KongMockFunction(LoopServer):
    """Kong's spec mock: ``ngx.say(cjson.encode{query_args, uri, method, headers, body,
    status = 200})``; ``headers`` as ``ngx.req.get_headers(nil, true)`` (names as sent)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                got = await read_request(reader)
                query = got.target.partition("?")[2]
                args = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(query).items()}
                headers: dict[str, Any] = {}
                for name, value in got.headers:
                    found = headers.get(name)
                    headers[name] = value if found is None else [*found, value]
                echo = {
                    "query_args": args,
                    "uri": got.target,
                    "method": got.method,
                    "headers": headers,
                    "body": got.body.decode() if got.body else None,
                    "status": 200,
                }
                body = json.dumps(echo).encode() + b"\n"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    mock = KongMockFunction().start()
    plugin = {
        "name": "azure-functions",
        "config": {
            "https": False,
            "appname": "127.0.0",
            "hostdomain": f"1:{mock.port}",
            "routeprefix": "request",
            "functionname": "test-func-name",
            "apikey": "anything_but_an_API_key",
            "clientid": "and_no_clientid",
        },
    }
    route2 = {"name": "azure2", "hosts": ["azure2.test"], "protocols": ["http", "https"]}
    route3 = {"name": "azure3", "hosts": ["azure3.test"], "protocols": ["http", "https"]}
    config = {
        "_format_version": "3.0",
        "routes": [{**route2, "plugins": [plugin]}],
        # "just mock service, it will not be requested": nothing listens there.
        "services": [
            {
                "name": "azure3",
                "url": f"http://127.0.0.1:{free_port()}/request",
                "routes": [{**route3, "plugins": [plugin]}],
            }
        ],
    }
    gw = Gateway(tmp_path_factory.mktemp("kong-azure"), json.dumps(config))
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()
        mock.stop()


def send(
    gw: Gateway, path: str = "/", method: str = "GET", host: str = "azure2.test", **kwargs: Any
) -> httpx.Response:
    headers = {"Host": host, **kwargs.pop("headers", {})}
    r = httpx.request(method, gw.url(path), headers=headers, timeout=10, **kwargs)
    assert r.status_code == 200
    return r


def test_passes_request_query_parameters(gateway: Gateway) -> None:
    """Lines 161-174."""
    assert send(gateway, "/?hello=world").json()["query_args"] == {"hello": "world"}


def test_passes_request_body(gateway: Gateway) -> None:
    """Lines 176-191."""
    body = "I'll be back"
    assert send(gateway, "/?hello=world", content=body.encode()).json()["body"] == body


def test_passes_the_path_parameters(gateway: Gateway) -> None:
    """Lines 193-205: the function's path, whatever the request's."""
    assert "/request/test-func-name" in send(gateway, "/and/then/some").json()["uri"]


def test_passes_the_method(gateway: Gateway) -> None:
    """Lines 207-219."""
    assert send(gateway, method="POST").json()["method"] == "POST"


def test_passes_the_headers(gateway: Gateway) -> None:
    """Lines 221-234: the mock reads names as sent; Kong sends them lower-cased."""
    r = send(gateway, "/and/then/some", headers={"Just-A-Header": "just a value"})
    assert r.json()["headers"]["just-a-header"] == "just a value"


def test_injects_the_apikey_and_clientid(gateway: Gateway) -> None:
    """Lines 236-250."""
    headers = send(gateway, method="POST").json()["headers"]
    assert headers["x-functions-key"] == "anything_but_an_API_key"
    assert headers["x-functions-clientid"] == "and_no_clientid"


def test_returns_server_tokens_with_via_header(gateway: Gateway) -> None:
    """Lines 252-263. Kong answers ``2 <server tokens>`` whatever the protocol; fastkong writes
    the hop's own version (docs/plugins.md, azure-functions: "``Via`` is the gateway's token for
    the hop the answer came over, ``1.1 fastkong/<version>``")."""
    assert send(gateway, "/?hello=world").headers["Via"] == f"1.1 fastkong/{__version__}"


@pytest.mark.parametrize("host", ["azure2.test", "azure3.test"])
def test_returns_content_length_header(gateway: Gateway, host: str) -> None:
    """Lines 265-276 and 278-291 ("service upstream uri and request uri can not influence azure
    function": the route's service, never contacted, changes nothing)."""
    r = send(gateway, "/?hello=world", host=host)
    assert int(r.headers["Content-Length"]) > 100
    assert r.json()["uri"] == "/request/test-func-name?hello=world"
