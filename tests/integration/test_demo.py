"""``fastkong demo`` (the README's first command): every curl line it prints answers as it says,
and SIGTERM stops the gateway and both echo upstreams it started."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from fastkong.demo import CURLS
from tests.helpers import ROOT, free_port, stop

pytestmark = pytest.mark.integration

UPSTREAMS = (9001, 9002)  # the bundled configs/kong.yml names these


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_answers_its_curl_lines_and_stops_its_children() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastkong", "demo", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = CURLS.format(port=port, up=UPSTREAMS[0]).strip().splitlines()[0]
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if line.strip() == banner:
                break
            assert time.monotonic() < deadline, "the demo never printed its curl lines"
        else:
            pytest.fail(f"the demo exited with {proc.wait()} before it was up")
        base = f"http://127.0.0.1:{port}"

        r = httpx.get(f"{base}/echo/hello?x=1")
        assert r.status_code == 200 and r.json()["url"] == "/hello?x=1"
        r = httpx.get(f"{base}/v2/orders/42")
        assert r.status_code == 200
        r = httpx.get(f"{base}/anything", headers={"Host": "api.example.com"})
        assert r.status_code == 200
        servers = {httpx.get(f"{base}/balanced/a").headers["x-echo-server"] for _ in range(8)}
        assert servers == {"echo-a", "echo-b"}
        r = httpx.get(f"{base}/nothing-here")
        assert r.status_code == 404
        body = json.loads(r.text)
        assert body["message"] == "no Route matched with those values"
        assert body["request_id"] == r.headers["x-kong-request-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        finally:
            stop(proc)  # type: ignore[arg-type]
            if proc.stdout is not None:
                proc.stdout.close()
    assert code == 0
    assert not any(listening(p) for p in (port, *UPSTREAMS))
