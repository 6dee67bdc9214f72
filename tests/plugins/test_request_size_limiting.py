"""request-size-limiting through a running gateway (Kong's 12-request-size-limiting spec)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fastkong.config import ConfigError, load_config
from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

MB = 1024 * 1024
TOO_LARGE = "Request size limit exceeded"
LENGTH_REQUIRED = "A valid Content-Length header is required"


def limit(**config: Any) -> list[dict[str, Any]]:
    return [{"name": "request-size-limiting", "config": config}]


ROUTES: dict[str, list[dict[str, Any]]] = {
    "limit": limit(allowed_payload_size=2),
    "required": limit(allowed_payload_size=2, require_content_length=True),
    "megabytes": limit(allowed_payload_size=2, size_unit="megabytes"),
    "kilobytes": limit(allowed_payload_size=2, size_unit="kilobytes"),
    "bytes": limit(allowed_payload_size=2, size_unit="bytes"),
}
UNIT = {"megabytes": MB, "kilobytes": 1024, "bytes": 1}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes = [
        {"name": name, "paths": [f"/{name}"], "plugins": plugins}
        for name, plugins in ROUTES.items()
    ]
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "url": f"http://127.0.0.1:{echo.port}", "routes": routes}],
    }
    return gateway_with(json.dumps(config))


def chunked(body: bytes, piece: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), piece):
        yield body[i : i + piece]


def assert_proxied(r: httpx.Response, body: bytes) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["body_length"] == len(body)
    assert r.json()["body_md5"] == hashlib.md5(body).hexdigest()


def assert_error(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.json() == {"message": message, "request_id": r.headers["x-kong-request-id"]}


# -- with Content-Length -----------------------------------------------------------------------
def test_under_the_limit(gateway: Gateway) -> None:
    body = b"a" * (2 * MB)  # the limit itself is allowed
    assert_proxied(httpx.post(gateway.url("/limit"), content=body), body)
    r = httpx.post(gateway.url("/limit"), content=body, headers={"expect": "100-continue"})
    assert_proxied(r, body)


def test_over_the_limit(gateway: Gateway) -> None:
    body = b"a" * (2 * MB + 1)
    assert_error(httpx.post(gateway.url("/limit"), content=body), 413, TOO_LARGE)


def test_over_the_limit_with_expect(gateway: Gateway) -> None:
    body = b"a" * (2 * MB + 1)
    r = httpx.post(gateway.url("/limit"), content=body, headers={"expect": "100-continue"})
    assert_error(r, 417, TOO_LARGE)


@pytest.mark.parametrize("unit", list(UNIT))
def test_size_units(gateway: Gateway, unit: str) -> None:
    body = b"a" * (2 * UNIT[unit])
    assert_proxied(httpx.post(gateway.url(f"/{unit}"), content=body), body)
    r = httpx.post(gateway.url(f"/{unit}"), content=body + b"a")
    assert_error(r, 413, TOO_LARGE)


# -- chunked: counted while read -----------------------------------------------------------------
def test_chunked_under_the_limit(gateway: Gateway) -> None:
    body = bytes(range(256)) * (6 * 1024)  # 1.5 MB: more than the proxy buffers by itself
    assert_proxied(httpx.post(gateway.url("/limit"), content=chunked(body)), body)
    headers = {"expect": "100-continue"}
    assert_proxied(httpx.post(gateway.url("/limit"), content=chunked(body), headers=headers), body)
    assert_proxied(httpx.post(gateway.url("/bytes"), content=chunked(b"ab")), b"ab")


def test_chunked_over_the_limit(gateway: Gateway) -> None:
    body = b"a" * (3 * MB)
    assert_error(httpx.post(gateway.url("/limit"), content=chunked(body)), 413, TOO_LARGE)
    assert_error(httpx.post(gateway.url("/kilobytes"), content=chunked(body)), 413, TOO_LARGE)
    r = httpx.post(gateway.url("/bytes"), content=chunked(b"abc", 1))
    assert_error(r, 413, TOO_LARGE)


def test_chunked_over_the_limit_with_expect(gateway: Gateway) -> None:
    r = httpx.post(
        gateway.url("/limit"),
        content=chunked(b"a" * (3 * MB)),
        headers={"expect": "100-continue"},
    )
    assert_error(r, 417, TOO_LARGE)


# -- require_content_length ----------------------------------------------------------------------
def test_content_length_required(gateway: Gateway) -> None:
    assert_error(httpx.get(gateway.url("/required")), 411, LENGTH_REQUIRED)
    assert_proxied(httpx.post(gateway.url("/required"), content=b"abc"), b"abc")
    assert_proxied(httpx.get(gateway.url("/required"), headers={"content-length": "0"}), b"")
    # A chunked body has no length, and is still allowed (and counted).
    assert_proxied(httpx.post(gateway.url("/required"), content=chunked(b"abc")), b"abc")


def test_no_body_without_length(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/limit"))
    assert_proxied(r, b"")
    headers = dict(r.json()["headers"])
    assert "content-length" not in headers and "transfer-encoding" not in headers


# -- schema ----------------------------------------------------------------------------------------
def test_config_defaults_and_validation() -> None:
    base = '_format_version: "3.0"\nplugins:\n'
    plugin = load_config(base + "- name: request-size-limiting\n").config.plugins[0]
    assert plugin.config == {
        "allowed_payload_size": 128,
        "size_unit": "megabytes",
        "require_content_length": False,
    }
    with pytest.raises(ConfigError) as info:
        load_config(
            base + "- name: request-size-limiting\n"
            "  config: {allowed_payload_size: 1.5, size_unit: gigabytes,"
            " require_content_length: 'yes', limit: 1}\n"
        )
    assert [f"{e.path}: {e.message}" for e in info.value.errors] == [
        "plugins[0].config.allowed_payload_size: expected an integer",
        "plugins[0].config.size_unit: expected one of: megabytes, kilobytes, bytes",
        "plugins[0].config.require_content_length: expected a boolean",
        "plugins[0].config.limit: unknown field",
    ]
