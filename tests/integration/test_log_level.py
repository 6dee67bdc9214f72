"""Kong's ``log_level`` in every process: the proxy workers log at the level given to
``fastkong start``, in the supervisor's line format (fastkong.control.logs)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from fastkong.proxy.errors import NO_PEER
from tests.helpers import Gateway, eventually

pytestmark = pytest.mark.integration

# A worker warns each time it fails to resolve a target (fastkong.upstreams.registry).
CONFIG = """
_format_version: "3.0"
upstreams:
- name: unresolvable
  targets: [{target: "nowhere.invalid:80"}]
services:
- name: s
  host: unresolvable
  routes: [{paths: [/unresolvable]}]
"""
WARNING = "cannot resolve target nowhere.invalid:80 of unresolvable"
# fastkong.control.logs.FORMAT: "%(asctime)s %(name)s %(message)s".
SUPERVISOR_LINE = re.compile(
    rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} fastkong\.upstreams {re.escape(WARNING)}: ",
    re.M,
)


def gateway_log(workdir: Path, level: str) -> str:
    """What a gateway at ``level`` printed on stderr once its worker had failed to resolve the
    target: the upstream answers "failure to get a peer" only after the worker's resolution
    failed, which logs the warning first (until then, a lookup per request answers "name
    resolution failed")."""
    gateway = Gateway(workdir, CONFIG, 1, "--log-level", level)
    gateway.stderr_path = workdir / "gateway.log"
    gateway.start()
    try:

        def no_peer() -> bool:
            r = httpx.get(gateway.url("/unresolvable"), timeout=10)
            return r.status_code == 503 and r.json()["message"] == NO_PEER

        eventually(no_peer, 20)
    finally:
        gateway.stop()
    return gateway.stderr_path.read_text()


def test_a_worker_warning_is_not_logged_at_level_error(tmp_path: Path) -> None:
    assert WARNING not in gateway_log(tmp_path, "error")


def test_a_worker_warning_is_logged_at_level_warn_in_the_supervisors_format(
    tmp_path: Path,
) -> None:
    text = gateway_log(tmp_path, "warn")
    assert SUPERVISOR_LINE.search(text), text
    # Each line of it in that format: none bare, as Python's last-resort handler prints them.
    assert not [line for line in text.splitlines() if line.startswith(WARNING)]
