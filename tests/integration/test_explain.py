"""``fastkong config explain`` agrees with the proxy: same route, upstream path and Host."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fastkong.cli import main
from tests.helpers import ROOT, Echo, Gateway

pytestmark = pytest.mark.integration

CONFIG = """
_format_version: "3.0"
services:
- name: plain
  url: http://127.0.0.1:{port}
  routes:
  - {{name: prefix, paths: ["/api"]}}
  - {{name: keep, paths: ["/keep"], strip_path: false}}
  - {{name: longer, paths: ["/api/v2"]}}
  - {{name: regex, paths: ["~/items/(?<id>\\\\d+)$"], regex_priority: 5}}
  - {{name: host, hosts: ["*.example.com"], paths: ["/api"]}}
  - {{name: header, paths: ["/api"], headers: {{x-env: ["canary"]}}}}
  - {{name: method, paths: ["/api"], methods: ["DELETE"]}}
  - {{name: preserve, hosts: ["keep.example.org"], preserve_host: true}}
- name: based
  url: http://127.0.0.1:{port}/base/
  routes:
  - {{name: v0, paths: ["/fit"]}}
  - {{name: v1, paths: ["/v1fit"], path_handling: v1}}
  - {{name: v1-keep, paths: ["/v1keep"], path_handling: v1, strip_path: false}}
"""

REQUESTS = [
    ("GET", "/api/x?q=1", {}),
    ("GET", "/apix", {}),
    ("GET", "/api/v2/y", {}),
    ("GET", "/keep/a/b", {}),
    ("GET", "/items/42", {}),
    ("GET", "/items/42/more", {}),
    ("GET", "/api/h", {"Host": "a.b.example.com"}),
    ("GET", "/api/h", {"X-Env": "Canary"}),
    ("DELETE", "/api/d", {}),
    ("GET", "/anything", {"Host": "keep.example.org"}),
    ("GET", "/fit", {}),
    ("GET", "/fit/", {}),
    ("GET", "/fitfoo", {}),
    ("GET", "/v1fitfoo", {}),
    ("GET", "/v1keep/z", {}),
    ("GET", "/nowhere", {}),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, echo: Echo) -> Iterator[tuple[Gateway, Path]]:
    gw = Gateway(tmp_path_factory.mktemp("explain"), CONFIG.format(port=echo.port)).start()
    yield gw, gw.config_path
    gw.stop()


def explain(config: Path, method: str, url: str, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    args = ["config", "explain", str(config), "--method", method, "--url", url]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize(("method", "target", "headers"), REQUESTS)
def test_explain_matches_the_proxy(
    setup: tuple[Gateway, Path], method: str, target: str, headers: dict[str, str]
) -> None:
    gw, config = setup
    url = gw.url(target)
    predicted = explain(config, method, url, headers)
    r = httpx.request(method, url, headers=headers)
    if predicted["route"] is None:
        assert r.status_code == 404
        return
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["url"] == predicted["upstream_path"]
    host = dict(seen["headers"])["host"]
    assert host == predicted["host_header"]


def test_explain_command_line(setup: tuple[Gateway, Path]) -> None:
    _, config = setup
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastkong",
            "config",
            "explain",
            str(config),
            "--url",
            "http://x.example.com/items/7",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    assert result["route"] == "regex"
    assert result["service"] == "plain"
    assert result["upstream_path"] == "/"
    assert result["uri_captures"] == {"0": "/items/7", "1": "7", "id": "7"}
