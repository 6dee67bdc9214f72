"""Kong's ``spec/03-plugins/13-cors/01-access_spec.lua``, the cases ``test_cors`` does not cover.

One gateway; its routes match by host, as Kong's (``corsN.test``). Ported (spec lines):

- 29-247, 585-615: the origin table, every origin of every config, but the pairs
  ``test_cors.REGEX_CASES`` already checks;
- 722-733 (``preflight_continue``, an OPTIONS without Origin is proxied), 751-787 (flat strings on
  a non-preflight OPTIONS), 805-840 (GET and OPTIONS without Origin, default config), 842-857
  (config options without Origin), 859-874 (unreachable upstream: its 502 is dressed), 893-926
  (the upstream's 404, key-auth's 401), 928-1071 (origin matched on the host, the upstream's
  ``Vary`` kept, origin not parsed, scheme and port, origin not listed), 1087-1125 (credentials
  echo the origin with its port, ``*`` without credentials, ``*`` among entries on a GET),
  1127-1166 (the upstream's Access-Control-Allow-Origin replaced, or removed when no origin
  matches), 1185-1198 with ``Origin: ""``.

Covered by ``test_cors``: 617-720 (preflight defaults, empty origins, ``*`` with credentials,
``*`` among entries, config options), 735-749 (request headers echoed), 789-802 (private
network), 1073-1085 (``*`` with credentials on a GET), 1168-1198 but for an empty Origin with
``allow_origin_absent`` on.

Left out:
- 876-891 "works even when a runtime error occurs": the 500 comes from the Lua test plugin
  ``error-generator-last``; fastkong has no plugin that fails on demand.

Kong's ``mock_upstream`` is the echo here (``/status/<code>``, the request it got), and for
``/response-headers?name=value`` a small upstream of this module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.helpers import Echo, Gateway, LoopServer, free_port, read_request
from tests.plugins.test_cors import REGEX_CASES as COVERED_BY_TEST_CORS

pytestmark = pytest.mark.integration

DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
CORS_HEADERS = ("allow-methods", "allow-headers", "expose-headers", "allow-credentials", "max-age")

# Kong's regex_testcases (lines 29-247): origins -> {request Origin: expected ACAO}; True
# echoes the request's Origin, False means no header. The origins the single-entry configs try:
ORIGINS = [
    "http://evil.test",
    "http://foo.test",
    "http://foo.test.evil.test",
    "http://something.foo.test",
    "http://evilfoo.test",
    "http://foo.test:80",
    "http://foo.test:8000",
    "https://foo.test:8000",
    "http://foo.test:90",
    "http://foobtest",
    "https://bar.test:1234",
]
NO_EVILFOO = [o for o in ORIGINS if o != "http://evilfoo.test"]
REGEX_TABLE: list[tuple[list[str], dict[str, str | bool]]] = [
    (["foo.test"], dict.fromkeys(ORIGINS, "foo.test")),
    (["https://bar.test:1234"], dict.fromkeys(ORIGINS, "https://bar.test:1234")),
    (
        ["foo\\.test"],
        {
            **dict.fromkeys(ORIGINS, False),
            "http://foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "http://foo.test:8000": True,
            "https://foo.test:8000": True,
            "http://foo.test:90": True,
        },
    ),
    (
        ["(.*[./])?foo\\.test"],
        {
            **dict.fromkeys(ORIGINS, False),
            "http://foo.test": True,
            "http://something.foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "http://foo.test:8000": True,
            "https://foo.test:8000": True,
            "http://foo.test:90": True,
        },
    ),
    (
        ["(.*[./])?foo\\.test:8000"],
        {
            **dict.fromkeys(ORIGINS, False),
            "http://foo.test:8000": True,
            "https://foo.test:8000": True,
        },
    ),
    (
        ["https://(.*[.])?foo\\.test:8000"],
        {
            **dict.fromkeys(NO_EVILFOO, False),
            "https://foo.test:8000": True,
        },
    ),
    (
        ["^http://(.*[.])?foo\\.test(:(80|90))?$"],
        {
            **dict.fromkeys(NO_EVILFOO, False),
            "http://foo.test": True,
            "http://something.foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "http://foo.test:90": True,
        },
    ),
]
# The multi-entry configs try fewer origins: no evilfoo, some no https:8000 nor something.foo.
NINE = [o for o in NO_EVILFOO if o != "https://foo.test:8000"]
EIGHT = [o for o in NINE if o != "http://something.foo.test"]
REGEX_TABLE += [
    (["foo.test", "bar.test"], dict.fromkeys(EIGHT, False)),
    (
        ["http://foo.test", "https://bar.test:1234"],
        {
            **dict.fromkeys(EIGHT, False),
            "http://foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "https://bar.test:1234": True,
        },
    ),
    (
        ["bar.test", "foo\\.test"],
        {
            **dict.fromkeys(NINE, False),
            "http://foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "http://foo.test:8000": True,
            "http://foo.test:90": True,
        },
    ),
    (
        ["bar.test", "(.*\\.)?foo\\.test"],
        {
            **dict.fromkeys(EIGHT, False),
            "http://foo.test": True,
            "http://something.foo.test": True,
            "http://foo.test:80": "http://foo.test",
            "http://foo.test:8000": True,
            "http://foo.test:90": True,
        },
    ),
    (
        ["bar.test", "(.*[./])?foo\\.test:8000"],
        {
            **dict.fromkeys(NINE, False),
            "http://foo.test:8000": True,
            "https://foo.test:8000": True,
        },
    ),
    (
        ["bar.test", "https://(.*\\.)?foo\\.test:8000"],
        {
            **dict.fromkeys(NINE, False),
            "https://foo.test:8000": True,
        },
    ),
]

_covered = {(tuple(origins), origin) for origins, table in COVERED_BY_TEST_CORS for origin in table}
REGEX_PAIRS = [
    pytest.param(i, origin, expected, id=f"{i}-{origin}")
    for i, (origins, table) in enumerate(REGEX_TABLE)
    for origin, expected in sorted(table.items())
    if (tuple(origins), origin) not in _covered
]

GET_ONLY = {
    "methods": ["GET"],
    "headers": ["origin", "type", "accepts"],
    "exposed_headers": ["x-auth-token"],
}
CONTINUE_10 = {"origins": ["example.test"], **GET_ONLY, "max_age": 10, "preflight_continue": True}


def cors(**config: Any) -> dict[str, Any]:
    return {"name": "cors", "config": config}


# host -> (service, plugins); the hosts are Kong's.
ROUTES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "cors1.test": ("echo", [cors()]),
    "cors2.test": (
        "echo",
        [cors(origins=["example.test"], **GET_ONLY, max_age=23, credentials=True)],
    ),
    "cors3.test": (
        "echo",
        [cors(origins=["example.test"], **GET_ONLY, max_age=23, preflight_continue=True)],
    ),
    "cors4.test": ("echo", [cors(), {"name": "key-auth"}]),
    "cors5.test": ("echo", [cors(origins=["*"], credentials=True)]),
    "cors6.test": (
        "echo",
        [
            cors(
                origins=["example.test", "example.org"],
                **GET_ONLY,
                max_age=23,
                preflight_continue=True,
            )
        ],
    ),
    "cors7.test": ("echo", [cors(origins=["*"], credentials=False)]),
    "cors9.test": ("echo", [cors(origins=[r".*\.?example(?:-foo)?.test"])]),
    "cors10.test": ("echo", [cors(origins=["http://my-site.test", "http://my-other-site.test"])]),
    "cors11.test": (
        "echo",
        [cors(origins=["http://my-site.test", "https://my-other-site.test:9000"])],
    ),
    "cors12.test": (
        "headers",
        [
            cors(
                credentials=True,
                preflight_continue=False,
                max_age=1728000,
                headers=[
                    "DNT",
                    "X-CustomHeader",
                    "Keep-Alive",
                    "User-Agent",
                    "X-Requested-With",
                    "If-Modified-Since",
                    "Cache-Control",
                    "Content-Type",
                    "Authorization",
                ],
                methods=None,
                origins=["a.xxx.test", "allowed-domain.test"],
            )
        ],
    ),
    "cors14.test": ("echo", [cors(preflight_continue=False, origins=["foo.bar", "*"])]),
    "cors16.test": (
        "echo",
        [
            cors(
                allow_origin_absent=True,
                origins=["foo.bar"],
                exposed_headers=["x-auth-token"],
                credentials=True,
            )
        ],
    ),
    "cors-upstream.test": ("headers", [cors(**CONTINUE_10)]),
    "cors-timeout.test": ("dead", [cors(**CONTINUE_10)]),
    **{
        f"cors-regex-{i}.test": ("echo", [cors(origins=origins)])
        for i, (origins, _) in enumerate(REGEX_TABLE)
    },
}


class ResponseHeaders(LoopServer):
    """Kong's ``mock_upstream`` ``/response-headers``: each query argument becomes a response
    header; the body is ``{"headers": {...}}``, the request's headers (names lower-cased)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                body = json.dumps({"headers": request.lowered}).encode()
                extra = b"".join(
                    f"{name}: {value}\r\n".encode()
                    for name, value in parse_qsl(urlsplit(request.target).query)
                )
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%b"
                    b"content-length: %d\r\n\r\n%b" % (extra, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def headers_upstream() -> Iterator[ResponseHeaders]:
    server = ResponseHeaders().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gateway(
    gateway_with: Callable[[str], Gateway], echo: Echo, headers_upstream: ResponseHeaders
) -> Gateway:
    urls = {
        "echo": echo.url,
        "headers": f"http://127.0.0.1:{headers_upstream.port}",
        "dead": f"http://127.0.0.1:{free_port()}",  # nothing listens (Kong: 127.0.0.2:26865)
    }
    services = [
        {
            "name": name,
            "url": url,
            "routes": [
                {"name": host, "hosts": [host], "plugins": plugins}
                for host, (service, plugins) in ROUTES.items()
                if service == name
            ],
        }
        for name, url in urls.items()
    ]
    return gateway_with(json.dumps({"_format_version": "3.0", "services": services}))


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url(""), timeout=30) as c:
        yield c


