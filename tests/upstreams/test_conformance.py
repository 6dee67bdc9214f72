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
upstreams:
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
