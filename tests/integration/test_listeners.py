"""Inbound TLS and HTTP/2 through Granian's options, and the app under another ASGI server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastkong.control.default_cert import default_certificates
from tests.helpers import ROOT, Echo, Gateway, eventually, free_port, stop, wait_port

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for "localhost" and its key: the one fastkong generates as
    Kong's default (``fastkong.control.default_cert``)."""
    return default_certificates(directory)[0]


def config(echo: Echo) -> str:
    return f"""
_format_version: "3.0"
services:
- name: echo
  url: http://127.0.0.1:{echo.port}
  routes:
  - name: secure
    paths: ["/secure"]
    protocols: ["https"]
"""


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(workdir)
    gw = Gateway(workdir, config(echo), 1, "--ssl-cert", str(cert), "--ssl-key", str(key))
    gw.port_flags = "ssl http2"  # TLS and HTTP/2 on the gateway's one listener
    gw.start()
    yield gw
    gw.stop()


def test_https_route_over_tls(tls_gateway: Gateway) -> None:
    url = f"https://127.0.0.1:{tls_gateway.port}/secure/x"
    r = httpx.get(url, verify=False)
    assert r.status_code == 200
    headers = dict(r.json()["headers"])
    assert headers["x-forwarded-proto"] == "https"
    assert r.json()["path"] == "/x"


def test_http2_over_tls(tls_gateway: Gateway) -> None:
    with httpx.Client(http2=True, verify=False) as client:
        r = client.get(f"https://127.0.0.1:{tls_gateway.port}/secure/h2")
    assert r.status_code == 200
    assert r.http_version == "HTTP/2"


def test_the_app_runs_under_uvicorn(tmp_path: Path, echo: Echo) -> None:
    path = tmp_path / "kong.yml"
    path.write_text(config(echo).replace('["https"]', '["http", "https"]'))
    port = free_port()
    env = dict(os.environ, KONG_DECLARATIVE_CONFIG=str(path))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "fastkong.proxy.worker:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_port(port, proc=proc)
        r = httpx.get(f"http://127.0.0.1:{port}/secure/u?q=1")
        assert r.status_code == 200
        assert r.json()["url"] == "/u?q=1"
        assert httpx.get(f"http://127.0.0.1:{port}/none").status_code == 404
    finally:
        stop(proc)


def test_the_app_runs_under_uvicorn_on_a_unix_socket(tmp_path: Path, echo: Echo) -> None:
    # An ASGI server on a Unix socket reports the server as (path, None): no port.
    path = tmp_path / "kong.yml"
    path.write_text(config(echo).replace('["https"]', '["http", "https"]'))
    sock = tmp_path / "fastkong.sock"
    env = dict(os.environ, KONG_DECLARATIVE_CONFIG=str(path))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "fastkong.proxy.worker:create_app",
            "--uds",
            str(sock),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        eventually(sock.exists, 10)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as client:
            r = client.get("http://gw.test/secure/u?q=1")
            assert r.status_code == 200
            assert r.json()["url"] == "/u?q=1"
            assert client.get("http://gw.test/none").status_code == 404
    finally:
        stop(proc)
