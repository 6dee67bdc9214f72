"""Kong's ``spec/03-plugins/11-correlation-id/01-access_spec.lua``, what ``test_correlation_id``
does not cover.

One gateway; its routes match by host, as Kong's. Ported (spec lines):

- 204-238: the ``uuid#counter`` generator's counter starts at 1 in a fresh worker (the first two
  ids end in ``#1`` and ``#2``; ``test_correlation_id`` checks the increment only);
- 465-494: the log serializer's ``correlation_id`` (file-log) and its 32-hex ``request.id``.

Covered by ``test_correlation_id``: the increment (204-238), uuid (272-298), tracker (301-327),
echo_downstream (330-343), upstream unreachable (345-354), not echoed unless asked (367-376),
custom header name (378-391), an existing header kept (393-406), an empty or blank one replaced
(408-436; Kong sends those on a route with another ``header_name``), echo on a plugin's answer
(438-463).

Left out:
- 240-269 "increments the counter part #grpc": a plain gRPC call is not proxied by fastkong
  (README.md, "Deliberate differences": Granian's ASGI carries no HTTP/2 trailers), and Kong's
  grpcbin fixture and grpcurl client have no twin here.
- 356-365 "even there is a runtime error": the 500 comes from the Lua test plugin
  ``error-generator-last``; fastkong has no plugin that fails on demand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, eventually

pytestmark = pytest.mark.integration

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("file-log") / "correlation.log"


@pytest.fixture(scope="module")
def gateway(gateway_with: Callable[[str], Gateway], echo: Echo, log_path: Path) -> Gateway:
    routes: dict[str, list[dict[str, Any]]] = {
        "correlation1.test": [{"name": "correlation-id"}],
        "correlation-serializer.test": [
            {"name": "file-log", "config": {"path": str(log_path), "reopen": True}},
            {"name": "correlation-id"},
        ],
    }
    config = {
        "_format_version": "3.0",
        "services": [
            {
                "name": "echo",
                "url": echo.url,
                "routes": [
                    {"name": host, "hosts": [host], "plugins": plugins}
                    for host, plugins in routes.items()
                ],
            }
        ],
    }
    return gateway_with(json.dumps(config))


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url(""), timeout=30) as c:
        yield c


def test_counter_starts_at_one(client: httpx.Client) -> None:
    # Only this test makes the gateway's single worker draw a uuid#counter id.
    ids = []
    for _ in range(2):
        r = client.get("/request", headers={"host": "correlation1.test"})
        assert r.status_code == 200
        ids.append(dict(r.json()["headers"])["kong-request-id"])
    first, second = (re.fullmatch(rf"({UUID})#(\d+)", i) for i in ids)
    assert first is not None and second is not None, ids
    assert ids[0] != ids[1]
    assert (first.group(2), second.group(2)) == ("1", "2")


def test_log_serializer_has_the_correlation_id(client: httpx.Client, log_path: Path) -> None:
    r = client.get("/", headers={"host": "correlation-serializer.test", "kong-request-id": "1234"})
    assert r.status_code == 200
    eventually(lambda: log_path.exists() and log_path.read_text().strip() != "")
    entry = json.loads(log_path.read_text().strip().splitlines()[0])
    assert re.fullmatch(r"[a-f0-9]{32}", entry["request"]["id"]), entry["request"]["id"]
    assert entry["correlation_id"] == "1234"
