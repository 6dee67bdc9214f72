"""How the proxy applies plugin results: Host set by a plugin, the trusted client IP, body
filters on gateway-generated responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: host
    paths: ["/host"]
    plugins:
    - name: request-transformer
      config: {{replace: {{headers: ["host:rewritten.example"]}}}}
  - name: only-lan
    paths: ["/lan"]
    plugins:
    - name: ip-restriction
      config: {{allow: ["10.0.0.0/8"]}}
  - name: terminated
    paths: ["/terminated"]
    plugins:
    - name: request-termination
      config: {{status_code: 403, message: "closed"}}
    - name: response-transformer
      config: {{add: {{json: ["extra:yes"]}}}}
"""
    workdir: Path = tmp_path_factory.mktemp("phases")
    gw = Gateway(workdir, config, 1, "--trusted-ips", "127.0.0.1").start()
    yield gw
    gw.stop()


def test_a_plugin_sets_the_upstream_host(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/host/x"))
    hosts = [v for k, v in r.json()["headers"] if k == "host"]
    assert hosts == ["rewritten.example"]


def test_trusted_peer_x_real_ip_is_the_client(gateway: Gateway) -> None:
    assert httpx.get(gateway.url("/lan")).status_code == 403
    assert httpx.get(gateway.url("/lan"), headers={"X-Real-IP": "10.1.2.3"}).status_code == 200


def test_body_filters_run_on_plugin_exits(gateway: Gateway) -> None:
    r = httpx.get(gateway.url("/terminated"))
    assert r.status_code == 403
    assert r.json() == {"message": "closed", "extra": "yes"}
    assert int(r.headers["content-length"]) == len(r.content)