def send(
    client: httpx.Client, host: str, method: str = "GET", path: str = "/", **headers: str
) -> httpx.Response:
    """A request to the route of ``host``; ``headers`` with ``_`` for ``-`` in their names."""
    sent = {"host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return client.request(method, path, headers=sent)


def assert_absent(r: httpx.Response, *names: str) -> None:
    for name in names:
        assert f"access-control-{name}" not in r.headers, name


# -- OPTIONS -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("index", "origin", "expected"), REGEX_PAIRS)
def test_origin_table(client: httpx.Client, index: int, origin: str, expected: str | bool) -> None:
    r = send(
        client,
        f"cors-regex-{index}.test",
        "OPTIONS",
        origin=origin,
        access_control_request_method="GET",
    )
    assert r.status_code == 200
    if expected is False:
        assert "access-control-allow-origin" not in r.headers
    else:
        assert r.headers["access-control-allow-methods"] == DEFAULT_METHODS
        want = origin if expected is True else expected
        assert r.headers["access-control-allow-origin"] == want
        assert_absent(r, "allow-headers", "expose-headers", "allow-credentials", "max-age")


def test_preflight_continue_without_origin_is_proxied(client: httpx.Client) -> None:
    r = send(client, "cors3.test", "OPTIONS", "/status/201")
    assert r.status_code == 201
    assert r.headers["x-echo-server"] == "echo-1"  # the upstream's answer
    assert r.json()["method"] == "OPTIONS"
    assert r.json()["path"] == "/status/201"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://my-site.test", True),
        ("http://bad-guys.test", False),
        ("http://my-site.test.bad-guys.test", False),
    ],
)
def test_options_flat_strings(client: httpx.Client, origin: str, allowed: bool) -> None:
    # No Access-Control-Request-Method: not a preflight, proxied and dressed on the way back.
    r = send(client, "cors10.test", "OPTIONS", origin=origin)
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") == (origin if allowed else None)


