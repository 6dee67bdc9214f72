"""``fastkong start`` settings read as Kong reads them (fastkong/cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastkong.cli import parse_listen, worker_count
from tests.helpers import ROOT


def test_worker_count() -> None:
    assert worker_count(None) == 1
    assert worker_count("3") == 3
    assert worker_count(2) == 2
    # Kong's default: one per CPU this process may use.
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", "1.5", ""):
        with pytest.raises(ValueError, match="nginx_worker_processes: expected a number >= 1"):
            worker_count(bad)


def test_kongs_default_proxy_listen_takes_its_plain_listener() -> None:
    kong_default = "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport"
    assert parse_listen(kong_default) == ("0.0.0.0", 8000)


def test_a_bad_worker_count_is_an_error_not_a_traceback() -> None:
    env = {**os.environ, "KONG_NGINX_WORKER_PROCESSES": "many"}
    done = subprocess.run(
        [sys.executable, "-m", "fastkong", "start", "--status-listen", "off"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "fastkong: nginx_worker_processes: expected a number >= 1 or auto, got 'many'"
    )
