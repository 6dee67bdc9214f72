"""Kong's upstream keep-alive settings (``upstream_keepalive_pool_size``, ``_max_requests``,
``_idle_timeout``), read from Kong's environment names by a real ``fastkong start``, seen from
an upstream that counts the connections it gets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import FixedPeer, Gateway, fastkong_cli, free_port

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: counted
  url: http://127.0.0.1:{port}
  routes: [{{name: counted, paths: ["/"]}}]
"""


@pytest.fixture
def peer() -> Iterator[FixedPeer]:
    server = FixedPeer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").start()
    yield server
    server.stop()


def connections_for(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    peer: FixedPeer,
    env: dict[str, str],
    requests: int = 9,
) -> int:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    gw = Gateway(tmp_path_factory.mktemp("keepalive"), CONFIG.format(port=peer.port)).start()
    try:
        with httpx.Client() as client:
            for _ in range(requests):
                assert client.get(gw.url("/x")).status_code == 200
    finally:
        assert gw.stop() == 0
    return peer.connections


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 1),  # Kong's defaults: one kept-alive connection carries them all
        ({"KONG_UPSTREAM_KEEPALIVE_MAX_REQUESTS": "3"}, 3),
        ({"KONG_UPSTREAM_KEEPALIVE_POOL_SIZE": "0"}, 9),  # 0: no keep-alive
        ({"KONG_UPSTREAM_KEEPALIVE_MAX_REQUESTS": "0"}, 1),  # 0: no limit
    ],
    ids=["defaults", "max-requests", "pool-size-0", "max-requests-0"],
)
def test_keepalive_settings(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    peer: FixedPeer,
    env: dict[str, str],
    expected: int,
) -> None:
    assert connections_for(tmp_path_factory, monkeypatch, peer, env) == expected


def test_a_bad_value_stops_the_start() -> None:
    env = {"KONG_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT": "1.5"}
    done = fastkong_cli("start", "--proxy-listen", f"127.0.0.1:{free_port()}", env=env)
    assert done.returncode == 1
    assert "upstream_keepalive_idle_timeout: expected a whole number >= 0, got '1.5'" in done.stderr