# -- other methods -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_defaults_without_origin(client: httpx.Client, method: str) -> None:
    r = send(client, "cors1.test", method, "/anything")
    assert r.status_code == 200
    assert r.json()["method"] == method  # proxied
    assert r.headers["access-control-allow-origin"] == "*"
    assert_absent(r, *CORS_HEADERS)
    assert "vary" not in r.headers


def test_config_options_without_origin(client: httpx.Client) -> None:
    r = send(client, "cors2.test")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "example.test"
    assert r.headers["access-control-expose-headers"] == "x-auth-token"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"
    assert_absent(r, "allow-methods", "allow-headers", "max-age")


def test_unreachable_upstream(client: httpx.Client) -> None:
    r = send(client, "cors-timeout.test")
    assert r.status_code == 502
    assert r.headers["access-control-allow-origin"] == "example.test"
    assert r.headers["access-control-expose-headers"] == "x-auth-token"
    assert r.headers["vary"] == "Origin"
    assert_absent(r, "allow-credentials", "allow-methods", "allow-headers", "max-age")


@pytest.mark.parametrize(
    ("host", "path", "status"),
    [
        ("cors1.test", "/status/404", 404),  # the upstream's 404
        ("cors4.test", "/", 401),  # key-auth's 401
    ],
)
def test_error_responses(client: httpx.Client, host: str, path: str, status: int) -> None:
    r = send(client, host, path=path)
    assert r.status_code == status
    assert r.headers["access-control-allow-origin"] == "*"
    assert_absent(r, *CORS_HEADERS)
    assert "vary" not in r.headers


