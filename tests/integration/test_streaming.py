"""Bodies stream through a worker with bounded memory, in both directions (issue: 200 MB)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Echo, Gateway, rss_kb

pytestmark = pytest.mark.integration

SIZE = 200 * 1024 * 1024
PIECE = 256 * 1024


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    config = f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: all
    paths: ["/"]
"""
    gw = Gateway(tmp_path_factory.mktemp("stream"), config).start()
    yield gw
    gw.stop()


def test_200mb_download_keeps_worker_rss_flat(gateway: Gateway) -> None:
    (pid,) = gateway.worker_pids()
    httpx.get(gateway.url("/bytes/1000"))  # warm the worker
    before = rss_kb(pid)
    peak = before
    received = 0
    with httpx.stream("GET", gateway.url(f"/bytes/{SIZE}"), timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(SIZE)
        for chunk in r.iter_raw(PIECE):
            received += len(chunk)
            if received % (16 * PIECE) == 0:
                peak = max(peak, rss_kb(pid))
    assert received == SIZE
    assert peak - before < 30 * 1024, f"worker RSS grew by {(peak - before) // 1024} MB"


def test_200mb_upload_keeps_worker_rss_flat(gateway: Gateway) -> None:
    (pid,) = gateway.worker_pids()
    before = rss_kb(pid)
    peak = [before]
    digest = hashlib.md5()

    def body() -> Iterator[bytes]:
        piece = bytes(range(256)) * (PIECE // 256)
        for i in range(SIZE // PIECE):
            digest.update(piece)
            if i % 16 == 0:
                peak[0] = max(peak[0], rss_kb(pid))
            yield piece

    r = httpx.post(
        gateway.url("/upload"),
        content=body(),
        headers={"content-length": str(SIZE)},
        timeout=60,
    )
    assert r.status_code == 200
    assert r.json()["body_length"] == SIZE
    assert r.json()["body_md5"] == digest.hexdigest()
    assert peak[0] - before < 30 * 1024, f"worker RSS grew by {(peak[0] - before) // 1024} MB"
