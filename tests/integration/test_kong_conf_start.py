"""``fastkong start`` on a Kong ``kong.conf`` (fastkong/kong_conf_file.py), on real nodes: the
listeners, headers and declarative config set only in the file are the node's, the
environment wins over the file, ``GET /`` reports what is in force, and a ``kong.conf`` given
to ``-c`` (as Kong users type ``kong start -c /etc/kong/kong.conf``) is read as ``--conf``."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.helpers import ROOT, Echo, free_port, stop, wait_port

pytestmark = pytest.mark.integration


class Node(NamedTuple):
    proc: subprocess.Popen[bytes]
    proxy: int
    admin: int
    stderr: Path


def kong_conf(workdir: Path, echo: Echo) -> tuple[str, int, int, int]:
    """A kong.conf (Kong's comments and spacing) naming a declarative config beside it."""
    (workdir / "kong.yml").write_text(
        '_format_version: "3.0"\nservices:\n- name: echo\n'
        f"  url: http://127.0.0.1:{echo.port}\n  routes:\n  - name: r\n    paths: [/echo]\n"
        f"- name: down\n  url: http://127.0.0.1:{free_port()}\n  routes:\n"
        "  - name: d\n    paths: [/down]\n"
    )
    proxy, status, admin = free_port(), free_port(), free_port()
    text = (
        "# fastkong reads Kong's kong.conf\n"
        f"proxy_listen = 127.0.0.1:{proxy}   # the proxy\n"
        f"status_listen = 127.0.0.1:{status}\n"
        f"admin_listen = 127.0.0.1:{admin}\n"
        "headers = off\n"
        "error_default_type = text/html\n"
        "nginx_worker_processes = 1\n"
        f"declarative_config = {workdir / 'kong.yml'}\n"
        "pg_timeout = 5000\n"
    )
    return text, proxy, status, admin


def start(workdir: Path, echo: Echo, *argv: str, env: dict[str, str]) -> Iterator[Node]:
    text, proxy, status, admin = kong_conf(workdir, echo)
    (workdir / "kong.conf").write_text(text)
    stderr = workdir / "stderr"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KONG_", "FASTKONG_"))}
    environ.update(env, FASTKONG_NO_EXTENSIONS=os.environ.get("FASTKONG_NO_EXTENSIONS", ""))
    with stderr.open("wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastkong", "start", *argv, "--prefix", str(workdir / "p")],
            cwd=ROOT,
            env=environ,
            stderr=errors,
            stdout=errors,
        )
    try:
        wait_port(status, proc=proc)
        wait_port(proxy, proc=proc)
        yield Node(proc, proxy, admin, stderr)
    finally:
        stop(proc)


def upstream_down(node: Node) -> tuple[int, str, bytes]:
    """A request without Accept (which error_default_type is for) to a service that does not
    answer: Kong's 502 error page."""
    conn = http.client.HTTPConnection("127.0.0.1", node.proxy, timeout=10)
    try:
        conn.request("GET", "/down")
        r = conn.getresponse()
        return r.status, r.headers["content-type"], r.read()
    finally:
        conn.close()


@pytest.fixture
def conf_node(tmp_path: Path, echo: Echo) -> Iterator[Node]:
    yield from start(
        tmp_path,
        echo,
        "--conf",
        str(tmp_path / "kong.conf"),
        env={"KONG_ERROR_DEFAULT_TYPE": "application/json"},
    )


def test_a_node_on_conf_serves_what_the_file_says(conf_node: Node) -> None:
    r = httpx.get(f"http://127.0.0.1:{conf_node.proxy}/echo")
    assert r.status_code == 200
    assert not [h for h in r.headers if h.lower().startswith("x-kong") or h.lower() == "via"]
    # The environment over the file: Kong's JSON error body, not the file's HTML.
    status, content_type, body = upstream_down(conf_node)
    assert (status, content_type) == (502, "application/json; charset=utf-8")
    assert (
        json.loads(body)["message"] == "An invalid response was received from the upstream server"
    )
    # GET / reports the settings in force, wherever they came from.
    conf = httpx.get(f"http://127.0.0.1:{conf_node.admin}/").json()["configuration"]
    assert conf["headers"] == ["off"]
    assert conf["error_default_type"] == "application/json"
    assert conf["proxy_listen"] == [f"127.0.0.1:{conf_node.proxy}"]
    said = conf_node.stderr.read_text()
    assert f"settings from {conf_node.stderr.parent / 'kong.conf'}" in said
    assert f"not implemented, ignored: pg_timeout ({conf_node.stderr.parent / 'kong.conf'}:9)" in (
        said
    )


@pytest.fixture
def c_node(tmp_path: Path, echo: Echo) -> Iterator[Node]:
    yield from start(tmp_path, echo, "-c", str(tmp_path / "kong.conf"), env={})


def test_c_kong_conf_is_taken_as_conf(c_node: Node) -> None:
    r = httpx.get(f"http://127.0.0.1:{c_node.proxy}/echo")
    assert r.status_code == 200 and "via" not in r.headers
    assert upstream_down(c_node)[:2] == (502, "text/html; charset=utf-8")  # the file's
    path = c_node.stderr.parent / "kong.conf"
    assert (
        f"fastkong: -c {path}: Kong settings (name = value), not a declarative config: read as "
        "--conf, and its declarative_config served\n"
    ) in c_node.stderr.read_text()
