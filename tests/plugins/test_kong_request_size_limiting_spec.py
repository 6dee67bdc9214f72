"""Kong's ``spec/03-plugins/12-request-size-limiting/01-access_spec.lua`` (DB-less run) against a
real ``fastkong start`` in front of the echo upstream: the chunked cases at the spec's exact sizes.

Ported: 183-360 ("without Content-Length (chunked request body)"): 185-251 (``limit.test``,
2 MB and 2 MB + 1, with and without ``Expect: 100-continue``), 255-321 (``limit_kilobytes.test``,
2 KB and 2 KB + 1, the same four), 324-359 (each ``size_unit``, the limit and one byte more).
As in the spec, each body is one chunk sent with ``GET``; the echo's view of the body (its
length) is checked too where the request is proxied.

Left out (covered by ``test_request_size_limiting.py``):

- 82-181 "with Content-Length": ``test_under_the_limit`` (83-110: 2 MB, with and without Expect),
  ``test_over_the_limit`` (112-127), ``test_over_the_limit_with_expect`` (129-145),
  ``test_size_units`` (147-180: each unit at its limit and one byte more; the spec's "less than
  limit" sends one byte less).
- 362-374 "Content-Length header required": ``test_content_length_required`` (a ``GET`` without
  body nor length: 411).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration

TEST_SIZE = 2
UNIT = {"megabytes": 2**20, "kilobytes": 2**10, "bytes": 1}
MB, KB = UNIT["megabytes"], UNIT["kilobytes"]
TOO_LARGE = "Request size limit exceeded"

#: Kong's hosts: ``limit.test`` (the default unit) and ``limit_<unit>.test``.
HOSTS = {"limit.test": {}, **{f"limit_{unit}.test": {"size_unit": unit} for unit in UNIT}}


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo) -> Gateway:
    routes = [
        {
            "name": host,
            "hosts": [host],
            "plugins": [
                {
                    "name": "request-size-limiting",
                    "config": {"allowed_payload_size": TEST_SIZE, **extra},
                }
            ],
        }
        for host, extra in HOSTS.items()
    ]
    service = {"name": "echo", "url": echo.url, "routes": routes}
    config = {"_format_version": "3.0", "services": [service]}
    return gateway_with(json.dumps(config))


#: (spec line, host, body size, Expect: 100-continue, status).
CASES = [
    (185, "limit.test", TEST_SIZE * MB, False, 200),
    (200, "limit.test", TEST_SIZE * MB, True, 200),
    (216, "limit.test", TEST_SIZE * MB + 1, False, 413),
    (234, "limit.test", TEST_SIZE * MB + 1, True, 417),
    (255, "limit_kilobytes.test", TEST_SIZE * KB, False, 200),
    (270, "limit_kilobytes.test", TEST_SIZE * KB, True, 200),
    (286, "limit_kilobytes.test", TEST_SIZE * KB + 1, False, 413),
    (304, "limit_kilobytes.test", TEST_SIZE * KB + 1, True, 417),
    *(
        (325, f"limit_{unit}.test", TEST_SIZE * factor + 1, False, 413)
        for unit, factor in UNIT.items()
    ),
    *((345, f"limit_{unit}.test", TEST_SIZE * factor, False, 200) for unit, factor in UNIT.items()),
]


@pytest.mark.parametrize(("line", "host", "size", "expect", "status"), CASES)
def test_chunked_body(
    gateway: Gateway, line: int, host: str, size: int, expect: bool, status: int
) -> None:
    headers = {"host": host, **({"expect": "100-continue"} if expect else {})}
    # One chunk, no Content-Length: an iterator makes httpx send ``Transfer-Encoding: chunked``.
    body = b"a" * size
    r = httpx.request("GET", gateway.url("/request"), content=iter([body]), headers=headers)
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json()["body_length"] == size
    else:
        assert r.json() == {"message": TOO_LARGE, "request_id": r.headers["x-kong-request-id"]}
