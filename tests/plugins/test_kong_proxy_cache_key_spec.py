"""Kong's ``spec/03-plugins/31-proxy-cache/05-cache_key_spec.lua`` (lines 6-136, every case)
on fastkong's cache key, ``fastkong.plugins.bundled.proxy_cache.build_cache_key``.

Kong's ``cache_key.lua`` exposes ``prefix_uuid``, ``params_key`` and ``headers_key``, the three
parts ``build_cache_key`` hashes as ``sha256_hex("<prefix>|<method>|<uri>|<params>|<headers>")``;
fastkong has only ``build_cache_key``, so each case here checks the key it builds against the
SHA-256 of that text with the part under test set to the value Kong's spec expects (the
others empty). The prefix cases overlap ``test_proxy_cache.test_build_cache_key_prefixes``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

import pytest

from fastkong.plugins.bundled.proxy_cache import build_cache_key

CONSUMER1, CONSUMER2, ROUTE1, ROUTE2 = (str(uuid.uuid4()) for _ in range(4))


def kong_key(prefix: str = "default", params: str = "", headers: str = "") -> str:
    """Kong's ``build_cache_key`` for ``GET /`` from its three parts."""
    return hashlib.sha256(f"{prefix}|GET|/|{params}|{headers}".encode()).hexdigest()


def key(
    consumer: str | None = None,
    route: str | None = None,
    query: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    vary_query_params: list[str] | None = None,
    vary_headers: list[str] | None = None,
) -> str:
    return build_cache_key(
        consumer, route, "GET", "/", query or {}, headers or {}, vary_query_params, vary_headers
    )


# -- prefix_uuid ----------------------------------------------------------------------------------


def test_distinct_prefixes_for_a_consumer_on_different_routes() -> None:
    key1, key2 = key(CONSUMER1, ROUTE1), key(CONSUMER1, ROUTE2)
    assert key1 == kong_key(f"{CONSUMER1}:{ROUTE1}")
    assert key2 == kong_key(f"{CONSUMER1}:{ROUTE2}")
    assert key1 != key2
    assert kong_key("default") not in (key1, key2)


def test_distinct_prefixes_for_different_consumers_on_a_route() -> None:
    key1, key2 = key(CONSUMER1, ROUTE1), key(CONSUMER2, ROUTE1)
    assert key2 == kong_key(f"{CONSUMER2}:{ROUTE1}")
    assert key1 != key2
    assert kong_key("default") not in (key1, key2)


def test_same_prefix_for_a_route_with_no_consumer() -> None:
    assert key(None, ROUTE1) == key(None, ROUTE1) == kong_key(ROUTE1)
    assert key(None, ROUTE1) != kong_key("default")


def test_consumer_specific_prefix_for_routes() -> None:
    assert key(None, ROUTE1) != key(CONSUMER1, ROUTE1)


def test_default_without_consumer_and_route() -> None:
    assert key() == kong_key("default")


def test_default_with_only_a_consumer() -> None:
    assert key(CONSUMER1) == kong_key("default")


def test_not_default_with_a_route() -> None:
    assert key(None, ROUTE1) != kong_key("default")


# -- params_key -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "vary", "expected"),
    [
        ({"a": 1, "b": 2}, None, "a=1:b=2"),  # defaults to all
        ({}, None, ""),  # empty query string returns empty
        ({}, ["a"], ""),  # ... with vary query params too
        ({"a": 1, "b": 2}, ["a"], "a=1"),  # only params specified in vary
        ({"a": [1, 2]}, ["a"], "a=1,2"),  # multiple params with the same name
        ({"a": [2, 1]}, ["a"], "a=1,2"),  # ... sorted
        ({"a": [1, 2], "b": 2}, ["a", "b", "c"], "a=1,2:b=2"),  # config names not in the request
    ],
    ids=["all", "empty", "empty-vary", "vary", "repeated", "repeated-sorted", "absent"],
)
def test_params_key(query: dict[str, Any], vary: list[str] | None, expected: str) -> None:
    assert key(query=query, vary_query_params=vary) == kong_key(params=expected)


@pytest.mark.parametrize("vary_headers", [None, ["a", "b"]], ids=["params", "headers-describe"])
def test_params_key_sorts_the_arguments(vary_headers: list[str] | None) -> None:
    # Kong's headers_key "sorts the arguments" case calls params_key too (with vary_headers in
    # the config, so all the query arguments count): the same check, no header part.
    for _ in range(100):
        s1, s2 = "a" + secrets.token_hex(16), "b" + secrets.token_hex(16)
        assert key(query={s2: 2, s1: 1}, vary_headers=vary_headers) == kong_key(
            params=f"{s1}=1:{s2}=2"
        )


# -- headers_key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "vary", "expected"),
    [
        ({"a": 1, "b": 2}, None, ""),  # defaults to none
        ({"a": 1, "b": 2}, ["a"], "a=1"),  # only headers specified in vary
        ({"a": [1, 2]}, ["a"], "a=1,2"),  # multiple headers with the same name
        ({"a": [2, 1]}, ["a"], "a=1,2"),  # ... sorted
        ({"a": [1, 2], "b": 2}, ["a", "b", "c"], "a=1,2:b=2"),  # config names not in the request
    ],
    ids=["none", "vary", "repeated", "repeated-sorted", "absent"],
)
def test_headers_key(headers: dict[str, Any], vary: list[str] | None, expected: str) -> None:
    assert key(headers=headers, vary_headers=vary) == kong_key(headers=expected)
