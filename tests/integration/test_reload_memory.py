"""Repeated reloads of a large config do not grow a worker's memory (Kong: #6055, #6547)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import Echo, Gateway, rss_kb

pytestmark = pytest.mark.integration


def config(echo: Echo, n: int, variant: int) -> str:
    routes = "".join(
        f'  - name: r{i}\n    paths: ["/v{variant}/p{i}", "~/v{variant}/re{i}/(?<id>\\\\d+)$"]\n'
        for i in range(n)
    )
    return (
        '_format_version: "3.0"\nservices:\n- name: s\n'
        f"  url: http://127.0.0.1:{echo.port}\n  routes:\n{routes}"
    )


def test_rss_is_flat_across_reloads(tmp_path: Path, echo: Echo) -> None:
    gw = Gateway(tmp_path, None, 1, "--prefix", str(tmp_path / "prefix")).start(wait_ready=False)
    admin = f"http://127.0.0.1:{gw.admin_port}/config"
    try:

        def reload(variant: int) -> None:
            text = config(echo, 1000, variant)
            assert httpx.post(admin, content=text, timeout=60).status_code == 201
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if httpx.get(gw.url(f"/v{variant}/p999")).status_code == 200:
                    return
                time.sleep(0.05)
            raise AssertionError("reload not served")

        for variant in range(4):  # warm up: allocator arenas, regex cache, imports
            reload(variant)
        (pid,) = gw.worker_pids()
        before = rss_kb(pid)
        for variant in range(4, 24):
            reload(variant)
        after = rss_kb(pid)
        assert after - before < 25 * 1024, f"RSS grew {(after - before) // 1024} MB in 20 reloads"
    finally:
        gw.stop()