@pytest.mark.parametrize(
    ("host", "origin", "allowed"),
    [
        ("cors6.test", "example.test", True),
        ("cors9.test", "example.test", True),
        ("cors9.test", "www.example.test", True),
        ("cors9.test", "example-foo.test", True),
        ("cors9.test", "www.example-foo.test", True),
        ("cors9.test", "www.example-fo0.test", False),
        # does not automatically parse the host
        ("cors6.test", "http://example.test", False),
        ("cors6.test", "https://example.test", False),
        # not in the list
        ("cors6.test", "http://www.example.net", False),
    ],
)
def test_origin_by_host(client: httpx.Client, host: str, origin: str, allowed: bool) -> None:
    r = send(client, host, origin=origin)
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") == (origin if allowed else None)
    if host == "cors9.test":
        assert r.headers["vary"] == "Origin"


def test_vary_from_upstream_is_kept(client: httpx.Client) -> None:
    r = send(
        client,
        "cors-upstream.test",
        path="/response-headers?vary=Accept-Encoding",
        origin="example.test",
    )
    assert r.status_code == 200
    assert r.headers.get_list("vary") == ["Accept-Encoding", "Origin"]


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://my-site.test", "http://my-site.test"),
        ("http://my-site.test:80", "http://my-site.test"),
        ("http://my-site.test:8000", None),
        ("https://my-site.test", None),
        ("https://my-other-site.test:9000", "https://my-other-site.test:9000"),
        ("https://my-other-site.test:9001", None),
    ],
)
def test_scheme_and_port(client: httpx.Client, origin: str, expected: str | None) -> None:
    r = send(client, "cors11.test", origin=origin)
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") == expected


def test_credentials_echo_origin_with_port(client: httpx.Client) -> None:
    r = send(client, "cors5.test", origin="http://www.example.net:3000")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://www.example.net:3000"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"


def test_star_without_credentials(client: httpx.Client) -> None:
    r = send(client, "cors7.test", origin="http://www.example.net")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    assert "vary" not in r.headers


def test_star_among_entries(client: httpx.Client) -> None:
    r = send(client, "cors14.test", origin="http://www.example.net")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(
    ("origin", "acao"),
    [("allowed-domain.test", "allowed-domain.test"), ("disallowed-domain.test", None)],
)
def test_upstream_acao_replaced_or_removed(
    client: httpx.Client, origin: str, acao: str | None
) -> None:
    # The upstream names the header ``Access-Control-Allow-Origin`` (mixed case, as Kong's
    # mock_upstream); Kong's set_header/clear_header (ngx.header) ignore the case of names.
    path = "/response-headers?Response-Header=is-added&Access-Control-Allow-Origin=%2A"
    r = send(client, "cors12.test", path=path, origin=origin)
    assert r.status_code == 200
    assert r.headers["response-header"] == "is-added"
    assert r.headers.get_list("access-control-allow-origin") == ([acao] if acao else [])
    assert r.headers["access-control-allow-credentials"] == "true"
    if acao:
        assert r.headers["vary"] == "Origin"
    assert r.json()["headers"]["origin"] == origin


def test_allow_origin_absent_with_empty_origin(client: httpx.Client) -> None:
    r = send(client, "cors16.test", origin="")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "foo.bar"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-expose-headers"] == "x-auth-token"
