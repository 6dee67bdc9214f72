"""Kong's load-balancing behaviours a user sees, through a real gateway on loopback: each test
names the Kong source or spec it follows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fastkong.upstreams.balancers import ConsistentHashing
from tests.helpers import Echo, Gateway, free_port
from tests.upstreams._configs import targets, upstream

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- {{name: hashdead, host: hashdead.internal, routes: [{{name: hashdead, paths: ["/hashdead"]}}]}}
- {{name: zero, host: zero.internal, routes: [{{name: zero, paths: ["/zero"]}}]}}
- {{name: none, host: none.internal, routes: [{{name: none, paths: ["/none"]}}]}}
- {{name: alldead, host: alldead.internal, routes: [{{name: alldead, paths: ["/alldead"]}}]}}
upstreams:
- name: alldead.internal
  healthchecks: {{passive: {{unhealthy: {{tcp_failures: 1}}}}}}
  targets: [{{target: "127.0.0.1:{dead}"}}, {{target: "127.0.0.2:{dead}"}}]
- name: zero.internal
  targets: [{{target: "127.0.0.1:{echo}", weight: 0}}, {{target: "127.0.0.1:{dead}", weight: 0}}]
- name: none.internal
- name: hashdead.internal
  hash_on: header
  hash_on_header: x-user
  targets: [{{target: "127.0.0.1:{echo}"}}, {{target: "127.0.0.1:{dead}"}}]
"""


@pytest.fixture(scope="module")
def dead_port() -> int:
    return free_port()  # nothing listens there: connections are refused


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, echo: Echo, dead_port: int
) -> Iterator[Gateway]:
    config = CONFIG.format(echo=echo.port, dead=dead_port)
    gw = Gateway(tmp_path_factory.mktemp("conformance"), config).start()
    yield gw
    assert gw.stop() == 0


def test_hashing_retries_stay_on_the_keys_peer(
    gateway: Gateway, echo: Echo, dead_port: int
) -> None:
    # consistent_hashing.lua getPeer keeps the hash point in the retry handle, so every retry of a
    # key owned by a dead peer (no health checks) goes back to it: 502 after the retries, never
    # a silent move to another peer. Keys of the live peer are answered by it.
    u = upstream("hashdead.internal", hash_on="header", hash_on_header="x-user")
    ring = ConsistentHashing(
        upstream=u,
        targets=targets(u, (f"127.0.0.1:{echo.port}", 100), (f"127.0.0.1:{dead_port}", 100)),
    )
    owners: dict[str, int] = {}
    for i in range(30):
        peer = ring.pick((), f"user-{i}")
        assert peer is not None
        owners[f"user-{i}"] = peer.port
    assert set(owners.values()) == {echo.port, dead_port}
    with httpx.Client(base_url=gateway.url(""), timeout=10) as client:
        for user, port in owners.items():
            r = client.get("/hashdead/x", headers={"x-user": user})
            if port == dead_port:
                assert r.status_code == 502, user
            else:
                assert r.status_code == 200 and r.headers["x-echo-server"] == "echo-1", user


@pytest.mark.parametrize("path", ["/zero/x", "/none/x"])
def test_no_weight_or_no_target_is_a_503_from_the_ring_balancer(
    gateway: Gateway, path: str
) -> None:
    # 04-round-robin_spec "failure due to targets all 0 weight #off" and "failure due to no
    # targets": the balancer has no weight, so it is unhealthy, and balancer/init.lua answers
    # kong.response.error(503, "failure to get a peer from the ring-balancer").
    r = httpx.get(gateway.url(path))
    assert r.status_code == 503
    body = r.json()
    assert body["message"] == "failure to get a peer from the ring-balancer"
    assert body["request_id"] == r.headers["x-kong-request-id"]


def test_once_every_target_is_down_requests_get_the_ring_balancer_503(gateway: Gateway) -> None:
    # 01-healthchecks_spec "an upstream that is removed and readded keeps the health status":
    # refused connections with passive tcp_failures = 1 take every address out, then each
    # request is a 503 from the balancer (no connection is tried any more).
    first = httpx.get(gateway.url("/alldead/x"))
    assert first.status_code in (502, 503)  # the request that took both targets out
    for _ in range(3):
        r = httpx.get(gateway.url("/alldead/x"))
        assert r.status_code == 503
        assert r.json()["message"] == "failure to get a peer from the ring-balancer"
    health = httpx.get(
        f"http://127.0.0.1:{gateway.admin_port}/upstreams/alldead.internal/health"
    ).json()
    assert {row["health"] for row in health["data"]} == {"UNHEALTHY"}
