"""Kong's ``spec/02-integration/15-plugins-iterator/01-precedence_spec.lua`` (all 8
``describe`` blocks, lines 10-469) and ``02-correctness_spec.lua`` (both ``it``, lines 10-141):
which configuration of a plugin runs when it is configured at several scopes (global, service,
route, consumer and their combinations), and that per-service configurations do not leak to
other services.

Kong builds each block's entities with ``spec/fixtures/factories/plugins.lua``: consumers
``alice`` (``custom_id``), ``bob`` and ``eve`` with key-auth keys of their names, a service
(``path: /anything``, on ``mock_upstream``), a route ``hosts: [route.test]``, a global
``key-auth``, and one ``request-transformer`` per scope adding a header named after the scope
(``x-consumer-and-service-and-route:true``, ..., ``x-global:true``). The header the upstream
sees tells which configuration ran: here the echo upstream's view of the request stands for
``mock_upstream``'s ``/anything``. Each block is one declarative config, posted to one DB-less
gateway's ``POST /config`` in turn (Kong restarts a node per block), with exactly the block's
entities.

Not duplicated: ``test_kong_proxy_spec_plugins_triggering.py`` ports
``05-proxy/04-plugins_triggering_spec.lua``'s precedence group (rate-limiting limits at
global, route+service, consumer and route+consumer scopes); this spec's triple and dual scopes
(consumer+route+service, consumer+service, route+service) are not there.

Nothing left out: ``nginx_conf = custom_nginx.template`` only adds Kong's test fixtures'
servers (``mock_upstream``), which the echo upstream replaces.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import Echo, Gateway, echoed_headers, eventually

pytestmark = pytest.mark.integration

ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
EVE = "e7e00000-0000-4000-8000-000000000003"
SERVICE = "5e4f1ce0-0000-4000-8000-000000000004"
ROUTE = "40a7e000-0000-4000-8000-000000000005"

#: PluginFactory's methods: header name -> the scopes of its request-transformer.
SCOPES: dict[str, dict[str, str]] = {
    "x-consumer-and-service-and-route": {"consumer": ALICE, "service": SERVICE, "route": ROUTE},
    "x-consumer-and-route": {"consumer": ALICE, "route": ROUTE},
    "x-consumer-and-service": {"consumer": ALICE, "service": SERVICE},
    "x-route-and-service": {"route": ROUTE, "service": SERVICE},
    "x-consumer": {"consumer": ALICE},
    "x-route": {"route": ROUTE},
    "x-service": {"service": SERVICE},
    "x-global": {},
}


def produce(header: str) -> dict[str, Any]:
    """PluginFactory:produce: request-transformer adding ``<header>:true``, at its scopes."""
    config = {"add": {"headers": [f"{header}:true"]}}
    return {"name": "request-transformer", "config": config, **SCOPES[header]}


def entities(echo: Echo) -> dict[str, Any]:
    """EntitiesFactory:setup's entities (a declarative config without the factory's plugins)."""
    return {
        "_format_version": "3.0",
        "consumers": [
            {"id": ALICE, "custom_id": "alice", "keyauth_credentials": [{"key": "alice"}]},
            {"id": BOB, "username": "bob", "keyauth_credentials": [{"key": "bob"}]},
            {"id": EVE, "username": "eve", "keyauth_credentials": [{"key": "eve"}]},
        ],
        "services": [
            {
                "id": SERVICE,
                "name": "service",
                "url": f"http://127.0.0.1:{echo.port}/anything",
                "routes": [{"id": ROUTE, "name": "route", "hosts": ["route.test"]}],
            }
        ],
        "plugins": [{"name": "key-auth"}],
    }


#: Each describe of 01-precedence_spec.lua (its line): the header whose plugin must run, then
#: those of the lesser scopes also configured, which must not.
PRECEDENCE: list[tuple[int, str, list[str]]] = [
    (
        10,
        "x-consumer-and-service-and-route",
        [
            "x-consumer-and-route",
            "x-consumer-and-service",
            "x-route-and-service",
            "x-route",
            "x-service",
            "x-consumer",
            "x-global",
        ],
    ),
    (
        78,
        "x-consumer-and-route",
        [
            "x-consumer-and-service",
            "x-route-and-service",
            "x-route",
            "x-service",
            "x-consumer",
            "x-global",
        ],
    ),
    (
        141,
        "x-consumer-and-service",
        ["x-route-and-service", "x-route", "x-service", "x-consumer", "x-global"],
    ),
    (202, "x-route-and-service", ["x-route", "x-service", "x-consumer", "x-global"]),
    (260, "x-consumer", ["x-route", "x-service", "x-global"]),
    (316, "x-route", ["x-service", "x-global"]),
    (370, "x-service", ["x-global"]),
    (422, "x-global", []),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("plugins-iterator")
    gw = Gateway(tmp, None, 1, "--prefix", str(tmp / "prefix"))
    try:
        gw.start(wait_ready=False)
        yield gw
    finally:
        gw.stop()


def load(gw: Gateway, config: dict[str, Any]) -> None:
    """Replace the gateway's config (Kong DB-less ``POST /config``) and wait until its worker
    serves it."""
    text = json.dumps(config)
    r = httpx.post(f"http://127.0.0.1:{gw.admin_port}/config", content=text, timeout=30)
    assert r.status_code == 201, r.text
    expected = hashlib.md5(text.encode()).hexdigest()

    def serving() -> bool:
        status = gw.status()
        workers = status["fastkong"]["workers"]
        return status["configuration_hash"] == expected and set(workers.values()) == {expected}

    eventually(serving, timeout=30)


def get(gw: Gateway, path: str, host: str) -> tuple[httpx.Response, dict[str, list[str]]]:
    """``proxy_client():get(path, {headers = {host = host, apikey = "alice"}})``: the response
    and the request headers the upstream saw."""
    r = httpx.get(gw.url(path), headers={"host": host, "apikey": "alice"}, timeout=30)
    assert r.status_code == 200, r.text
    return r, echoed_headers(r.json())


@pytest.mark.parametrize(
    ("expected", "must_not_have"),
    [pytest.param(e, n, id=f"l{line}-{e}") for line, e, n in PRECEDENCE],
)
def test_verify_precedence(
    gateway: Gateway, echo: Echo, expected: str, must_not_have: list[str]
) -> None:
    config = entities(echo)
    config["plugins"] += [produce(expected), *(produce(h) for h in must_not_have)]
    load(gateway, config)
    _, seen = get(gateway, "/anything", "route.test")
    # the expected plugin ran; none of the lesser scopes' configurations did
    assert seen.get(expected) == ["true"]
    assert [h for h in must_not_have if h in seen] == []


N_ENTITIES = 10


@pytest.fixture(scope="module")
def correctness(gateway: Gateway, echo: Echo) -> Gateway:
    """02-correctness_spec.lua's lazy_setup (lines 19-94), loaded once for both of its tests
    (they run after the precedence tests, which load their own configs)."""
    config = entities(echo)
    plugins = config["plugins"]
    plugins += [
        {
            "name": "response-transformer",
            "route": ROUTE,
            "config": {"add": {"headers": ["response-transformed:true"]}},
        },
        {
            "name": "correlation-id",
            "route": ROUTE,
            "config": {"header_name": "correlation-id-added"},
        },
    ]
    for i in range(N_ENTITIES + 1):
        config["services"].append(
            {
                "name": f"service-{i}",
                "url": f"http://127.0.0.1:{echo.port}/anything/service-{i}",
                "routes": [{"name": f"route-bar-{i}", "hosts": [f"route.bar.{i}"]}],
            }
        )
        plugins += [
            {
                "name": "correlation-id",
                "service": f"service-{i}",
                "config": {"header_name": f"correlation-id-added-service{i}"},
            },
            {
                "name": "response-transformer",
                "service": f"service-{i}",
                "config": {"add": {"headers": [f"response-transformed-{i}:true"]}},
            },
        ]
    plugins += [produce("x-consumer-and-service-and-route"), produce("x-consumer-and-route")]
    load(gateway, config)
    return gateway


def test_ensure_no_cross_contamination(correctness: Gateway) -> None:
    """02-correctness_spec.lua:96: each service runs its own plugins, none of another's."""
    for i in range(N_ENTITIES + 1):
        r, seen = get(correctness, f"/anything/service-{i}", f"route.bar.{i}")
        assert f"correlation-id-added-service{i}" in seen
        assert r.headers.get(f"response-transformed-{i}") == "true"
        for j in range(N_ENTITIES + 1):
            if j != i:
                assert f"correlation-id-added-service{j}" not in seen
                assert f"response-transformed-{j}" not in r.headers


def test_runs_plugins_in_various_phases(correctness: Gateway) -> None:
    """02-correctness_spec.lua:121: request-transformer (consumer+route+service, not
    consumer+route), response-transformer and correlation-id all ran on the default route."""
    r, seen = get(correctness, "/anything", "route.test")
    assert seen.get("x-consumer-and-service-and-route") == ["true"]
    assert "x-consumer-and-route" not in seen
    assert r.headers.get("response-transformed") == "true"
    assert "correlation-id-added" in seen
